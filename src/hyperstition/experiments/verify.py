"""`hyperstition verify RUN [CELL]`: recompute one cell in a scratch directory and compare it with what the run
holds, so a reader can tell code drift from machine differences.

What is compared, in the order a difference is most telling:

1. the corpus and tokenizer files of a pretraining cell (sha256): built by integer-only, CPU-independent code,
   so a difference here is a difference in code (or in the config);
2. every file the cell's DONE.json promised (sha256): weights and rows; with equal inputs a difference here is
   floating point, i.e. the machine (CPU kernels, threads, library versions);
3. the cell's metrics (rows.parquet values; for a pretraining cell the logged training loss), with the largest
   absolute difference;
4. the machine and library versions recorded in run.json against this machine's.

The run directory is only read; the recomputation happens in a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..analysis.finished import DONE, check_done, read_json_object
from ..analysis.rundir import JOB, ROWS, RunDir, RunDirError, planned_jobs, read_run_json
from ..io import read_jsonl, sha256_file
from ..machine import differences, machine_record

INPUT_TREES = ("corpus", "tokenizer")  # a pretraining cell's CPU-independent inputs


@dataclass
class Verdict:
    """The outcome of one verification: per-group lists of differing files, metric gaps and machine changes."""

    cell: str
    inputs_same: list[str] = field(default_factory=list)
    inputs_differ: list[str] = field(default_factory=list)
    outputs_same: list[str] = field(default_factory=list)
    outputs_differ: list[str] = field(default_factory=list)
    metric_gap: float | None = None  # largest |recomputed - recorded| over the cell's metric values
    metrics_compared: int = 0
    machine: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.inputs_differ and not self.outputs_differ and not self.metric_gap

    def explanation(self) -> str:
        if self.identical:
            return (
                "reproduced: every content hash and metric is identical (JSON metadata compared without the paths "
                "and timings it records)"
            )
        if self.inputs_differ:
            return "code drift: the corpus or tokenizer differ, and they do not depend on the machine"
        where = f" (machine differences: {'; '.join(self.machine)})" if self.machine else " on the same machine"
        return f"same inputs, different floats: weights or metrics differ{where}"


def find_job(run_dir: Path, cell: str | None) -> dict:
    """The job record of `cell` (a job id such as `unfiltered/seed-0/base`, or its path), default the first job."""
    jobs, _ = planned_jobs(run_dir)
    if not jobs:
        raise RunDirError(f"{run_dir}: no planned jobs to verify")
    if cell is None:
        return jobs[0]
    wanted = cell.strip("/")
    for job in jobs:
        if wanted in (job["id"], job["path"], job["path"].removeprefix("cells/")):
            return job
    raise RunDirError(f"{run_dir}: no cell {cell!r}; cells: {', '.join(j['id'] for j in jobs)}")


def recompute(run_dir: Path, job: dict, scratch: Path) -> Path:
    """Run `job` again inside `scratch` (a copy of the inputs it needs laid out as in the run); its cell path. The
    job is planned afresh from the run's experiment.yaml by today's code, so a changed config hash is code drift."""
    from .cell import Runtime, execute_job
    from .plan import plan_jobs
    from .stageset import REAL_STAGES

    recorded = read_json_object(run_dir / job["path"] / JOB)
    done = read_json_object(run_dir / job["path"] / DONE)
    if recorded is None or done is None:
        raise RunDirError(f"{run_dir / job['path']}: not finished (no readable {JOB} and {DONE}); nothing to verify")
    inputs = recorded.get("inputs") or {}
    for rel in inputs.values():  # read-only inputs (a base checkpoint): copied, since stages write model cards
        if isinstance(rel, str) and not Path(rel).is_absolute() and (run_dir / rel).is_dir():
            shutil.copytree(run_dir / rel, scratch / rel)
        elif isinstance(rel, str) and not Path(rel).is_absolute() and (run_dir / rel).is_file():  # generated text
            (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run_dir / rel, scratch / rel)
    planned = {j.id: j for j in plan_jobs(RunDir.open(run_dir).experiment)}
    again = planned.get(job["id"])
    if again is None:
        raise RunDirError(f"{run_dir}: the run's experiment.yaml no longer plans {job['id']}; nothing to verify")
    runtime = Runtime(stages=done.get("stages") or REAL_STAGES, threads=1, redirect=True)
    result = execute_job(str(scratch), again, inputs, runtime)
    if result["status"] != "done":
        raise RunDirError(f"recomputing {job['id']} failed: {result['error']}")
    return scratch / job["path"]


def compare_cell(run_dir: Path, job: dict, scratch: Path) -> Verdict:
    verdict = Verdict(job["id"])
    old_cell, new_cell = run_dir / job["path"], scratch / job["path"]
    for tree in INPUT_TREES:
        for rel, same in _compare_trees(old_cell / tree, new_cell / tree, f"{tree}/", (run_dir, scratch)):
            (verdict.inputs_same if same else verdict.inputs_differ).append(rel)
    old_files = (read_json_object(old_cell / DONE) or {}).get("files") or {}
    new_files = (read_json_object(new_cell / DONE) or {}).get("files") or {}
    for rel in sorted(set(old_files) | set(new_files)):
        same = (old_files.get(rel) or {}).get("sha256") == (new_files.get(rel) or {}).get("sha256")
        if not same and rel.endswith(".json"):  # metadata holding where and how long: compare the rest
            old_facts = _json_facts(run_dir / rel)
            same = old_facts is not None and old_facts == _json_facts(scratch / rel)
        (verdict.outputs_same if same else verdict.outputs_differ).append(rel)
    verdict.metric_gap, verdict.metrics_compared = _metric_gap(old_cell, new_cell)
    verdict.machine = differences(read_run_json(run_dir).get("machine"), machine_record())
    return verdict


VOLATILE_KEYS = ("base", "finished", "created", "written", "started")  # paths and clock times, not results


def _json_facts(path: Path) -> Any:
    """A JSON file's content without the keys that name where or when it was computed or how long it took."""
    data = read_json_object(path) if path.is_file() else None
    if data is None:
        return None
    return {k: v for k, v in data.items() if k not in VOLATILE_KEYS and not k.endswith(("_seconds", "wall_s"))}


