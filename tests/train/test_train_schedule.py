"""Learning-rate schedule and checkpoint spacing: pure functions of the step."""

from __future__ import annotations

import math

import pytest

from hyperstition.config import PretrainConfig
from hyperstition.train.schedule import learning_rate, log_spaced_steps


def test_warmup_then_cosine_to_floor():
    cfg = PretrainConfig(lr=1e-3, warmup_steps=10, steps=110, min_lr_ratio=0.1)
    assert learning_rate(1, cfg, cfg.lr) == pytest.approx(1e-4)
    assert learning_rate(5, cfg, cfg.lr) == pytest.approx(5e-4)
    assert learning_rate(10, cfg, cfg.lr) == pytest.approx(1e-3)
    # halfway through the decay the cosine is at its midpoint: floor + half the range
    assert learning_rate(60, cfg, cfg.lr) == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert learning_rate(35, cfg, cfg.lr) == pytest.approx(1e-4 + 9e-4 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert learning_rate(110, cfg, cfg.lr) == pytest.approx(1e-4)
    decay = [learning_rate(s, cfg, cfg.lr) for s in range(10, 111)]
    assert all(a > b for a, b in zip(decay, decay[1:]))


def test_no_warmup_starts_at_peak_and_zero_floor_ends_at_zero():
    cfg = PretrainConfig(lr=2e-3, warmup_steps=0, steps=50, min_lr_ratio=0.0)
    assert learning_rate(0, cfg, cfg.lr) == pytest.approx(2e-3)
    assert learning_rate(1, cfg, cfg.lr) < 2e-3
    assert learning_rate(50, cfg, cfg.lr) == pytest.approx(0.0, abs=1e-12)


def test_log_spaced_checkpoint_steps():
    assert log_spaced_steps(1) == [1]
    assert log_spaced_steps(8) == [1, 2, 4, 8]
    assert log_spaced_steps(300) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]


def test_wsd_holds_the_peak_then_decays_linearly_to_the_floor():
    cfg = PretrainConfig(lr=1e-3, warmup_steps=10, steps=110, min_lr_ratio=0.1, schedule="wsd", decay_fraction=0.2)
    assert learning_rate(5, cfg, cfg.lr) == pytest.approx(5e-4)  # the same warmup as cosine
    assert all(learning_rate(s, cfg, cfg.lr) == pytest.approx(1e-3) for s in range(10, 89))  # stable to step 88
    assert learning_rate(99, cfg, cfg.lr) == pytest.approx(1e-3 - 0.5 * 9e-4)  # halfway down the last 22 steps
    assert learning_rate(110, cfg, cfg.lr) == pytest.approx(1e-4)
    decay = [learning_rate(s, cfg, cfg.lr) for s in range(88, 111)]
    assert all(a > b for a, b in zip(decay, decay[1:]))


def test_the_default_schedule_is_the_cosine_of_configs_without_the_field():
    class Posttrain:  # a config with no `schedule` field (post-training's) decays by cosine
        steps, warmup_steps, min_lr_ratio = 110, 10, 0.1

    cfg = PretrainConfig(lr=1e-3, warmup_steps=10, steps=110, min_lr_ratio=0.1)
    assert [learning_rate(s, Posttrain(), 1e-3) for s in range(1, 111)] == [
        learning_rate(s, cfg, 1e-3) for s in range(1, 111)
    ]
