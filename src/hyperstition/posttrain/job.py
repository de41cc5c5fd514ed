"""A post-training job: everything a run is built from, the files of its run directory, and its checkpoints.

Layout of a post-training run directory:
    config.yaml                  resolved run config: base, strategy, algorithm, world and PosttrainConfig
    metrics.jsonl                per-step loss, lr, grad norm, tokens (+ DPO margin/accuracy, RL reward/KL)
    curve.jsonl                  curve rows as they are measured (resume keeps the ones up to its checkpoint)
    posttrain_curve.parquet      step, tokens, kl_bits, context, metric, value, ci_low, ci_high
    checkpoints/latest/          rolling resumable checkpoint (weights, AdamW state, RNG, data position)
    final/                       HF checkpoint after the last step (stamped with the world)
    last_good/, diverged.json    only when the run diverged (NaN/inf loss, gradients or KL)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import WorldConfig
from ..evals.suite import EvalSuite
from ..model.checkpoint import save_checkpoint
from ..world import WORLD_STAMP
from ..world.world import World
from .algorithms import Algorithm
from .config import PosttrainConfig
from .strategies import Strategy

CONFIG_FILE = "config.yaml"
CURVE_ROWS_FILE = "curve.jsonl"
CURVE_FILE = "posttrain_curve.parquet"
LAST_GOOD = "last_good"
DIVERGED_FILE = "diverged.json"


@dataclass
class PosttrainJob:
    """Everything a post-training run is built from, checked and resolved before any training starts."""

    spec: Strategy
    cfg: PosttrainConfig
    algo: Algorithm  # the strategy's data, tokenized, and the step of the algorithm that trains on it
    base_dir: Path
    out_dir: Path
    world_cfg: WorldConfig
    world: World
    ref: torch.nn.Module
    tokenizer: Any
    suite: EvalSuite
    fingerprint: str
    device: torch.device
    origin: torch.nn.Module | None = None  # the chain's original base: curve points also measure KL to it

    @property
    def algorithm(self) -> str:
        return self.algo.name


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
