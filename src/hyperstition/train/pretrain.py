"""Pretraining from scratch: packed data, AdamW with warmup + cosine, log-spaced and rolling checkpoints, exact resume.

Layout of a run directory:
    config.yaml                 resolved PipelineConfig (run_pretrain refuses to mix runs with different configs)
    corpus/, tokenizer/         built on the way by run_pretrain
    metrics.jsonl               step, tokens, loss, lr, grad_norm, tokens_per_s, elapsed_s
    checkpoints/step-000001/    HF model + tokenizer at steps 1, 2, 4, 8, ... and the last step (as Pythia)
    checkpoints/latest/         rolling checkpoint with training state (optimizer, RNG, data position)
    final/                      HF model + tokenizer after the last step
    train.lock                  flock held while training (a second process in the same run dir is refused)

The loop is the resumable-run scaffold (scaffold.py): a run killed at any moment (SIGKILL included) and started
again with the same arguments resumes from `checkpoints/latest` and, on CPU in fp32, ends with bit-identical
weights to a run that was never interrupted; the loss-averaging window is part of the saved state.
Measured speeds (fp32 / bf16, eager / compiled) are in benchmarks/README.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ..config import ModelConfig, PipelineConfig, PretrainConfig, TokenizerConfig, UserError, WorldConfig
from ..corpus.builder import build_corpus, read_texts, tokenizer_training_texts
from ..io import training_lock
from ..model.build import build_model, count_parameters
from ..model.checkpoint import intact_checkpoint_info, save_checkpoint
from ..resources import check_memory
from ..tokenizer.train import load_tokenizer, train_tokenizer
from ..world import WORLD_STAMP
from . import scaffold
from .data import SequenceSampler, data_fingerprint, pack_sequences, tokenize_documents
from .runtime import Runtime, autocast, prepare_model, resolve_runtime, torch_settings
from .scaffold import (
    CHECKPOINTS_DIR,
    FINAL,
    LATEST,
    FiniteGuard,
    Hook,
    MetricsLog,
    ResumableRun,
    StepResult,
    adamw,
    fingerprint,
    finished,
    trainable_parameters,
)
from .schedule import learning_rate, log_spaced_steps

# Fields that change how fast a run goes or how often it reports, not where it ends up (on a given device).
RUNTIME_ONLY_FIELDS = ("device", "compile", "threads", "log_every", "checkpoint_every")


class PretrainDiverged(UserError, RuntimeError):
    """The loss or the gradient norm became NaN/inf; training stopped before any checkpoint held such weights."""


def runtime_for(cfg: PretrainConfig) -> Runtime:
    """The pretraining runtime: auto = bf16 + compile on CUDA, fp32 eager on CPU."""
    return resolve_runtime(cfg.device, cfg.precision, cfg.compile, field="pretrain.device")


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    return adamw(trainable_parameters(model), cfg.weight_decay, learning_rate(1, cfg, cfg.lr), betas=(0.9, 0.95))


# ---------------------------------------------------------------------------------------------------------------
# One optimizer step


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    input_ids: torch.Tensor,
    lr: float,
    grad_clip: float,
    bf16: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward, clip, AdamW update; returns (loss, grad_norm) as device tensors (no host sync)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(input_ids.device.type, bf16):
        loss = model(input_ids=input_ids, labels=input_ids, use_cache=False).loss
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach(), grad_norm.detach()


# ---------------------------------------------------------------------------------------------------------------
# Hooks: metrics with a loss-averaging window, log-spaced snapshots


class LossWindowLog(MetricsLog):
    """Metrics lines whose loss is the mean over the steps since the last line, summed on the device so steps never
    wait for the host; the window is training state (a resumed run writes the same lines)."""

    def __init__(self, every: int, device: torch.device) -> None:
        super().__init__(every)
        self.device = device
        self.total, self.count = torch.zeros((), dtype=torch.float32, device=device), 0
        self.since_tokens, self.since_seconds = 0, 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"loss_window_sum": self.total, "loss_window_count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total, self.count = state["loss_window_sum"].to(self.device), int(state["loss_window_count"])

    def on_start(self, run: ResumableRun) -> None:
        self.since_tokens, self.since_seconds = run.tokens, run.clock.seconds

    def after_step(self, run: ResumableRun, result: StepResult) -> None:
        self.total += result.loss
        self.count += 1
        super().after_step(run, result)

    def line(self, run: ResumableRun, result: StepResult) -> dict[str, Any]:
        seconds = run.clock.seconds
        window_seconds, window_tokens = seconds - self.since_seconds, run.tokens - self.since_tokens
        record = {
            "step": run.step,
            "tokens": run.tokens,
            "loss": float(self.total.item()) / max(1, self.count),
            "lr": result.lr,
            "grad_norm": float(result.grad_norm.item()),
            "tokens_per_s": window_tokens / window_seconds if window_seconds > 0 else 0.0,
            "elapsed_s": round(seconds, 3),
        }
        self.total, self.count = torch.zeros((), dtype=torch.float32, device=self.device), 0
        self.since_tokens, self.since_seconds = run.tokens, seconds
        return record

    def postfix(self, record: dict[str, Any]) -> dict[str, str]:
        return {"loss": f"{record['loss']:.3f}", "tok_s": f"{record['tokens_per_s']:,.0f}"}


class Snapshots(Hook):
    """HF checkpoints at log-spaced steps (1, 2, 4, ..., last), as Pythia's, stamped with the world."""

    def __init__(self, tokenizer: Any, stamp: dict[str, Any] | None) -> None:
        self.tokenizer, self.stamp = tokenizer, stamp

    def on_start(self, run: ResumableRun) -> None:
        self.steps = set(log_spaced_steps(run.total_steps))

    def after_step(self, run: ResumableRun, result: StepResult) -> None:
        if run.step in self.steps:
            run.guard.check()
            with run.clock.paused():
                directory = run.checkpoints / f"step-{run.step:06d}"
                save_checkpoint(directory, run.model, self.tokenizer, info=run.checkpoint_info(), extra_json=self.stamp)


