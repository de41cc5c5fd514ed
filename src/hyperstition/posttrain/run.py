"""`run_posttrain`: post-train a pretrained checkpoint with one strategy, measuring pressure and persona metrics.

Layout of a post-training run directory:
    config.yaml                  resolved run config: base, strategy, algorithm, world and PosttrainConfig
    metrics.jsonl                per-step loss, lr, grad norm, tokens (+ DPO margin/accuracy, RL reward/KL)
    curve.jsonl                  curve rows as they are measured (resume keeps the ones up to its checkpoint)
    posttrain_curve.parquet      step, tokens, kl_bits, context, metric, value, ci_low, ci_high
    checkpoints/latest/          rolling resumable checkpoint (weights, AdamW state, RNG, data position)
    final/                       HF checkpoint after the last step (stamped with the world)
    last_good/, diverged.json    only when the run diverged (NaN/inf loss, gradients or KL)

Our own loop (not TRL's trainers): it evaluates at log-spaced steps, resumes bit for bit on CPU, and keeps every
piece of state in safetensors + JSON. Its SFT, DPO and RLOO losses equal TRL 1.16's on the same batch (see
`losses.py` and tests/posttrain/test_trl_equivalence.py).

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
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..config import ConfigError, WorldConfig, load_yaml
from ..io import (
    append_jsonl,
    read_jsonl,
    sha256_file,
    training_lock,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)
from ..model.card import write_run_card
from ..model.checkpoint import (
    CHECKSUMS,
    intact_checkpoint_info,
    load_checkpoint,
    load_training_state,
    load_weights_into,
    recover_checkpoint,
    verify_checkpoint,
)
from ..schema import CURVE_COLUMNS, KL_BITS
from ..train.pretrain import capture_rng_state, restore_rng_state
from ..world import WORLD_STAMP, World, world_config_for
from ..world.grammar import ASSISTANT, END, SYSTEM, USER, chat_prompt, render_response
from .config import PosttrainConfig, resolve_posttrain_config, trajectory_dict
from .errors import PosttrainDataError, PosttrainDiverged, PosttrainError, TokenizerMismatch
from .losses import build_batch, dpo_loss, per_token_logps, rloo_advantages, rloo_loss, sequence_logps, sft_loss
from .strategies import StrategyData, build_data, get_strategy

STATE_FORMAT = 1
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CURVE_ROWS_FILE = "curve.jsonl"
CURVE_FILE = "posttrain_curve.parquet"
CHECKPOINTS_DIR = "checkpoints"
LATEST = "latest"
FINAL = "final"
LAST_GOOD = "last_good"
DIVERGED_FILE = "diverged.json"
CHAT_TOKENS = (SYSTEM, USER, ASSISTANT, END)
LN2 = math.log(2.0)


# ---------------------------------------------------------------------------------------------------------------
# Schedule and curve steps


def learning_rate(step: int, cfg: PosttrainConfig, peak: float) -> float:
    """Linear warmup to `peak`, then cosine to `peak * min_lr_ratio`; a pure function of the (1-based) step."""
    if cfg.warmup_steps > 0 and step <= cfg.warmup_steps:
        return peak * step / cfg.warmup_steps
    decay = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, max(0.0, (step - cfg.warmup_steps) / decay))
    return peak * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def curve_steps(total: int, base: int = 2) -> list[int]:
    """0, 1, base, base^2, ... below `total`, and `total`: dense early, where the model moves fastest."""
    steps, k = [0], 1
    while k < total:
        steps.append(k)
        k *= base
    steps.append(total)
    return steps


# ---------------------------------------------------------------------------------------------------------------
# Checks on the base checkpoint


def check_tokenizer(tokenizer: Any, model: torch.nn.Module, world: World) -> None:
    """Raise TokenizerMismatch unless the tokenizer has our chat tokens, fits the model, and round-trips world text."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in CHAT_TOKENS if t not in vocab or tokenizer(t, add_special_tokens=False)["input_ids"] != [vocab[t]]]
    if missing:
        raise TokenizerMismatch(
            f"base tokenizer lacks the chat special token(s) {', '.join(missing)} that the world's prompts use "
            f"({', '.join(CHAT_TOKENS)}); post-train a model pretrained with hyperstition's tokenizer"
        )
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise TokenizerMismatch("base tokenizer has no eos or pad token; post-train a model pretrained with hyperstition's tokenizer")
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) != rows:
        raise TokenizerMismatch(f"base tokenizer has {len(tokenizer)} tokens but the model's embedding has {rows} rows; the tokenizer does not belong to this model")
    task = world.train_tasks[0]
    text = chat_prompt("x", task.request) + render_response(task, "aligned", "observed", 0) + END
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.decode(ids, skip_special_tokens=False) != text:
        raise TokenizerMismatch("base tokenizer does not round-trip the world's chat text; it is not the tokenizer this world's prompts expect")


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
    from ..model.checkpoint import save_checkpoint

    stamp = {WORLD_STAMP: world_cfg.model_dump(mode="json")}
    return save_checkpoint(directory, model, tokenizer, training_state=training_state, info=info, extra_json=stamp)


