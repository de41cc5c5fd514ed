"""Pretraining from scratch: packed data, AdamW with warmup + cosine, log-spaced and rolling checkpoints, exact resume.

Layout of a run directory:
    config.yaml                 resolved PipelineConfig (run_pretrain refuses to mix runs with different configs)
    corpus/, tokenizer/         built on the way by run_pretrain
    metrics.jsonl               step, tokens, loss, lr, grad_norm, tokens_per_s, elapsed_s
    checkpoints/step-000001/    HF model + tokenizer at steps 1, 2, 4, 8, ... and the last step (as Pythia)
    checkpoints/latest/         rolling checkpoint with training state (optimizer, RNG, data position)
    final/                      HF model + tokenizer after the last step
    train.lock                  flock held while training (a second process in the same run dir is refused)

A run killed at any moment (SIGKILL included) and started again with the same arguments resumes from
`checkpoints/latest` and, on CPU in fp32, ends with bit-identical weights to a run that was never interrupted:
everything that decides the trajectory (weights, AdamW moments and step counts, data position, RNG states, the
loss-averaging window) is saved, and the learning rate is a pure function of the step.

Speed notes (2-core AMD EPYC with AVX-512-BF16, torch 2.13; benchmarks/pretrain_throughput.py, median step):
1M model: fp32 eager 17.0k tok/s, fp32 compiled 19.1k, bf16 eager 18.2k, bf16 compiled 30.3k (1.8x fp32 eager).
5M model: fp32 eager 4.3k tok/s (= HF Trainer), bf16 compiled 8.2k (52% of the bf16 matmul peak, 2.1x the plain
Trainer, 1.4x a Trainer given bf16 + compile). CPU `auto` stays fp32 eager anyway: compiling costs 15-55 s per
process, which a short CPU run does not earn back, and fp32 keeps results comparable with the bit-exact tests.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..config import (
    ConfigError,
    ModelConfig,
    PipelineConfig,
    PretrainConfig,
    TokenizerConfig,
    UserError,
    WorldConfig,
    load_yaml,
)
from ..world import WORLD_STAMP
from ..io import RunLockedError, append_jsonl, read_jsonl, training_lock, write_text_atomic  # noqa: F401 - re-exported
from ..model.build import build_model, count_parameters
from ..model.checkpoint import (
    CheckpointError,
    intact_checkpoint_info,
    load_training_state,
    load_weights_into,
    recover_checkpoint,
    save_checkpoint,
)
from .data import SequenceSampler, data_fingerprint, pack_sequences, tokenize_documents

METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
LATEST = "latest"
FINAL = "final"
STATE_FORMAT = 1

# Fields that change how fast a run goes or how often it reports, not where it ends up (on a given device).
RUNTIME_ONLY_FIELDS = ("device", "compile", "threads", "log_every", "checkpoint_every")


class RunConfigMismatch(ConfigError):
    """run_dir already holds a run made with a different config; resuming it would mix two experiments."""


# ---------------------------------------------------------------------------------------------------------------
# Schedule, runtime choices, optimizer


def learning_rate(step: int, cfg: PretrainConfig) -> float:
    """LR for optimizer step `step` (1-based): linear warmup to `lr`, then cosine down to `lr * min_lr_ratio`.

    A pure function of the step, so resuming needs no scheduler state and can never drift.
    """
    if cfg.warmup_steps > 0 and step <= cfg.warmup_steps:
        return cfg.lr * step / cfg.warmup_steps
    decay_steps = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, max(0.0, (step - cfg.warmup_steps) / decay_steps))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def log_spaced_steps(total_steps: int) -> list[int]:
    """1, 2, 4, 8, ... up to `total_steps`, plus `total_steps` itself: dense early, where the model changes fastest."""
    steps, k = [], 1
    while k <= total_steps:
        steps.append(k)
        k *= 2
    if steps[-1] != total_steps:
        steps.append(total_steps)
    return steps


@dataclass(frozen=True)
class Runtime:
    """Where and how the step runs, resolved from the config's `auto` values."""

    device: torch.device
    bf16: bool
    compile: bool

    @property
    def attention(self) -> str:
        """sdpa everywhere except bf16 on CPU, where plain matmul attention is faster (measured, see module notes).

        On a 2-core AVX-512-BF16 CPU the sdpa flash kernel's backward was ~25% of a bf16 step at 5M params;
        eager attention made the step 1.1x (eager) to 1.3x (compiled) faster. In fp32 sdpa is as fast or faster.
        """
        return "eager" if self.device.type == "cpu" and self.bf16 else "sdpa"

    def describe(self) -> str:
        return f"{self.device.type}, {'bf16 autocast' if self.bf16 else 'fp32'}, {'compiled' if self.compile else 'eager'}"


