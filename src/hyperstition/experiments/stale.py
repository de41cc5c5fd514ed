"""The stale-cell policy: what happens to a cell whose recorded config hash is not its job's.

A finished cell of another config is refused (or, with --redo-stale, moved aside as `*.stale-N` and recomputed);
an unfinished one is moved aside, since resuming it would mix configs. A cell finished by a run directory written
before cell hashes covered the resolved configs carries its job's `legacy_hash`: it is migrated once (DONE.json gets
the new hash, `migrated_from` the old one) and is skipped like any finished cell.
"""

from __future__ import annotations

from pathlib import Path

from ..analysis.finished import DONE, read_json_object
from ..analysis.rundir import JOB, RunDirError
from ..io import write_json_atomic
from .jobs import Job


class StaleCellsError(RunDirError):
    pass


def migrate_legacy(run_dir: Path, jobs: list[Job]) -> list[str]:
    """Give finished cells recorded with their job's legacy hash the current one; returns the ids migrated.

    Only finished cells: an unfinished one is moved aside by `check_stale` and recomputed, since its stage's own
    resumable state was written with the configs in their old form."""
    migrated = []
    for job in jobs:
        path = run_dir / job.path / DONE
        record = read_json_object(path) if job.legacy_hash != job.config_hash else None
        if record is not None and record.get("config_hash") == job.legacy_hash:
            write_json_atomic(path, {**record, "config_hash": job.config_hash, "migrated_from": job.legacy_hash})
            migrated.append(job.id)
    return migrated


def check_stale(run_dir: Path, jobs: list[Job], redo_stale: bool) -> None:
    """Finished cells of a different config are refused (or moved aside with redo_stale); unfinished cells of a
    different config are moved aside, since resuming them would mix configs."""
    stale = []
    for job in jobs:
        cell = run_dir / job.path
        done = read_json_object(cell / DONE)
        started = read_json_object(cell / JOB)
        if done is not None and done.get("config_hash") != job.config_hash:
            stale.append(job)
        elif done is None and started is not None and started.get("config_hash") != job.config_hash:
            move_aside(cell)
    if stale and not redo_stale:
        names = ", ".join(j.id for j in stale[:4]) + (f" and {len(stale) - 4} more" if len(stale) > 4 else "")
        raise StaleCellsError(
            f"{run_dir}: {len(stale)} finished cell(s) were computed with a different config ({names}); "
            f"rerun with the original config, use another --out, or pass --redo-stale to recompute them "
            f"(their old outputs are kept as *.stale-N)"
        )
    for job in stale:
        move_aside(run_dir / job.path)


def move_aside(cell: Path) -> None:
    n = 1
    while cell.with_name(f"{cell.name}.stale-{n}").exists():
        n += 1
    cell.rename(cell.with_name(f"{cell.name}.stale-{n}"))
