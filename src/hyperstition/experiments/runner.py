"""The grid runner: plans self-contained jobs (plan.py), runs them on an executor in dependency order
(schedule.py), each in its own cell directory (cell.py), skips finished ones, resumes unfinished ones, refuses or
moves aside stale ones (stale.py), and assembles `results.parquet` (analysis/store.py).

Because DONE.json is the last write of a finished job and every write is atomic, killing the whole run at any
moment loses no finished job; a rerun skips jobs whose DONE.json carries the same config hash and calls the
(resumable) stage functions again for the rest.

The stage functions come from a registry of stage sets (`stageset.py`), named by `stages`, so tests and dry runs
can run the simulated ones (`hyperstition.experiments.simulate`) through the same machinery. The runner knows no
experiment by name: what an experiment adds to the results is its registered analysis (analysis/registry.py).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..analysis.config import ExperimentConfig, persona_discourse_shares, pipeline_config
from ..analysis.rundir import now_iso
from ..analysis.store import collect_results
from ..io import append_jsonl, write_json_atomic, write_text_atomic
from .cell import Runtime
from .executor import Executor, InlineExecutor, LocalExecutor, plan_workers
from .jobs import Job
from .plan import job_record, plan_jobs
from .reuse import check_sources, reuse_finished_cells
from .rundir import RunLock, create_or_open, write_provenance
from .schedule import NullReporter, Reporter, RunSummary, schedule
from .stageset import REAL_STAGES, stage_set
from .stale import check_stale, migrate_legacy

DEFAULT_STAGES = REAL_STAGES


def run_experiment(
    exp: ExperimentConfig,
    run_dir: str | os.PathLike,
    *,
    executor: Executor | None = None,
    stages: str = DEFAULT_STAGES,
    reporter: Reporter | None = None,
    redo_stale: bool = False,
    reuse_from: Sequence[str | os.PathLike] = (),
) -> RunSummary:
    """Run (or resume) the grid of `exp` in `run_dir`; returns a summary. Failed cells do not stop the others.
    Cells finished with the same config hash in a `reuse_from` run directory are copied, not recomputed (reuse.py).

    The report is not rendered here: `hyperstition.run.run_and_report` (above both runner and report) does that."""
    run_dir = Path(run_dir)
    stage_set(stages)  # an unknown name fails here, not in every job
    sources = check_sources(run_dir, reuse_from)
    reporter = reporter or NullReporter()
    t_start = time.time()
    if not (run_dir / "run.json").exists() and run_dir.is_dir() and any(p.name != ".lock" for p in run_dir.iterdir()):
        create_or_open(run_dir, exp.name)  # refuses a foreign non-empty directory before we put a lock file in it
    lock = RunLock(run_dir)
    lock.acquire()
    own_executor = executor is None
    try:
        jobs = _write_plan(run_dir, exp, redo_stale)
        reused = _reuse(run_dir, jobs, sources, stages)
        if executor is None:
            executor = LocalExecutor(exp.workers)
        executor.preload(stage_set(stages).worker_imports)
        runtime = Runtime(stages, getattr(executor, "threads", 0), not isinstance(executor, InlineExecutor))
        _log_start(run_dir, exp, executor.capacity, getattr(executor, "threads", plan_workers(exp.workers)[1]), stages)
        summary = schedule(run_dir, jobs, executor, runtime, reporter, executor.capacity)
        summary.reused = reused
    except BaseException:
        if executor is not None:  # interrupted or broken: nobody will wait for the running jobs, so stop them
            executor.shutdown()
        reporter.close()
        lock.release()
        raise
    if own_executor:
        executor.shutdown()
    reporter.close()
    try:
        _finish(run_dir, exp, summary, t_start)
    finally:
        lock.release()
    return summary


def _log_start(run_dir: Path, exp: ExperimentConfig, workers: int, threads: int, stages: str) -> None:
    write_provenance(run_dir, workers=workers, threads=threads, stages=stages, seeds=exp.seeds)
    start = {"event": "start", "time": now_iso(), "pid": os.getpid(), "command": sys.argv}
    append_jsonl(run_dir / "runlog.jsonl", {**start, "workers": workers, "threads": threads, "stages": stages})


def _reuse(run_dir: Path, jobs: list[Job], sources: list[Path], stages: str) -> dict[str, str]:
    """Copy the cells other runs finished with the same hashes; logged with their sources. {job id: source}."""
    reused = {cell.job_id: str(cell.source) for cell in reuse_finished_cells(run_dir, jobs, sources, stages)}
    if reused:
        append_jsonl(run_dir / "runlog.jsonl", {"event": "reused", "time": now_iso(), "cells": reused})
    return reused


def _write_plan(run_dir: Path, exp: ExperimentConfig, redo_stale: bool) -> list[Job]:
    """Open the run directory, migrate or refuse stale cells, and record what this invocation will run."""
    create_or_open(run_dir, exp.name)
    jobs = plan_jobs(exp)
    migrated = migrate_legacy(run_dir, jobs)
    if migrated:
        append_jsonl(run_dir / "runlog.jsonl", {"event": "migrated", "time": now_iso(), "cells": migrated})
    check_stale(run_dir, jobs, redo_stale)
    write_text_atomic(run_dir / "experiment.yaml", exp.to_yaml())
    write_json_atomic(run_dir / "plan.json", {"experiment": exp.name, "jobs": [job_record(j) for j in jobs]})
    write_json_atomic(run_dir / "arms.json", _arms_info(exp))
    return jobs


def _finish(run_dir: Path, exp: ExperimentConfig, summary: RunSummary, t_start: float) -> None:
    """Collect results.parquet and log the invocation's end."""
    try:
        summary.results = collect_results(run_dir, exp.samples_per_cell)
    finally:  # logged before any report is rendered, so the report's provenance counts this invocation
        summary.wall_s = time.time() - t_start
        append_jsonl(
            run_dir / "runlog.jsonl",
            {
                "event": "end",
                "time": now_iso(),
                "pid": os.getpid(),
                "wall_s": round(summary.wall_s, 3),
                "done": len(summary.done),
                "failed": len(summary.failed),
                "blocked": len(summary.blocked),
            },
        )


def _arms_info(exp: ExperimentConfig) -> dict:
    out = {}
    for arm, spec in exp.arms.items():
        cfg = pipeline_config(exp, arm, exp.seeds[0])
        out[arm] = {
            "overrides": spec,
            "nominal_shares": persona_discourse_shares(cfg.corpus),
            "pipeline": cfg.model_dump(mode="json"),
        }
    return {"control": exp.control, "arms": out}
