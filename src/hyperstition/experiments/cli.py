"""`hyperstition status | query`: the cells of a run and SQL over its results (`run` is in hyperstition/run.py,
`report` and `compare` in report/cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cliutil import refused


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_status(subparsers)
    _register_query(subparsers)


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


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..analysis.rundir import RunDirError, planned_jobs, read_run_json, run_states, runner_active

    try:
        info = read_run_json(args.run)
        states = run_states(args.run)
    except RunDirError as err:
        return refused("status", err)
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

    from ..analysis.rundir import RunDirError
    from ..analysis.store import QueryError, query, rich_table

    try:
        df = query(args.run, args.sql)
    except (RunDirError, QueryError) as err:
        return refused("query", err)
    console = Console()
    console.print(rich_table(df, limit=args.limit))
    if len(df) > args.limit:
        console.print(f"({len(df)} rows; showing {args.limit}; use --limit)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m hyperstition.experiments ...`: the package's dispatcher (same commands, same error handling)."""
    from ..cli import main as hyperstition_main

    return hyperstition_main(argv)
