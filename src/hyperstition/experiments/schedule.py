"""The scheduler: submits ready jobs to an executor in dependency order (finishing started (arm, seed) chains
first), collects their results, and blocks the dependents of failed jobs. It knows jobs by their ids and
dependencies only; what a job does is the job's own `run` (jobs.py), where it runs is the executor's."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..analysis.finished import DONE, check_done, read_json_object
from ..analysis.rundir import now_iso
from ..io import append_jsonl
from .cell import Runtime, execute_job, record_crash
from .executor import Executor, Handle, JobCrashed
from .jobs import Job


class Reporter(Protocol):
    def start(self, jobs: list[Job], skipped: list[Job], workers: int, threads: int) -> None: ...
    def started(self, job: Job) -> None: ...
    def finished(self, job: Job, result: dict) -> None: ...
    def close(self) -> None: ...


class NullReporter:
    def start(self, jobs: list[Job], skipped: list[Job], workers: int, threads: int) -> None:
        pass

    def started(self, job: Job) -> None:
        pass

    def finished(self, job: Job, result: dict) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class RunSummary:
    run_dir: Path
    jobs: list[Job]
    skipped: list[str]  # already finished before this invocation
    done: list[str]
    failed: dict[str, str]  # id -> error line
    blocked: list[str]
    wall_s: float
    results: Path | None = None
    report: Path | None = None  # filled in by the layer that renders the report (hyperstition.run), if it does
    report_error: str | None = None
    wall_by_job: dict[str, float] = field(default_factory=dict)
    redone: dict[str, str] = field(default_factory=dict)  # id -> why its earlier DONE.json was not trusted
    reused: dict[str, str] = field(default_factory=dict)  # id -> the run directory its cell was copied from

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


@dataclass
class _Progress:
    """The scheduler's state: finished jobs' DONE.json, what ran, failed, was blocked, and each job's wall time."""

    finished: dict[str, dict]
    ran: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    wall: dict[str, float] = field(default_factory=dict)


def schedule(
    run_dir: Path, jobs: list[Job], executor: Executor, runtime: Runtime, reporter: Reporter, workers: int
) -> RunSummary:
    finished, skipped, redone = finished_before(run_dir, jobs)
    state = _Progress(finished)
    todo = [j for j in jobs if j.id not in finished]
    reporter.start(jobs, skipped, workers, runtime.threads)
    in_flight: dict[Handle, Job] = {}
    t0 = time.time()
    while todo or in_flight:
        # Drop jobs whose dependencies failed; submit ready ones, finishing started (arm, seed) chains first.
        _drop_blocked(todo, state, reporter)
        _submit_ready(run_dir, jobs, todo, state, in_flight, executor, runtime, reporter)
        if not in_flight:
            state.blocked += [job.id for job in todo]  # nothing runnable and nothing running: unsatisfiable
            todo.clear()
            break
        done, _ = executor.wait(list(in_flight))
        _collect(run_dir, done, in_flight, state, reporter)
    return RunSummary(
        run_dir,
        jobs,
        [j.id for j in skipped],
        state.ran,
        state.failed,
        state.blocked,
        time.time() - t0,
        wall_by_job=state.wall,
        redone=redone,
    )


def _drop_blocked(todo: list[Job], state: _Progress, reporter: Reporter) -> None:
    for job in list(todo):
        failed = [d for d in job.deps if d in state.failed or d in state.blocked]
        if failed:
            todo.remove(job)
            state.blocked.append(job.id)
            reporter.finished(job, {"status": "blocked", "error": f"dependency failed: {', '.join(failed)}"})


def _submit_ready(
    run_dir: Path,
    jobs: list[Job],
    todo: list[Job],
    state: _Progress,
    in_flight: dict[Handle, Job],
    executor: Executor,
    runtime: Runtime,
    reporter: Reporter,
) -> None:
    ready = (j for j in todo if all(d in state.finished for d in j.deps))
    for job in sorted(ready, key=lambda j: (j.hands_on_model, jobs.index(j))):
        if len(in_flight) >= executor.capacity:
            break
        inputs = job.inputs([state.finished[d].get("outputs") or {} for d in job.deps])
        # Absolute: a worker elsewhere (a Ray node) does not share this process's working directory.
        handle = executor.submit(execute_job, str(run_dir.absolute()), job, inputs, runtime)
        in_flight[handle] = job
        todo.remove(job)
        reporter.started(job)


def _collect(
    run_dir: Path, done: set[Handle], in_flight: dict[Handle, Job], state: _Progress, reporter: Reporter
) -> None:
    for handle in done:
        job = in_flight.pop(handle)
        try:
            result = handle.result()
        except JobCrashed as err:
            result = record_crash(run_dir, job, str(err))
        if handle.notes():  # a retried worker: recorded, never silent
            result = {**result, "notes": handle.notes()}
            for note in handle.notes():
                append_jsonl(run_dir / "runlog.jsonl", {"event": "note", "time": now_iso(), "id": job.id, "note": note})
        state.wall[job.id] = result.get("wall_s") or 0.0
        if result["status"] == "done":
            state.finished[job.id] = read_json_object(run_dir / job.path / DONE) or {}
            state.ran.append(job.id)
        else:
            state.failed[job.id] = result.get("error") or "failed"
        reporter.finished(job, result)


def finished_before(run_dir: Path, jobs: list[Job]) -> tuple[dict[str, dict], list[Job], dict[str, str]]:
    """({id: DONE.json} of the jobs finished and verified, those jobs, {id: why its DONE.json is not trusted})."""
    finished: dict[str, dict] = {}
    skipped: list[Job] = []
    redone: dict[str, str] = {}  # a DONE.json whose outputs are missing or changed: the job runs again
    for job in jobs:
        check = check_done(run_dir, run_dir / job.path, job.config_hash)
        if check.finished:
            finished[job.id] = check.record
            skipped.append(job)
        elif check.reason:
            redone[job.id] = check.reason
    return finished, skipped, redone