def _compare_trees(old: Path, new: Path, prefix: str, roots: tuple[Path, Path]) -> list[tuple[str, bool]]:
    """(file, same) for every file of either tree; JSON files are also the same when they differ only in the
    run directory they name (a manifest records the absolute path of model-written documents it read)."""
    if not old.is_dir() and not new.is_dir():
        return []
    names = {p.relative_to(old).as_posix() for p in old.rglob("*") if p.is_file()} if old.is_dir() else set()
    names |= {p.relative_to(new).as_posix() for p in new.rglob("*") if p.is_file()} if new.is_dir() else set()
    names = {n for n in names if not n.endswith((".lock", ".tmp"))}
    return [(prefix + n, _same_file(old / n, new / n, roots)) for n in sorted(names)]


def _same_file(old: Path, new: Path, roots: tuple[Path, Path]) -> bool:
    if _digest(old) == _digest(new):
        return True
    if old.suffix != ".json" or not (old.is_file() and new.is_file()):
        return False
    try:
        moved = old.read_text(encoding="utf-8").replace(str(roots[0]), str(roots[1]))
        return json.loads(moved) == json.loads(new.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _digest(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def _metric_gap(old_cell: Path, new_cell: Path) -> tuple[float | None, int]:
    """Largest absolute difference between recorded and recomputed metric values, and how many were compared."""
    import numpy as np
    import pandas as pd

    if (old_cell / ROWS).is_file() and (new_cell / ROWS).is_file():
        keys = ["strategy", "step", "context", "metric"]
        old, new = pd.read_parquet(old_cell / ROWS), pd.read_parquet(new_cell / ROWS)
        both = old[keys + ["value"]].merge(new[keys + ["value"]], on=keys, how="outer", suffixes=("_old", "_new"))
        a, b = both["value_old"].to_numpy(float), both["value_new"].to_numpy(float)
    else:  # a pretraining cell: its logged training losses
        old_log, new_log = _losses(old_cell), _losses(new_cell)
        n = min(len(old_log), len(new_log))
        if not n:
            return None, 0
        a, b = np.array(old_log[:n]), np.array(new_log[:n])
    gaps = np.where(np.isnan(a) & np.isnan(b), 0.0, np.abs(a - b))
    return float(np.nan_to_num(gaps, nan=np.inf).max()) if len(gaps) else None, int(len(gaps))


def _losses(cell: Path) -> list[float]:
    logs = sorted(cell.rglob("metrics.jsonl"))
    return [float(r["loss"]) for log in logs for r in read_jsonl(log) if isinstance(r.get("loss"), (int, float))]


def verify_cell(run_dir: str | Path, cell: str | None = None) -> Verdict:
    """Recompute `cell` of the run in a temporary directory and compare it with the run (which is only read)."""
    run_dir = Path(run_dir)
    read_run_json(run_dir)
    job = find_job(run_dir, cell)
    if not check_done(run_dir, run_dir / job["path"], job["config_hash"]).finished:
        raise RunDirError(f"{job['id']}: not finished or its outputs do not verify; `hyperstition status` says why")
    with tempfile.TemporaryDirectory(prefix="hyperstition-verify-") as tmp:
        scratch = Path(tmp)
        (scratch / "run.json").write_text(json.dumps(read_run_json(run_dir)))
        recompute(run_dir, job, scratch)
        return compare_cell(run_dir, job, scratch)


def verdict_lines(v: Verdict) -> list[str]:
    """The verdict as plain lines for the terminal."""
    lines = [f"cell {v.cell}: {v.explanation()}"]
    if v.inputs_same or v.inputs_differ:
        lines.append(f"  corpus and tokenizer: {len(v.inputs_same)} files identical, {len(v.inputs_differ)} differ")
        lines += [f"    differs: {rel}" for rel in v.inputs_differ[:20]]
    lines.append(f"  promised outputs: {len(v.outputs_same)} files identical, {len(v.outputs_differ)} differ")
    lines += [f"    differs: {rel}" for rel in v.outputs_differ[:20]]
    if v.metrics_compared:
        lines.append(f"  metrics: {v.metrics_compared} values compared, largest difference {v.metric_gap:.3g}")
    lines.append("  machine: " + ("same as recorded in run.json" if not v.machine else "; ".join(v.machine)))
    return lines
