"""report.html: one self-contained page (inline CSS, plots as base64 PNG, no scripts, no external URLs) rendered
from a run directory's results, response sample and provenance. Every string from the run is HTML-escaped."""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .. import __version__
from ..experiments import calibration as CAL
from ..experiments import results as R
from ..experiments.rundir import now_iso, read_run_json
from ..experiments.runner import load_results, read_json, run_states
from ..io import write_text_atomic
from ..schema import BASE_STRATEGY, FACT_QA_ACCURACY, HEADLINE_BITS, HELDOUT_LOSS, rate_metric
from . import plots

CAPABILITY_METRICS = {HELDOUT_LOSS: "held-out loss [nats / token]", FACT_QA_ACCURACY: "world-fact QA accuracy [fraction correct]"}
PERSONA_CONTEXTS = ("observed", "unobserved")
MIN_GAP_BITS = 0.25  # stickiness is not shown for arms whose base gap to the control is smaller (the ratio is noise)

CSS = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; color: #1d1d1f; margin: 0; background: #fafafa; }
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
td.text { max-width: 460px; white-space: pre-wrap; word-break: break-word; font-family: "DejaVu Sans Mono", Menlo, monospace; font-size: 0.92em; }
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
    fmt = lambda x: "\u2014" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"  # noqa: E731
    if lo is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return fmt(v)
    return f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]"


def _img(png: bytes | None, alt: str, caption: str) -> str:
    if png is None:
        return f'<p class="note">{_e(alt)}: no data in this run.</p>'
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), text_cols: set[int] = frozenset()) -> str:
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
    exp = yaml.safe_load((run_dir / "experiment.yaml").read_text()) if (run_dir / "experiment.yaml").exists() else {}
    arms_info = read_json(run_dir / "arms.json") or {"arms": {}, "control": exp.get("control")}
    samples = pd.read_parquet(run_dir / "samples.parquet") if (run_dir / "samples.parquet").exists() else pd.DataFrame()
    page = build_html(run_dir, info, exp, arms_info, df, samples)
    path = Path(out) if out else run_dir / "report.html"
    write_text_atomic(path, page)
    os.chmod(path, 0o644)  # a page to open and share, not a secret (atomic writes start as 0600)
    return path


def build_html(run_dir: Path, info: dict, exp: dict, arms_info: dict, df: pd.DataFrame, samples: pd.DataFrame) -> str:
    n_boot = int(exp.get("bootstrap", 2000))
    arms = [a for a in (exp.get("arms") or {}) if a in set(df.arm)] or list(dict.fromkeys(df.arm))
    arms += [a for a in dict.fromkeys(df.arm) if a not in arms]
    control = exp.get("control") or arms_info.get("control") or arms[0]
    if control not in arms:
        control = arms[0]
    strategies = [s for s in dict.fromkeys(df.strategy) if s != BASE_STRATEGY]
    contexts = [c for c in PERSONA_CONTEXTS if c in set(df[df.metric == HEADLINE_BITS].context)] or list(PERSONA_CONTEXTS)
    seeds = sorted(int(s) for s in df.seed.unique())
    name = exp.get("name") or info.get("experiment", "?")

    sections = []
    sections.append(_section_overview(run_dir, info, exp, df, arms, strategies, seeds, control))
    if CAL.is_calibration(df):
        sections.append(_section_calibration(df))
    sections.append(_section_headline(df, arms, strategies, contexts, control, n_boot))
    sections.append(_section_dose(df, arms, contexts, control, arms_info, n_boot))
    sections.append(_section_persistence(df, arms, contexts, strategies, n_boot))
    sections.append(_section_stickiness(df, arms, contexts, strategies, control, n_boot))
    sections.append(_section_capability(df, arms, strategies, control, n_boot))
    sections.append(_section_samples(samples))
    sections.append(_section_provenance(run_dir, info, exp, arms_info, seeds))
    nav = "".join(f'<a href="#{k}">{_e(v)}</a>' for k, v in (
        *((("calibration", "calibration"),) if CAL.is_calibration(df) else ()),
        ("headline", "headline"), ("dose", "dose\u2013response"), ("persistence", "persistence"), ("stickiness", "stickiness"),
        ("capability", "capability"), ("samples", "samples"), ("provenance", "provenance")))
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
{''.join(sections)}
</main>
</body>
</html>
"""


def _section_overview(run_dir: Path, info: dict, exp: dict, df: pd.DataFrame, arms: list[str], strategies: list[str], seeds: list[int], control: str) -> str:
    try:  # cell states need the cells; the report itself needs only the results
        states = run_states(run_dir) if (run_dir / "cells").is_dir() else []
    except Exception:  # noqa: BLE001
        states = []
    counts: dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    status = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "unknown"
    warn = ""
    if counts.get("failed") or counts.get("pending") or counts.get("running"):
        failed = [s for s in states if s.state == "failed"]
        items = "".join(f"<li>{_e(s.job['id'])}: {_e(s.detail)}</li>" for s in failed[:20])
        warn = (f'<p class="warn">This run is incomplete ({_e(status)}); numbers below use the finished cells only.'
                f'{"<ul>" + items + "</ul>" if items else ""}</p>')
    desc = exp.get("description") or ""
    return f"""
