"""Terminal display of a grid run: one overall progress bar, a line per running cell, a line per finished cell,
and the summary table at the end."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .jobs import Job
from .schedule import RunSummary


class RichReporter:
    """Overall bar (finished / total jobs, skipped ones counted as finished) plus a spinner per running cell."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.progress: Progress | None = None
        self.overall = None
        self.tasks: dict[str, int] = {}
        self.t0: dict[str, float] = {}

    def start(self, jobs: list[Job], skipped: list[Job], workers: int, threads: int) -> None:
        todo = len(jobs) - len(skipped)
        self.console.print(
            f"[bold]{len(jobs)} jobs[/]: {len(skipped)} already done, {todo} to run on {workers} worker(s) x "
            f"{threads} torch thread(s)"
        )
        if not self.enabled:
            return
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=32),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.overall = self.progress.add_task(
            "[bold]grid", total=len(jobs), completed=len(skipped), info=f"{len(skipped)}/{len(jobs)} jobs"
        )

    def started(self, job: Job) -> None:
        self.t0[job.id] = time.time()
        if self.progress is not None:
            self.tasks[job.id] = self.progress.add_task(f"  {job.id}", total=None, info=f"[dim]{job.kind}, running[/]")
        elif self.enabled is False:
            self.console.print(f"  started  {job.id}")

    def finished(self, job: Job, result: dict) -> None:
        status = result.get("status")
        wall = time.time() - self.t0.pop(job.id, time.time())
        task = self.tasks.pop(job.id, None)
        if self.progress is not None and task is not None:
            self.progress.remove_task(task)
        if status == "done":
            line = f"  [green]done[/]     {job.id} [dim]{wall:.1f} s[/]"
        elif status == "blocked":
            line = f"  [yellow]blocked[/]  {job.id}: {result.get('error')}"
        else:
            line = f"  [red]failed[/]   {job.id}: {result.get('error')}"
        for note in result.get("notes") or ():
            line += f"\n           [yellow]{escape(note)}[/]"
        self.console.print(line)
        if self.progress is not None and self.overall is not None:
            self.progress.advance(self.overall)
            task = next(t for t in self.progress.tasks if t.id == self.overall)
            self.progress.update(self.overall, info=f"{int(task.completed)}/{int(task.total)} jobs")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _cell_marks(summary: RunSummary) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(stage columns, {"arm / seed": {stage: mark}}) with marks done / done (kept) / failed / blocked / pending."""
    columns: list[str] = []
    for job in summary.jobs:
        name = job.strategy or "pretrain"
        if name not in columns:
            columns.append(name)
    rows: dict[str, dict[str, str]] = {}
    for job in summary.jobs:
        if job.id in summary.failed:
            mark = "[red]failed[/]"
        elif job.id in summary.blocked:
            mark = "[yellow]blocked[/]"
        elif job.id in summary.skipped:
            mark = "[dim]done (kept)[/]"
        elif job.id in summary.done:
            mark = f"[green]done[/] [dim]{summary.wall_by_job.get(job.id, 0):.0f}s[/]"
        else:
            mark = "pending"
        rows.setdefault(f"{job.arm} / {job.seed}", {})[job.strategy or "pretrain"] = mark
    return columns, rows


def summary_table(summary: RunSummary) -> Table:
    """Cells by arm x (pretrain, base, strategies): done / failed / blocked, then where the results are."""
    columns, rows = _cell_marks(summary)
    table = Table(title=f"run {summary.run_dir}", title_justify="left")
    table.add_column("arm / seed")
    for c in columns:
        table.add_column(c, justify="center")
    for key, marks in rows.items():
        table.add_row(key, *(marks.get(c, "") for c in columns))
    return table


def summary_lines(summary: RunSummary) -> list[str]:
    """The summary table as one line per (arm, seed): for a log file or CI, where a table squeezed into 80 columns
    would truncate arm names and marks."""
    columns, rows = _cell_marks(summary)
    return [f"run {summary.run_dir}"] + [
        f"  {key}: " + ", ".join(f"{c} {marks[c]}" for c in columns if c in marks) for key, marks in rows.items()
    ]


def print_summary(summary: RunSummary, console: Console | None = None) -> None:
    console = console or Console()
    if console.is_terminal:
        console.print(summary_table(summary))
    else:
        for line in summary_lines(summary):
            console.print(line, soft_wrap=True)
    minutes = summary.wall_s / 60
    console.print(
        f"{len(summary.done)} ran, {len(summary.skipped)} kept from before, {len(summary.failed)} failed, "
        f"{len(summary.blocked)} blocked; wall time {minutes:.1f} min"
    )
    if summary.reused:
        sources = sorted(set(summary.reused.values()))
        console.print(f"{len(summary.reused)} of those kept were copied from {', '.join(sources)} (same config hash)")
    if summary.redone:
        console.print(f"{len(summary.redone)} cell(s) had a DONE.json whose outputs did not verify, so they ran again:")
    for job_id, reason in summary.redone.items():
        console.print(f"  [yellow]rerun[/] {job_id}: {reason}")
    for job_id, error in summary.failed.items():
        job = next(j for j in summary.jobs if j.id == job_id)
        console.print(
            f"[red]failed[/] {job_id}: {error}\n       traceback: {Path(summary.run_dir) / job.path / 'traceback.txt'}"
        )
    if summary.results is not None:
        console.print(f"results: {summary.results}")
    if summary.report is not None:
        console.print(f"[bold]report: {summary.report}[/]")
    elif summary.report_error:
        console.print(
            f"[red]report not rendered[/]: {summary.report_error} (retry with: hyperstition report {summary.run_dir})"
        )


def print_controls(run_dir: Path, console: Console | None = None) -> None:
    """Pass / fail per control of the run's experiment, when its plugin registered controls."""
    from ..analysis.catalog import plugin_for
    from ..analysis.rundir import read_run_json
    from ..analysis.store import load_results

    plugin = plugin_for(str(read_run_json(run_dir).get("experiment")))
    if plugin.controls is None:
        return
    df = load_results(run_dir)
    console = console or Console()
    table = Table(title=plugin.controls_title, title_justify="left")
    for col in ("result", "control", "numbers"):
        table.add_column(col, overflow="fold")
    marks = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "[dim]not run[/]"}
    for c in plugin.controls(df):
        table.add_row(marks[c.passed], c.name, c.reason)
    console.print(table)
