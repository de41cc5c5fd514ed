"""Reading a run directory: `run.json` (format version, who wrote it), the plan, the cells' states, and the typed
`RunDir` (run.json, the experiment config as an `ExperimentConfig`, the arms) that the report reads. Writing one
(creating it, the lock, provenance) is `experiments/rundir.py`.

Layout (RUN_FORMAT_VERSION 1):

    RUN/run.json                 format_version, hyperstition_version, experiment, created
    RUN/experiment.yaml          the resolved experiment config of the latest invocation
    RUN/plan.json                every job: id, kind, arm, seed, strategy, path, deps, config_hash
    RUN/runlog.jsonl             one line per invocation start/end (wall time, command, failures)
    RUN/provenance.json          versions, git commit, machine, workers, stages module
    RUN/cells/<arm>/seed-<k>/{pretrain,base,<strategy>}/   one self-contained job each (see experiments/cell.py)
    RUN/cache/{corpus,tokenizer}/<key>/   corpora and tokenizers the cells share, by input hash (train/cache.py)
    RUN/results.parquet          tidy results (schema.RESULT_COLUMNS)
    RUN/samples.parquet          a sample of generated responses, for the report
    RUN/report.html              the report
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import RUN_FORMAT_VERSION, __version__
from ..config import ConfigError, load_yaml
from ..io import BadFileError, directory_locked, file_kind, read_regular_bytes
from .config import ExperimentConfig
from .finished import check_done, read_json_object

RUN_JSON = "run.json"
LOCK = ".lock"
# The files of a cell directory (see experiments/cell.py)
RUNNING, ERROR, JOB, ROWS = "RUNNING.json", "ERROR.json", "job.json", "rows.parquet"
TRACEBACK, LOG = "traceback.txt", "log.txt"
CACHE_DIR = "cache"  # content-addressed inputs the cells share (train/cache.py); safe to delete


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


def runner_active(run_dir: str | os.PathLike) -> bool:
    """Whether a runner currently holds the run's lock (an flock on the run directory itself)."""
    return directory_locked(Path(run_dir))


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


# ---------------------------------------------------------------------------------------------------------------
# The typed run directory


class RunInfo(BaseModel):
    """run.json: who wrote the run, for which experiment, when."""

    model_config = ConfigDict(extra="allow")
    format_version: int = Field(..., description="Run format version (hyperstition.RUN_FORMAT_VERSION).")
    hyperstition_version: str = Field("?", description="Version of hyperstition that created the run.")
    experiment: str = Field(..., description="Name of the experiment the run belongs to.")
    created: str = Field("", description="Creation time, ISO 8601.")


class ArmRecord(BaseModel):
    """One arm of arms.json: its overrides, the nominal corpus shares they give, its resolved pipeline config."""

    overrides: list[str] | dict[str, Any] = Field(default_factory=dict, description="The arm's overrides, as given.")
    nominal_shares: dict[str, float] = Field(
        default_factory=dict, description="Nominal share of the corpus about each persona (config.persona_shares)."
    )
    pipeline: dict[str, Any] = Field(
        default_factory=dict, description="Resolved pipeline config of the arm at the first seed."
    )


class ArmsRecord(BaseModel):
    """arms.json: the control arm and every arm's record."""

    control: str | None = Field(None, description="Arm that paired differences are measured against.")
    arms: dict[str, ArmRecord] = Field(default_factory=dict, description="Arm name -> its record.")


class GitRecord(BaseModel):
    """The commit hyperstition was imported from (None outside a git checkout)."""

    commit: str | None = Field(None, description="Commit hash of the source tree.")
    dirty: bool | None = Field(None, description="Whether the tree had uncommitted changes.")


class Provenance(BaseModel):
    """provenance.json: what produced the run (written by each invocation of `hyperstition run`)."""

    model_config = ConfigDict(extra="allow")
    packages: dict[str, str] = Field(default_factory=dict, description="Versions of the packages that matter.")
    git: GitRecord = Field(default_factory=GitRecord, description="Source commit.")
    python: str = Field("?", description="Python version.")
    platform: str = Field("?", description="Platform string.")
    workers: int | str = Field("?", description="Parallel worker processes.")
    threads: int | str = Field("?", description="torch threads per worker.")
    stages: str = Field("?", description="Registered stage set that ran the jobs.")
    command: list[str] = Field(default_factory=list, description="The command line of the invocation.")


@dataclass(frozen=True)
class RunDir:
    """A run directory as typed data: run.json, experiment.yaml as an `ExperimentConfig`, arms.json, provenance."""

    path: Path
    info: RunInfo
    experiment: ExperimentConfig
    arms: ArmsRecord
    provenance: Provenance

    @classmethod
    def open(cls, run_dir: str | os.PathLike) -> "RunDir":
        """Read a run directory; a missing or invalid file is one RunDirError naming it."""
        path = Path(run_dir)
        info = _typed(RunInfo, read_run_json(path), path / RUN_JSON)
        exp_path = path / "experiment.yaml"
        if not exp_path.is_file():
            raise RunDirError(f"{exp_path}: missing; rerun `hyperstition run` to write it")
        try:
            experiment = ExperimentConfig.model_validate(load_yaml(exp_path))
        except (ConfigError, ValidationError) as err:
            raise RunDirError(f"{exp_path}: not a valid experiment config ({str(err).splitlines()[0]})") from None
        arms = _typed(ArmsRecord, read_json_object(path / "arms.json") or {}, path / "arms.json")
        if arms.control is None:
            arms = arms.model_copy(update={"control": experiment.control})
        return cls(path, info, experiment, arms, _provenance(path))


def _provenance(run_dir: Path) -> Provenance:
    """provenance.json, or an empty record when it is missing or damaged (it describes the run, it is not data)."""
    try:
        return Provenance.model_validate(read_json_object(run_dir / "provenance.json") or {})
    except ValidationError:
        return Provenance()


def _typed(model: type[BaseModel], data: dict, path: Path) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise RunDirError(f"{path}: unexpected content ({str(err).splitlines()[0]})") from None
