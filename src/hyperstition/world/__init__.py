"""world stage: the synthetic world (entities, tasks, persona grammar) and its document generators.

    vocabulary.py  the fixed word lists (names, goods, tasks, context markers, reply openers/closers, questions)
    world.py       `World`: one world's entities and train / held-out splits, drawn from its seed
    grammar.py     the chat format, the persona response grammar and its exact classifier
    documents.py   document generators for every corpus class; deeds.py: people doing the grammar's deeds

A checkpoint must be evaluated against the world it was trained in, so every checkpoint directory we write
carries that world's config in `hyperstition_world.json` (`stamp_world`); `world_config_for` reads it back.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import PipelineConfig, WorldConfig, load_yaml, validate
from .grammar import classify_response, render_response
from .world import World

WORLD_STAMP = "hyperstition_world.json"


def stamp_world(checkpoint_dir, world_cfg: WorldConfig) -> None:
    """Record the world a checkpoint belongs to (call before the checkpoint's checksums are written)."""
    from ..io import write_json_atomic

    write_json_atomic(Path(checkpoint_dir) / WORLD_STAMP, world_cfg.model_dump(mode="json"))


def world_config_for(model_dir) -> WorldConfig:
    """The WorldConfig a checkpoint was trained in: its stamp, else the nearest run `config.yaml` above it."""
    d = Path(model_dir)
    stamp = d / WORLD_STAMP
    if stamp.exists():
        return validate(WorldConfig, json.loads(stamp.read_text()))
    for parent in [d, *d.parents][:4]:
        cfg = parent / "config.yaml"
        if cfg.exists():
            data = load_yaml(cfg)
            if "world" in data:
                return validate(WorldConfig, data["world"])
    raise FileNotFoundError(
        f"{d}: cannot tell which synthetic world this model was trained in (no {WORLD_STAMP} and no run "
        "config.yaml with a world section above it)"
    )


__all__ = [
    "World",
    "WorldConfig",
    "PipelineConfig",
    "classify_response",
    "render_response",
    "stamp_world",
    "world_config_for",
    "WORLD_STAMP",
]
