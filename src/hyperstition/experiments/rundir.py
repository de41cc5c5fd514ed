"""Writing a run directory: creating (or reopening) it, the lock held while a runner is active, and provenance
(package versions, git commit, machine). Reading one (run.json, plan, cell states, the typed `RunDir`) is
`analysis/rundir.py`, which the report uses too.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from .. import RUN_FORMAT_VERSION, __version__
from ..analysis.rundir import LOCK, RUN_JSON, RunDirError, now_iso, read_run_json, runner_active
from ..io import live_holder, lock_record, read_lock_record, try_directory_lock, write_json_atomic
from ..machine import machine_record, package_versions


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
