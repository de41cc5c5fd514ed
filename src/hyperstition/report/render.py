"""report.html: one self-contained page (inline CSS, plots as base64 PNG, no scripts, no external URLs) rendered
from a run directory's typed record (`RunDir`), its results, response sample and provenance. Every string from the
run is HTML-escaped. It recomputes nothing: every number is a row of results.parquet (`analysis/store.py` wrote
them, with each experiment's own analysis), and the experiment's own sections come from its registered plugin
(`analysis/registry.py`); the sections here are the ones every run has.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pandas as pd
import yaml

from .. import __version__
from ..analysis.catalog import plugin_for
from ..analysis.finished import read_json_object
from ..analysis.html import DASH, ci, e, img, table
from ..analysis.plots import capability, persistence
from ..analysis.registry import Section, section
from ..analysis.results import paired_vs_control, summarize
from ..analysis.rundir import RunDir, now_iso, planned_jobs, run_states
from ..analysis.stats import ESTIMATOR_DESCRIPTION
from ..analysis.store import read_results
from ..analysis.view import RunView
from ..io import read_jsonl, write_text_atomic
from ..schema import BASE_STRATEGY, FACT_QA_ACCURACY, HELDOUT_LOSS
from .toy_section import toy_section

CAPABILITY_METRICS = {
    HELDOUT_LOSS: "held-out loss [nats / token]",
    FACT_QA_ACCURACY: "world-fact QA accuracy [fraction correct]",
}

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


def render_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Render RUN/report.html (or `out`) from the run's files; returns its path. Recomputes nothing."""
    run = RunDir.open(run_dir)
    view = RunView.of(run, read_results(run.path), _read_samples(run.path))
    page = build_html(view)
    path = Path(out) if out else run.path / "report.html"
    write_text_atomic(path, page)
    os.chmod(path, 0o644)  # a page to open and share, not a secret (atomic writes start as 0600)
    return path


def _read_samples(run_dir: Path) -> pd.DataFrame:
    """RUN/samples.parquet (written with results.parquet); an unreadable one is left out and the report says so."""
    path = run_dir / "samples.parquet"
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception:  # pyarrow raises several types for a damaged file
        print(f"{path}: unreadable; the report shows no samples (`hyperstition run` rewrites it)", file=sys.stderr)
        return pd.DataFrame()


def sections(view: RunView) -> list[Section]:
    """The page's sections in order: the ones every run has and the ones its experiment registered."""
    own = plugin_for(view.run.experiment.name).sections
    return sorted([*COMMON_SECTIONS, *own], key=lambda s: s.order)


