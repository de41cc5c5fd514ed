"""The run directory: `run.json` (format version, who wrote it), a lock held while a runner is active, and
provenance (package versions, git commit, invocations with wall times).

Layout (RUN_FORMAT_VERSION 1):

    RUN/run.json                 format_version, hyperstition_version, experiment, created
    RUN/experiment.yaml          the resolved experiment config of the latest invocation
    RUN/plan.json                every job: id, kind, arm, seed, strategy, path, deps, config_hash
    RUN/runlog.jsonl             one line per invocation start/end (wall time, command, failures)
    RUN/provenance.json          versions, git commit, machine, workers, stages module
    RUN/cells/<arm>/seed-<k>/{pretrain,base,<strategy>}/   one self-contained job each (see runner.py)
    RUN/results.parquet          tidy results (schema.RESULT_COLUMNS)
    RUN/samples.parquet          a sample of generated responses, for the report
    RUN/report.html              the report
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import RUN_FORMAT_VERSION, __version__
from ..config import ConfigError
from ..io import (
    BadFileError,
    directory_locked,
    file_kind,
    live_holder,
    lock_record,
    read_lock_record,
    read_regular_bytes,
    try_directory_lock,
    write_json_atomic,
)
from ..machine import machine_record, package_versions
from .finished import check_done, read_json_object

RUN_JSON = "run.json"
LOCK = ".lock"
# The files of a cell directory (see runner.py)
RUNNING, ERROR, JOB, ROWS = "RUNNING.json", "ERROR.json", "job.json", "rows.parquet"
TRACEBACK, LOG = "traceback.txt", "log.txt"


class RunDirError(ConfigError):
    """A run directory that cannot be used by this version or for this experiment."""


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def read_run_json(run_dir: str | os.PathLike) -> dict:
    """run.json of an existing run, refusing a directory that is not a run or was written by an incompatible version."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_JSON
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    if not path.exists():
        raise RunDirError(f"{run_dir}: not a hyperstition run directory (no {RUN_JSON})")
    try:
        info = json.loads(read_regular_bytes(path).decode("utf-8"))
    except BadFileError as err:
        raise RunDirError(str(err)) from None
    except OSError as err:
        raise RunDirError(f"{path}: unreadable ({err.strerror or err})") from None
    except ValueError as err:  # not UTF-8 or not JSON
        raise RunDirError(f"{path}: corrupt, not JSON ({str(err).splitlines()[0][:120]})") from None
    if not isinstance(info, dict):
        raise RunDirError(f"{path}: corrupt, a JSON {type(info).__name__} where an object is expected")
    check_compatible(info, run_dir)
    try:
        check_run_tree(run_dir)
    except BadFileError as err:
        raise RunDirError(str(err)) from None
    return info


# Files a run rewrites whole from its cells, so a special file there is refused when it is written, not read
DERIVED = frozenset({"results.parquet", "samples.parquet", "report.html", LOCK})


def check_run_tree(run_dir: Path) -> None:
    """BadFileError naming the first entry of the run that is neither a directory nor a regular file (a FIFO, a
    device, a link to one): every command that reads a run checks this first, so none of them can hang on it."""
    for root, dirs, files in os.walk(run_dir):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = os.path.join(root, name)
            if root == str(run_dir) and name in DERIVED:
                continue
            try:
                mode = os.stat(path).st_mode
            except OSError:  # a dangling link: what reads it says it is missing
                continue
            if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
                raise BadFileError(f"{path}: is {file_kind(mode)}, not a regular file; remove or replace it")


def check_compatible(info: dict, run_dir: Path) -> None:
    version = info.get("format_version")
    if version != RUN_FORMAT_VERSION:
        raise RunDirError(
            f"{run_dir} was written by hyperstition {info.get('hyperstition_version', '?')} in run format {version}; "
            f"this is hyperstition {__version__}, which reads run format {RUN_FORMAT_VERSION} only. "
            f"Use a matching hyperstition version to resume or report it, or start a new run with another --out."
        )


def create_or_open(run_dir: str | os.PathLike, experiment: str) -> dict:
    """Create a run directory for `experiment`, or reopen one written for the same experiment by a
    compatible version."""
    run_dir = Path(run_dir)
    if (run_dir / RUN_JSON).exists():
        info = read_run_json(run_dir)
        if info.get("experiment") != experiment:
            raise RunDirError(
                f"{run_dir} holds a run of experiment {info.get('experiment')!r}, not {experiment!r}; choose "
                "another --out"
            )
        return info
    if run_dir.exists() and any(p.name != LOCK for p in run_dir.iterdir()):
        raise RunDirError(
            f"{run_dir} exists, is not empty and is not a hyperstition run directory (no {RUN_JSON}); choose "
            "another --out"
        )
    info = {
        "format_version": RUN_FORMAT_VERSION,
        "hyperstition_version": __version__,
        "experiment": experiment,
        "created": now_iso(),
        "git": git_commit(),
        "machine": machine_record(),  # what `hyperstition verify` compares a recomputation's machine with
    }
    write_json_atomic(run_dir / RUN_JSON, info)
    return info


