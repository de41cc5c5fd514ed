"""Learning-rate schedule and log-spaced steps: pure functions of the step, so a resumed run needs no scheduler
state and can never drift from an uninterrupted one."""

from __future__ import annotations

import math
from typing import Protocol


class ScheduleFields(Protocol):
    """The config fields the schedule reads (PretrainConfig and PosttrainConfig both have them)."""

    steps: int
    warmup_steps: int
    min_lr_ratio: float


def learning_rate(step: int, cfg: ScheduleFields, peak: float) -> float:
    """LR for optimizer step `step` (1-based): linear warmup to `peak`, then cosine down to `peak * min_lr_ratio`."""
    if cfg.warmup_steps > 0 and step <= cfg.warmup_steps:
        return peak * step / cfg.warmup_steps
    decay_steps = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, max(0.0, (step - cfg.warmup_steps) / decay_steps))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def log_spaced_steps(total_steps: int, log_base: int = 2) -> list[int]:
    """1, log_base, log_base^2, ... below `total_steps`, then `total_steps`: dense early, where the model changes
    fastest."""
    steps, k = [], 1
    while k < total_steps:
        steps.append(k)
        k *= log_base
    steps.append(total_steps)
    return steps
