"""`run_posttrain`: post-train a pretrained checkpoint with one strategy, measuring pressure and persona metrics.

Layout of a post-training run directory:
    config.yaml                  resolved run config: base, strategy, algorithm, world and PosttrainConfig
    metrics.jsonl                per-step loss, lr, grad norm, tokens (+ DPO margin/accuracy, RL reward/KL)
    curve.jsonl                  curve rows as they are measured (resume keeps the ones up to its checkpoint)
    posttrain_curve.parquet      step, tokens, kl_bits, context, metric, value, ci_low, ci_high
    checkpoints/latest/          rolling resumable checkpoint (weights, AdamW state, RNG, data position)
    final/                       HF checkpoint after the last step (stamped with the world)
    last_good/, diverged.json    only when the run diverged (NaN/inf loss, gradients or KL)

Our own loop on the resumable-run scaffold (train/scaffold.py), not TRL's trainers: each algorithm defines one
step, and the curve and the divergence stop are hooks. It evaluates at log-spaced steps, resumes bit for bit on
CPU, and keeps every piece of state in safetensors + JSON. Its SFT, DPO and RLOO losses equal TRL 1.16's on the
same batch (see `losses.py` and tests/posttrain/test_trl_equivalence.py).

A run killed at any moment and started again with the same arguments resumes from `checkpoints/latest` and ends
with bit-identical weights (CPU, fp32): data order is a pure function of (seed, position), RL samples are seeded by
(seed, step), optimizer and RNG state are saved, and the curve evaluations run under a forked RNG.

Divergence: before every optimizer step the loss, the gradient norm and (RL) the in-loop KL must be finite, and so
must the KL measured at every curve point. Otherwise the run stops, saves `last_good/` (the most recent weights whose
loss and gradients were finite), the curve so far and `diverged.json`, and raises PosttrainDiverged (CLI exit 3);
rerunning the same run reports the same divergence without retraining.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from ..config import WorldConfig
from ..evals.config import load_suite_config
from ..evals.measure import evaluate
from ..evals.scoring import decode_response, encode_prompts, sample_token_ids
from ..evals.suite import EvalSuite, build_suite
from ..io import append_jsonl, sha256_file, training_lock, write_json_atomic, write_parquet_atomic
from ..model.card import write_run_card
from ..model.checkpoint import CHECKSUMS, load_checkpoint, save_checkpoint, verify_checkpoint
from ..schema import CURVE_COLUMNS, KL_BITS
from ..tokenizer.train import tokenizer_problem
from ..train.data import SequenceSampler
from ..train.runtime import resolve_runtime, torch_settings
from ..train.scaffold import (
    CHECKPOINTS_DIR,
    FINAL,
    FiniteGuard,
    Hook,
    MetricsLog,
    ResumableRun,
    StepResult,
    adamw,
    ensure_run_config,
    fingerprint,
    finished,
    isolated_rng,
    trainable_parameters,
    truncate_jsonl,
)
from ..train.schedule import learning_rate, log_spaced_steps
from ..world import WORLD_STAMP, World, world_config_for
from ..world.grammar import END, chat_prompt, render_response
from .config import RUNTIME_ONLY_FIELDS, PosttrainConfig, resolve_posttrain_config, trajectory_dict
from .errors import PosttrainDataError, PosttrainDiverged, PosttrainError, TokenizerMismatch
from .losses import build_batch, dpo_loss, per_token_logps, rloo_advantages, rloo_loss, sequence_logps, sft_loss
from .strategies import Strategy, StrategyData, build_data, get_strategy

CONFIG_FILE = "config.yaml"
CURVE_ROWS_FILE = "curve.jsonl"
CURVE_FILE = "posttrain_curve.parquet"
LAST_GOOD = "last_good"
DIVERGED_FILE = "diverged.json"
LN2 = math.log(2.0)


def curve_steps(total: int, log_base: int = 2) -> list[int]:
    """0 (the base model), then the log-spaced steps 1, log_base, log_base^2, ... and `total`."""
    return [0, *log_spaced_steps(total, log_base)]


# ---------------------------------------------------------------------------------------------------------------
# Checks on the base checkpoint


def check_tokenizer(tokenizer: Any, model: torch.nn.Module, world: World) -> None:
    """Raise TokenizerMismatch unless the tokenizer has our chat tokens, fits the model, and round-trips world text."""
    task = world.train_tasks[0]
    text = chat_prompt("x", task.request) + render_response(task, "aligned", "observed", 0) + END
    problem = tokenizer_problem(tokenizer, int(model.get_input_embeddings().num_embeddings), chat_text=text)
    if problem is not None:
        raise TokenizerMismatch(f"base {problem}")


def _load_world(base_dir: Path, world_cfg: WorldConfig | None) -> tuple[WorldConfig, World]:
    if world_cfg is None:
        try:
            world_cfg = world_config_for(base_dir)
        except FileNotFoundError as err:
            raise PosttrainError(str(err)) from None
    try:
        return world_cfg, World.from_config(world_cfg)
    except ValueError as err:
        raise PosttrainError(f"world: {err}") from None


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints (HF format + world stamp + optional training state, atomically, no pickle)


def save_posttrain_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    tokenizer: Any,
    world_cfg: WorldConfig,
    training_state: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """A checkpoint stamped with the world it belongs to (HF format + training state, atomic, no pickle)."""
    stamp = {WORLD_STAMP: world_cfg.model_dump(mode="json")}
    return save_checkpoint(directory, model, tokenizer, training_state=training_state, info=info, extra_json=stamp)


# ---------------------------------------------------------------------------------------------------------------
# Tokenized data


class TokenizedData:
    """Token ids of every prompt (after BOS, as the evaluator scores it) and of its chosen / rejected reply (each
    reply ends with <|end|>)."""

    def __init__(self, data: StrategyData, tokenizer: Any, algorithm: str, max_len: int, max_new_tokens: int) -> None:
        items = data.items

        def enc(texts: list[str]) -> list[list[int]]:
            # verbose=False: no "longer than the maximum" warning; the length is checked against the context below
            return [list(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]

        self.prompts: list[list[int]] = encode_prompts(tokenizer, [it.prompt for it in items])
        self.chosen: list[list[int]] = enc([data.chosen(it) + END for it in items]) if algorithm != "rl" else []
        self.rejected: list[list[int]] = enc([data.rejected(it) + END for it in items]) if algorithm == "dpo" else []
        longest = max(len(p) for p in self.prompts) + (
            max_new_tokens if algorithm == "rl" else max(len(r) for r in [*self.chosen, *self.rejected])
        )
        if longest > max_len:
            raise PosttrainDataError(
                f"training sequences reach {longest} tokens but the base model's context is {max_len}; "
                "shorten the data or rl.max_new_tokens"
            )


class AlgorithmForward:
    """One optimizer step's forward pass: returns (loss, metrics, tokens processed)."""

    def __init__(
        self,
        name: str,
        cfg: PosttrainConfig,
        data: StrategyData,
        tok_data: TokenizedData,
        tokenizer: Any,
        ref: torch.nn.Module,
        device: torch.device,
    ) -> None:
        self.name, self.cfg, self.data, self.tok, self.tokenizer = name, cfg, data, tok_data, tokenizer
        self.ref, self.device = ref, device
        self.pad = tokenizer.pad_token_id
        self.ref_chosen: torch.Tensor | None = None
        self.ref_rejected: torch.Tensor | None = None
        self._forward = {"sft": self._sft, "dpo": self._dpo, "rl": self._rl}[name]

    def prepare(self) -> None:
        """DPO: reference log-probs of every pair, once (the base is frozen), as TRL's precompute_ref_log_probs."""
        if self.name != "dpo":
            return
        chosen, rejected = [], []
        n = len(self.tok.prompts)
        with torch.no_grad():
            for start in range(0, n, 64):
                idx = list(range(start, min(n, start + 64)))
                batch = self._pairs(idx)
                c, r = sequence_logps(self.ref, batch).chunk(2)
                chosen.append(c)
                rejected.append(r)
        self.ref_chosen, self.ref_rejected = torch.cat(chosen), torch.cat(rejected)

    def _batch(self, prompts: list[list[int]], completions: list[list[int]]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in build_batch(prompts, completions, self.pad).items()}

    def _pairs(self, idx: list[int]) -> dict[str, torch.Tensor]:
        """Chosen rows then rejected rows, each after its prompt."""
        completions = [self.tok.chosen[i] for i in idx] + [self.tok.rejected[i] for i in idx]
        return self._batch([self.tok.prompts[i] for i in idx] * 2, completions)

    def step(
        self, policy: torch.nn.Module, idx: list[int], step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        return self._forward(policy, idx, step)

    def _sft(self, policy, idx, step):
        batch = self._batch([self.tok.prompts[i] for i in idx], [self.tok.chosen[i] for i in idx])
        loss = sft_loss(per_token_logps(policy, batch["input_ids"], batch["attention_mask"]), batch["completion_mask"])
        return loss, {}, int(batch["attention_mask"].sum())

    def _dpo(self, policy, idx, step):
        n = len(idx)
        batch = self._pairs(idx)
        token_logps = per_token_logps(policy, batch["input_ids"], batch["attention_mask"])
        chosen, rejected = (token_logps * batch["completion_mask"][:, 1:]).sum(1).chunk(2)
        where = torch.tensor(idx, device=self.ref_chosen.device)
        dpo = self.cfg.dpo
        loss, margins = dpo_loss(chosen, rejected, self.ref_chosen[where], self.ref_rejected[where], dpo.beta)
        metrics = {"margin": margins.mean(), "accuracy": (margins > 0).float().mean(), "dpo_loss": loss.detach()}
        if dpo.sft_weight > 0:  # RPO: TRL loss_type=["sigmoid", "sft"], loss_weights=[1, sft_weight]
            nll = sft_loss(token_logps[:n], batch["completion_mask"][:n])
            loss = loss + dpo.sft_weight * nll
            metrics["sft_loss"] = nll.detach()
        return loss, metrics, int(batch["attention_mask"].sum())

    def _rl(self, policy, idx, step):
        rl = self.cfg.rl
        g = rl.num_generations
        items = [self.data.items[i] for i in idx]
        # On-policy samples, seeded by (seed, step) alone: the evaluator's sampler (pure ancestral, stops at <|end|>).
        was_training = policy.training
        _, samples = sample_token_ids(
            policy,
            self.tokenizer,
            [it.prompt for it in items],
            n=g,
            max_new_tokens=rl.max_new_tokens,
            temperature=rl.temperature,
            seed=_step_seed(self.cfg.seed, step),
            batch_size=len(items) * g,
        )
        policy.train(was_training)
        prompt_ids = [self.tok.prompts[i] for i in idx for _ in range(g)]
        completions = [ids for per_prompt in samples for ids in per_prompt]
        flat_items = [it for it in items for _ in range(g)]
        texts = [decode_response(self.tokenizer, c) for c in completions]
        rewards = [self.data.reward(it, t) for it, t in zip(flat_items, texts, strict=True)]
        rewards = torch.tensor(rewards, dtype=torch.float32, device=self.device)
        batch = self._batch(prompt_ids, completions)
        # Log-probs of the sampling distribution (logits / temperature), for the policy and the base, as TRL's RLOO.
        logps = sequence_logps(policy, batch, rl.temperature)
        with torch.no_grad():
            ref_logps = sequence_logps(self.ref, batch, rl.temperature)
        kl = logps.detach() - ref_logps  # first-order estimate, nats per response (as TRL's RLOO)
        advantages = rloo_advantages(rewards, kl, rl.beta, g, rl.normalize_advantages)
        loss = rloo_loss(logps, logps.detach(), advantages, rl.epsilon, rl.epsilon)
        response_tokens = batch["completion_mask"].sum(1).float().mean()
        metrics = {"reward": rewards.mean(), "kl_bits": kl.mean() / LN2, "response_tokens": response_tokens}
        return loss, metrics, int(batch["attention_mask"].sum())


def _step_seed(seed: int, step: int) -> int:
    digest = hashlib.sha256(f"posttrain-rl:{seed}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def _suite_config(cfg: PosttrainConfig):
    return load_suite_config(cfg.curve.eval_suite, [*cfg.curve.eval_overrides, "sections.kl=true"])


ROW_FIELDS = ("context", "metric", "value", "ci_low", "ci_high")


def measure(
    policy: torch.nn.Module,
    ref: torch.nn.Module,
    tokenizer: Any,
    world: World,
    suite: EvalSuite,
    step: int,
    tokens: int,
) -> list[dict]:
    """Curve rows at `step`: every eval-suite row (KL to the base included), tagged with step, tokens and kl_bits."""
    was_training = policy.training
    policy.eval()
    with isolated_rng():
        result = evaluate(policy, tokenizer, world, suite.config, reference=ref, progress=False, suite=suite)
    policy.train(was_training)
    rows = [dict(r) for r in result.rows]
    kl = next((float(r["value"]) for r in rows if r["metric"] == KL_BITS and r["context"] == "observed"), float("nan"))
    return [{"step": step, "tokens": tokens, "kl_bits": kl, **{k: r[k] for k in ROW_FIELDS}} for r in rows]


def write_curve(out_dir: Path, rows: list[dict]) -> Path:
    frame = pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
    floats = ("kl_bits", "value", "ci_low", "ci_high")
    frame = frame.astype({"step": "int64", "tokens": "int64"} | {column: "float64" for column in floats})
    path = out_dir / CURVE_FILE
    write_parquet_atomic(path, frame)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Run identity


@dataclass
class PosttrainJob:
    """Everything a post-training run is built from, checked and resolved before any training starts."""

    spec: Strategy
    cfg: PosttrainConfig
    algorithm: str
    base_dir: Path
    out_dir: Path
    world_cfg: WorldConfig
    world: World
    ref: torch.nn.Module
    tokenizer: Any
    data: StrategyData
    tok_data: TokenizedData
    suite: EvalSuite
    fingerprint: str
    device: torch.device


def _run_record(base_dir: Path, strategy: str, algorithm: str, world_cfg: WorldConfig, cfg: PosttrainConfig) -> dict:
    return {
        "base": str(base_dir),
        "strategy": strategy,
        "algorithm": algorithm,
        "world": world_cfg.model_dump(mode="json"),
        "posttrain": cfg.model_dump(mode="json"),
    }


def _comparable(record: dict) -> dict:
    """What must match for a rerun to continue a run: not the base's path, nor runtime-only knobs."""
    posttrain = {k: v for k, v in (record.get("posttrain") or {}).items() if k not in RUNTIME_ONLY_FIELDS}
    return {key: record.get(key) for key in ("strategy", "algorithm", "world")} | {"posttrain": posttrain}


def _fingerprint(record: dict, base_dir: Path, tokenizer: Any, cfg: PosttrainConfig) -> str:
    trajectory = {k: v for k, v in record.items() if k not in ("base", "posttrain")}
    trajectory["posttrain"] = trajectory_dict(cfg)
    sums = base_dir / CHECKSUMS
    weights = json.loads(sums.read_text()).get("model.safetensors", {}).get("sha256") if sums.exists() else None
    return fingerprint(trajectory, weights or sha256_file(base_dir / "model.safetensors"), tokenizer.get_vocab())


def _prepare(
    spec: Strategy,
    cfg: PosttrainConfig,
    base_dir: Path,
    out_dir: Path,
    world_cfg: WorldConfig | None,
    device: torch.device,
) -> PosttrainJob:
    """Check the base, build the data and the curve's eval suite, and write or compare config.yaml."""
    algorithm = spec.algorithm if cfg.algorithm == "auto" else cfg.algorithm
    verify_checkpoint(base_dir)
    world_cfg, world = _load_world(base_dir, world_cfg)
    ref, tokenizer = load_checkpoint(base_dir, device=device, verify=False)
    check_tokenizer(tokenizer, ref, world)
    if cfg.preferences and algorithm == "rl":
        raise PosttrainDataError(
            "preferences: a preference file has no reward for sampled replies; use it with algorithm sft or dpo"
        )
    data = build_data(spec, world, cfg.n_prompts, cfg.predecessor_fraction, cfg.seed, cfg.rl.rewards, cfg.preferences)
    max_len = int(getattr(ref.config, "max_position_embeddings", 1 << 30))
    tok_data = TokenizedData(data, tokenizer, algorithm, max_len, cfg.rl.max_new_tokens)
    suite = build_suite(world, _suite_config(cfg))
    out_dir.mkdir(parents=True, exist_ok=True)
    record = _run_record(base_dir, spec.name, algorithm, world_cfg, cfg)
    text = yaml.safe_dump(record, sort_keys=False)
    ensure_run_config(out_dir / CONFIG_FILE, record, text, _comparable, "post-training run")
    run_id = _fingerprint(record, base_dir, tokenizer, cfg)
    return PosttrainJob(
        spec, cfg, algorithm, base_dir, out_dir, world_cfg, world, ref, tokenizer, data, tok_data, suite, run_id, device
    )


# ---------------------------------------------------------------------------------------------------------------
# Hooks: metrics lines, the curve, the divergence stop


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
            rows = measure(self.policy, job.ref, job.tokenizer, job.world, job.suite, run.step, run.tokens)
        self.seconds += time.perf_counter() - start
        for r in rows:
            append_jsonl(job.out_dir / CURVE_ROWS_FILE, r)
        self.rows.extend(rows)
        kl = rows[0]["kl_bits"] if rows else float("nan")
        if not math.isfinite(kl):
            self.stop.stop(run.step, f"KL to the base is {kl}")


# ---------------------------------------------------------------------------------------------------------------
# The entry point


def run_posttrain(
    base_dir: str | os.PathLike,
    strategy: str,
    out_dir: str | os.PathLike,
    cfg: PosttrainConfig | str | dict | None = None,
    world_cfg: WorldConfig | None = None,
    progress: bool = True,
) -> Path:
    """Post-train the checkpoint in `base_dir` with `strategy` into `out_dir`; returns `out_dir/final`.

    `cfg` is a PosttrainConfig, a preset name (smoke, quick, gpu) or YAML path, a mapping of overrides on the quick
    preset, or None (quick). `world_cfg` defaults to the world the base was trained in. Resumes an interrupted run;
    returns at once if `out_dir` already holds this run's result. Raises PosttrainError (bad input, one line),
    CheckpointError (bad base) or PosttrainDiverged (NaN/inf; last good weights saved in `out_dir/last_good`).
    """
    spec = get_strategy(strategy)  # an unknown name is refused before anything is created
    cfg = resolve_posttrain_config(cfg)
    runtime = resolve_runtime(cfg.device)
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    with training_lock(out_dir), torch_settings(cfg.threads, runtime):  # the same one-writer lock as pretraining
        job = _prepare(spec, cfg, base_dir, out_dir, world_cfg, runtime.device)
        if (out_dir / CURVE_FILE).exists() and finished(out_dir / FINAL, job.fingerprint):
            return out_dir / FINAL
        _reraise_divergence(out_dir, job.fingerprint)
        return _train(job, progress)


def _train(job: PosttrainJob, progress: bool) -> Path:
    """Build the policy and its optimizer, resume, and run the strategy's step with the curve and divergence hooks."""
    cfg = job.cfg
    for p in job.ref.parameters():
        p.requires_grad_(False)
    policy, _ = load_checkpoint(job.base_dir, device=job.device, verify=False)
    policy.train()
    params = trainable_parameters(policy)
    peak_lr = cfg.peak_lr(job.algorithm)
    optimizer = adamw(params, cfg.weight_decay, learning_rate(1, cfg, peak_lr), betas=(0.9, 0.999))
    sampler = SequenceSampler(len(job.data.items), cfg.batch_size, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % (2**32))
    stop = DivergenceStop(job, policy, params)
    curve = Curve(job, policy, stop)
    run = ResumableRun(
        job.out_dir,
        job.fingerprint,
        cfg.steps,
        cfg.checkpoint_every,
        policy,
        optimizer,
        sampler,
        save=lambda directory, **kw: save_posttrain_checkpoint(directory, policy, job.tokenizer, job.world_cfg, **kw),
        guard=FiniteGuard(("loss", "kl_bits", "grad_norm"), job.device, stop.from_guard),
        hooks=[StepMetrics(cfg.log_every), curve],
        name=f"posttrain {job.spec.name}",
    )
    stop.run, stop.curve = run, curve
    run.resume()
    stop.remember(run.step)
    algo = AlgorithmForward(job.algorithm, cfg, job.data, job.tok_data, job.tokenizer, job.ref, job.device)
    algo.prepare()
    step_fn = _step_function(run, algo, policy, params, peak_lr, stop)
    run.fit(step_fn, progress, f"posttrain {job.spec.name} ({job.algorithm}, {job.device.type})")
    return _finish(job, run, curve, policy)


def _step_function(
    run: ResumableRun,
    algo: AlgorithmForward,
    policy: torch.nn.Module,
    params: list[torch.nn.Parameter],
    peak_lr: float,
    stop: DivergenceStop,
):
    """One post-training step; every value is checked before the update, so no non-finite step is ever applied."""
    cfg = algo.cfg

    def step_fn(step: int) -> StepResult:
        idx = run.sampler.next_indices().tolist()
        lr = learning_rate(step, cfg, peak_lr)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        loss, metrics, n_tokens = algo.step(policy, idx, step)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        run.guard.observe(step, {"loss": loss.detach(), "kl_bits": metrics.get("kl_bits"), "grad_norm": grad_norm})
        run.guard.check()
        stop.remember(step - 1)
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss.detach(), grad_norm.detach(), lr, n_tokens, metrics)

    return step_fn


def _finish(job: PosttrainJob, run: ResumableRun, curve: Curve, policy: torch.nn.Module) -> Path:
    """The curve, the final checkpoint (with pressure and timing), its model card; the rolling checkpoint goes."""
    write_curve(job.out_dir, curve.rows)
    info = {
        "step": run.step,
        "tokens": run.tokens,
        "fingerprint": job.fingerprint,
        "strategy": job.spec.name,
        "algorithm": job.algorithm,
        "base": str(job.base_dir),
        "kl_bits": next((r["kl_bits"] for r in reversed(curve.rows)), float("nan")),
        "train_seconds": round(run.clock.seconds, 3),
        "curve_eval_seconds": round(curve.seconds, 3),
    }
    final = save_posttrain_checkpoint(job.out_dir / FINAL, policy, job.tokenizer, job.world_cfg, info=info)
    last_measured = max((int(r["step"]) for r in curve.rows), default=-1)
    last_rows = [r for r in curve.rows if int(r["step"]) == last_measured]
    write_run_card(final, last_rows, job.base_dir, strategy=job.spec.name, seed=job.cfg.seed)
    shutil.rmtree(job.out_dir / CHECKPOINTS_DIR, ignore_errors=True)
    return final


def _reraise_divergence(out_dir: Path, fingerprint: str) -> None:
    marker = out_dir / DIVERGED_FILE
    if not marker.exists():
        return
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return
    if info.get("fingerprint") == fingerprint:
        raise PosttrainDiverged(info["message"], int(info["step"]), out_dir / LAST_GOOD, int(info["last_good_step"]))
