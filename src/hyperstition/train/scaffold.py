"""The resumable-run scaffold every training loop uses (pretraining and each post-training strategy).

A caller builds its model and data, defines one step function `step -> StepResult`, and passes hooks (metrics
lines, snapshots, curve evaluations); the scaffold owns the rest, the way OLMo-core's Trainer owns its loop and
leaves the rest to callbacks:

    the lock (io.training_lock)          config.yaml write-or-compare        the run fingerprint
    the finished check                   rolling `checkpoints/latest` with optimizer, data position and RNG
    metrics.jsonl truncation on resume   the progress bar                    the non-finite loss/grad-norm stop

A run killed at any moment and started again resumes from `checkpoints/latest` and, on CPU in fp32, ends with
bit-identical weights: everything that decides the trajectory is in the training state (weights, AdamW moments,
data position, RNG states, and whatever state the hooks return), and the learning rate is a pure function of the
step (schedule.py).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import ConfigError, load_yaml
from ..io import append_jsonl, read_jsonl, training_lock, write_text_atomic
from ..model.checkpoint import (
    CheckpointError,
    intact_checkpoint_info,
    load_training_state,
    load_weights_into,
    recover_checkpoint,
)

METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
LATEST = "latest"
FINAL = "final"
STATE_FORMAT = 1

run_lock = training_lock  # one writer per run directory, pretraining and post-training alike


class RunConfigMismatch(ConfigError):
    """run_dir already holds a run made with a different config; resuming it would mix two experiments."""


# ---------------------------------------------------------------------------------------------------------------
# Run identity: config.yaml, fingerprint, finished check


def ensure_run_config(path: Path, wanted: dict, text: str, comparable: Callable[[dict], dict], what: str) -> None:
    """Write `text` (the YAML of `wanted`) to `path`, or check that the config there describes the same run.

    `comparable` drops what may change between restarts (runtime-only knobs); `what` names the run in the error.
    """
    if path.exists():
        existing = load_yaml(path)
        difference = first_difference(comparable(existing), comparable(wanted))
        if difference is not None:
            key, old, new = difference
            raise RunConfigMismatch(
                f"{path} was written by a different {what} ({key}: {old!r} there, {new!r} now); "
                "use a new --out directory, or delete that run to start over"
            )
        if existing == wanted:
            return
    write_text_atomic(path, text)


def first_difference(old: Any, new: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first (dotted key, old value, new value) where two nested dicts differ, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(new) + [k for k in old if k not in new]:
            found = first_difference(old.get(key, "<absent>"), new.get(key, "<absent>"), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if old == new else (prefix.rstrip("."), old, new)


def fingerprint(*parts: str | dict) -> str:
    """sha256 over everything that decides a trajectory: strings as they are, mappings as sorted JSON."""
    h = hashlib.sha256()
    for part in parts:
        h.update((part if isinstance(part, str) else json.dumps(part, sort_keys=True)).encode())
    return h.hexdigest()


def finished(final_dir: Path, run_fingerprint: str) -> bool:
    """True when `final_dir` is an intact checkpoint of this very run; another run's result there is refused."""
    info = intact_checkpoint_info(final_dir)
    if info is None:
        return False
    if info.get("fingerprint") != run_fingerprint:
        raise RunConfigMismatch(
            f"{final_dir}: holds a model trained with a different config, data or base; use a new run directory"
        )
    return True


# ---------------------------------------------------------------------------------------------------------------
# State outside the model: RNG, metrics files, optimizer


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


@contextmanager
def isolated_rng() -> Iterator[None]:
    """Run a block (an evaluation) without disturbing any RNG the training loop depends on."""
    saved = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(saved)