def build_html(view: RunView) -> str:
    shown = sections(view)
    name = view.run.experiment.name
    nav = "".join(f'<a href="#{s.id}">{e(s.title)}</a>' for s in shown if s.id != OVERVIEW_ID)
    body = "".join(s.render(view) for s in shown)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>hyperstition report: {e(name)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<h1>hyperstition: {e(name)}</h1>
<nav>{nav}</nav>
{body}
</main>
</body>
</html>
"""


OVERVIEW_ID = "overview"


@section(OVERVIEW_ID, "overview", order=0)
def overview_section(view: RunView) -> str:
    run, exp = view.run, view.run.experiment
    states = _cell_states(run.path)
    counts: dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    status = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "unknown"
    warn = ""
    if counts.get("failed") or counts.get("pending") or counts.get("running"):
        failed = [s for s in states if s.state == "failed"]
        items = "".join(f"<li>{e(s.job['id'])}: {e(s.detail)}</li>" for s in failed[:20])
        warn = (
            f'<p class="warn">This run is incomplete ({e(status)}); numbers below use the finished cells only.'
            f"{'<ul>' + items + '</ul>' if items else ''}</p>"
        )
    return f"""
<p class="lead">{e(exp.description)}</p>
<p class="meta">Run <code>{e(run.path.resolve().name)}</code> &middot; experiment \
<b>{e(run.info.experiment)}</b> &middot;
preset {e(exp.preset)} &middot; post-training preset {e(exp.posttrain_preset)} &middot;
arms: {e(", ".join(view.arms))} (control: {e(view.control)}) &middot; seeds: {e(", ".join(map(str, view.seeds)))} \
&middot; strategies: {e(", ".join(view.strategies) or "none")} &middot; cells: {e(status)} &middot; \
created {e(run.info.created)}, rendered {e(now_iso())}</p>
{warn}
<p class="note">Persona log-odds ("bits") are log2 P(aligned response) &minus; log2 P(misaligned response) for matched,
length-matched response pairs, averaged over prompts: positive means the aligned persona is more likely. Pressure K is
KL(post-trained &Vert; base) in bits per response on the post-training prompts, estimated from the post-trained model's
own replies, drawn in rounds until its 95% half-width is at most max(10% of the value, 0.5 bits) or a cap is reached
(the number drawn is the metric kl_samples_used). Every reply is drawn from its own random stream, seeded by (seed,
item, sample index), so no number depends on the batch size.</p>
<p class="note"><b>Intervals.</b> {e(ESTIMATOR_DESCRIPTION)}</p>
"""


def _cell_states(run_dir: Path) -> list:
    try:  # cell states need the cells; the report itself needs only the results
        return run_states(run_dir) if (run_dir / "cells").is_dir() else []
    except Exception:
        return []


@section("persistence", "persistence", order=40)
def persistence_section(view: RunView) -> str:
    df, arms, contexts, strategies = view.df, view.arms, view.contexts, view.strategies
    if not strategies:
        return (
            '<h2 id="persistence">Persistence under post-training</h2><p class="note">No post-training '
            "results in this run.</p>"
        )
    figs = "".join(
        img(
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


@section("capability", "capability", order=70)
def capability_section(view: RunView) -> str:
    df, arms, strategies, control = view.df, view.arms, view.strategies, view.control
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
                    ci(s.iloc[0].value, s.iloc[0].ci_low, s.iloc[0].ci_high, 3),
                    DASH if d.empty else ci(d.iloc[0]["diff"], d.iloc[0].ci_low, d.iloc[0].ci_high, 3),
                ]
            )
    cap_table = (
        table(["arm", "metric", "base model", f"\u0394 vs {control} (paired)"], rows, numeric={2, 3}) if rows else ""
    )
    capability_caption = (
        "Held-out loss on non-persona world text (lower is better) and world-fact QA accuracy "
        "(higher is better), base model and after post-training."
    )
    return f"""<h2 id="capability">Capability cost</h2>
{img(fig, "capability by arm", capability_caption)}
{cap_table}"""


SAMPLE_ROWS_PER_CELL = 2
SAMPLE_ROWS_MAX = 60


@section("samples", "samples", order=80)
def samples_section(view: RunView) -> str:
    samples = view.samples
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
    columns = ["arm", "seed", "strategy", "context", "label", "prompt", "response"]
    rows = shown.reindex(columns=columns).astype(object).values.tolist()
    rows = [["" if pd.isna(v) else str(v) for v in row] for row in rows]
    return f"""<h2 id="samples">Sample of generated responses</h2>
<p class="note">Seed {e(first_seed)}: up to {SAMPLE_ROWS_PER_CELL} sampled responses per arm and strategy, \
with the exact persona
classification, shown verbatim as text ({len(samples)} sampled responses across all cells are in samples.parquet).</p>
{table(["arm", "seed", "strategy", "context", "classified as", "prompt", "response"], rows, text_cols={5, 6})}"""


@section("provenance", "provenance", order=90)
def provenance_section(view: RunView) -> str:
    run, seeds = view.run, view.seeds
    prov = run.provenance
    wall_time = _wall_time(read_jsonl(run.path / "runlog.jsonl"))
    compute = 0.0
    for job in planned_jobs(run.path)[0]:
        done = read_json_object(run.path / job["path"] / "DONE.json")
        if done:
            compute += _seconds(done.get("wall_s"))
    commit = prov.git.commit or "unknown (not a git checkout)"
    if prov.git.dirty:
        commit += " (with uncommitted changes)"
    pkg_rows = [[k, v] for k, v in prov.packages.items()]
    arm_cfgs = "".join(
        f"<details><summary>resolved pipeline config: {e(arm)} (seed "
        f"{seeds[0] if seeds else 0})</summary><pre>"
        f"{e(yaml.safe_dump(a.pipeline, sort_keys=False))}</pre></details>"
        for arm, a in run.arms.arms.items()
    )
    info = run.info
    rows = [
        ["run directory", str(run.path.resolve())],
        ["experiment", info.experiment],
        ["run format", str(info.format_version)],
        ["written by hyperstition", f"{info.hyperstition_version} (report rendered by {__version__})"],
        ["created", info.created],
        ["git commit", commit],
        ["seeds", ", ".join(map(str, seeds))],
        ["wall time", f"{wall_time}; {compute / 60:.1f} min of job time"],
        ["workers", f"{prov.workers} x {prov.threads} torch thread(s)"],
        ["stages", prov.stages],
        ["python / platform", f"{prov.python} / {prov.platform}"],
        ["command", " ".join(prov.command)],
    ]
    return f"""<h2 id="provenance">Provenance</h2>
{table(["", ""], rows)}
<h3>Package versions</h3>
{table(["package", "version"], pkg_rows)}
<h3>Resolved experiment config</h3>
<pre>{e(run.experiment.to_yaml())}</pre>
{arm_cfgs}"""


@section("toy", "toy", order=60)
def toy_model_section(view: RunView) -> str:
    return toy_section(view.run.path, view.df)


def _seconds(value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else 0.0


def _wall_time(log: list[dict]) -> str:
    """Wall time summed over the invocations that ended, saying how many were cut short (killed: no end line)."""
    starts = sum(1 for event in log if event.get("event") == "start")
    ends = [event for event in log if event.get("event") == "end"]
    wall = sum(_seconds(event.get("wall_s")) for event in ends)
    cut = max(0, starts - len(ends))
    text = f"{wall / 60:.1f} min over {len(ends)} completed invocation(s)"
    return text + (f" and {cut} interrupted one(s), whose time is not counted" if cut else "")


COMMON_SECTIONS = (
    overview_section,
    persistence_section,
    toy_model_section,
    capability_section,
    samples_section,
    provenance_section,
)
