"""Shared fixtures for the post-training tests: one small pretrained base model per session.

The base is the smoke architecture pretrained (by the real pipeline, one CPU thread) on a dialogue-heavy corpus for
300 steps (~15 s): enough that it already answers in the persona grammar and mentions the predecessor sometimes, so
RL has reward variance and suppression has mentions to remove. Post-training runs use the smoke posttrain preset
with a light curve (few points, bits/rates/KL only) unless a test needs more.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from posttrain_helpers import BASE_OVERRIDES

from suite_cache import shared_artefact


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _pretrain_base(out: Path) -> None:
    from hyperstition.config import PipelineConfig, load_config
    from hyperstition.train.pretrain import run_pretrain

    run_pretrain(load_config(PipelineConfig, "smoke", BASE_OVERRIDES), out, progress=False)


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory) -> Path:
    """The base's final checkpoint; pretrained once per session, shared by xdist workers (read-only)."""
    return shared_artefact(tmp_path_factory, "posttrain-base", _pretrain_base) / "final"


@pytest.fixture(scope="session")
def base_model(base_dir):
    from hyperstition.model.checkpoint import load_checkpoint

    return load_checkpoint(base_dir)


@pytest.fixture(scope="session")
def world(base_dir):
    from hyperstition.world import World, world_config_for

    return World.from_config(world_config_for(base_dir))


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("posttrain-runs")


@pytest.fixture(scope="session")
def sft_run(base_dir, tmp_path_factory) -> Path:
    """SFT with the smoke eval suite at every curve point (all sections), the run most assertions look at; built
    once per session, shared by xdist workers (read-only)."""
    from hyperstition.posttrain import run_posttrain

    def build(out: Path) -> None:
        cfg = {"preset": "smoke", "threads": 1, "steps": 16, "curve.log_base": 4}
        run_posttrain(base_dir, "sft", out, cfg=cfg, progress=False)

    return shared_artefact(tmp_path_factory, "posttrain-sft", build)
