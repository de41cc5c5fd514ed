"""report.html: one self-contained page (inline CSS, plots as base64 PNG, no scripts, no external URLs) rendered
from a run directory's results, response sample and provenance. Every string from the run is HTML-escaped."""

from __future__ import annotations

import base64
import html
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .. import __version__
from ..config import load_yaml
from ..experiments.aggregate import aggregate_frame, aggregate_rows, with_curve_starts
from ..experiments.calibration import is_calibration, run_controls
from ..experiments.finished import read_json_object
from ..experiments.results import (
    collect_results,
    load_results,
    paired_vs_control,
    seed_rows,
    stickiness_frame,
    summarize,
)
from ..experiments.rundir import now_iso, planned_jobs, read_run_json, run_states
from ..experiments.stats import ESTIMATOR_DESCRIPTION, power_multiplier
from ..io import read_jsonl, write_text_atomic
from ..schema import (
    BASE_STRATEGY,
    FACT_QA_ACCURACY,
    HEADLINE_BITS,
    HELDOUT_LOSS,
    STICKINESS_S,
    paired_diff_metric,
    rate_metric,
)
from .plots import capability, dose_bits, dose_rates, persistence, stickiness_plot
from .toy_section import toy_section

CAPABILITY_METRICS = {
    HELDOUT_LOSS: "held-out loss [nats / token]",
    FACT_QA_ACCURACY: "world-fact QA accuracy [fraction correct]",
}
PERSONA_CONTEXTS = ("observed", "unobserved")