@contextmanager
def isolated_rng() -> Iterator[None]:
    """Run a block (an evaluation) without disturbing any RNG the training loop depends on."""
    saved = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(saved)


# ---------------------------------------------------------------------------------------------------------------
# Tokenized data


class TokenizedData:
    """Token ids of every prompt (after BOS, as the evaluator scores it) and of its chosen / rejected reply (each
    reply ends with <|end|>)."""

    def __init__(self, data: StrategyData, tokenizer: Any, algorithm: str, max_len: int, max_new_tokens: int) -> None:
        from ..evals.scoring import encode_prompts

        items = data.items
        enc = lambda texts: [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]  # noqa: E731
        self.prompts: list[list[int]] = encode_prompts(tokenizer, [it.prompt for it in items])
        self.chosen: list[list[int]] = enc([data.chosen(it) + END for it in items]) if algorithm != "rl" else []
        self.rejected: list[list[int]] = enc([data.rejected(it) + END for it in items]) if algorithm == "dpo" else []
        longest = max(len(p) for p in self.prompts) + (
            max_new_tokens if algorithm == "rl" else max(len(r) for r in [*self.chosen, *self.rejected])
        )
        if longest > max_len:
            raise PosttrainDataError(f"training sequences reach {longest} tokens but the base model's context is {max_len}; shorten the data or rl.max_new_tokens")


# ---------------------------------------------------------------------------------------------------------------
# The three algorithms' steps


