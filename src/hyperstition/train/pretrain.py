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
Measured speeds (fp32 / bf16, eager / compiled) are in benchmarks/README.md. Under torchrun the same loop runs
data-parallel over the launched processes, rank 0 writing this layout (distributed.py).
"""

from __future__ import annotations

import os
import shutil
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, ContextManager, NamedTuple, Sequence

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
from ..corpus.builder import (
    build_corpus,
    config_hash,
    intact_manifest,
    read_texts,
    tokenizer_reference,
    tokenizer_training_texts,
)
from ..io import training_lock
from ..model.build import build_model, count_parameters
from ..model.checkpoint import CheckpointError, intact_checkpoint_info, save_checkpoint
from ..resources import check_memory
from ..tokenizer.train import load_tokenizer, train_tokenizer
from ..world import WORLD_STAMP
from . import cache, distributed, scaffold
from .data import (
    DataError,
    PhasedSampler,
    SequenceSampler,
    data_fingerprint,
    model_inputs,
    pack_sequences,
    pack_whole_documents,
    tokenize_documents,
)
from .distributed import Ranks
from .optim import OptimizerPair, muon_with_adamw, set_learning_rate
from .runtime import Runtime, prepare_model, resolve_runtime, torch_settings
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


def runtime_for(cfg: PretrainConfig, ranks: Ranks = Ranks()) -> Runtime:
    """The pretraining runtime: auto = bf16 + compile on CUDA, fp32 eager on CPU; under torchrun on CUDA, the GPU
    of this process's local rank."""
    runtime = resolve_runtime(
        cfg.device, cfg.precision, cfg.compile, "pretrain.device", allow_tf32=True, section="pretrain."
    )
    # Only Muon multiplies bf16 tensors in its step; AdamW's would pay the mode's per-op dispatch for nothing.
    update_gemms_in_fp32 = runtime.update_gemms_in_fp32 and cfg.optimizer == "muon"
    return replace(
        runtime, device=distributed.rank_device(runtime.device, ranks), update_gemms_in_fp32=update_gemms_in_fp32
    )


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer | OptimizerPair:
    """`pretrain.optimizer`: AdamW on every parameter, or Muon on the hidden matrices with AdamW on the rest."""
    lr = learning_rate(1, cfg, cfg.lr)
    if cfg.optimizer == "muon":
        return muon_with_adamw(model, lr, cfg.muon_lr / cfg.lr, cfg.weight_decay, betas=(0.9, 0.95))
    return adamw(trainable_parameters(model), cfg.weight_decay, lr, betas=(0.9, 0.95))