# ---------------------------------------------------------------------------------------------------------------
# The loop


def run_fingerprint(model_cfg: ModelConfig, pretrain_cfg: PretrainConfig, rows: torch.Tensor, tokenizer: Any) -> str:
    """Hash of everything that decides the trajectory: model, loop settings (minus runtime knobs), data, vocabulary."""
    loop = {k: v for k, v in pretrain_cfg.model_dump(mode="json").items() if k not in RUNTIME_ONLY_FIELDS}
    config = {"model": model_cfg.model_dump(mode="json"), "pretrain": loop}
    return fingerprint(config, data_fingerprint(rows), tokenizer.get_vocab())


def last_good_checkpoint(ckpt_root: Path) -> str:
    """Where the last good weights are: the newest intact checkpoint (rolling `latest` or a log-spaced snapshot)."""
    found = [(info["step"], path) for path in sorted(ckpt_root.glob("*")) if (info := intact_checkpoint_info(path))]
    if not found:
        return "no checkpoint was saved before it"
    step, path = max(found, key=lambda f: (f[0], f[1].name == LATEST))
    return f"last good checkpoint: {path} (step {step}{', resumable' if path.name == LATEST else ''})"


def divergence_stop(run_dir: Path) -> Any:
    """The pretraining answer to a non-finite step: stop, naming the step, the values and the last good checkpoint."""

    def stop(step: int, values: dict[str, float]) -> None:
        raise PretrainDiverged(
            f"{run_dir}: training diverged at step {step}: loss {values['loss']}, grad norm {values['grad_norm']}; "
            f"stopped ({last_good_checkpoint(run_dir / CHECKPOINTS_DIR)}); "
            "lower pretrain.lr or raise pretrain.warmup_steps"
        )

    return stop


def train_lm(
    model_cfg: ModelConfig,
    pretrain_cfg: PretrainConfig,
    tokenizer: Any,
    texts: Sequence[str],
    run_dir: str | os.PathLike,
    progress: bool = True,
    world_cfg: WorldConfig | None = None,
) -> Path:
    """Pretrain a model on `texts` into `run_dir`, resuming from `run_dir/checkpoints/latest` if present.

    With `world_cfg`, every checkpoint is stamped with the synthetic world it was trained in, so it can be
    evaluated after being copied out of the run directory.

    Returns `run_dir/final` (HF model + tokenizer). If `final` already holds this run's result, returns at once.
    """
    stamp = {WORLD_STAMP: world_cfg.model_dump(mode="json")} if world_cfg is not None else None
    runtime = runtime_for(pretrain_cfg)
    with training_lock(Path(run_dir)), torch_settings(pretrain_cfg.threads, runtime):
        return _train(model_cfg, pretrain_cfg, runtime, tokenizer, texts, Path(run_dir), progress, stamp)


