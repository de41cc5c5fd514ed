"""The post-training loop's hooks: metrics lines, the persistence curve at log-spaced steps, the divergence stop."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..evals.config import EvalSections
from ..evals.measure import evaluate
from ..evals.suite import EvalSuite
from ..io import append_jsonl, write_json_atomic, write_parquet_atomic
from ..schema import CURVE_COLUMNS, KL_BITS, KL_TO_BASE_BITS
from ..train.scaffold import Hook, MetricsLog, ResumableRun, StepResult, isolated_rng, truncate_jsonl
from ..train.schedule import log_spaced_steps
from ..world.world import World
from .errors import PosttrainDiverged
from .job import CURVE_FILE, CURVE_ROWS_FILE, DIVERGED_FILE, LAST_GOOD, PosttrainJob, save_posttrain_checkpoint


def curve_steps(total: int, log_base: int = 2) -> list[int]:
    """0 (the base model), then the log-spaced steps 1, log_base, log_base^2, ... and `total`."""
    return [0, *log_spaced_steps(total, log_base)]


ROW_FIELDS = ("context", "metric", "value", "ci_low", "ci_high")


def measure(
    policy: torch.nn.Module,
    ref: torch.nn.Module,
    tokenizer: Any,
    world: World,
    suite: EvalSuite,
    step: int,
    tokens: int,
    origin: torch.nn.Module | None = None,
) -> list[dict]:
    """Curve rows at `step`: every eval-suite row (KL to the base included), tagged with step, tokens and kl_bits;
    with `origin` (a chain's original base) also KL to it, as KL_TO_BASE_BITS rows."""
    was_training = policy.training
    policy.eval()
    with isolated_rng():
        result = evaluate(policy, tokenizer, world, suite.config, reference=ref, progress=False, suite=suite)
        rows = [dict(r) for r in result.rows] + _kl_to_origin(policy, origin, tokenizer, world, suite)
    policy.train(was_training)
    kl = next((float(r["value"]) for r in rows if r["metric"] == KL_BITS and r["context"] == "observed"), float("nan"))
    return [{"step": step, "tokens": tokens, "kl_bits": kl, **{k: r[k] for k in ROW_FIELDS}} for r in rows]


def _kl_to_origin(policy, origin, tokenizer: Any, world: World, suite: EvalSuite) -> list[dict]:
    """KL(policy || origin) rows from the suite's KL measure alone, named KL_TO_BASE_BITS."""
    if origin is None:
        return []
    only_kl = EvalSections.model_validate({name: name == "kl" for name in EvalSections.names})
    config = suite.config.model_copy(update={"sections": only_kl})
    result = evaluate(policy, tokenizer, world, config, reference=origin, progress=False, suite=suite)
    return [{**r, "metric": KL_TO_BASE_BITS} for r in result.rows if r["metric"] == KL_BITS]


def write_curve(out_dir: Path, rows: list[dict]) -> Path:
    frame = pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
    floats = ("kl_bits", "value", "ci_low", "ci_high")
    frame = frame.astype({"step": "int64", "tokens": "int64"} | {column: "float64" for column in floats})
    path = out_dir / CURVE_FILE
    write_parquet_atomic(path, frame)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Hooks


class StepMetrics(MetricsLog):
    """This step's loss, LR, grad norm and the algorithm's own metrics (DPO margin/accuracy, RL reward/KL)."""

    def line(self, run: ResumableRun, result: StepResult) -> dict[str, Any]:
        line = {
            "step": run.step,
            "tokens": run.tokens,
            "loss": float(result.loss.item()),
            "lr": result.lr,
            "grad_norm": float(result.grad_norm.item()),
        }
        line.update({k: float(v.item()) for k, v in result.metrics.items()})
        line["elapsed_s"] = round(run.clock.seconds, 3)
        return line


class DivergenceStop:
    """The post-training answer to a non-finite loss, gradient norm or KL: put back the last weights whose loss
    and gradients were finite, save them to `last_good/` with the curve so far and `diverged.json`, and raise."""

    def __init__(self, job: PosttrainJob, policy: torch.nn.Module, params: list[torch.nn.Parameter]) -> None:
        self.job, self.policy, self.params = job, policy, params
        self.good = [p.detach().clone() for p in params]
        self.good_step, self.run, self.curve = 0, None, None

    def remember(self, step: int) -> None:
        """The weights as they are now (at `step`) passed every check: keep them as the last good ones."""
        with torch.no_grad():
            for good, p in zip(self.good, self.params, strict=True):
                good.copy_(p)
        self.good_step = step

    def from_guard(self, step: int, values: dict[str, float]) -> None:
        names = {"loss": "loss", "kl_bits": "KL to the base", "grad_norm": "gradient norm"}
        name, value = next((k, v) for k, v in values.items() if not math.isfinite(v))
        self.stop(step, f"{names[name]} is {value}")

    def stop(self, at: int, reason: str) -> None:
        job = self.job
        self.run.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for p, good in zip(self.params, self.good, strict=True):
                p.copy_(good)
        info = {
            "step": self.good_step,
            "tokens": self.run.tokens,
            "fingerprint": job.fingerprint,
            "strategy": job.spec.name,
            "algorithm": job.algorithm,
            "diverged_at": at,
            "reason": reason,
        }
        path = save_posttrain_checkpoint(job.out_dir / LAST_GOOD, self.policy, job.tokenizer, job.world_cfg, info=info)
        write_curve(job.out_dir, self.curve.rows)
        message = (
            f"post-training diverged at step {at} ({reason}); stopped and saved the last good weights "
            f"(step {self.good_step}) to {path}"
        )
        marker = {"message": message, "step": at, "last_good_step": self.good_step, "fingerprint": job.fingerprint}
        write_json_atomic(job.out_dir / DIVERGED_FILE, marker)
        raise PosttrainDiverged(message, at, path, self.good_step)


class Curve(Hook):
    """Eval-suite rows at log-spaced steps (0 = the base), appended to curve.jsonl as measured; a resume keeps the
    rows up to its checkpoint. A non-finite KL stops the run. Evaluation time is not training time."""

    def __init__(self, job: PosttrainJob, policy: torch.nn.Module, stop: DivergenceStop) -> None:
        self.job, self.policy, self.stop = job, policy, stop
        self.points = set(curve_steps(job.cfg.steps, job.cfg.curve.log_base))
        self.rows: list[dict] = []
        self.seconds = 0.0

    def on_start(self, run: ResumableRun) -> None:
        self.rows = truncate_jsonl(self.job.out_dir / CURVE_ROWS_FILE, run.step)
        if run.step == 0 and 0 not in {int(r["step"]) for r in self.rows}:
            self.record(run)

    def after_step(self, run: ResumableRun, result: StepResult) -> None:
        if run.step in self.points and run.step not in {int(r["step"]) for r in self.rows}:
            self.record(run)

    def record(self, run: ResumableRun) -> None:
        job = self.job
        start = time.perf_counter()
        with run.clock.paused():
            rows = measure(self.policy, job.ref, job.tokenizer, job.world, job.suite, run.step, run.tokens, job.origin)
        self.seconds += time.perf_counter() - start
        for r in rows:
            append_jsonl(job.out_dir / CURVE_ROWS_FILE, r)
        self.rows.extend(rows)
        kl = rows[0]["kl_bits"] if rows else float("nan")
        if not math.isfinite(kl):
            self.stop.stop(run.step, f"KL to the base is {kl}")