# ---------------------------------------------------------------------------------------------------------------
# One optimizer step


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | OptimizerPair,
    input_ids: torch.Tensor,
    lr: float,
    grad_clip: float,
    precision: Callable[[], ContextManager] = nullcontext,
    update_precision: Callable[[], ContextManager] = nullcontext,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward, clip, optimizer update; returns (loss, grad_norm) as device tensors (no host sync).
    `input_ids` are packed rows: their `PAD` ends (whole-document packing) are labels the loss ignores.

    `precision` opens the forward's autocast context (Runtime.autocast), `update_precision` the optimizer step's
    (Runtime.update_precision); both do nothing by default."""
    set_learning_rate(optimizer, lr)
    with precision():
        loss = model(input_ids=model_inputs(input_ids), labels=input_ids, use_cache=False).loss  # labels keep PAD
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    with update_precision():
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
            if not run.writes:
                return
            with run.clock.paused():
                directory = run.checkpoints / f"step-{run.step:06d}"
                save_checkpoint(directory, run.model, self.tokenizer, info=run.checkpoint_info(), extra_json=self.stamp)


def state_dir(run_dir: Path, step: int) -> Path:
    """Where a run keeps its resumable training state at `step` for branches (`keep_states`)."""
    return Path(run_dir) / CHECKPOINTS_DIR / f"state-{step:06d}"


class KeptStates(Hook):
    """Resumable training states (weights, AdamW moments, RNG, data position) kept at the given steps, so another
    run can branch from this one there (`branch_from`). Keeping them does not change the trajectory."""

    def __init__(self, steps: Sequence[int]) -> None:
        self.steps = set(steps)

    def after_step(self, run: ResumableRun, result: StepResult) -> None:
        if run.step in self.steps:
            run.save_state(state_dir(run.run_dir, run.step))


# ---------------------------------------------------------------------------------------------------------------
# The loop


def run_fingerprint(
    model_cfg: ModelConfig, pretrain_cfg: PretrainConfig, rows: torch.Tensor, tokenizer: Any, in_order: bool = False
) -> str:
    """Hash of everything that decides the trajectory: model, loop settings (minus runtime knobs), data, vocabulary,
    and the row order (named only when in order, so the fingerprints of shuffled runs, and their resumes, stay)."""
    loop = {k: v for k, v in pretrain_cfg.model_dump(mode="json").items() if k not in RUNTIME_ONLY_FIELDS}
    config = {"model": model_cfg.model_dump(mode="json"), "pretrain": loop} | ({"in_order": True} if in_order else {})
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


class PackedData(NamedTuple):
    """The packed training rows, the run's fingerprint over them, the sampler that serves them, and the training
    state of another run this one branches from (None: from scratch), with the steps whose state it keeps."""

    rows: torch.Tensor
    run_id: str
    sampler: SequenceSampler | PhasedSampler
    branch_from: Path | None = None
    keep_states: tuple[int, ...] = ()


class Phase(NamedTuple):
    """A change of corpus mixture within one run: after `after_step` steps, train on `texts` instead."""

    after_step: int
    texts: Sequence[str]


class Start(NamedTuple):
    """Where a run's trajectory starts and what it leaves for others: `then` (a second phase in this run),
    `branch_from` (another run's kept training state, `state_dir`), `keep_states` (steps to keep states at)."""

    then: Phase | None = None
    branch_from: Path | None = None
    keep_states: tuple[int, ...] = ()

    def applied(self, data: PackedData, pack: Any) -> PackedData:
        """`data` as this start reads it; `pack(texts)` packs the second phase's texts."""
        if self.then is not None and self.branch_from is not None:
            raise ValueError("a run either switches its data itself (then) or branches from a trunk, not both")
        keep = tuple(sorted(set(self.keep_states)))
        if self.then is not None:
            second = pack(self.then.texts)
            sampler = PhasedSampler(data.sampler, second.sampler, self.then.after_step, len(data.rows))
            run_id = fingerprint(data.run_id, second.run_id, {"switch_after": self.then.after_step})
            return PackedData(torch.cat([data.rows, second.rows]), run_id, sampler, None, keep)
        if self.branch_from is not None:
            info = intact_checkpoint_info(self.branch_from)
            if info is None:
                raise CheckpointError(f"{self.branch_from}: no intact training state to branch from")
            run_id = fingerprint(data.run_id, {"trunk": info["fingerprint"], "branch_at": int(info["step"])})
            return PackedData(data.rows, run_id, data.sampler, Path(self.branch_from), keep)
        return data._replace(keep_states=keep)


def train_lm(
    model_cfg: ModelConfig,
    pretrain_cfg: PretrainConfig,
    tokenizer: Any,
    texts: Sequence[str],
    run_dir: str | os.PathLike,
    progress: bool = True,
    world_cfg: WorldConfig | None = None,
    in_order: bool = False,
    start: Start = Start(),
) -> Path:
    """Pretrain a model on `texts` into `run_dir`, resuming from `run_dir/checkpoints/latest` if present.

    With `world_cfg`, every checkpoint is stamped with the synthetic world it was trained in, so it can be
    evaluated after being copied out of the run directory. With `in_order`, the packed rows are read in the order
    of `texts` every epoch (a chronological corpus); otherwise in a seeded permutation per epoch.

    `start` changes the mixture during training or shares a trunk (see `Start`): `then` switches to other texts
    after a number of steps within this run; `branch_from` continues another run's kept training state on `texts`
    (the same trajectory as the phased run, bit for bit on CPU); `keep_states` keeps states others branch from.

    Under torchrun (a joined process group, distributed.py) every rank calls this; rank 0 alone writes files and
    holds the lock, and each rank trains on its slice of the global batch.

    Returns `run_dir/final` (HF model + tokenizer). If `final` already holds this run's result, returns at once.
    """
    stamp = {WORLD_STAMP: world_cfg.model_dump(mode="json")} if world_cfg is not None else None
    ranks = distributed.current()
    distributed.check_batch(pretrain_cfg.batch_size, ranks)
    runtime = runtime_for(pretrain_cfg, ranks)
    lock = distributed.main_only(ranks, training_lock(Path(run_dir)))
    with lock, torch_settings(pretrain_cfg.threads, runtime):
        data = pack_for_training(model_cfg, pretrain_cfg, tokenizer, texts, in_order)
        data = start.applied(data, lambda more: pack_for_training(model_cfg, pretrain_cfg, tokenizer, more, in_order))
        return _train(model_cfg, pretrain_cfg, runtime, tokenizer, data, Path(run_dir), progress, stamp, ranks)


def pack_for_training(
    model_cfg: ModelConfig, cfg: PretrainConfig, tokenizer: Any, texts: Sequence[str], in_order: bool
) -> PackedData:
    """Tokenize and pack `texts` (`cfg.packing`); the sampler reads rows in a seeded shuffle, or in corpus order
    with `in_order`."""
    if in_order and cfg.packing == "whole_documents":
        raise DataError(
            "pretrain.packing: whole_documents orders documents by length, and this corpus is read in the order it "
            "was written; use pretrain.packing=concat"
        )
    pack = pack_whole_documents if cfg.packing == "whole_documents" else pack_sequences
    rows = pack(tokenize_documents(tokenizer, texts), tokenizer.eos_token_id, model_cfg.max_seq_len)
    run_id = run_fingerprint(model_cfg, cfg, rows, tokenizer, in_order)
    return PackedData(rows, run_id, SequenceSampler(len(rows), cfg.batch_size, seed=cfg.seed, shuffle=not in_order))


def _train(
    model_cfg: ModelConfig,
    cfg: PretrainConfig,
    runtime: Runtime,
    tokenizer: Any,
    data: PackedData,
    run_dir: Path,
    progress: bool,
    stamp: dict[str, Any] | None,
    ranks: Ranks = Ranks(),
) -> Path:
    rows, run_id, sampler, branch_from, keep_states = data
    run_dir.mkdir(parents=True, exist_ok=True)
    if finished(run_dir / FINAL, run_id):
        missing = [step for step in keep_states if intact_checkpoint_info(state_dir(run_dir, step)) is None]
        if missing:
            raise CheckpointError(
                f"{run_dir}: finished without the kept state at step {missing[0]}; delete the run directory to rerun it"
            )
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
        sampler,
        save=lambda directory, **kw: save_checkpoint(directory, model, tokenizer, extra_json=stamp, **kw),
        guard=FiniteGuard(("loss", "grad_norm"), runtime.device, divergence_stop(run_dir)),
        hooks=[LossWindowLog(cfg.log_every, runtime.device), Snapshots(tokenizer, stamp), KeptStates(keep_states)],
        name="pretrain",
        info={"n_params": n_params, "runtime": runtime.describe()},  # which kernels trained it (bf16 native or not)
        writes=ranks.main,
        start=branch_from,
    )
    with distributed.main_first(ranks):  # rank 0 may repair an interrupted `latest` before the others read it
        run.resume()
    step_model = prepare_model(model, runtime, wrap=lambda m: distributed.wrap(m, ranks, runtime.device))
    step_fn = _step_function(run, step_model, rows, cfg, runtime, model_cfg.max_seq_len, ranks)
    run.fit(step_fn, progress, f"pretrain {n_params / 1e6:.2f}M params ({_describe(runtime, ranks)})")
    if ranks.main:
        save_checkpoint(run_dir / FINAL, model, tokenizer, info=run.checkpoint_info(), extra_json=stamp)
    distributed.barrier(ranks)  # no rank returns before `final` exists
    return run_dir / FINAL