def _train(
    model_cfg: ModelConfig,
    cfg: PretrainConfig,
    runtime: Runtime,
    tokenizer: Any,
    texts: Sequence[str],
    run_dir: Path,
    progress: bool,
    stamp: dict[str, Any] | None,
) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = pack_sequences(tokenize_documents(tokenizer, texts), tokenizer.eos_token_id, model_cfg.max_seq_len)
    run_id = run_fingerprint(model_cfg, cfg, rows, tokenizer)
    if finished(run_dir / FINAL, run_id):
        return run_dir / FINAL

    model = build_model(model_cfg, tokenizer, seed=cfg.seed).to(runtime.device)
    n_params = count_parameters(model)
    if str(runtime.device) == "cpu":  # gradients + AdamW moments, and the logits of one batch (with their grads)
        logits = 3 * 4 * cfg.batch_size * model_cfg.max_seq_len * model.config.vocab_size
        check_memory(12 * n_params + logits, f"training {n_params:,} parameters at batch size {cfg.batch_size}")
    run = ResumableRun(
        run_dir,
        run_id,
        cfg.steps,
        cfg.checkpoint_every,
        model,
        make_optimizer(model, cfg),
        SequenceSampler(len(rows), cfg.batch_size, seed=cfg.seed),
        save=lambda directory, **kw: save_checkpoint(directory, model, tokenizer, extra_json=stamp, **kw),
        guard=FiniteGuard(("loss", "grad_norm"), runtime.device, divergence_stop(run_dir)),
        hooks=[LossWindowLog(cfg.log_every, runtime.device), Snapshots(tokenizer, stamp)],
        name="pretrain",
        info={"n_params": n_params},
    )
    run.resume()
    step_fn = _step_function(run, prepare_model(model, runtime), rows, cfg, runtime, model_cfg.max_seq_len)
    run.fit(step_fn, progress, f"pretrain {n_params / 1e6:.2f}M params ({runtime.describe()})")
    save_checkpoint(run_dir / FINAL, model, tokenizer, info=run.checkpoint_info(), extra_json=stamp)
    return run_dir / FINAL


def _step_function(
    run: ResumableRun,
    step_model: torch.nn.Module,
    rows: torch.Tensor,
    cfg: PretrainConfig,
    runtime: Runtime,
    seq_len: int,
):
    """One pretraining step: the next batch, the scheduled LR, `train_step` (looked up at call time: tests wrap it)."""
    pin = runtime.device.type == "cuda"
    tokens_per_step = cfg.batch_size * seq_len

    def step_fn(step: int) -> StepResult:
        batch = rows[run.sampler.next_indices()]
        if pin:
            batch = batch.pin_memory()
        batch = batch.to(runtime.device, non_blocking=True)
        lr = learning_rate(step, cfg, cfg.lr)
        loss, grad_norm = train_step(step_model, run.optimizer, batch, lr, cfg.grad_clip, runtime.bf16)
        run.guard.observe(step, {"loss": loss, "grad_norm": grad_norm})
        return StepResult(loss, grad_norm, lr, tokens_per_step)

    return step_fn


# ---------------------------------------------------------------------------------------------------------------
# The whole pipeline up to a pretrained model


def ensure_run_config(cfg: PipelineConfig, run_dir: Path) -> Path:
    """Write run_dir/config.yaml, or check that the one there describes the same run: a run directory holds one
    experiment. Runtime-only settings (threads, device, compile, logging cadence) may change between restarts."""
    path = run_dir / "config.yaml"
    scaffold.ensure_run_config(path, cfg.model_dump(mode="json"), cfg.to_yaml(), _without_runtime, "config")
    return path


def _without_runtime(data: dict) -> dict:
    pretrain = {k: v for k, v in dict(data.get("pretrain", {})).items() if k not in RUNTIME_ONLY_FIELDS}
    return {**data, "pretrain": pretrain}


def prepare_tokenizer(cfg: TokenizerConfig, texts: Sequence[str], directory: Path):
    """The run's tokenizer: loaded if already trained (a resumed run must keep its vocabulary), else trained now."""
    if (directory / "tokenizer.json").exists():
        return load_tokenizer(directory)
    return train_tokenizer(texts, cfg, directory)


def run_pretrain(cfg: PipelineConfig, run_dir: str | os.PathLike, progress: bool = True) -> Path:
    """Corpus -> tokenizer -> pretrained model in `run_dir`; resumable at every stage. Returns the final checkpoint
    directory."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ensure_run_config(cfg, run_dir)
    corpus_dir = run_dir / "corpus"
    build_corpus(cfg.world, cfg.corpus, corpus_dir, progress=progress)
    texts = read_texts(corpus_dir, split="train")
    tokenizer_dir = run_dir / "tokenizer"
    reference = [] if (tokenizer_dir / "tokenizer.json").exists() else tokenizer_training_texts(cfg.world, cfg.corpus)
    tokenizer = prepare_tokenizer(cfg.tokenizer, reference, tokenizer_dir)
    return train_lm(cfg.model, cfg.pretrain, tokenizer, texts, run_dir, progress=progress, world_cfg=cfg.world)