def check_run_dir(run_dir: str | os.PathLike, experiment: str) -> None:
    """Refuse, before anything is written or printed, a --out that `create_or_open` would refuse, and make sure the
    directory can be created (a read-only or impossible path fails here, with one line)."""
    run_dir = Path(run_dir)
    if (run_dir / RUN_JSON).exists() or (run_dir / RUN_JSON).is_symlink():
        info = read_run_json(run_dir)
        if info.get("experiment") != experiment:
            raise RunDirError(
                f"{run_dir} holds a run of experiment {info.get('experiment')!r}, not {experiment!r}; "
                "choose another --out"
            )
    elif run_dir.is_dir() and any(p.name != LOCK for p in run_dir.iterdir()):
        raise RunDirError(
            f"{run_dir} exists, is not empty and is not a hyperstition run directory (no {RUN_JSON}); "
            "choose another --out"
        )
    if runner_active(run_dir):  # said before anything is printed; RunLock is what actually keeps a second one out
        raise RunDirError(
            f"{run_dir} is being run by another process ({read_lock_record(run_dir / LOCK)}); wait for it or use "
            "another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)


class RunLock:
    """An exclusive flock on the run directory itself for the lifetime of a runner, released by the kernel if the
    runner dies. RUN/.lock records who holds it (pid, host); deleting it or planting a link there changes nothing,
    since a second runner must open the directory to run in it."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self.fd: int | None = None

    def acquire(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = try_directory_lock(self.run_dir)
        holder = live_holder(self.path) if fd is not None else None
        if holder is not None:
            os.close(fd)
            raise RunDirError(
                f"{self.run_dir} is recorded as being run by {holder}, which is alive; wait for it or use another --out"
            )
        if fd is None:
            raise RunDirError(
                f"{self.run_dir} is being run by another process ({read_lock_record(self.path)}); wait for it or use "
                "another --out"
            )
        try:
            write_json_atomic(self.path, lock_record())  # replaces a planted link; never writes through it
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def runner_active(run_dir: str | os.PathLike) -> bool:
    """Whether a runner currently holds the run's lock."""
    return directory_locked(Path(run_dir))


# ---------------------------------------------------------------------------------------------------------------
# Provenance


def git_commit() -> dict[str, Any]:
    """Commit of the source tree hyperstition was imported from (None outside a git checkout)."""
    src = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=src,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def write_provenance(run_dir: str | os.PathLike, **extra: Any) -> dict:
    info = {
        "written": now_iso(),
        "hyperstition_version": __version__,
        "format_version": RUN_FORMAT_VERSION,
        "packages": package_versions(),
        "git": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": {"cores": os.cpu_count(), "hostname": platform.node()},
        "command": sys.argv,
        **extra,
    }
    write_json_atomic(Path(run_dir) / "provenance.json", info)
    return info


# ---------------------------------------------------------------------------------------------------------------
# Cell states (also what `hyperstition status` shows)


@dataclass
class CellState:
    job: dict
    state: str  # done | running | pending | failed
    detail: str = ""
    wall_s: float | None = None


def job_state(run_dir: Path, job: dict, active: bool) -> CellState:
    cell = run_dir / job["path"]
    check = check_done(run_dir, cell, job["config_hash"])
    if check.finished:
        return CellState(job, "done", "", check.record.get("wall_s"))
    if check.reason:
        return CellState(job, "pending", f"{check.reason}; reruns on the next `hyperstition run`")
    running = read_json_object(cell / RUNNING)
    if running is not None and active:
        return CellState(job, "running", f"pid {running.get('pid')} since {running.get('started', '?')}")
    error = read_json_object(cell / ERROR)
    if error is not None:
        return CellState(
            job, "failed", f"{error.get('error', '?')} (see {job['path']}/{TRACEBACK})", error.get("wall_s")
        )
    if running is not None:
        return CellState(job, "pending", "interrupted; resumes on rerun")
    return CellState(job, "pending", "")


def planned_jobs(run_dir: Path) -> tuple[list[dict], str]:
    """The run's job records from plan.json, or, when it is missing or unreadable, from the job.json of every cell
    that has started (with a note saying so)."""
    plan = read_json_object(run_dir / "plan.json")
    jobs = plan.get("jobs") if plan is not None else None
    if isinstance(jobs, list) and all(isinstance(j, dict) and {"id", "path", "config_hash"} <= set(j) for j in jobs):
        return jobs, ""
    found = [read_json_object(p) for p in sorted(run_dir.glob("cells/*/*/*/" + JOB))]
    keys = ("id", "kind", "arm", "seed", "strategy", "path", "deps", "config_hash")
    jobs = [{k: j.get(k) for k in keys} for j in found if j is not None and {"id", "path", "config_hash"} <= set(j)]
    what = "unreadable" if (run_dir / "plan.json").exists() else "missing"
    return jobs, f"plan.json is {what}; states of the {len(jobs)} started cell(s)"


def run_states(run_dir: str | os.PathLike) -> list[CellState]:
    """The state of every planned job of a run (reads plan.json, or the cells' job.json, and the cell directories)."""
    run_dir = Path(run_dir)
    read_run_json(run_dir)
    jobs, _ = planned_jobs(run_dir)
    active = runner_active(run_dir)
    states = [job_state(run_dir, job, active) for job in jobs]
    by_id = {s.job["id"]: s for s in states}
    for s in states:
        if s.state == "pending" and not s.detail:
            failed = [d for d in s.job.get("deps") or [] if by_id.get(d) and by_id[d].state == "failed"]
            if failed:
                s.detail = f"blocked: {', '.join(failed)} failed"
    return states