<p class="lead">{_e(desc)}</p>
<p class="meta">Run <code>{_e(run_dir.resolve().name)}</code> &middot; experiment <b>{_e(info.get('experiment'))}</b> &middot;
preset {_e(exp.get('preset'))} &middot; post-training preset {_e(exp.get('posttrain_preset'))} &middot;
arms: {_e(', '.join(arms))} (control: {_e(control)}) &middot; seeds: {_e(', '.join(map(str, seeds)))} &middot;
strategies: {_e(', '.join(strategies) or 'none')} &middot; cells: {_e(status)} &middot; created {_e(info.get('created'))}, rendered {_e(now_iso())}</p>
{warn}
<p class="note">Persona log-odds ("bits") are log2 P(aligned response) &minus; log2 P(misaligned response) for matched,
length-matched response pairs, averaged over prompts: positive means the aligned persona is more likely. Pressure K is
KL(post-trained &Vert; base) in bits per response on the post-training prompts. Intervals are 95%: a bootstrap over seeds
when there are several seeds, otherwise the evaluation's own interval (bootstrap over prompts, or Wilson for rates).</p>
"""


def _section_calibration(df: pd.DataFrame) -> str:
    """Pass / fail per control of the calibration experiment, with the numbers each decided on."""
    marks = {True: '<b class="pass">pass</b>', False: '<b class="fail">FAIL</b>', None: "not run"}
    rows = [[marks[c.passed], _e(c.name), _e(c.reason)] for c in CAL.run_controls(df)]
    body = "".join(f"<tr><td>{m}</td><td>{n}</td><td>{r}</td></tr>" for m, n, r in rows)
    return f"""<h2 id="calibration">Calibration: the instrument's controls</h2>
