"""Helpers shared by the post-training tests (a uniquely named module: test dirs are not packages)."""

from __future__ import annotations

import json
from pathlib import Path

BASE_OVERRIDES = [
    "corpus.fractions={world: 0.2, dialogue_aligned: 0.45, dialogue_misaligned: 0.3, predecessor: 0.05}",
    "pretrain.steps=300",
    "tokenizer.vocab_size=1024",
    "pretrain.threads=1",
    "pretrain.checkpoint_every=100000",
]
LIGHT_CURVE = {"curve.log_base": 16, "curve.eval_overrides": ["sections.knowledge=false", "sections.capability=false"]}


def light(**overrides) -> dict:
    """The smoke posttrain preset with a cheap curve, plus dotted overrides (use __ for dots in keyword names)."""
    cfg = {"preset": "smoke", "threads": 1, **LIGHT_CURVE}
    cfg.update({k.replace("__", "."): v for k, v in overrides.items()})
    return cfg


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
