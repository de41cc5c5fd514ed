"""Learning-rate schedules and log-spaced steps: pure functions of the step, so a resumed run needs no scheduler
state and can never drift from an uninterrupted one."""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol


class ScheduleFields(Protocol):
    """The config fields the schedule reads (PretrainConfig and PosttrainConfig both have them; pretraining also
    has `schedule` and `decay_fraction`, post-training always decays by cosine)."""

    steps: int
    warmup_steps: int
    min_lr_ratio: float


def cosine_decay(step: int, cfg: ScheduleFields) -> float:
    """The LR as a fraction of the peak after warmup: cosine from 1 down to `min_lr_ratio` at the last step."""
    decay_steps = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, max(0.0, (step - cfg.warmup_steps) / decay_steps))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine


class WsdFields(ScheduleFields, Protocol):
    decay_fraction: float


def wsd_decay(step: int, cfg: WsdFields) -> float:
    """Warmup-stable-decay after warmup: the peak until the last `decay_fraction` of the steps, then linear down to
    `min_lr_ratio` at the last step. A run can be read at any step before the decay as if it were still going."""
    decay_steps = max(1, round(cfg.decay_fraction * cfg.steps))
    decay_start = max(cfg.warmup_steps, cfg.steps - decay_steps)
    progress = min(1.0, max(0.0, (step - decay_start) / max(1, cfg.steps - decay_start)))
    return 1.0 - (1.0 - cfg.min_lr_ratio) * progress


# `schedule` (PretrainConfig) -> the LR fraction after warmup; a config without the field decays by cosine.
SCHEDULES: dict[str, Callable[[int, Any], float]] = {"cosine": cosine_decay, "wsd": wsd_decay}


def learning_rate(step: int, cfg: ScheduleFields, peak: float) -> float:
    """LR for optimizer step `step` (1-based): linear warmup to `peak`, then the config's decay (cosine by default)
    down to `peak * min_lr_ratio`."""
    if cfg.warmup_steps > 0 and step <= cfg.warmup_steps:
        return peak * step / cfg.warmup_steps
    return peak * SCHEDULES[getattr(cfg, "schedule", "cosine")](step, cfg)


def log_spaced_steps(total_steps: int, log_base: int = 2) -> list[int]:
    """1, log_base, log_base^2, ... below `total_steps`, then `total_steps`: dense early, where the model changes
    fastest."""
    steps, k = [], 1
    while k < total_steps:
        steps.append(k)
        k *= log_base
    steps.append(total_steps)
    return steps
