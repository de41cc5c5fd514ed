"""`hyperstition run | status | query | report | compare`: experiment grids and their results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cliutil import output_directory
from ..config import ConfigError
from .config import DEFAULT_EXPERIMENT, list_experiments

RUN_HELP = f"""\
Run an experiment grid: arms x seeds x post-training strategies.

For every (arm, seed) the pipeline is pretrained once and evaluated once (strategy "base"); every post-training
strategy then starts from that checkpoint. Each job runs in its own directory under OUT/cells/; rerunning the
same command skips finished jobs and resumes unfinished ones, so an interrupted or killed run loses no finished
job. A failing job records its traceback and the others go on; the exit status is 1 if any failed.
At the end OUT/results.parquet and OUT/report.html are written.

EXPERIMENT is a name from configs/experiments/ ({", ".join(list_experiments()) or "none found"}) or a YAML path;
default: {DEFAULT_EXPERIMENT}. KEY=VALUE overrides apply to the experiment config, for example
  seeds=[0]  strategies=[sft,dpo,rl]  preset=smoke  pipeline.pretrain.steps=100  arms.filtered.corpus.leak_rate=0.1

examples:
  hyperstition run                                  stickiness on the quick preset -> runs/stickiness-quick
  hyperstition run dose seeds=[0,1,2,3] --workers 2
  hyperstition run smoke --stages hyperstition.experiments.simulate   the machinery with simulated stages
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_run(subparsers)
    _register_status(subparsers)
    _register_query(subparsers)
    _register_report(subparsers)
    _register_compare(subparsers)