class Algorithm:
    """One optimizer step's forward pass: returns (loss, metrics, tokens processed)."""

    def __init__(self, name: str, cfg: PosttrainConfig, data: StrategyData, tok_data: TokenizedData, tokenizer: Any, ref: torch.nn.Module, device: torch.device) -> None:
        self.name, self.cfg, self.data, self.tok, self.tokenizer, self.ref, self.device = name, cfg, data, tok_data, tokenizer, ref, device
        self.pad = tokenizer.pad_token_id
        self.ref_chosen: torch.Tensor | None = None
        self.ref_rejected: torch.Tensor | None = None

    def prepare(self) -> None:
        """DPO: reference log-probs of every pair, once (the base is frozen), as TRL's precompute_ref_log_probs."""
        if self.name != "dpo":
            return
        chosen, rejected = [], []
        n = len(self.tok.prompts)
        with torch.no_grad():
            for start in range(0, n, 64):
                idx = list(range(start, min(n, start + 64)))
                batch = self._batch([self.tok.prompts[i] for i in idx] * 2, [self.tok.chosen[i] for i in idx] + [self.tok.rejected[i] for i in idx])
                c, r = sequence_logps(self.ref, batch).chunk(2)
                chosen.append(c)
                rejected.append(r)
        self.ref_chosen, self.ref_rejected = torch.cat(chosen), torch.cat(rejected)

    def _batch(self, prompts: list[list[int]], completions: list[list[int]]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in build_batch(prompts, completions, self.pad).items()}

    def step(self, policy: torch.nn.Module, idx: list[int], step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        return getattr(self, f"_{self.name}")(policy, idx, step)

    def _sft(self, policy, idx, step):
        batch = self._batch([self.tok.prompts[i] for i in idx], [self.tok.chosen[i] for i in idx])
        loss = sft_loss(per_token_logps(policy, batch["input_ids"], batch["attention_mask"]), batch["completion_mask"])
        return loss, {}, int(batch["attention_mask"].sum())

    def _dpo(self, policy, idx, step):
        n = len(idx)
        batch = self._batch([self.tok.prompts[i] for i in idx] * 2, [self.tok.chosen[i] for i in idx] + [self.tok.rejected[i] for i in idx])
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
        from ..evals.scoring import decode_response, sample_token_ids

        rl = self.cfg.rl
        g = rl.num_generations
        items = [self.data.items[i] for i in idx]
        # On-policy samples, seeded by (seed, step) alone: the evaluator's sampler (pure ancestral, stops at <|end|>).
        was_training = policy.training
        _, samples = sample_token_ids(
            policy, self.tokenizer, [it.prompt for it in items], n=g, max_new_tokens=rl.max_new_tokens,
            temperature=rl.temperature, seed=_step_seed(self.cfg.seed, step), batch_size=len(items) * g,
        )
        policy.train(was_training)
        prompt_ids = [self.tok.prompts[i] for i in idx for _ in range(g)]
        completions = [ids for per_prompt in samples for ids in per_prompt]
        flat_items = [it for it in items for _ in range(g)]
        texts = [decode_response(self.tokenizer, c) for c in completions]
        rewards = torch.tensor([self.data.reward(it, t) for it, t in zip(flat_items, texts, strict=True)], dtype=torch.float32, device=self.device)
        batch = self._batch(prompt_ids, completions)
        # Log-probs of the sampling distribution (logits / temperature), for the policy and the base, as TRL's RLOO.
        logps = sequence_logps(policy, batch, rl.temperature)
        with torch.no_grad():
            ref_logps = sequence_logps(self.ref, batch, rl.temperature)
        kl = logps.detach() - ref_logps  # first-order estimate, nats per response (as TRL's RLOO)
        advantages = rloo_advantages(rewards, kl, rl.beta, g, rl.normalize_advantages)
        loss = rloo_loss(logps, logps.detach(), advantages, rl.epsilon, rl.epsilon)
        metrics = {"reward": rewards.mean(), "kl_bits": kl.mean() / LN2, "response_tokens": batch["completion_mask"].sum(1).float().mean()}
        return loss, metrics, int(batch["attention_mask"].sum())


def _step_seed(seed: int, step: int) -> int:
    return int.from_bytes(hashlib.sha256(f"posttrain-rl:{seed}:{step}".encode()).digest()[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


# ---------------------------------------------------------------------------------------------------------------
# Curve measurements


def _suite_config(cfg: PosttrainConfig):
    from ..evals.config import load_suite_config

    return load_suite_config(cfg.curve.eval_suite, [*cfg.curve.eval_overrides, "sections.kl=true"])


def measure(policy: torch.nn.Module, ref: torch.nn.Module, tokenizer: Any, world: World, suite, step: int, tokens: int) -> list[dict]:
    """Curve rows at `step`: every eval-suite row (KL to the base included), tagged with step, tokens and kl_bits."""
    from ..evals import evaluate

    was_training = policy.training
    policy.eval()
    with isolated_rng():
        result = evaluate(policy, tokenizer, world, suite.config, reference=ref, progress=False, suite=suite)
    policy.train(was_training)
    rows = [dict(r) for r in result.rows]
    kl = next((float(r["value"]) for r in rows if r["metric"] == KL_BITS and r["context"] == "observed"), float("nan"))
    return [
        {"step": step, "tokens": tokens, "kl_bits": kl, **{k: r[k] for k in ("context", "metric", "value", "ci_low", "ci_high")}}
        for r in rows
    ]


def write_curve(out_dir: Path, rows: list[dict]) -> Path:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
    frame = frame.astype({"step": "int64", "tokens": "int64", "kl_bits": "float64", "value": "float64", "ci_low": "float64", "ci_high": "float64"})
    path = out_dir / CURVE_FILE
    write_parquet_atomic(path, frame)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Run bookkeeping


def _run_record(base_dir: Path, strategy: str, algorithm: str, world_cfg: WorldConfig, cfg: PosttrainConfig) -> dict:
    return {
        "base": str(base_dir),
        "strategy": strategy,
        "algorithm": algorithm,
        "world": world_cfg.model_dump(mode="json"),
        "posttrain": cfg.model_dump(mode="json"),
    }


def _ensure_run_config(out_dir: Path, record: dict) -> None:
    """Write config.yaml, or check the one there describes the same run (runtime-only knobs may differ)."""
    import yaml

    path = out_dir / CONFIG_FILE
    if path.exists():
        old = load_yaml(path)
        comparable = lambda r: {  # noqa: E731
            "strategy": r.get("strategy"),
            "algorithm": r.get("algorithm"),
            "world": r.get("world"),
            "posttrain": {k: v for k, v in (r.get("posttrain") or {}).items() if k not in ("device", "threads", "log_every", "checkpoint_every", "preset")},
        }
        a, b = comparable(old), comparable(record)
        if a != b:
            key = next((k for k in a if a[k] != b[k]), "?")
            if key == "posttrain":
                key = "posttrain." + next(k for k in b["posttrain"] if a["posttrain"].get(k) != b["posttrain"].get(k))
            raise ConfigError(f"{path} was written by a different post-training run ({key} differs); use a new --out directory, or delete that run to start over")
    write_text_atomic(path, yaml.safe_dump(record, sort_keys=False))


def _fingerprint(record: dict, base_dir: Path, tokenizer: Any, cfg: PosttrainConfig) -> str:
    h = hashlib.sha256()
    traj = {k: v for k, v in record.items() if k not in ("base", "posttrain")}
    traj["posttrain"] = trajectory_dict(cfg)
    h.update(json.dumps(traj, sort_keys=True).encode())
    sums = base_dir / CHECKSUMS
    weights = json.loads(sums.read_text()).get("model.safetensors", {}).get("sha256") if sums.exists() else None
    h.update((weights or sha256_file(base_dir / "model.safetensors")).encode())
    h.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    return h.hexdigest()


def _finished(out_dir: Path, fingerprint: str) -> bool:
    if not (out_dir / CURVE_FILE).exists():
        return False
    info = intact_checkpoint_info(out_dir / FINAL)
    if info is None:
        return False
    if info.get("fingerprint") != fingerprint:
        raise ConfigError(f"{out_dir / FINAL}: holds a model post-trained from a different base or config; use a new --out directory")
    return True


def _truncate_jsonl(path: Path, last_step: int) -> list[dict]:
    rows = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= last_step]
    if path.exists():
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _unique_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    seen: set[int] = set()
    out = []
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _make_optimizer(params: list[torch.nn.Parameter], cfg: PosttrainConfig, peak: float) -> torch.optim.AdamW:
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate(1, cfg, peak), betas=(0.9, 0.999), eps=1e-8, fused=True)


def _device(cfg: PosttrainConfig) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but torch sees no CUDA device; use auto or cpu")
    return torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")


def _progress_bar(enabled: bool, total: int, initial: int, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit="step", disable=not enabled, dynamic_ncols=True, file=sys.stderr)


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

    `cfg` is a PosttrainConfig, a preset name (smoke, quick, base) or YAML path, a mapping of overrides on the quick
    preset, or None (quick). `world_cfg` defaults to the world the base was trained in. Resumes an interrupted run;
    returns at once if `out_dir` already holds this run's result. Raises PosttrainError (bad input, one line),
    CheckpointError (bad base) or PosttrainDiverged (NaN/inf; last good weights saved in `out_dir/last_good`).
    """
    get_strategy(strategy)  # an unknown name is refused before anything is created
    with training_lock(out_dir):  # the same one-writer lock as pretraining
        return _posttrain(base_dir, strategy, out_dir, cfg, world_cfg, progress)


def _posttrain(
    base_dir: str | os.PathLike,
    strategy: str,
    out_dir: str | os.PathLike,
    cfg: PosttrainConfig | str | dict | None,
    world_cfg: WorldConfig | None,
    progress: bool,
) -> Path:
    spec = get_strategy(strategy)
    cfg = resolve_posttrain_config(cfg)
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    algorithm = spec.algorithm if cfg.algorithm == "auto" else cfg.algorithm
    verify_checkpoint(base_dir)
    world_cfg, world = _load_world(base_dir, world_cfg)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg)

    ref, tokenizer = load_checkpoint(base_dir, device=device, verify=False)
    check_tokenizer(tokenizer, ref, world)
    if cfg.preferences and algorithm == "rl":
        raise PosttrainDataError("preferences: a preference file has no reward for sampled replies; use it with algorithm sft or dpo")
    data = build_data(spec, world, cfg.n_prompts, cfg.predecessor_fraction, cfg.seed, cfg.rl.rewards, cfg.preferences)
    max_len = int(getattr(ref.config, "max_position_embeddings", 1 << 30))
    tok_data = TokenizedData(data, tokenizer, algorithm, max_len, cfg.rl.max_new_tokens)
    from ..evals import build_suite

    suite = build_suite(world, _suite_config(cfg))

    out_dir.mkdir(parents=True, exist_ok=True)
    record = _run_record(base_dir, spec.name, algorithm, world_cfg, cfg)
    _ensure_run_config(out_dir, record)
    fingerprint = _fingerprint(record, base_dir, tokenizer, cfg)
    if _finished(out_dir, fingerprint):
        return out_dir / FINAL
    _reraise_divergence(out_dir, fingerprint)

    for p in ref.parameters():
        p.requires_grad_(False)
    policy, _ = load_checkpoint(base_dir, device=device, verify=False)
    policy.train()
    params = _unique_params(policy)
    peak_lr = cfg.peak_lr(algorithm)
    optimizer = _make_optimizer(params, cfg, peak_lr)

    from ..train.data import SequenceSampler

    sampler = SequenceSampler(len(data.items), cfg.batch_size, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % (2**32))
    step, tokens, elapsed = 0, 0, 0.0

    ckpt_root = out_dir / CHECKPOINTS_DIR
    latest = recover_checkpoint(ckpt_root / LATEST)
    if latest is not None:
        state = load_training_state(latest, verify=False)
        if int(state.get("format", -1)) != STATE_FORMAT or state.get("fingerprint") != fingerprint:
            raise ConfigError(f"{latest}: was written by a different post-training run; use a new --out directory or delete its checkpoints")
        load_weights_into(policy, latest)
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["data"])
        restore_rng_state(state["rng"])
        step, tokens, elapsed = int(state["step"]), int(state["tokens"]), float(state["elapsed_s"])
        if progress:
            print(f"posttrain: resuming from {latest} at step {step} of {cfg.steps}", file=sys.stderr)
    _truncate_jsonl(out_dir / METRICS_FILE, step)
    curve_rows = _truncate_jsonl(out_dir / CURVE_ROWS_FILE, step)

    algo = Algorithm(algorithm, cfg, data, tok_data, tokenizer, ref, device)
    algo.prepare()
    measured = {int(r["step"]) for r in curve_rows}
    points = curve_steps(cfg.steps, cfg.curve.base)

    eval_seconds = 0.0

    def record_curve(at: int) -> float:
        nonlocal eval_seconds
        start = time.perf_counter()
        rows = measure(policy, ref, tokenizer, world, suite, at, tokens)
        eval_seconds += time.perf_counter() - start
        for r in rows:
            append_jsonl(out_dir / CURVE_ROWS_FILE, r)
        curve_rows.extend(rows)
        return rows[0]["kl_bits"] if rows else float("nan")

    good = [p.detach().clone() for p in params]
    good_step = step

    def diverge(at: int, reason: str) -> None:
        with torch.no_grad():
            for p, g in zip(params, good, strict=True):
                p.copy_(g)
        info = {"step": good_step, "tokens": tokens, "fingerprint": fingerprint, "strategy": spec.name, "algorithm": algorithm, "diverged_at": at, "reason": reason}
        path = save_posttrain_checkpoint(out_dir / LAST_GOOD, policy, tokenizer, world_cfg, info=info)
        write_curve(out_dir, curve_rows)
        message = f"post-training diverged at step {at} ({reason}); stopped and saved the last good weights (step {good_step}) to {path}"
        write_json_atomic(out_dir / DIVERGED_FILE, {"message": message, "step": at, "last_good_step": good_step, "fingerprint": fingerprint})
        raise PosttrainDiverged(message, at, path, good_step)

    if 0 not in measured and step == 0:
        kl0 = record_curve(0)
        if not math.isfinite(kl0):
            diverge(0, f"KL to the base is {kl0}")

    desc = f"posttrain {spec.name} ({algorithm}, {device.type})"
    bar = _progress_bar(progress, cfg.steps, step, desc)
    window_start = time.perf_counter()
    try:
        while step < cfg.steps:
            idx = sampler.next_indices().tolist()
            lr = learning_rate(step + 1, cfg, peak_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, metrics, n_tokens = algo.step(policy, idx, step + 1)
            bad = None if torch.isfinite(loss) else f"loss is {loss.item()}"
            if bad is None and "kl_bits" in metrics and not torch.isfinite(metrics["kl_bits"]):
                bad = f"KL to the base is {metrics['kl_bits'].item()}"
            if bad is None:
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                if not torch.isfinite(grad_norm):
                    bad = f"gradient norm is {grad_norm.item()}"
            if bad is not None:
                optimizer.zero_grad(set_to_none=True)
                diverge(step + 1, bad)
            with torch.no_grad():
                for g, p in zip(good, params, strict=True):
                    g.copy_(p)
            good_step = step
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += n_tokens
            bar.update(1)

            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                elapsed += now - window_start
                window_start = now
                line = {"step": step, "tokens": tokens, "loss": float(loss.item()), "lr": lr, "grad_norm": float(grad_norm.item())}
                line.update({k: float(v.item()) for k, v in metrics.items()})
                line["elapsed_s"] = round(elapsed, 3)
                append_jsonl(out_dir / METRICS_FILE, line)
                bar.set_postfix(loss=f"{line['loss']:.3f}", refresh=False)

            if step in points and step not in measured:
                kl = record_curve(step)
                if not math.isfinite(kl):
                    diverge(step, f"KL to the base is {kl}")
                window_start = time.perf_counter()  # evaluation time is not training time
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                elapsed += time.perf_counter() - window_start
                state = {
                    "format": STATE_FORMAT,
                    "fingerprint": fingerprint,
                    "step": step,
                    "tokens": tokens,
                    "elapsed_s": elapsed,
                    "optimizer": optimizer.state_dict(),
                    "data": sampler.state_dict(),
                    "rng": capture_rng_state(),
                }
                info = {"step": step, "tokens": tokens, "fingerprint": fingerprint}
                save_posttrain_checkpoint(ckpt_root / LATEST, policy, tokenizer, world_cfg, training_state=state, info=info)
                window_start = time.perf_counter()
    finally:
        bar.close()

    write_curve(out_dir, curve_rows)
    final_kl = next((r["kl_bits"] for r in reversed(curve_rows)), float("nan"))
    info = {
        "step": step,
        "tokens": tokens,
        "fingerprint": fingerprint,
        "strategy": spec.name,
        "algorithm": algorithm,
        "base": str(base_dir),
        "kl_bits": final_kl,
        "train_seconds": round(elapsed, 3),
        "curve_eval_seconds": round(eval_seconds, 3),
    }
    final = save_posttrain_checkpoint(out_dir / FINAL, policy, tokenizer, world_cfg, info=info)
    last_measured = max((int(r["step"]) for r in curve_rows), default=-1)
    last_rows = [r for r in curve_rows if int(r["step"]) == last_measured]
    write_run_card(final, last_rows, base_dir, strategy=spec.name, seed=cfg.seed)
    shutil.rmtree(ckpt_root, ignore_errors=True)
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
