"""`hyperstition status | query`: the cells of a run and SQL over its results (`run` is in hyperstition/run.py,
`report` and `compare` in report/cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cliutil import refused
from ..textsafe import plain, printable


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_status(subparsers)
    _register_query(subparsers)
    _register_verify(subparsers)


def _register_verify(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify",
        help="recompute one cell of a run and compare its content hashes and metrics with the run's",
        description="Recompute CELL (default: the run's first job, a pretraining cell) in a temporary directory and "
        "compare it with RUN: the corpus and tokenizer hashes (a difference there is code drift: they do not depend "
        "on the machine), the hashes of every promised output, the metrics, and the machine and library versions "
        "recorded in run.json. RUN is only read. Exit status 0 when everything is identical, 1 otherwise.",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("cell", metavar="CELL", nargs="?", help="job id, e.g. unfiltered/seed-0/base (see status)")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from .rundir import RunDirError
    from .verify import verdict_lines, verify_cell

    try:
        verdict = verify_cell(args.run, args.cell)
    except RunDirError as err:
        return refused("verify", err)
    for line in verdict_lines(verdict):
        print(printable(line))
    return 0 if verdict.identical else 1


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

    from ..analysis.rundir import RunDirError, planned_jobs, read_run_json, run_states, runner_active

    try:
        info = read_run_json(args.run)
        states = run_states(args.run)
    except RunDirError as err:
        return refused("status", err)
    console = Console(highlight=False)
    active = runner_active(args.run)
    console.print(
        plain(
            f"run {args.run}: experiment {info.get('experiment')}, created {info.get('created')}, "
            f"hyperstition {info.get('hyperstition_version')}; runner {'active' if active else 'not running'}"
        )
    )
    _, note = planned_jobs(Path(args.run))
    if note:
        console.print(plain(note, "yellow"))
    if not states:
        console.print("no cell has started yet" if note else "no jobs planned yet")
        return 0
    console.print(_states_table(states))
    counts: dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    console.print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return 0


def _states_table(states: list) -> object:
    """The cells as a table; every value (ids and error details come from files) is shown as data, not markup."""
    from rich.table import Table

    colours = {"done": "green", "running": "cyan", "pending": "white", "failed": "red"}
    table = Table()
    for col in ("cell", "kind", "state", "wall", "detail"):
        table.add_column(col, overflow="fold")
    for s in states:
        wall = f"{s.wall_s:.1f} s" if isinstance(s.wall_s, (int, float)) else ""
        row = (s.job["id"], s.job["kind"], s.state, wall, s.detail)
        table.add_row(*(plain(v, colours.get(s.state, "") if v is s.state else "") for v in row))
    return table


def cmd_query(args: argparse.Namespace) -> int:
    import os
    import sys

    from rich.console import Console

    from ..analysis.rundir import RunDirError, runner_active
    from ..analysis.store import QueryError, query, rich_table

    if args.limit < 0:
        return refused("query", ValueError(f"--limit: {args.limit} is negative; give 0 or more rows"))
    try:
        df = query(args.run, args.sql)
    except (RunDirError, QueryError) as err:
        return refused("query", err)
    except KeyboardInterrupt:
        # Ctrl-C during a scan: DuckDB's native teardown at interpreter exit can abort the process after an
        # interrupted query, so say it and leave at once (nothing is written by a query, so nothing is lost).
        print("hyperstition query: interrupted; rerun the same command to resume.", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)
    if runner_active(args.run):
        print(
            "hyperstition query: the run is still in progress (a runner holds its lock); these results are partial",
            file=sys.stderr,
        )
    console = Console(highlight=False)
    console.print(rich_table(df, limit=args.limit))
    if len(df) > args.limit:
        console.print(f"({len(df)} rows; showing {args.limit}; use --limit)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m hyperstition.experiments ...`: the package's dispatcher (same commands, same error handling)."""
    from ..cli import main as hyperstition_main

    return hyperstition_main(argv)