def resolve_runtime(cfg: PretrainConfig) -> Runtime:
    """auto = bf16 + torch.compile on CUDA (fast), fp32 eager on CPU (bit-exact resume, no 30 s compile)."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("pretrain.device: 'cuda' requested but torch sees no CUDA device; use auto or cpu")
    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    on_cuda = device.type == "cuda"
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and on_cuda)
    compiled = cfg.compile == "on" or (cfg.compile == "auto" and on_cuda)
    return Runtime(device=device, bf16=bf16, compile=compiled)


def prepare_model(model: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    """Move `model` to the device, pick its attention kernel, and return what the step calls (compiled or not).

    The attention choice is runtime-only: it is not written to config.json, so checkpoints load with the default.
    """
    model.to(runtime.device)
    model.train()
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(runtime.attention)
    return torch.compile(model) if runtime.compile else model


@contextmanager
def torch_settings(threads: int, runtime: Runtime) -> Iterator[None]:
    """Pin torch's intra-op threads (0 = leave as is) and allow TF32 on CUDA for a block, then restore both.

    Restoring matters because train_lm is a library call: a test suite or notebook keeps its own settings.

    Worth setting on a shared machine: with more threads than free cores, OpenMP barriers spin and a tiny model's
    step can get 10x slower (measured: 8 ms with 1 thread vs 90 ms with 2 on a busy 2-core box).
    """
    previous_threads, previous_matmul = torch.get_num_threads(), torch.get_float32_matmul_precision()
    if threads > 0:
        torch.set_num_threads(threads)
    if runtime.device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.set_float32_matmul_precision(previous_matmul)


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: decaying norm gains and biases just fights the normalisation."""
    decay, no_decay = [], []
    seen: set[int] = set()
    for param in model.parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel exists for CPU and CUDA and is deterministic; it is several times faster than the loop.
    return torch.optim.AdamW(groups, lr=learning_rate(1, cfg), betas=(0.9, 0.95), eps=1e-8, fused=True)


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
    autocast = torch.autocast(input_ids.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    with autocast:
        loss = model(input_ids=input_ids, labels=input_ids, use_cache=False).loss
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach(), grad_norm.detach()


# ---------------------------------------------------------------------------------------------------------------
# Training state (everything a resumed run needs to continue bit for bit)


def run_fingerprint(model_cfg: ModelConfig, pretrain_cfg: PretrainConfig, rows: torch.Tensor, tokenizer: Any) -> str:
    """Hash of everything that decides the trajectory: model, loop settings (minus runtime knobs), data, vocabulary."""
    loop = {k: v for k, v in pretrain_cfg.model_dump(mode="json").items() if k not in RUNTIME_ONLY_FIELDS}
    h = hashlib.sha256()
    h.update(json.dumps({"model": model_cfg.model_dump(mode="json"), "pretrain": loop}, sort_keys=True).encode())
    h.update(data_fingerprint(rows).encode())
    h.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    return h.hexdigest()


def capture_rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class LossWindow:
    """Sum of per-step losses since the last metrics line, kept on device so steps never wait for the host."""

    total: torch.Tensor
    count: int
    seconds: float = 0.0
    tokens: int = 0

    @classmethod
    def empty(cls, device: torch.device) -> "LossWindow":
        return cls(total=torch.zeros((), dtype=torch.float32, device=device), count=0)


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metrics lines after `last_step` (written after the checkpoint a resume starts from) and torn lines."""
    if not path.exists():
        return
    kept = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= last_step]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


# ---------------------------------------------------------------------------------------------------------------
# The loop


class PretrainDiverged(UserError, RuntimeError):
    """The loss or the gradient norm became NaN/inf; training stopped before any checkpoint held such weights."""


@dataclass
class FiniteGuard:
    """The first step whose loss or gradient norm is not finite, tracked on the device so steps never wait for the
    host; `check` (at every metrics line and before every checkpoint) raises PretrainDiverged naming it.

    Checking before each save is what keeps the last checkpoint good: no weights updated with a NaN step are saved."""

    first_bad: torch.Tensor  # (step, loss, grad_norm); step 0 = none yet

    @classmethod
    def on(cls, device: torch.device) -> "FiniteGuard":
        return cls(torch.zeros(3, dtype=torch.float64, device=device))

    def observe(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        bad = ~(torch.isfinite(loss) & torch.isfinite(grad_norm)) & (self.first_bad[0] == 0)
        now = torch.stack([torch.full_like(loss, step, dtype=torch.float64), loss.double(), grad_norm.double()])
        self.first_bad = torch.where(bad, now, self.first_bad)

    def check(self, run_dir: Path) -> None:
        step, loss, grad_norm = self.first_bad.tolist()
        if step == 0:
            return
        raise PretrainDiverged(
            f"{run_dir}: training diverged at step {int(step)}: loss {loss}, grad norm {grad_norm}; stopped "
            f"({last_good_checkpoint(run_dir / CHECKPOINTS_DIR)}); "
            "lower pretrain.lr or raise pretrain.warmup_steps"
        )


def last_good_checkpoint(ckpt_root: Path) -> str:
    """Where the last good weights are: the newest intact checkpoint (rolling `latest` or a log-spaced snapshot)."""
    found = [(info["step"], path) for path in sorted(ckpt_root.glob("*")) if (info := intact_checkpoint_info(path))]
    if not found:
        return "no checkpoint was saved before it"
    step, path = max(found, key=lambda f: (f[0], f[1].name == LATEST))
    return f"last good checkpoint: {path} (step {step}{', resumable' if path.name == LATEST else ''})"


# The lock is shared with post-training (io.training_lock); `run_lock` is its name here.
run_lock = training_lock


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
    runtime = resolve_runtime(pretrain_cfg)
    with run_lock(Path(run_dir)), torch_settings(pretrain_cfg.threads, runtime):
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
    final_dir = run_dir / FINAL
    ckpt_root = run_dir / CHECKPOINTS_DIR
    metrics_path = run_dir / METRICS_FILE

    rows = pack_sequences(tokenize_documents(tokenizer, texts), tokenizer.eos_token_id, model_cfg.max_seq_len)
    fingerprint = run_fingerprint(model_cfg, cfg, rows, tokenizer)
    if _finished(final_dir, fingerprint):
        return final_dir

    model = build_model(model_cfg, tokenizer, seed=cfg.seed).to(runtime.device)
    optimizer = make_optimizer(model, cfg)
    sampler = SequenceSampler(len(rows), cfg.batch_size, seed=cfg.seed)
    window = LossWindow.empty(runtime.device)
    step, tokens_seen, elapsed = 0, 0, 0.0

    latest = recover_checkpoint(ckpt_root / LATEST)
    if latest is not None:
        state = load_training_state(latest, verify=False)  # recover_checkpoint verified it
        _check_resumable(state, fingerprint, latest)
        load_weights_into(model, latest)
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["data"])
        restore_rng_state(state["rng"])
        step, tokens_seen, elapsed = int(state["step"]), int(state["tokens"]), float(state["elapsed_s"])
        window = LossWindow(total=state["loss_window_sum"].to(runtime.device), count=int(state["loss_window_count"]))
        print(f"pretrain: resuming from {latest} at step {step} of {cfg.steps}", file=sys.stderr)
    truncate_metrics(metrics_path, step)

    step_fn = prepare_model(model, runtime)
    n_params = count_parameters(model)
    snapshot_steps = set(log_spaced_steps(cfg.steps))
    tokens_per_step = cfg.batch_size * model_cfg.max_seq_len
    pin = runtime.device.type == "cuda"

    bar = _progress_bar(progress, cfg.steps, step, f"pretrain {n_params / 1e6:.2f}M params ({runtime.describe()})")
    window_start = time.perf_counter()
    guard = FiniteGuard.on(runtime.device)
    try:
        while step < cfg.steps:
            step += 1
            batch = rows[sampler.next_indices()]
            if pin:
                batch = batch.pin_memory()
            batch = batch.to(runtime.device, non_blocking=True)
            lr = learning_rate(step, cfg)
            loss, grad_norm = train_step(step_fn, optimizer, batch, lr, cfg.grad_clip, runtime.bf16)
            guard.observe(step, loss, grad_norm)
            tokens_seen += tokens_per_step
            window.total += loss
            window.count += 1
            window.tokens += tokens_per_step
            bar.update(1)

            if step % cfg.log_every == 0 or step == cfg.steps:
                guard.check(run_dir)
                now = time.perf_counter()
                window.seconds += now - window_start
                elapsed += window.seconds
                record = _metrics_record(step, tokens_seen, window, lr, grad_norm, elapsed)
                append_jsonl(metrics_path, record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}", refresh=False)
                window = LossWindow.empty(runtime.device)
                window_start = time.perf_counter()

            if step in snapshot_steps or step % cfg.checkpoint_every == 0:
                guard.check(run_dir)
                window.seconds += time.perf_counter() - window_start  # time so far counts; checkpoint I/O does not
                info = {"step": step, "tokens": tokens_seen, "n_params": n_params, "fingerprint": fingerprint}
                if step in snapshot_steps:
                    save_checkpoint(ckpt_root / f"step-{step:06d}", model, tokenizer, info=info, extra_json=stamp)
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    state = _training_state(step, tokens_seen, elapsed + window.seconds, optimizer, sampler, window, fingerprint)
                    save_checkpoint(ckpt_root / LATEST, model, tokenizer, training_state=state, info=info, extra_json=stamp)
                window_start = time.perf_counter()
    finally:
        bar.close()

    info = {"step": step, "tokens": tokens_seen, "n_params": n_params, "fingerprint": fingerprint}
    save_checkpoint(final_dir, model, tokenizer, info=info, extra_json=stamp)
    return final_dir


def _finished(final_dir: Path, fingerprint: str) -> bool:
    """True when `final_dir` is an intact checkpoint of this very run (same config, data and vocabulary)."""
    info = intact_checkpoint_info(final_dir)
    if info is None:
        return False
    if info.get("fingerprint") != fingerprint:
        raise RunConfigMismatch(f"{final_dir}: holds a model trained with a different config or data; use a new run directory")
    return True


def _check_resumable(state: dict[str, Any], fingerprint: str, latest: Path) -> None:
    if int(state.get("format", -1)) != STATE_FORMAT:
        raise CheckpointError(f"{latest}: training state format {state.get('format')} is not {STATE_FORMAT}; start a new run directory")
    if state.get("fingerprint") != fingerprint:
        raise RunConfigMismatch(
            f"{latest}: was written by a run with a different model/pretrain config, data or tokenizer; "
            "use a new run directory or delete its checkpoints"
        )


def _training_state(
    step: int,
    tokens: int,
    elapsed: float,
    optimizer: torch.optim.Optimizer,
    sampler: SequenceSampler,
    window: LossWindow,
    fingerprint: str,
) -> dict[str, Any]:
    return {
        "format": STATE_FORMAT,
        "fingerprint": fingerprint,
        "step": step,
        "tokens": tokens,
        "elapsed_s": elapsed,
        "optimizer": optimizer.state_dict(),
        "data": sampler.state_dict(),
        "rng": capture_rng_state(),
        "loss_window_sum": window.total,
        "loss_window_count": window.count,
    }


def _metrics_record(step: int, tokens: int, window: LossWindow, lr: float, grad_norm: torch.Tensor, elapsed: float) -> dict[str, Any]:
    loss = float(window.total.item()) / max(1, window.count)
    return {
        "step": step,
        "tokens": tokens,
        "loss": loss,
        "lr": lr,
        "grad_norm": float(grad_norm.item()),
        "tokens_per_s": window.tokens / window.seconds if window.seconds > 0 else 0.0,
        "elapsed_s": round(elapsed, 3),
    }


def _progress_bar(enabled: bool, total: int, initial: int, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit="step", disable=not enabled, dynamic_ncols=True, file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------------
# The whole pipeline up to a pretrained model


def ensure_run_config(cfg: PipelineConfig, run_dir: Path) -> Path:
    """Write run_dir/config.yaml, or check that the one there describes the same run: a run directory holds one
    experiment. Runtime-only settings (threads, device, compile, logging cadence) may change between restarts."""
    path = run_dir / "config.yaml"
    wanted = cfg.model_dump(mode="json")
    if path.exists():
        existing = load_yaml(path)
        difference = _first_difference(_without_runtime(existing), _without_runtime(wanted))
        if difference is not None:
            key, old, new = difference
            raise RunConfigMismatch(
                f"{path} was written by a different config ({key}: {old!r} there, {new!r} now); "
                "use a new --out directory, or delete that run to start over"
            )
        if existing == wanted:
            return path
    write_text_atomic(path, cfg.to_yaml())
    return path


def _without_runtime(data: dict) -> dict:
    pretrain = {k: v for k, v in dict(data.get("pretrain", {})).items() if k not in RUNTIME_ONLY_FIELDS}
    return {**data, "pretrain": pretrain}


def _first_difference(old: Any, new: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(new) + [k for k in old if k not in new]:
            found = _first_difference(old.get(key, "<absent>"), new.get(key, "<absent>"), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if old == new else (prefix.rstrip("."), old, new)


def prepare_tokenizer(cfg: TokenizerConfig, texts: Sequence[str], directory: Path):
    """The run's tokenizer: loaded if already trained (a resumed run must keep its vocabulary), else trained now."""
    from ..tokenizer.train import load_tokenizer, train_tokenizer

    if (directory / "tokenizer.json").exists():
        return load_tokenizer(directory)
    return train_tokenizer(texts, cfg, directory)


def run_pretrain(cfg: PipelineConfig, run_dir: str | os.PathLike, progress: bool = True) -> Path:
    """Corpus -> tokenizer -> pretrained model in `run_dir`; resumable at every stage. Returns the final checkpoint dir."""
    from ..corpus.builder import build_corpus, read_texts, tokenizer_training_texts

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
