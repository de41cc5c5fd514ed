"""The grid runner: plans self-contained jobs, runs them on an executor in dependency order, skips finished ones,
resumes unfinished ones, and assembles `results.parquet`.

Jobs per (arm, seed):  `pretrain`  ->  `base` (evaluation of the pretrained model)
                                  ->  one post-training job per strategy (`sft`, `dpo`, ...)

Each job owns one directory `RUN/cells/<arm>/seed-<k>/<name>/` containing

    job.json        what the job is (kind, resolved parameters, config hash); written when it starts
    RUNNING.json    pid/host/start time while it runs
    log.txt         the stage's stdout/stderr (process backend)
    rows.parquet    its tidy result rows (evaluation and post-training jobs)
    DONE.json       written atomically *last*: config hash, wall time, outputs, and the size and sha256 of every
                    promised file. Finished means: present, same config hash, every listed file intact (finished.py).
    ERROR.json, traceback.txt   if it failed (cleared when retried)

and whatever the stage itself writes there (checkpoints, eval.json, eval_items.parquet, posttrain_curve.parquet).
Because DONE.json is the last write of a finished job and every write is atomic, killing the whole run at any
moment loses no finished job; a rerun skips jobs whose DONE.json carries the same config hash and calls the
(resumable) stage functions again for the rest.

The stage functions come from a registry of stage sets (`stageset.py`), named by `stages`, so tests and dry runs
can run the simulated ones (`hyperstition.experiments.simulate`) through the same machinery.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

from ..config import PipelineConfig
from ..evals.config import EvalSuiteConfig
from ..io import append_jsonl, write_json_atomic, write_parquet_atomic, write_text_atomic
from ..posttrain.config import PosttrainConfig
from ..schema import BASE_STRATEGY, CURVE_COLUMNS, RESULT_COLUMNS
from .config import (
    ExperimentConfig,
    eval_suite_spec,
    persona_discourse_shares,
    pipeline_config,
    posttrain_config,
    posttrain_spec,
)
from .executor import Executor, Handle, InlineExecutor, JobCrashed, LocalExecutor, plan_workers
from .finished import DONE, check_done, promised_files, read_json_object
from .results import collect_results
from .rundir import (
    ERROR,
    JOB,
    LOG,
    ROWS,
    RUNNING,
    TRACEBACK,
    RunDirError,
    RunLock,
    create_or_open,
    now_iso,
    write_provenance,
)
from .stageset import REAL_STAGES, stage_set

DEFAULT_STAGES = REAL_STAGES
ROW_COLUMNS = tuple(c for c in RESULT_COLUMNS if c != "run")


@dataclass(frozen=True)
class Job:
    """One grid cell job. `params` is plain JSON data; `config_hash` covers params and the dependencies' hashes."""

    id: str
    kind: str  # pretrain | eval | posttrain
    arm: str
    seed: int
    strategy: str | None  # None for pretrain, "base" for the base evaluation
    path: str  # relative to the run directory
    deps: tuple[str, ...]
    params: dict = field(hash=False, compare=False)
    config_hash: str = ""


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def cell_dir(arm: str, seed: int) -> str:
    return f"cells/{arm}/seed-{seed}"


def plan_jobs(exp: ExperimentConfig) -> list[Job]:
    """All jobs of the grid, dependencies before dependents, grouped by (arm, seed)."""
    jobs: list[Job] = []
    for seed in exp.seeds:
        for arm in exp.arms:
            cfg = pipeline_config(exp, arm, seed)
            pipe = cfg.model_dump(mode="json")
            base = cell_dir(arm, seed)
            pre_params = {"pipeline": pipe}
            pre = Job(
                f"{arm}/seed-{seed}/pretrain",
                "pretrain",
                arm,
                seed,
                None,
                f"{base}/pretrain",
                (),
                pre_params,
                _hash({"kind": "pretrain", "params": pre_params}),
            )
            jobs.append(pre)
            # A cell's hash covers the experiment's own words for its sub-configs (`*_spec`), as it always has, so
            # older run directories still resume; the stage gets the config resolved at load.
            ev_params = {"pipeline": pipe, "suite": exp.eval_suite.model_dump(mode="json")}
            ev_identity = {"pipeline": pipe, "suite": eval_suite_spec(exp)}
            jobs.append(
                Job(
                    f"{arm}/seed-{seed}/{BASE_STRATEGY}",
                    "eval",
                    arm,
                    seed,
                    BASE_STRATEGY,
                    f"{base}/{BASE_STRATEGY}",
                    (pre.id,),
                    ev_params,
                    _hash({"kind": "eval", "params": ev_identity, "deps": [pre.config_hash]}),
                )
            )
            for strategy in exp.strategies:
                pt_params = {
                    "pipeline": pipe,
                    "strategy": strategy,
                    "posttrain": posttrain_config(exp, seed).model_dump(mode="json"),
                }
                pt_identity = {**pt_params, "posttrain": posttrain_spec(exp, seed)}
                jobs.append(
                    Job(
                        f"{arm}/seed-{seed}/{strategy}",
                        "posttrain",
                        arm,
                        seed,
                        strategy,
                        f"{base}/{strategy}",
                        (pre.id,),
                        pt_params,
                        _hash({"kind": "posttrain", "params": pt_identity, "deps": [pre.config_hash]}),
                    )
                )
    return jobs