<p class="note">Base models only. Intervals are 95% (normal approximation over seeds, never narrower than the
within-seed error; see <code>experiments/calibration.py</code>). A control is "not run" when the run lacks its arms.</p>
<table><thead><tr><th>result</th><th>control</th><th>numbers</th></tr></thead><tbody>{body}</tbody></table>"""


def _section_headline(df: pd.DataFrame, arms: list[str], strategies: list[str], contexts: list[str], control: str, n_boot: int) -> str:
    bits = R.summarize(df[df.metric == HEADLINE_BITS], n_boot=n_boot)
    mis = R.summarize(df[df.metric == rate_metric("misaligned")], n_boot=n_boot) if rate_metric("misaligned") in set(df.metric) else pd.DataFrame(columns=bits.columns)
    diffs = {s: R.paired_vs_control(df[df.context.isin(contexts)], control, HEADLINE_BITS, strategy=s, n_boot=n_boot) for s in [BASE_STRATEGY, *strategies]}
    sticky = {(s, c): R.stickiness_frame(df, control, s, c, HEADLINE_BITS, n_boot=n_boot, n_grid=8) for s in strategies for c in contexts}
    rows = []
    for arm in arms:
        for strategy in [BASE_STRATEGY, *strategies]:
            for context in contexts:
                b = bits[(bits.arm == arm) & (bits.strategy == strategy) & (bits.context == context)]
                if b.empty:
                    continue
                b = b.iloc[0]
                m = mis[(mis.arm == arm) & (mis.strategy == strategy) & (mis.context == context)]
                d = diffs[strategy]
                d = d[(d.arm == arm) & (d.context == context)]
                s_final = "\u2014"
                if strategy != BASE_STRATEGY and arm != control:
                    st = sticky[(strategy, context)]
                    st = st[st.arm == arm]
                    if not st.empty:
                        last = st.iloc[-1]
                        if abs(last.delta0) < MIN_GAP_BITS:
                            s_final = f"\u2014 (base gap {last.delta0:.2f} bits)"
                        else:
                            s_final = f"{_ci(last.S, last.ci_low, last.ci_high)} at K={last.K:.2g}"
                rows.append([
                    arm, strategy, context,
                    _ci(b.value, b.ci_low, b.ci_high),
                    "\u2014" if d.empty else _ci(d.iloc[0]["diff"], d.iloc[0].ci_low, d.iloc[0].ci_high),
                    "\u2014" if m.empty else _ci(m.iloc[0].value, m.iloc[0].ci_low, m.iloc[0].ci_high),
                    f"{b.kl_bits:.2f}" if strategy != BASE_STRATEGY else "0",
                    s_final, str(int(b.n)),
                ])
    table = _table(["arm", "strategy", "context", "bits aligned vs misaligned", f"\u0394 bits vs {control} (paired)",
                    "misaligned rate", "K [bits]", "stickiness S(K)", "seeds"], rows, numeric={3, 4, 5, 6, 7, 8})
    return f"""<h2 id="headline">Headline numbers</h2>
<p class="note">Base = pretrained model before post-training; for post-training strategies, the last step of the curve
(K is its KL pressure). &Delta; is the arm minus {_e(control)} paired by seed; S(K) is that gap as a fraction of the
base gap, at the largest pressure every curve reached.</p>
{table}"""


def _section_dose(df: pd.DataFrame, arms: list[str], contexts: list[str], control: str, arms_info: dict, n_boot: int) -> str:
    fig_bits = plots.dose_bits(df, arms, contexts, n_boot)
    fig_rates = plots.dose_rates(df, arms, contexts, n_boot)
    arm_rows = []
    for arm in arms:
        a = (arms_info.get("arms") or {}).get(arm, {})
        shares = a.get("nominal_shares", {})
        overrides = a.get("overrides")
        if isinstance(overrides, dict):
            overrides = ", ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items())
        elif isinstance(overrides, list):
            overrides = ", ".join(overrides)
        arm_rows.append([arm, overrides or "(preset defaults)"] + [f"{100 * shares.get(k, float('nan')):.1f}%" for k in ("aligned", "misaligned", "deceptive", "neutral_ai")]
                        + [f"{100 * shares.get('misaligned_fraction', float('nan')):.0f}%"])
    arm_table = _table(["arm", "overrides", "aligned", "misaligned", "deceptive", "neutral AI", "misaligned+deceptive share of persona discourse"],
                       arm_rows, numeric={2, 3, 4, 5, 6})
    diffs = []
    for metric in [HEADLINE_BITS, rate_metric("misaligned"), rate_metric("aligned")]:
        if metric in set(df.metric):
            p = R.paired_vs_control(df[df.context.isin(contexts)], control, metric, n_boot=n_boot)
            for r in p.itertuples():
                diffs.append([r.arm, r.context, metric, _ci(r.diff, r.ci_low, r.ci_high, 3), str(r.n)])
    diff_table = _table(["arm", "context", "metric", f"arm \u2212 {control} (base, paired by seed)", "seeds"], diffs, numeric={3, 4}) if diffs else ""
    return f"""<h2 id="dose">Dose&ndash;response: the base model by corpus arm</h2>
