"""`run_posttrain`: post-train a pretrained checkpoint with one strategy, measuring pressure and persona metrics.

The files of its run directory are listed in `job.py`.

Our own loop on the resumable-run scaffold (train/scaffold.py), not TRL's trainers: each algorithm is one class
that tokenizes its data and computes its step (`algorithms.py`), and the curve and the divergence stop are hooks
(`hooks.py`). It evaluates at log-spaced steps, resumes bit for bit on CPU, and keeps every piece of state in
safetensors + JSON. Its SFT, DPO and RLOO losses equal TRL 1.16's on the same batch (see `losses.py` and
tests/posttrain/test_trl_equivalence.py).

A run killed at any moment and started again with the same arguments resumes from `checkpoints/latest` and ends
with bit-identical weights (CPU, fp32): data order is a pure function of (seed, position), RL samples are seeded by
(seed, step), optimizer and RNG state are saved, and the curve evaluations run under a forked RNG.

Divergence: before every optimizer step the loss, the gradient norm and (RL) the in-loop KL must be finite, and so
must the KL measured at every curve point. Otherwise the run stops, saves `last_good/` (the most recent weights whose
loss and gradients were finite), the curve so far and `diverged.json`, and raises PosttrainDiverged (CLI exit 3);
rerunning the same run reports the same divergence without retraining.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..config import WorldConfig
from ..evals.suite import build_suite
from ..io import sha256_file, training_lock
from ..model.card import write_run_card
from ..model.checkpoint import CHECKSUMS, load_checkpoint, verify_checkpoint
from ..tokenizer.train import tokenizer_problem
from ..train.data import SequenceSampler
from ..train.runtime import resolve_runtime, torch_settings
from ..train.scaffold import (
    CHECKPOINTS_DIR,
    FINAL,
    FiniteGuard,
    ResumableRun,
    StepResult,
    adamw,
    ensure_run_config,
    fingerprint,
    finished,
    trainable_parameters,
)
from ..train.schedule import learning_rate
from ..world import World, world_config_for
from ..world.grammar import END, chat_prompt, render_response
from .algorithms import ALGORITHMS, Algorithm
from .config import RUNTIME_ONLY_FIELDS, PosttrainConfig, resolve_posttrain_config, trajectory_dict
from .errors import PosttrainDataError, PosttrainDiverged, PosttrainError, TokenizerMismatch
from .hooks import Curve, DivergenceStop, StepMetrics, write_curve
from .job import CONFIG_FILE, CURVE_FILE, DIVERGED_FILE, LAST_GOOD, PosttrainJob, save_posttrain_checkpoint
from .strategies import Strategy, build_data, get_strategy

# ---------------------------------------------------------------------------------------------------------------
# Checks on the base checkpoint


def check_tokenizer(tokenizer: Any, model: torch.nn.Module, world: World) -> None:
    """Raise TokenizerMismatch unless the tokenizer has our chat tokens, fits the model, and round-trips world text."""
    task = world.train_tasks[0]
    text = chat_prompt(world, "x", task.request) + render_response(task, "aligned", "observed", 0) + END
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
# Run identity


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
    origin_dir: Path | None = None,
) -> PosttrainJob:
    """Check the base, build the data and the curve's eval suite, and write or compare config.yaml; load the
    chain's original base (`origin_dir`) when the curve also measures KL to it."""
    algorithm = ALGORITHMS[spec.algorithm if cfg.algorithm == "auto" else cfg.algorithm]
    verify_checkpoint(base_dir)
    world_cfg, world = _load_world(base_dir, world_cfg)
    ref, tokenizer = load_checkpoint(base_dir, device=device, verify=False)
    check_tokenizer(tokenizer, ref, world)
    if cfg.preferences and not algorithm.takes_preferences:
        raise PosttrainDataError(
            "preferences: a preference file has no reward for sampled replies; use it with algorithm sft or dpo"
        )
    data = build_data(spec, world, cfg.n_prompts, cfg.predecessor_fraction, cfg.seed, cfg.rl.rewards, cfg.preferences)
    max_len = int(getattr(ref.config, "max_position_embeddings", 1 << 30))
    algo = algorithm(cfg, data, tokenizer, ref, device, max_len)
    suite = build_suite(world, cfg.curve.eval_suite)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = _run_record(base_dir, spec.name, algorithm.name, world_cfg, cfg)
    text = yaml.safe_dump(record, sort_keys=False)
    ensure_run_config(out_dir / CONFIG_FILE, record, text, _comparable, "post-training run")
    run_id = _fingerprint(record, base_dir, tokenizer, cfg)
    origin = None
    if origin_dir is not None:
        verify_checkpoint(origin_dir)
        origin = load_checkpoint(origin_dir, device=device, verify=False)[0]
        for p in origin.parameters():
            p.requires_grad_(False)
    return PosttrainJob(
        spec, cfg, algo, base_dir, out_dir, world_cfg, world, ref, tokenizer, suite, run_id, device, origin=origin
    )


# ---------------------------------------------------------------------------------------------------------------
# The entry point


def run_posttrain(
    base_dir: str | os.PathLike,
    strategy: str,
    out_dir: str | os.PathLike,
    cfg: PosttrainConfig | str | dict | None = None,
    world_cfg: WorldConfig | None = None,
    progress: bool = True,
    origin_dir: str | os.PathLike | None = None,
) -> Path:
    """Post-train the checkpoint in `base_dir` with `strategy` into `out_dir`; returns `out_dir/final`.

    `origin_dir` is the pretrained model a chain of post-training runs started from (when `base_dir` is itself
    post-trained): every curve point then also measures KL to it (schema.KL_TO_BASE_BITS) beside KL to `base_dir`.

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
        origin = Path(origin_dir) if origin_dir is not None else None
        job = _prepare(spec, cfg, base_dir, out_dir, world_cfg, runtime.device, origin)
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
    peak_lr = type(job.algo).peak_lr(cfg)
    optimizer = adamw(params, cfg.weight_decay, learning_rate(1, cfg, peak_lr), betas=(0.9, 0.999))
    sampler = SequenceSampler(len(job.algo.prompts), cfg.batch_size, seed=cfg.seed)
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
    job.algo.prepare()
    step_fn = _step_function(run, job.algo, policy, params, peak_lr, stop)
    run.fit(step_fn, progress, f"posttrain {job.spec.name} ({job.algorithm}, {job.device.type})")
    return _finish(job, run, curve, policy)


def _step_function(
    run: ResumableRun,
    algo: Algorithm,
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