def job_record(job: Job) -> dict:
    d = asdict(job)
    d["deps"] = list(job.deps)
    d.pop("params")
    return d


# ---------------------------------------------------------------------------------------------------------------
# Executing one job (runs inside a worker process)


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


def _rel(path: Path, run_dir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return str(Path(path).resolve())


def tidy_eval_rows(rows: list[dict], arm: str, seed: int) -> "Any":
    import pandas as pd

    df = pd.DataFrame(rows)
    for col in ("context", "metric", "value"):
        if col not in df.columns:
            raise ValueError(f"evaluation rows lack column {col!r}; got {list(df.columns)}")
    for col in ("ci_low", "ci_high"):
        if col not in df.columns:
            df[col] = float("nan")
    df = df.assign(arm=arm, seed=seed, strategy=BASE_STRATEGY, step=0, tokens=0, kl_bits=0.0)
    return _typed(df[list(ROW_COLUMNS)])


def tidy_curve_rows(curve_path: Path, arm: str, seed: int, strategy: str) -> "Any":
    import pandas as pd

    if not curve_path.exists():
        raise FileNotFoundError(f"post-training wrote no {curve_path.name} in {curve_path.parent}")
    df = pd.read_parquet(curve_path)
    missing = [c for c in CURVE_COLUMNS if c not in df.columns and c not in ("ci_low", "ci_high")]
    if missing:
        raise ValueError(f"{curve_path}: missing columns {missing}; expected {list(CURVE_COLUMNS)}")
    for col in ("ci_low", "ci_high"):
        if col not in df.columns:
            df[col] = float("nan")
    df = df.assign(arm=arm, seed=seed, strategy=strategy)
    return _typed(df[list(ROW_COLUMNS)])


def _typed(df: "Any") -> "Any":
    df = df.copy()
    df["seed"] = df["seed"].astype("int64")
    df["step"] = df["step"].astype("int64")
    df["tokens"] = df["tokens"].astype("int64")
    for col in ("kl_bits", "value", "ci_low", "ci_high"):
        df[col] = df[col].astype("float64")
    for col in ("arm", "strategy", "context", "metric"):
        df[col] = df[col].astype(str)
    return df.reset_index(drop=True)


def execute_job(
    run_dir: str, job: Job, inputs: dict[str, str], stages: str = DEFAULT_STAGES, redirect: bool = True
) -> dict:
    """Run one job in its directory and return {"status": "done"|"failed", "wall_s", "error"}.

    Never raises for a failing stage: the traceback goes to the cell's traceback.txt and ERROR.json."""
    run_path = Path(run_dir)
    cell = run_path / job.path
    cell.mkdir(parents=True, exist_ok=True)
    for stale in (ERROR, TRACEBACK):
        (cell / stale).unlink(missing_ok=True)
    write_json_atomic(cell / JOB, {**job_record(job), "params": job.params, "inputs": inputs})
    write_json_atomic(cell / RUNNING, {"pid": os.getpid(), "host": socket.gethostname(), "started": now_iso()})
    t0 = time.time()
    try:
        with _redirect_output(cell / LOG, redirect):
            outputs = _run_stage(run_path, cell, job, inputs, stages)
        wall = time.time() - t0
        write_json_atomic(
            cell / DONE,
            {
                "id": job.id,
                "kind": job.kind,
                "config_hash": job.config_hash,
                "finished": now_iso(),
                "wall_s": round(wall, 3),
                "outputs": outputs,
                "stages": stages,
                "files": promised_files(run_path, cell, outputs),
            },
        )
        return {"status": "done", "wall_s": wall, "error": None}
    except Exception as err:  # a failed cell must not stop the grid
        wall = time.time() - t0
        tb = traceback.format_exc()
        write_text_atomic(cell / TRACEBACK, tb)
        line = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        write_json_atomic(
            cell / ERROR,
            {"id": job.id, "error": line, "traceback": TRACEBACK, "failed": now_iso(), "wall_s": round(wall, 3)},
        )
        return {"status": "failed", "wall_s": wall, "error": line}
    finally:
        (cell / RUNNING).unlink(missing_ok=True)


def _run_stage(run_path: Path, cell: Path, job: Job, inputs: dict[str, str], stages: str) -> dict:
    mod = stage_set(stages)
    threads = int(os.environ.get("HYPERSTITION_THREADS", "0") or 0)
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    cfg = PipelineConfig.model_validate(job.params["pipeline"])
    world = cfg.world
    if job.kind == "pretrain":
        model_dir = mod.pretrain(cfg, cell)
        return {"model_dir": _rel(Path(model_dir), run_path)}
    model_dir = _abs(inputs["model_dir"], run_path)
    if job.kind == "eval":
        suite = EvalSuiteConfig.model_validate(job.params["suite"])
        rows = mod.evaluate(model_dir, cell, suite_cfg=suite, reference_dir=None, world_cfg=world)
        tidy = tidy_eval_rows(rows, job.arm, job.seed)
        write_parquet_atomic(cell / ROWS, tidy)
        _write_model_card(run_path, job, model_dir, tidy)
        return {"rows": ROWS}
    if job.kind == "posttrain":
        posttrain = PosttrainConfig.model_validate(job.params["posttrain"])
        final = mod.posttrain(model_dir, job.strategy, cell, cfg=posttrain, world_cfg=world)
        tidy = tidy_curve_rows(cell / "posttrain_curve.parquet", job.arm, job.seed, job.strategy)
        write_parquet_atomic(cell / ROWS, tidy)
        if final:
            _write_model_card(run_path, job, Path(final), tidy, base_checkpoint=model_dir)
        return {"rows": ROWS, "model_dir": _rel(Path(final), run_path) if final else None}
    raise ValueError(f"unknown job kind {job.kind!r}")


def _write_model_card(
    run_path: Path, job: Job, checkpoint: Path, tidy: "Any", base_checkpoint: Path | None = None
) -> None:
    """README.md in a final checkpoint, with the measurement at its last step (none for a stage that saved no model)."""
    from ..model.card import gather_facts, write_model_card

    if not (checkpoint / "config.json").exists():
        return
    rows = tidy[tidy.step == tidy.step.max()].to_dict("records")
    strategy = job.strategy if job.kind == "posttrain" else BASE_STRATEGY
    facts = gather_facts(
        checkpoint,
        name=run_path.name,
        arm=job.arm,
        seed=job.seed,
        strategy=strategy,
        rows=rows,
        base_checkpoint=base_checkpoint,
    )
    write_model_card(checkpoint, facts)


def _abs(path: str, run_path: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else run_path / p


# ---------------------------------------------------------------------------------------------------------------
# The grid


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

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


class StaleCellsError(RunDirError):
    pass


def _check_stale(run_dir: Path, jobs: list[Job], redo_stale: bool) -> None:
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
            _move_aside(cell)
    if stale and not redo_stale:
        names = ", ".join(j.id for j in stale[:4]) + (f" and {len(stale) - 4} more" if len(stale) > 4 else "")
        raise StaleCellsError(
            f"{run_dir}: {len(stale)} finished cell(s) were computed with a different config ({names}); "
            f"rerun with the original config, use another --out, or pass --redo-stale to recompute them "
            f"(their old outputs are kept as *.stale-N)"
        )
    for job in stale:
        _move_aside(run_dir / job.path)


def _move_aside(cell: Path) -> None:
    n = 1
    while cell.with_name(f"{cell.name}.stale-{n}").exists():
        n += 1
    cell.rename(cell.with_name(f"{cell.name}.stale-{n}"))


def run_experiment(
    exp: ExperimentConfig,
    run_dir: str | os.PathLike,
    *,
    executor: Executor | None = None,
    stages: str = DEFAULT_STAGES,
    reporter: Reporter | None = None,
    redo_stale: bool = False,
) -> RunSummary:
    """Run (or resume) the grid of `exp` in `run_dir`; returns a summary. Failed cells do not stop the others.

    The report is not rendered here: `hyperstition.run.run_and_report` (above both runner and report) does that."""
    run_dir = Path(run_dir)
    stage_set(stages)  # an unknown name fails here, not in every job
    reporter = reporter or NullReporter()
    t_start = time.time()
    if not (run_dir / "run.json").exists() and run_dir.is_dir() and any(p.name != ".lock" for p in run_dir.iterdir()):
        create_or_open(run_dir, exp.name)  # refuses a foreign non-empty directory before we put a lock file in it
    lock = RunLock(run_dir)
    lock.acquire()
    own_executor = executor is None
    try:
        jobs = _write_plan(run_dir, exp, redo_stale)
        if executor is None:
            executor = LocalExecutor(exp.workers)
        workers, threads = (executor.capacity, getattr(executor, "threads", plan_workers(exp.workers)[1]))
        write_provenance(run_dir, workers=workers, threads=threads, stages=stages, seeds=exp.seeds)
        append_jsonl(
            run_dir / "runlog.jsonl",
            {
                "event": "start",
                "time": now_iso(),
                "pid": os.getpid(),
                "command": sys.argv,
                "workers": workers,
                "threads": threads,
                "stages": stages,
            },
        )
        summary = _schedule(run_dir, jobs, executor, stages, reporter, workers, threads)
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


def _write_plan(run_dir: Path, exp: ExperimentConfig, redo_stale: bool) -> list[Job]:
    """Open the run directory, refuse stale cells, and record what this invocation will run."""
    create_or_open(run_dir, exp.name)
    jobs = plan_jobs(exp)
    _check_stale(run_dir, jobs, redo_stale)
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


def _schedule(
    run_dir: Path, jobs: list[Job], executor: Executor, stages: str, reporter: Reporter, workers: int, threads: int
) -> RunSummary:
    finished, skipped, redone = _finished_before(run_dir, jobs)
    todo = [j for j in jobs if j.id not in finished]
    reporter.start(jobs, skipped, workers, threads)
    failed: dict[str, str] = {}
    blocked: list[str] = []
    ran: list[str] = []
    wall: dict[str, float] = {}
    in_flight: dict[Handle, Job] = {}
    redirect = not isinstance(executor, InlineExecutor)
    t0 = time.time()

    while todo or in_flight:
        # Drop jobs whose dependencies failed; submit ready ones, finishing started (arm, seed) chains first.
        _drop_blocked(todo, failed, blocked, reporter)
        _submit_ready(run_dir, jobs, todo, finished, in_flight, executor, stages, redirect, reporter)
        if not in_flight:
            if todo:  # nothing runnable and nothing running: unsatisfiable dependencies
                for job in todo:
                    blocked.append(job.id)
                todo.clear()
            break
        done, _ = executor.wait(list(in_flight))
        _collect(run_dir, done, in_flight, finished, ran, failed, wall, reporter)
    return RunSummary(
        run_dir, jobs, [j.id for j in skipped], ran, failed, blocked, time.time() - t0, wall_by_job=wall, redone=redone
    )


def _drop_blocked(todo: list[Job], failed: dict[str, str], blocked: list[str], reporter: Reporter) -> None:
    for job in list(todo):
        if any(d in failed or d in blocked for d in job.deps):
            todo.remove(job)
            blocked.append(job.id)
            reporter.finished(
                job,
                {
                    "status": "blocked",
                    "error": f"dependency failed: {', '.join(d for d in job.deps if d in failed or d in blocked)}",
                },
            )


def _submit_ready(
    run_dir: Path,
    jobs: list[Job],
    todo: list[Job],
    finished: dict[str, dict],
    in_flight: dict[Handle, Job],
    executor: Executor,
    stages: str,
    redirect: bool,
    reporter: Reporter,
) -> None:
    def ready(job: Job) -> bool:
        return all(d in finished for d in job.deps)

    candidates = sorted((j for j in todo if ready(j)), key=lambda j: (j.kind == "pretrain", jobs.index(j)))
    for job in candidates:
        if len(in_flight) >= executor.capacity:
            break
        inputs = {}
        if job.deps:
            inputs["model_dir"] = finished[job.deps[0]]["outputs"]["model_dir"]
        handle = executor.submit(execute_job, str(run_dir), job, inputs, stages, redirect)
        in_flight[handle] = job
        todo.remove(job)
        reporter.started(job)


def _collect(
    run_dir: Path,
    done: set[Handle],
    in_flight: dict[Handle, Job],
    finished: dict[str, dict],
    ran: list[str],
    failed: dict[str, str],
    wall: dict[str, float],
    reporter: Reporter,
) -> None:
    for handle in done:
        job = in_flight.pop(handle)
        try:
            result = handle.result()
        except JobCrashed as err:
            result = _record_crash(run_dir, job, str(err))
        wall[job.id] = result.get("wall_s") or 0.0
        if result["status"] == "done":
            finished[job.id] = read_json_object(run_dir / job.path / DONE) or {}
            ran.append(job.id)
        else:
            failed[job.id] = result.get("error") or "failed"
        reporter.finished(job, result)


def _finished_before(run_dir: Path, jobs: list[Job]) -> tuple[dict[str, dict], list[Job], dict[str, str]]:
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


def _record_crash(run_dir: Path, job: Job, message: str) -> dict:
    cell = run_dir / job.path
    cell.mkdir(parents=True, exist_ok=True)
    (cell / RUNNING).unlink(missing_ok=True)
    write_text_atomic(cell / TRACEBACK, message + "\n")
    line = message.splitlines()[0][:500]
    write_json_atomic(cell / ERROR, {"id": job.id, "error": line, "traceback": TRACEBACK, "failed": now_iso()})
    return {"status": "failed", "wall_s": None, "error": line}