def _describe(runtime: Runtime, ranks: Ranks) -> str:
    return runtime.describe() + (f", DDP over {ranks.world_size} processes" if ranks.parallel else "")


def _step_function(
    run: ResumableRun,
    step_model: torch.nn.Module,
    rows: torch.Tensor,
    cfg: PretrainConfig,
    runtime: Runtime,
    seq_len: int,
    ranks: Ranks = Ranks(),
):
    """One pretraining step: the next global batch (this rank's slice of it), the scheduled LR, `train_step` (looked
    up at call time: tests wrap it), and the loss averaged over ranks (the global batch's loss)."""
    pin = runtime.device.type == "cuda"
    tokens_per_step = cfg.batch_size * seq_len  # the global batch: tokens/s counts every rank's work

    def step_fn(step: int) -> StepResult:
        batch = rows[distributed.shard(run.sampler.next_indices(), ranks)]
        if pin:
            batch = batch.pin_memory()
        batch = batch.to(runtime.device, non_blocking=True)
        lr = learning_rate(step, cfg, cfg.lr)
        loss, grad_norm = train_step(
            step_model, run.optimizer, batch, lr, cfg.grad_clip, runtime.autocast, runtime.update_precision
        )
        loss = distributed.mean_over_ranks(loss, ranks)
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


def trunk_run_dir(branch_from: Path) -> Path:
    """The run directory a kept state (`run/checkpoints/state-NNNNNN`) belongs to."""
    return Path(branch_from).parent.parent