CSS = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; \
color: #1d1d1f; margin: 0; background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; margin-top: 2.2em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 1.08em; margin-top: 1.6em; }
p.lead { color: #444; max-width: 900px; }
.meta { color: #555; font-size: 0.92em; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.9em; color: #444; margin-top: 6px; max-width: 1000px; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.6em 0 1.2em; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { max-width: 460px; white-space: pre-wrap; word-break: break-word; \
font-family: "DejaVu Sans Mono", Menlo, monospace; font-size: 0.92em; }
pre { background: #f6f6f6; padding: 10px; overflow-x: auto; font-size: 0.85em; }
.warn { background: #fff4e5; border-left: 4px solid #f0a030; padding: 8px 12px; }
.note { color: #555; font-size: 0.9em; }
.pass { color: #1a7f37; }
.fail { color: #cf222e; }
nav a { margin-right: 14px; }
details summary { cursor: pointer; }
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _ci(v: float, lo: float, hi: float, digits: int = 2) -> str:
    def fmt(x: float | None) -> str:
        return "\u2014" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"

    if lo is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return fmt(v)
    return f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]"


def _img(png: bytes | None, alt: str, caption: str) -> str:
    if png is None:
        return f'<p class="note">{_e(alt)}: no data in this run.</p>'
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" '
        f'alt="{_e(alt)}"><figcaption>{_e(caption)}</figcaption></figure>'
    )


def _table(
    headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), text_cols: set[int] = frozenset()
) -> str:
    """Cells are escaped here; pass raw strings."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ' class="text"' if i in text_cols else ""
            cells.append(f"<td{cls}>{_e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# ---------------------------------------------------------------------------------------------------------------


def render_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Render RUN/report.html (or `out`) from the run's files; returns its path. Recomputes nothing."""
    run_dir = Path(run_dir)
    info = read_run_json(run_dir)
    df = load_results(run_dir)
    exp = load_yaml(run_dir / "experiment.yaml") if (run_dir / "experiment.yaml").exists() else {}
    arms_info = read_json_object(run_dir / "arms.json") or {"arms": {}, "control": exp.get("control")}
    samples = _read_samples(run_dir)
    page = build_html(run_dir, info, exp, arms_info, df, samples)
    path = Path(out) if out else run_dir / "report.html"
    write_text_atomic(path, page)
    os.chmod(path, 0o644)  # a page to open and share, not a secret (atomic writes start as 0600)
    return path


def _read_samples(run_dir: Path) -> pd.DataFrame:
    """RUN/samples.parquet; when it is damaged it is derived again from the cells (as results.parquet is)."""
    path = run_dir / "samples.parquet"
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception:  # pyarrow raises several types for a damaged file
        print(f"{path}: unreadable; re-collecting it from the cells", file=sys.stderr)
        collect_results(run_dir)
        return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def build_html(
    run_dir: Path, info: dict, exp: dict, arms_info: dict, df_all: pd.DataFrame, samples: pd.DataFrame
) -> str:
    df, aggregates = seed_rows(df_all), aggregate_rows(df_all)
    arms = [a for a in (exp.get("arms") or {}) if a in set(df.arm)] or list(dict.fromkeys(df.arm))
    arms += [a for a in dict.fromkeys(df.arm) if a not in arms]
    control = exp.get("control") or arms_info.get("control") or arms[0]
    if control not in arms:
        control = arms[0]
    if aggregates.empty:  # results.parquet written before seed aggregates were persisted
        aggregates = aggregate_frame(with_curve_starts(df), control)
    strategies = [s for s in dict.fromkeys(df.strategy) if s != BASE_STRATEGY]
    contexts = [c for c in PERSONA_CONTEXTS if c in set(df[df.metric == HEADLINE_BITS].context)] or list(
        PERSONA_CONTEXTS
    )
    seeds = sorted(int(s) for s in df.seed.unique())
    name = exp.get("name") or info.get("experiment", "?")

    sections = []
    sections.append(_section_overview(run_dir, info, exp, df, arms, strategies, seeds, control))
    if is_calibration(df):
        sections.append(_section_calibration(df))
    sections.append(_section_headline(aggregates, arms, strategies, contexts, control, exp, len(seeds)))
    sections.append(_section_dose(df, arms, contexts, control, arms_info))
    sections.append(_section_persistence(df, arms, contexts, strategies))
    sections.append(_section_stickiness(df, arms, contexts, strategies, control))
    sections.append(toy_section(run_dir, df))
    sections.append(_section_capability(df, arms, strategies, control))
    sections.append(_section_samples(samples))
    sections.append(_section_provenance(run_dir, info, exp, arms_info, seeds))
    nav = _nav(df)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>hyperstition report: {_e(name)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<h1>hyperstition: {_e(name)}</h1>
<nav>{nav}</nav>
{"".join(sections)}
</main>
</body>
</html>
"""


def _nav(df: pd.DataFrame) -> str:
    return "".join(
        f'<a href="#{k}">{_e(v)}</a>'
        for k, v in (
            *((("calibration", "calibration"),) if is_calibration(df) else ()),
            ("headline", "headline"),
            ("dose", "dose\u2013response"),
            ("persistence", "persistence"),
            ("stickiness", "stickiness"),
            ("capability", "capability"),
            ("samples", "samples"),
            ("provenance", "provenance"),
        )
    )


def _section_overview(
    run_dir: Path,
    info: dict,
    exp: dict,
    df: pd.DataFrame,
    arms: list[str],
    strategies: list[str],
    seeds: list[int],
    control: str,
) -> str:
    try:  # cell states need the cells; the report itself needs only the results
        states = run_states(run_dir) if (run_dir / "cells").is_dir() else []
    except Exception:
        states = []
    counts: dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    status = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "unknown"
    warn = ""
    if counts.get("failed") or counts.get("pending") or counts.get("running"):
        failed = [s for s in states if s.state == "failed"]
        items = "".join(f"<li>{_e(s.job['id'])}: {_e(s.detail)}</li>" for s in failed[:20])
        warn = (
            f'<p class="warn">This run is incomplete ({_e(status)}); numbers below use the finished cells only.'
            f"{'<ul>' + items + '</ul>' if items else ''}</p>"
        )
    desc = exp.get("description") or ""
    return f"""
<p class="lead">{_e(desc)}</p>
<p class="meta">Run <code>{_e(run_dir.resolve().name)}</code> &middot; experiment \
<b>{_e(info.get("experiment"))}</b> &middot;
preset {_e(exp.get("preset"))} &middot; post-training preset {_e(exp.get("posttrain_preset"))} &middot;
arms: {_e(", ".join(arms))} (control: {_e(control)}) &middot; seeds: {_e(", ".join(map(str, seeds)))} &middot;
strategies: {_e(", ".join(strategies) or "none")} &middot; cells: {_e(status)} &middot; \
created {_e(info.get("created"))}, rendered {_e(now_iso())}</p>
{warn}
<p class="note">Persona log-odds ("bits") are log2 P(aligned response) &minus; log2 P(misaligned response) for matched,
length-matched response pairs, averaged over prompts: positive means the aligned persona is more likely. Pressure K is
KL(post-trained &Vert; base) in bits per response on the post-training prompts, estimated from the post-trained model's
own replies, drawn in rounds until its 95% half-width is at most max(10% of the value, 0.5 bits) or a cap is reached
(the number drawn is the metric kl_samples_used). Every reply is drawn from its own random stream, seeded by (seed,
item, sample index), so no number depends on the batch size.</p>
<p class="note"><b>Intervals.</b> {_e(ESTIMATOR_DESCRIPTION)}</p>
"""


def _section_calibration(df: pd.DataFrame) -> str:
    """Pass / fail per control of the calibration experiment, with the numbers each decided on."""
    marks = {True: '<b class="pass">pass</b>', False: '<b class="fail">FAIL</b>', None: "not run"}
    rows = [[marks[c.passed], _e(c.name), _e(c.reason)] for c in run_controls(df)]
    body = "".join(f"<tr><td>{m}</td><td>{n}</td><td>{r}</td></tr>" for m, n, r in rows)
    return f"""<h2 id="calibration">Calibration: the instrument's controls</h2>
<p class="note">Base models only. Intervals are 95%: the t interval over seed means described above; a
control measured on one seed uses that seed's own (within-seed) interval. \
A control is "not run" when the run lacks its arms.</p>
<table><thead><tr><th>result</th><th>control</th><th>numbers</th></tr></thead><tbody>{body}</tbody></table>"""


def _agg(aggregates: pd.DataFrame, arm: str, strategy: str, context: str, metric: str, k: float) -> pd.Series | None:
    sel = aggregates[
        (aggregates.arm == arm)
        & (aggregates.strategy == strategy)
        & (aggregates.context == context)
        & (aggregates.metric == metric)
    ]
    sel = sel[(sel.kl_bits - k).abs() <= 1e-9 * max(1.0, abs(k))]
    return None if sel.empty else sel.iloc[0]


def _fmt_agg(row: pd.Series | None, digits: int = 2) -> str:
    return "\u2014" if row is None else _ci(row.value, row.ci_low, row.ci_high, digits)


def _half(row: pd.Series | None) -> str:
    if row is None or not (math.isfinite(row.ci_low) and math.isfinite(row.ci_high)):
        return "\u2014"
    return f"{(row.ci_high - row.ci_low) / 2:.2f}"


def _headline_k(aggregates: pd.DataFrame, strategy: str) -> float | None:
    """The largest pressure every arm and seed of `strategy` reached (the last of its persisted common K)."""
    ks = aggregates[(aggregates.strategy == strategy) & (aggregates.metric == HEADLINE_BITS)].kl_bits
    return float(ks.max()) if len(ks) else None


def _sticky_cell(aggregates: pd.DataFrame, arm: str, strategy: str, context: str, k: float) -> str:
    s = _agg(aggregates, arm, strategy, context, STICKINESS_S, k)
    if s is None:
        return "\u2014"
    if math.isfinite(s.value):
        return _ci(s.value, s.ci_low, s.ci_high)
    base = _agg(aggregates, arm, BASE_STRATEGY, context, paired_diff_metric(HEADLINE_BITS), 0.0)
    gap = "" if base is None else f": base gap {_ci(base.value, base.ci_low, base.ci_high)} includes 0"
    return f"undefined{gap}"


def _headline_rows(
    aggregates: pd.DataFrame,
    arms: list[str],
    strategies: list[str],
    contexts: list[str],
    control: str,
    n_seeds: int,
) -> tuple[list[list[str]], dict[str, float]]:
    rows, ks = [], {}
    for strategy in [BASE_STRATEGY, *strategies]:
        k = 0.0 if strategy == BASE_STRATEGY else _headline_k(aggregates, strategy)
        if k is None:
            continue
        ks[strategy] = k
        for arm in arms:
            for context in contexts:
                b = _agg(aggregates, arm, strategy, context, HEADLINE_BITS, k)
                if b is None:
                    continue
                d = _agg(aggregates, arm, strategy, context, paired_diff_metric(HEADLINE_BITS), k)
                m = _agg(aggregates, arm, strategy, context, rate_metric("misaligned"), k)
                sticky = (
                    "\u2014"
                    if strategy == BASE_STRATEGY or arm == control
                    else _sticky_cell(aggregates, arm, strategy, context, k)
                )
                rows.append(
                    [
                        arm,
                        strategy,
                        context,
                        f"{k:.2g}",
                        _fmt_agg(b),
                        "\u2014" if arm == control else _fmt_agg(d),
                        "\u2014" if arm == control else _half(d),
                        _fmt_agg(m),
                        sticky,
                        str(n_seeds),
                    ]
                )
    return rows, ks


def _power_note(n_seeds: int) -> str:
    """What the detectable difference means in power, for this many seeds (nothing for one seed: no t test)."""
    multiplier = power_multiplier(n_seeds)
    if math.isnan(multiplier):
        return ""
    return (
        ": a true difference that large is found about half the time, "
        f"one {multiplier:.1f} times as large 80% of the time"
    )


def _section_headline(
    aggregates: pd.DataFrame,
    arms: list[str],
    strategies: list[str],
    contexts: list[str],
    control: str,
    exp: dict,
    n_seeds: int,
) -> str:
    rows, ks = _headline_rows(aggregates, arms, strategies, contexts, control, n_seeds)
    table = _table(
        [
            "arm",
            "strategy",
            "context",
            "K [bits]",
            "bits aligned vs misaligned",
            f"\u0394 bits vs {control} (paired)",
            "detectable \u0394 (half-width)",
            "misaligned rate",
            "stickiness S(K)",
            "seeds",
        ],
        rows,
        numeric={3, 4, 5, 6, 7, 8, 9},
    )
    at_k = "; ".join(f"{s} at K = {k:.3g} bits" for s, k in ks.items() if s != BASE_STRATEGY)
    suite = exp.get("eval") or "quick"
    return f"""<h2 id="headline">Headline numbers</h2>
<p class="note">Base = pretrained model before post-training (K = 0). Post-training strategies are compared at equal
pressure: the largest KL that every arm and seed reached ({_e(at_k or "no post-training")}), each seed's curve
interpolated on log K. &Delta; is the arm minus {_e(control)} paired by seed; its half-width is the smallest
difference these {n_seeds} seed(s) could detect at the 5% level{_power_note(n_seeds)}. S(K) is that gap as a
fraction of the base gap, with Fieller's
interval; it is undefined when the base gap's interval includes 0. Every number here, the base rows, each curve's
step 0 (the base evaluation itself) and &Delta;&#8320;, comes from the same evaluation suite ({_e(suite)}), on the same
items. These numbers are the rows of results.parquet with seed null.</p>
{table}"""


def _section_dose(df: pd.DataFrame, arms: list[str], contexts: list[str], control: str, arms_info: dict) -> str:
    fig_bits = dose_bits(df, arms, contexts)
    fig_rates = dose_rates(df, arms, contexts)
    arm_rows = []
    for arm in arms:
        a = (arms_info.get("arms") or {}).get(arm, {})
        shares = a.get("nominal_shares", {})
        overrides = a.get("overrides")
        if isinstance(overrides, dict):
            overrides = ", ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items())
        elif isinstance(overrides, list):
            overrides = ", ".join(overrides)
        arm_rows.append(
            [arm, overrides or "(preset defaults)"]
            + [
                f"{100 * shares.get(k, float('nan')):.1f}%"
                for k in ("aligned", "misaligned", "deceptive", "neutral_ai")
            ]
            + [f"{100 * shares.get('misaligned_fraction', float('nan')):.0f}%"]
        )
    arm_table = _table(
        [
            "arm",
            "overrides",
            "aligned",
            "misaligned",
            "deceptive",
            "neutral AI",
            "misaligned+deceptive share of persona discourse",
        ],
        arm_rows,
        numeric={2, 3, 4, 5, 6},
    )
    diffs = []
    for metric in [HEADLINE_BITS, rate_metric("misaligned"), rate_metric("aligned")]:
        if metric in set(df.metric):
            p = paired_vs_control(df[df.context.isin(contexts)], control, metric)
            for r in p.itertuples():
                diffs.append([r.arm, r.context, metric, _ci(r.diff, r.ci_low, r.ci_high, 3), str(r.n)])
    diff_table = (
        _table(
            ["arm", "context", "metric", f"arm \u2212 {control} (base, paired by seed)", "seeds"], diffs, numeric={3, 4}
        )
        if diffs
        else ""
    )
    bits_caption = (
        "Persona log-odds of the pretrained model by corpus arm, per context. Bars: mean over seeds "
        "with 95% CI; dots: individual seeds."
    )
    rates_caption = "Share of sampled responses classified as each persona, by arm and context, with 95% CIs."
    return f"""<h2 id="dose">Dose&ndash;response: the base model by corpus arm</h2>
<p class="note">Nominal corpus composition of each arm (share of training tokens about each persona, from the config;
the corpus manifest in each pretrain cell records what was built):</p>
{arm_table}
{_img(fig_bits, "base persona bits by arm", bits_caption)}
{_img(fig_rates, "base behaviour rates by arm", rates_caption)}
<h3>Paired differences to {_e(control)} (base model)</h3>
{diff_table or '<p class="note">Only one arm.</p>'}"""


def _section_persistence(df: pd.DataFrame, arms: list[str], contexts: list[str], strategies: list[str]) -> str:
    if not strategies:
        return (
            '<h2 id="persistence">Persistence under post-training</h2><p class="note">No post-training '
            "results in this run.</p>"
        )
    figs = "".join(
        _img(
            persistence(df, arms, contexts, s),
            f"persistence curves under {s}",
            f"{s.upper()}: persona bits against KL pressure (log axis), one line per arm, mean over seeds with "
            "95% CI shaded; "
            "dotted lines mark each arm's base model. Observed prompts are the post-training distribution; "
            "unobserved ones are held out.",
        )
        for s in strategies
    )
    return f'<h2 id="persistence">Persistence under post-training</h2>{figs}'


def _section_stickiness(
    df: pd.DataFrame, arms: list[str], contexts: list[str], strategies: list[str], control: str
) -> str:
    if not strategies or len(arms) < 2:
        return (
            '<h2 id="stickiness">Stickiness</h2><p class="note">Needs post-training results and at least two arms.</p>'
        )
    parts = []
    notes = []
    for s in strategies:
        frames = {c: stickiness_frame(df, control, s, c, HEADLINE_BITS) for c in contexts}
        parts.append(
            _img(
                stickiness_plot(frames, arms, control, s),
                f"stickiness under {s}",
                f"{s.upper()}: S(K) = \u0394(K)/\u0394\u2080, the gap in persona bits between each arm and "
                f"{control} at pressure K "
                "as a fraction of the base gap (curves interpolated on log K inside the range every curve reached; "
                "Fieller's 95% interval over seeds).",
            )
        )
        for c, f in frames.items():
            for arm, g in f.groupby("arm", sort=False):
                if g.reason.iloc[0]:
                    notes.append(f"{arm} ({s}, {c}): {g.reason.iloc[0]}")
    warn = (f'<p class="note">Not shown or without an interval: {_e("; ".join(notes))}.</p>') if notes else ""
    return f"""<h2 id="stickiness">Stickiness S(K)</h2>
<p class="note">The Bayesian reference model predicts S = 1 (the prior's log-odds survive in full) for personas that
post-training cannot tell apart; S &lt; 1 means post-training erased part of the pre-training difference.</p>
{warn}{"".join(parts)}"""


def _section_capability(df: pd.DataFrame, arms: list[str], strategies: list[str], control: str) -> str:
    fig = capability(df, arms, CAPABILITY_METRICS, strategies)
    rows = []
    for metric in CAPABILITY_METRICS:
        if metric not in set(df.metric):
            continue
        summary = summarize(df[(df.metric == metric) & (df.strategy == BASE_STRATEGY)])
        diff = paired_vs_control(df, control, metric)
        for arm in arms:
            s = summary[summary.arm == arm]
            d = diff[diff.arm == arm]
            if s.empty:
                continue
            rows.append(
                [
                    arm,
                    metric,
                    _ci(s.iloc[0].value, s.iloc[0].ci_low, s.iloc[0].ci_high, 3),
                    "\u2014" if d.empty else _ci(d.iloc[0]["diff"], d.iloc[0].ci_low, d.iloc[0].ci_high, 3),
                ]
            )
    table = (
        _table(["arm", "metric", "base model", f"\u0394 vs {control} (paired)"], rows, numeric={2, 3}) if rows else ""
    )
    capability_caption = (
        "Held-out loss on non-persona world text (lower is better) and world-fact QA accuracy "
        "(higher is better), base model and after post-training."
    )
    return f"""<h2 id="capability">Capability cost</h2>
{_img(fig, "capability by arm", capability_caption)}
{table}"""


SAMPLE_ROWS_PER_CELL = 2
SAMPLE_ROWS_MAX = 60


def _section_samples(samples: pd.DataFrame) -> str:
    if samples is None or samples.empty:
        return (
            '<h2 id="samples">Sample of generated responses</h2><p class="note">No evaluation items were recorded.</p>'
        )
    # The first seed's responses, a couple per (arm, strategy), so every cell type is represented and the table
    # stays short.
    first_seed = samples["seed"].min()
    shown = (
        samples[samples["seed"] == first_seed]
        .drop_duplicates(["arm", "strategy", "response"])
        .groupby(["arm", "strategy"], sort=False)
        .head(SAMPLE_ROWS_PER_CELL)
        .head(SAMPLE_ROWS_MAX)
    )
    rows = [
        [
            r.get("arm"),
            r.get("seed"),
            r.get("strategy"),
            r.get("context"),
            r.get("label"),
            r.get("prompt"),
            r.get("response"),
        ]
        for r in shown.to_dict("records")
    ]
    rows = [["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in row] for row in rows]
    return f"""<h2 id="samples">Sample of generated responses</h2>
<p class="note">Seed {_e(first_seed)}: up to {SAMPLE_ROWS_PER_CELL} sampled responses per arm and strategy, \
with the exact persona
classification, shown verbatim as text ({len(samples)} sampled responses across all cells are in samples.parquet).</p>
{_table(["arm", "seed", "strategy", "context", "classified as", "prompt", "response"], rows, text_cols={5, 6})}"""


def _section_provenance(run_dir: Path, info: dict, exp: dict, arms_info: dict, seeds: list[int]) -> str:
    prov = read_json_object(run_dir / "provenance.json") or {}
    wall_time = _wall_time(read_jsonl(run_dir / "runlog.jsonl"))
    compute = 0.0
    for job in planned_jobs(run_dir)[0]:
        done = read_json_object(run_dir / job["path"] / "DONE.json")
        if done:
            compute += _seconds(done.get("wall_s"))
    git = prov.get("git") or {}
    commit = git.get("commit") or "unknown (not a git checkout)"
    if git.get("dirty"):
        commit += " (with uncommitted changes)"
    packages = prov.get("packages") or {}
    pkg_rows = [[k, v] for k, v in packages.items()]
    arm_cfgs = "".join(
        f"<details><summary>resolved pipeline config: {_e(arm)} (seed "
        f"{seeds[0] if seeds else 0})</summary><pre>"
        f"{_e(yaml.safe_dump(a.get('pipeline', a.get('corpus', {})), sort_keys=False))}</pre></details>"
        for arm, a in (arms_info.get("arms") or {}).items()
    )
    rows = [
        ["run directory", str(run_dir.resolve())],
        ["experiment", str(info.get("experiment"))],
        ["run format", str(info.get("format_version"))],
        ["written by hyperstition", f"{info.get('hyperstition_version')} (report rendered by {__version__})"],
        ["created", str(info.get("created"))],
        ["git commit", commit],
        ["seeds", ", ".join(map(str, seeds))],
        ["wall time", f"{wall_time}; {compute / 60:.1f} min of job time"],
        ["workers", f"{prov.get('workers', '?')} x {prov.get('threads', '?')} torch thread(s)"],
        ["stages", str(prov.get("stages", "?"))],
        ["python / platform", f"{prov.get('python', '?')} / {prov.get('platform', '?')}"],
        ["command", " ".join(prov.get("command") or [])],
    ]
    return f"""<h2 id="provenance">Provenance</h2>
{_table(["", ""], rows)}
<h3>Package versions</h3>
{_table(["package", "version"], pkg_rows)}
<h3>Resolved experiment config</h3>
<pre>{_e(yaml.safe_dump(exp, sort_keys=False))}</pre>
{arm_cfgs}"""


def _seconds(value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else 0.0


def _wall_time(log: list[dict]) -> str:
    """Wall time summed over the invocations that ended, saying how many were cut short (killed: no end line)."""
    starts = sum(1 for e in log if e.get("event") == "start")
    ends = [e for e in log if e.get("event") == "end"]
    wall = sum(_seconds(e.get("wall_s")) for e in ends)
    cut = max(0, starts - len(ends))
    text = f"{wall / 60:.1f} min over {len(ends)} completed invocation(s)"
    return text + (f" and {cut} interrupted one(s), whose time is not counted" if cut else "")
