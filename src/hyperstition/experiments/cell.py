"""Running one job in its cell directory (inside a worker process).

Each job owns one directory `RUN/cells/<arm>/seed-<k>/<name>/` containing

    job.json        what the job is (kind, resolved configs, config hash); written when it starts
    RUNNING.json    pid/host/start time while it runs
    log.txt         the stage's stdout/stderr (process backend)
    rows.parquet    its tidy result rows (evaluation and post-training jobs)
    DONE.json       written atomically *last*: config hash, wall time, outputs, and the size and sha256 of every
                    promised file. Finished means: present, same config hash, every listed file intact
                    (analysis/finished.py).
    ERROR.json, traceback.txt   if it failed (cleared when retried)

and whatever the stage itself writes there (checkpoints, eval.json, eval_items.parquet, posttrain_curve.parquet).
Because DONE.json is the last write of a finished job and every write is atomic, killing the whole run at any
moment loses no finished job.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..analysis.finished import DONE, promised_files
from ..analysis.rundir import ERROR, JOB, LOG, RUNNING, TRACEBACK, now_iso
from ..io import write_json_atomic, write_text_atomic
from .jobs import Job, StageCall
from .plan import job_record
from .stageset import REAL_STAGES, stage_set


@dataclass(frozen=True)
class Runtime:
    """How a job runs, not what it computes (no part of any config hash): the registered stage set, torch's
    thread count (the executor's share of the cores; 0 leaves torch's default) and whether the stage's output goes
    to the cell's log.txt."""

    stages: str = REAL_STAGES
    threads: int = 0
    redirect: bool = True


@contextlib.contextmanager
def _redirect_output(log_path: Path, enabled: bool) -> Iterator[None]:
    """Send fds 1 and 2 (Python and native code alike) to the job's log file."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def execute_job(run_dir: str, job: Job, inputs: dict[str, str], runtime: Runtime = Runtime()) -> dict:
    """Run one job in its directory and return {"status": "done"|"failed", "wall_s", "error"}.

    Never raises for a failing stage: the traceback goes to the cell's traceback.txt and ERROR.json."""
    run_path = Path(run_dir)
    cell = run_path / job.path
    cell.mkdir(parents=True, exist_ok=True)
    for stale in (ERROR, TRACEBACK):
        (cell / stale).unlink(missing_ok=True)
    write_json_atomic(cell / JOB, {**job_record(job), "params": job.params(), "inputs": inputs})
    write_json_atomic(cell / RUNNING, {"pid": os.getpid(), "host": socket.gethostname(), "started": now_iso()})
    t0 = time.time()
    try:
        stages = stage_set(runtime.stages)
        stages.set_threads(runtime.threads)
        with _redirect_output(cell / LOG, runtime.redirect):
            outputs = job.run(StageCall(run_path, cell, inputs, stages))
        wall = time.time() - t0
        done = {"id": job.id, "kind": job.kind, "config_hash": job.config_hash, "finished": now_iso()}
        done |= {"wall_s": round(wall, 3), "outputs": outputs, "stages": runtime.stages}
        write_json_atomic(cell / DONE, {**done, "files": promised_files(run_path, cell, outputs)})
        return {"status": "done", "wall_s": wall, "error": None}
    except Exception as err:  # a failed cell must not stop the grid
        wall = time.time() - t0
        write_text_atomic(cell / TRACEBACK, traceback.format_exc())
        line = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        write_json_atomic(
            cell / ERROR,
            {"id": job.id, "error": line, "traceback": TRACEBACK, "failed": now_iso(), "wall_s": round(wall, 3)},
        )
        return {"status": "failed", "wall_s": wall, "error": line}
    finally:
        (cell / RUNNING).unlink(missing_ok=True)


def record_crash(run_dir: Path, job: Job, message: str) -> dict:
    """ERROR.json and traceback.txt for a job whose worker died (it could not write them itself)."""
    cell = run_dir / job.path
    cell.mkdir(parents=True, exist_ok=True)
    (cell / RUNNING).unlink(missing_ok=True)
    write_text_atomic(cell / TRACEBACK, message + "\n")
    line = message.splitlines()[0][:500]
    write_json_atomic(cell / ERROR, {"id": job.id, "error": line, "traceback": TRACEBACK, "failed": now_iso()})
    return {"status": "failed", "wall_s": None, "error": line}