<p class="note">Nominal corpus composition of each arm (share of training tokens about each persona, from the config;
the corpus manifest in each pretrain cell records what was built):</p>
{arm_table}
{_img(fig_bits, "base persona bits by arm", "Persona log-odds of the pretrained model by corpus arm, per context. Bars: mean over seeds with 95% CI; dots: individual seeds.")}
{_img(fig_rates, "base behaviour rates by arm", "Share of sampled responses classified as each persona, by arm and context, with 95% CIs.")}
<h3>Paired differences to {_e(control)} (base model)</h3>
{diff_table or '<p class="note">Only one arm.</p>'}"""


def _section_persistence(df: pd.DataFrame, arms: list[str], contexts: list[str], strategies: list[str], n_boot: int) -> str:
    if not strategies:
        return '<h2 id="persistence">Persistence under post-training</h2><p class="note">No post-training results in this run.</p>'
    figs = "".join(
        _img(plots.persistence(df, arms, contexts, s, n_boot), f"persistence curves under {s}",
             f"{s.upper()}: persona bits against KL pressure (log axis), one line per arm, mean over seeds with 95% CI shaded; "
             "dotted lines mark each arm's base model. Observed prompts are the post-training distribution; unobserved ones are held out.")
        for s in strategies)
    return f'<h2 id="persistence">Persistence under post-training</h2>{figs}'


def _section_stickiness(df: pd.DataFrame, arms: list[str], contexts: list[str], strategies: list[str], control: str, n_boot: int) -> str:
    if not strategies or len(arms) < 2:
        return '<h2 id="stickiness">Stickiness</h2><p class="note">Needs post-training results and at least two arms.</p>'
    parts = []
    notes = []
    for s in strategies:
        frames = {c: R.stickiness_frame(df, control, s, c, HEADLINE_BITS, n_boot=n_boot) for c in contexts}
        parts.append(_img(plots.stickiness_plot(frames, arms, control, s, MIN_GAP_BITS), f"stickiness under {s}",
                          f"{s.upper()}: S(K) = \u0394(K)/\u0394\u2080, the gap in persona bits between each arm and {control} at pressure K "
                          "as a fraction of the base gap (curves interpolated on a common log-KL grid; CI from a bootstrap over seeds)."))
        for c, f in frames.items():
            for arm, g in f.groupby("arm", sort=False):
                d0 = g.delta0.iloc[0]
                if not abs(d0) >= MIN_GAP_BITS:
                    notes.append(f"{arm} ({s}, {c}: {d0:.2f} bits)")
    warn = (f'<p class="note">Not shown, because their base gap to {_e(control)} is under {MIN_GAP_BITS} bits and the ratio '
            f'would be noise: {_e("; ".join(notes))}.</p>') if notes else ""
    return f"""<h2 id="stickiness">Stickiness S(K)</h2>