def check_branch(cfg: PipelineConfig, trunk_dir: Path) -> None:
    """A branch continues its trunk's trajectory: the model, the loop (bar runtime knobs), the tokenizer and the world
    must be the trunk's; only the corpus (the mixture from the branch point on) may differ."""
    trunk = load_yaml(trunk_dir / "config.yaml")
    mine = _without_runtime(cfg.model_dump(mode="json"))
    for key in ("model", "pretrain", "tokenizer", "world"):
        difference = scaffold.first_difference(_without_runtime(trunk).get(key), mine.get(key), f"{key}.")
        if difference is not None:
            name, old, new = difference
            raise ConfigError(
                f"branch from {trunk_dir}: {name} is {old!r} in the trunk and {new!r} here; only the corpus may differ"
            )


def _branch_tokenizer(start: Start, tokenizer_dir: Path) -> None:
    """A branch reads text with its trunk's vocabulary: the trunk's tokenizer is copied in once, whole or not at all
    (copied beside it, then renamed: a kill mid-copy leaves no half tokenizer to load)."""
    if start.branch_from is None or (tokenizer_dir / "tokenizer.json").exists():
        return
    partial = tokenizer_dir.with_name(tokenizer_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(trunk_run_dir(start.branch_from) / "tokenizer", partial)
    shutil.rmtree(tokenizer_dir, ignore_errors=True)
    os.replace(partial, tokenizer_dir)


def _corpus_and_tokenizer(
    cfg: PipelineConfig, run_dir: Path, start: Start, progress: bool, cache_dir: Path | None
) -> tuple[list[str], Any]:
    """The run's training texts and tokenizer: built (or found built) in `run_dir`, or copied from the
    content-addressed cache in `cache_dir` when another run already built them from the same inputs."""
    corpus_dir, tokenizer_dir = run_dir / "corpus", run_dir / "tokenizer"
    corpus_key = config_hash(cfg.world, cfg.corpus)
    if cache_dir is not None and intact_manifest(corpus_dir, corpus_key) is None:
        cache.fetch(cache_dir, "corpus", corpus_key, corpus_dir)
    build_corpus(cfg.world, cfg.corpus, corpus_dir, progress=progress)
    if cache_dir is not None:
        cache.publish(cache_dir, "corpus", corpus_key, corpus_dir)
    texts = read_texts(corpus_dir, split="train")
    _branch_tokenizer(start, tokenizer_dir)
    tokenizer_key = fingerprint(config_hash(*tokenizer_reference(cfg.world, cfg.corpus)), cfg.tokenizer.model_dump())
    if cache_dir is not None and not (tokenizer_dir / "tokenizer.json").exists():
        cache.fetch(cache_dir, "tokenizer", tokenizer_key, tokenizer_dir)
    built = (tokenizer_dir / "tokenizer.json").exists()
    reference = [] if built else tokenizer_training_texts(cfg.world, cfg.corpus)
    tokenizer = prepare_tokenizer(cfg.tokenizer, reference, tokenizer_dir)
    if cache_dir is not None and start.branch_from is None:  # a branch's tokenizer is its trunk's: keyed elsewhere
        cache.publish(cache_dir, "tokenizer", tokenizer_key, tokenizer_dir)
    return texts, tokenizer


def run_pretrain(
    cfg: PipelineConfig,
    run_dir: str | os.PathLike,
    progress: bool = True,
    start: Start = Start(),
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Corpus -> tokenizer -> pretrained model in `run_dir`; resumable at every stage. Returns the final checkpoint
    directory. With `start.branch_from` (a trunk's kept state) the run continues the trunk on this corpus, with the
    trunk's tokenizer; `start.keep_states` keeps states other runs branch from. With `cache_dir` (an experiment's
    `RUN/cache`), corpora and tokenizers other runs built from the same inputs are copied, not rebuilt (cache.py)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else None
    run_dir = Path(run_dir)
    ranks = distributed.current()
    runtime_for(cfg.pretrain, ranks)  # a refused runtime (ConfigError) before the run directory or any corpus
    run_dir.mkdir(parents=True, exist_ok=True)
    progress = progress and ranks.main
    if start.branch_from is not None:
        check_branch(cfg, trunk_run_dir(start.branch_from))
    with distributed.main_first(ranks):  # under torchrun rank 0 builds; the others then find it built and read it
        ensure_run_config(cfg, run_dir)
        texts, tokenizer = _corpus_and_tokenizer(cfg, run_dir, start, progress, cache_dir)
    in_order = cfg.corpus.order == "chronological"
    return train_lm(
        cfg.model,
        cfg.pretrain,
        tokenizer,
        texts,
        run_dir,
        progress,
        world_cfg=cfg.world,
        in_order=in_order,
        start=start,
    )