def truncate_jsonl(path: Path, last_step: int) -> list[dict]:
    """Drop lines after `last_step` (written after the checkpoint a resume starts from) and torn lines."""
    rows = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= last_step]
    if path.exists():
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def adamw(params: list[torch.nn.Parameter], weight_decay: float, lr: float, betas: tuple[float, float]):
    """AdamW with weight decay on matrices only: decaying norm gains and biases just fights the normalisation.

    The fused kernel exists for CPU and CUDA and is deterministic; it is several times faster than the loop.
    """
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=1e-8, fused=True)


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Each trainable parameter once (tied embeddings appear once), in module order."""
    seen: set[int] = set()
    out = []
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The non-finite stop


class FiniteGuard:
    """Remembers the first step where a watched value (loss, grad norm, ...) was not finite, on the device, so steps
    never wait for the host; `check` hands it to `on_diverged(step, values)`, which raises.

    The scaffold checks at every metrics line and before every checkpoint, so no saved checkpoint holds weights
    updated by a non-finite step; a loop may also check every step (post-training does, before its update)."""

    def __init__(self, names: tuple[str, ...], device: torch.device, on_diverged: Callable[[int, dict], NoReturn]):
        self.names, self.on_diverged = names, on_diverged
        self.first_bad = torch.zeros(1 + len(names), dtype=torch.float64, device=device)  # step 0 = none yet

    def observe(self, step: int, values: dict[str, torch.Tensor | None]) -> None:
        watched = [values[name].double() if values.get(name) is not None else None for name in self.names]
        like = next(v for v in watched if v is not None)
        watched = [torch.zeros_like(like) if v is None else v for v in watched]
        now = torch.stack([torch.full_like(like, step), *watched])
        bad = ~torch.isfinite(now[1:]).all() & (self.first_bad[0] == 0)
        self.first_bad = torch.where(bad, now, self.first_bad)

    def check(self) -> None:
        step, *values = self.first_bad.tolist()
        if step != 0:
            self.on_diverged(int(step), dict(zip(self.names, values, strict=True)))


# ---------------------------------------------------------------------------------------------------------------
# The loop


@dataclass
class StepResult:
    """What one optimizer step reports: device tensors (no host sync) and the tokens it processed."""

    loss: torch.Tensor
    grad_norm: torch.Tensor
    lr: float
    tokens: int
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class Hook:
    """A plug point of the loop. State a hook returns is saved in the training state and restored on resume."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def on_start(self, run: ResumableRun) -> None:
        pass

    def after_step(self, run: ResumableRun, result: StepResult) -> None:
        pass


class SaveFn(Protocol):
    def __call__(self, directory: Path, *, info: dict, training_state: dict | None = None) -> Path: ...


