"""Reusing finished cells of other run directories (`hyperstition run --reuse-from RUN`).

Two experiments often plan the same computation: `filtering`'s unfiltered pretraining is the default run's,
`relapse` starts from the default run's SFT models, a 6-seed analysis is two 3-seed runs. A job's `config_hash`
covers its resolved configs and its dependencies' hashes, so a cell of another run at the same path, finished with
the same hash by the same stage set, is the same computation: copying it is the result of running it (on CPU, bit
for bit). Only cells that verify in their source (DONE.json's promised files present with their sha256) are copied,
and a copy that does not verify in the destination is removed again, so a reused cell is exactly as trustworthy as
one computed here. Copies, not links: a run's outputs never share storage with another run's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..analysis.finished import check_done
from ..analysis.rundir import RunDirError
from .jobs import Job


@dataclass(frozen=True)
class ReusedCell:
    """One cell copied into this run: its job id and the run directory it came from."""

    job_id: str
    source: Path


def check_sources(run_dir: Path, sources: Sequence[Path]) -> list[Path]:
    """The source run directories, resolved; RunDirError naming the first that is not a run directory or is this one."""
    resolved = []
    for source in sources:
        path = Path(source)
        if not (path / "run.json").is_file():
            raise RunDirError(f"--reuse-from {source}: not a run directory (it has no run.json)")
        if path.resolve() == Path(run_dir).resolve():
            raise RunDirError(f"--reuse-from {source}: that is the run directory itself")
        resolved.append(path)
    return resolved


def _source_cell(source: Path, job: Job, stages: str) -> Path | None:
    """The job's cell in `source` when it is finished there with the job's hash by `stages`, else None."""
    cell = source / job.path
    check = check_done(source, cell, job.config_hash)
    if not check.finished or check.record.get("stages", stages) != stages:
        return None
    return cell


def _copy_cell(src: Path, dest: Path) -> None:
    """Replace `dest` by a copy of `src`, whole (copied beside it, then renamed); lock files stay behind."""
    partial = dest.with_name(dest.name + ".reuse-partial")
    shutil.rmtree(partial, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, partial, ignore=shutil.ignore_patterns("*.lock", "RUNNING.json"))
    shutil.rmtree(dest, ignore_errors=True)  # an unfinished attempt of this run: the finished copy supersedes it
    os.replace(partial, dest)


def reuse_finished_cells(run_dir: Path, jobs: list[Job], sources: Sequence[Path], stages: str) -> list[ReusedCell]:
    """Copy into `run_dir` every job's cell that is not finished here but is finished, with the same config hash and
    stage set, in one of `sources` (the first that has it); returns what was copied. The caller holds the run lock."""
    reused: list[ReusedCell] = []
    if not sources:
        return reused
    for job in jobs:
        dest = run_dir / job.path
        if check_done(run_dir, dest, job.config_hash).finished:
            continue
        for source in sources:
            src = _source_cell(source, job, stages)
            if src is None:
                continue
            _copy_cell(src, dest)
            if check_done(run_dir, dest, job.config_hash).finished:
                reused.append(ReusedCell(job.id, source))
                break
            shutil.rmtree(dest)  # it promises files outside the cell that this run lacks: not finished here
    return reused
