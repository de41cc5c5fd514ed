"""`hyperstition report | compare`: re-render a run's report.html; compare the headline metrics of two runs."""

from __future__ import annotations

import argparse

from ..cliutil import output_file, refused


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_report(subparsers)
    _register_compare(subparsers)


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


def cmd_report(args: argparse.Namespace) -> int:
    from ..analysis.rundir import RunDirError
    from . import render_report

    if args.out:
        output_file(args.out)  # never over a device, a FIFO, a directory or a file that is not a report
    try:
        path = render_report(args.run, out=args.out)
    except RunDirError as err:
        return refused("report", err)
    print(f"report: {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..analysis.rundir import RunDirError
    from .compare import compare_runs, compare_table

    try:
        df = compare_runs(args.run_a, args.run_b, headline_only=not args.all_metrics)
    except RunDirError as err:
        return refused("compare", err)
    Console().print(compare_table(df, args.run_a, args.run_b, show_ci=args.ci))
    return 0