class Clock:
    """Training seconds: wall time while the loop runs, minus what a block marks as not training (I/O, evals)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.offset, self.since = seconds, time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.offset + time.perf_counter() - self.since

    @contextmanager
    def paused(self) -> Iterator[None]:
        stopped = self.seconds
        try:
            yield
        finally:
            self.offset, self.since = stopped, time.perf_counter()


@dataclass
class ResumableRun:
    """One run directory's loop: resume, step, hooks, rolling checkpoint. `fit` runs it to `total_steps`."""

    run_dir: Path
    fingerprint: str
    total_steps: int
    checkpoint_every: int
    model: torch.nn.Module  # the module whose weights are checkpointed (not a compiled wrapper)
    optimizer: torch.optim.Optimizer
    sampler: Any  # state_dict / load_state_dict of the data position
    save: SaveFn
    guard: FiniteGuard
    hooks: list[Hook]
    name: str  # "pretrain", "posttrain sft": names the run in messages and the progress bar
    info: dict[str, Any] = field(default_factory=dict)  # extra checkpoint.json fields
    writes: bool = True  # False on data-parallel ranks other than 0: they train in step but write no files
    start: Path | None = None  # a training state of another run (a trunk) to branch from when there is no `latest`
    step: int = 0
    tokens: int = 0
    clock: Clock = field(default_factory=Clock)
    bar: Any = None

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / CHECKPOINTS_DIR

    def checkpoint_info(self) -> dict[str, Any]:
        return {"step": self.step, "tokens": self.tokens, **self.info, "fingerprint": self.fingerprint}

    def resume(self) -> None:
        """Continue from `checkpoints/latest` if there is one, and drop metrics written after it."""
        latest = recover_checkpoint(self.checkpoints / LATEST)
        if latest is not None:
            state = load_training_state(latest, verify=False)  # recover_checkpoint verified it
            if int(state.get("format", -1)) != STATE_FORMAT:
                raise CheckpointError(
                    f"{latest}: training state format {state.get('format')} is not {STATE_FORMAT}; "
                    "start a new run directory"
                )
            if state.get("fingerprint") != self.fingerprint:
                raise RunConfigMismatch(
                    f"{latest}: was written by a {self.name} run with a different config, data, base or tokenizer; "
                    "use a new run directory or delete its checkpoints"
                )
            self._load(latest, state)
            print(f"{self.name}: resuming from {latest} at step {self.step} of {self.total_steps}", file=sys.stderr)
        elif self.start is not None:
            self._branch(self.start)
        if self.writes:
            truncate_jsonl(self.run_dir / METRICS_FILE, self.step)

    def _load(self, latest: Path, state: dict[str, Any]) -> None:
        load_weights_into(self.model, latest)
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["data"])
        restore_rng_state(state["rng"])
        self.step, self.tokens = int(state["step"]), int(state["tokens"])
        self.clock = Clock(float(state["elapsed_s"]))
        for hook in self.hooks:
            hook.load_state_dict(state)

    def _branch(self, start: Path) -> None:
        """Continue another run's trajectory from its training state at `start`: weights, AdamW moments, RNG, step,
        tokens and hook state carry over; the data position does not (the branch reads its own data from its first
        row, as the second phase of a phased run does: data.PhasedSampler)."""
        if intact_checkpoint_info(start) is None:
            raise CheckpointError(f"{start}: no intact training state to branch from; rerun the trunk to make it")
        state = load_training_state(start)
        if int(state.get("format", -1)) != STATE_FORMAT:
            raise CheckpointError(f"{start}: training state format {state.get('format')} is not {STATE_FORMAT}")
        data = self.sampler.state_dict()
        self._load(start, state | {"data": data})
        print(f"{self.name}: branching from {start} at step {self.step} of {self.total_steps}", file=sys.stderr)

    def save_latest(self) -> None:
        self.save_state(self.checkpoints / LATEST)

    def save_state(self, directory: Path) -> None:
        """A resumable checkpoint (weights and training state) in `directory`: the rolling `latest`, or a kept
        state other runs branch from."""
        self.guard.check()
        if not self.writes:
            return
        with self.clock.paused():  # checkpoint I/O is not training time
            state = {
                "format": STATE_FORMAT,
                "fingerprint": self.fingerprint,
                "step": self.step,
                "tokens": self.tokens,
                "elapsed_s": self.clock.seconds,
                "optimizer": self.optimizer.state_dict(),
                "data": self.sampler.state_dict(),
                "rng": capture_rng_state(),
            }
            for hook in self.hooks:
                state.update(hook.state_dict())
            self.save(directory, training_state=state, info=self.checkpoint_info())

    def fit(self, step_fn: Callable[[int], StepResult], progress: bool, description: str) -> None:
        """Run `step_fn(step)` for the remaining steps, with the hooks after each and the rolling checkpoint."""
        self.clock = Clock(self.clock.offset)
        for hook in self.hooks:
            hook.on_start(self)
        self.bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=description,
            unit="step",
            disable=not (progress and self.writes),
            dynamic_ncols=True,
            file=sys.stderr,
        )
        try:
            while self.step < self.total_steps:
                self.step += 1
                result = step_fn(self.step)
                self.tokens += result.tokens
                self.bar.update(1)
                for hook in self.hooks:
                    hook.after_step(self, result)
                if self.step % self.checkpoint_every == 0 or self.step == self.total_steps:
                    self.save_latest()
        finally:
            self.bar.close()


class MetricsLog(Hook):
    """A metrics.jsonl line every `every` steps and at the last step; `line` says what it holds."""

    def __init__(self, every: int) -> None:
        self.every = every

    def line(self, run: ResumableRun, result: StepResult) -> dict[str, Any]:
        raise NotImplementedError

    def after_step(self, run: ResumableRun, result: StepResult) -> None:
        if run.step % self.every == 0 or run.step == run.total_steps:
            run.guard.check()
            record = self.line(run, result)
            if run.writes:
                append_jsonl(run.run_dir / METRICS_FILE, record)
            run.bar.set_postfix(self.postfix(record), refresh=False)

    def postfix(self, record: dict[str, Any]) -> dict[str, str]:
        return {"loss": f"{record['loss']:.3f}"}