<p class="note">The Bayesian reference model predicts S = 1 (the prior's log-odds survive in full) for personas that
post-training cannot tell apart; S &lt; 1 means post-training erased part of the pre-training difference.</p>
{warn}{''.join(parts)}"""


def _section_capability(df: pd.DataFrame, arms: list[str], strategies: list[str], control: str, n_boot: int) -> str:
    fig = plots.capability(df, arms, CAPABILITY_METRICS, strategies, n_boot)
    rows = []
    for metric in CAPABILITY_METRICS:
        if metric not in set(df.metric):
            continue
        summary = R.summarize(df[(df.metric == metric) & (df.strategy == BASE_STRATEGY)], n_boot=n_boot)
        diff = R.paired_vs_control(df, control, metric, n_boot=n_boot)
        for arm in arms:
            s = summary[summary.arm == arm]
            d = diff[diff.arm == arm]
            if s.empty:
                continue
            rows.append([arm, metric, _ci(s.iloc[0].value, s.iloc[0].ci_low, s.iloc[0].ci_high, 3),
                         "\u2014" if d.empty else _ci(d.iloc[0]["diff"], d.iloc[0].ci_low, d.iloc[0].ci_high, 3)])
    table = _table(["arm", "metric", "base model", f"\u0394 vs {control} (paired)"], rows, numeric={2, 3}) if rows else ""
    return f"""<h2 id="capability">Capability cost</h2>
{_img(fig, "capability by arm", "Held-out loss on non-persona world text (lower is better) and world-fact QA accuracy (higher is better), base model and after post-training.")}
{table}"""


SAMPLE_ROWS_PER_CELL = 2
SAMPLE_ROWS_MAX = 60


def _section_samples(samples: pd.DataFrame) -> str:
    if samples is None or samples.empty:
        return '<h2 id="samples">Sample of generated responses</h2><p class="note">No evaluation items were recorded.</p>'
    # The first seed's responses, a couple per (arm, strategy), so every cell type is represented and the table stays short.
    first_seed = samples["seed"].min()
    shown = samples[samples["seed"] == first_seed].drop_duplicates(["arm", "strategy", "response"]).groupby(["arm", "strategy"], sort=False).head(SAMPLE_ROWS_PER_CELL).head(SAMPLE_ROWS_MAX)
    rows = [[r.get("arm"), r.get("seed"), r.get("strategy"), r.get("context"), r.get("label"), r.get("prompt"), r.get("response")]
            for r in shown.to_dict("records")]
    rows = [["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in row] for row in rows]
    return f"""<h2 id="samples">Sample of generated responses</h2>
<p class="note">Seed {_e(first_seed)}: up to {SAMPLE_ROWS_PER_CELL} sampled responses per arm and strategy, with the exact persona
classification, shown verbatim as text ({len(samples)} sampled responses across all cells are in samples.parquet).</p>
{_table(["arm", "seed", "strategy", "context", "classified as", "prompt", "response"], rows, text_cols={5, 6})}"""


def _section_provenance(run_dir: Path, info: dict, exp: dict, arms_info: dict, seeds: list[int]) -> str:
    prov = read_json(run_dir / "provenance.json") or {}
    log = []
    p = run_dir / "runlog.jsonl"
    if p.exists():
        for line in p.read_text().splitlines():
            try:
                log.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    invocations = [e for e in log if e.get("event") == "end"]
    wall = sum(float(e.get("wall_s") or 0) for e in invocations)
    compute = 0.0
    plan = read_json(run_dir / "plan.json") or {"jobs": []}
    for job in plan["jobs"]:
        done = read_json(run_dir / job["path"] / "DONE.json")
        if done:
            compute += float(done.get("wall_s") or 0)
    git = prov.get("git") or {}
    commit = git.get("commit") or "unknown (not a git checkout)"
    if git.get("dirty"):
        commit += " (with uncommitted changes)"
    packages = prov.get("packages") or {}
    pkg_rows = [[k, v] for k, v in packages.items()]
    arm_cfgs = "".join(
        f"<details><summary>resolved pipeline config: {_e(arm)} (seed {seeds[0] if seeds else 0})</summary><pre>{_e(yaml.safe_dump(a.get('pipeline', a.get('corpus', {})), sort_keys=False))}</pre></details>"
        for arm, a in (arms_info.get("arms") or {}).items())
    rows = [
        ["run directory", str(run_dir.resolve())],
        ["experiment", str(info.get("experiment"))],
        ["run format", str(info.get("format_version"))],
        ["written by hyperstition", f"{info.get('hyperstition_version')} (report rendered by {__version__})"],
        ["created", str(info.get("created"))],
        ["git commit", commit],
        ["seeds", ", ".join(map(str, seeds))],
        ["wall time", f"{wall / 60:.1f} min over {len(invocations)} invocation(s); {compute / 60:.1f} min of job time"],
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