def _register_run(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run an experiment grid (default: stickiness) and write its report",
        description=RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "experiment",
        nargs="?",
        default=DEFAULT_EXPERIMENT,
        metavar="EXPERIMENT",
        help=f"experiment name or YAML path (default: {DEFAULT_EXPERIMENT})",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="overrides on the experiment config, e.g. seeds=[0] preset=smoke",
    )
    p.add_argument("--out", help="run directory (default: runs/<experiment>-<preset>)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="parallel worker processes (default: the experiment's `workers`; 0 = one per CPU core); each gets "
        "cores/N torch threads",
    )
    p.add_argument(
        "--stages",
        default=None,
        metavar="NAME",
        help="registered stage set running pretrain/evaluate/posttrain (default: the real pipeline, "
        "hyperstition.experiments.stages; hyperstition.experiments.simulate runs fast fakes)",
    )
    p.add_argument(
        "--redo-stale",
        action="store_true",
        help="recompute finished cells whose config changed (their old outputs are kept as *.stale-N) instead "
        "of refusing",
    )
    p.add_argument("--no-report", action="store_true", help="do not render report.html at the end")
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of progress bars")
    p.set_defaults(func=cmd_run)


def _register_status(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "status",
        help="list the cells of a run and their states (done/running/pending/failed)",
        description="List every job of a run with its state: done, running, pending (never started, interrupted, "
        "stale or blocked by a failed dependency) or failed (with its error and traceback path).",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.set_defaults(func=cmd_status)


def _register_query(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "query",
        help="run SQL over a run's results (table `results`)",
        description="Run SQL over RUN/results.parquet with DuckDB; the table is called `results` and has columns "
        "run, arm, seed, strategy, step, tokens, kl_bits, context, metric, value, ci_low, ci_high "
        "(and `toy_results` once `hyperstition toy fit RUN` has run).",
        epilog='example: hyperstition query runs/stickiness-quick "select arm, avg(value) from results where '
        "strategy='base' and metric='bits_aligned_vs_misaligned' group by arm\"",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("sql", metavar="SQL", help="a SQL query over the table `results`")
    p.add_argument("--limit", type=int, default=200, help="print at most this many rows (default 200)")
    p.set_defaults(func=cmd_query)


def _register_report(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="re-render RUN/report.html from the run's results",
        description="Re-render RUN/report.html from RUN/results.parquet, the response sample and the run's provenance; "
        "nothing is recomputed.",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--out", help="where to write the HTML (default: RUN/report.html)")
    p.set_defaults(func=cmd_report)


def _register_compare(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="print the differences in headline metrics between two runs",
        description="Headline metrics (persona bits, behaviour rates, capability) by arm, strategy and context for two "
        "runs, seed-averaged, at base and at the end of post-training, with B - A deltas.",
    )
    p.add_argument("run_a", metavar="RUN_A", help="first run directory")
    p.add_argument("run_b", metavar="RUN_B", help="second run directory")
    p.add_argument("--all-metrics", action="store_true", help="compare every metric, not just the headline ones")
    p.add_argument("--ci", action="store_true", help="show each side's 95%% CI next to its value")
    p.set_defaults(func=cmd_compare)


def _fail(command: str, err: Exception) -> int:
    print(f"hyperstition {command}: {err}", file=sys.stderr)
    return 2


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .config import load_experiment
    from .executor import LocalExecutor
    from .progress import RichReporter, print_calibration, print_summary
    from .rundir import RunDirError, check_run_dir
    from .runner import DEFAULT_STAGES, run_experiment

    experiment, overrides = args.experiment, list(args.overrides)
    if experiment and "=" in experiment:  # `hyperstition run seeds=[0]`: no experiment named
        overrides.insert(0, experiment)
        experiment = DEFAULT_EXPERIMENT
    exp = load_experiment(experiment, overrides)
    if args.workers is not None:
        if args.workers < 0:
            raise ConfigError(f"--workers: {args.workers} must be >= 0")
        exp.workers = args.workers
    out = output_directory(Path(args.out) if args.out else Path("runs") / f"{exp.name}-{Path(exp.preset).stem}")
    try:
        check_run_dir(out, exp.name)
    except RunDirError as err:
        return _fail("run", err)
    console = Console(stderr=True)
    console.print(
        f"[bold]hyperstition run {exp.name}[/]: {len(exp.arms)} arms x {len(exp.seeds)} seeds x "
        f"{len(exp.strategies)} strategies ({', '.join(exp.strategies)}), preset {exp.preset} -> {out}"
    )
    reporter = RichReporter(console, enabled=not args.no_progress and console.is_terminal)
    try:
        summary = run_experiment(
            exp,
            out,
            executor=LocalExecutor(exp.workers),
            stages=args.stages or DEFAULT_STAGES,
            reporter=reporter,
            redo_stale=args.redo_stale,
            render=not args.no_report,
        )
    except RunDirError as err:
        return _fail("run", err)
    print_summary(summary, Console(soft_wrap=True))  # a log file gets whole lines, not lines cut at 80 columns
    if summary.results is not None:
        print_calibration(summary.run_dir, Console(soft_wrap=True))
    return 0 if summary.ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .rundir import RunDirError, planned_jobs, read_run_json, run_states, runner_active

    try:
        info = read_run_json(args.run)
        states = run_states(args.run)
    except RunDirError as err:
        return _fail("status", err)
    console = Console()
    active = runner_active(args.run)
    console.print(
        f"run {args.run}: experiment {info.get('experiment')}, created {info.get('created')}, "
        f"hyperstition {info.get('hyperstition_version')}; runner {'active' if active else 'not running'}"
    )
    _, note = planned_jobs(Path(args.run))
    if note:
        console.print(f"[yellow]{note}[/]")
    if not states:
        console.print("no cell has started yet" if note else "no jobs planned yet")
        return 0
    colours = {"done": "green", "running": "cyan", "pending": "white", "failed": "red"}
    table = Table()
    for col in ("cell", "kind", "state", "wall", "detail"):
        table.add_column(col, overflow="fold")
    counts: dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
        wall = f"{s.wall_s:.1f} s" if s.wall_s is not None else ""
        table.add_row(s.job["id"], s.job["kind"], f"[{colours[s.state]}]{s.state}[/]", wall, s.detail)
    console.print(table)
    console.print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .results import QueryError, query, rich_table
    from .rundir import RunDirError

    try:
        df = query(args.run, args.sql)
    except (RunDirError, QueryError) as err:
        return _fail("query", err)
    console = Console()
    console.print(rich_table(df, limit=args.limit))
    if len(df) > args.limit:
        console.print(f"({len(df)} rows; showing {args.limit}; use --limit)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..report import render_report
    from .rundir import RunDirError

    if args.out and Path(args.out).is_dir():
        raise ConfigError(f"--out: {args.out!r} is a directory; give the path of the HTML file to write")
    try:
        path = render_report(args.run, out=args.out)
    except RunDirError as err:
        return _fail("report", err)
    print(f"report: {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..report.compare import compare_runs, compare_table
    from .rundir import RunDirError

    try:
        df = compare_runs(args.run_a, args.run_b, headline_only=not args.all_metrics)
    except RunDirError as err:
        return _fail("compare", err)
    Console().print(compare_table(df, args.run_a, args.run_b, show_ci=args.ci))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m hyperstition.experiments ...`: the package's dispatcher (same commands, same error handling)."""
    from ..cli import main as hyperstition_main

    return hyperstition_main(argv)
