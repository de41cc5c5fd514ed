"""Checkpoints of the session's smoke run (tests/conftest.py: one seed, 2 arms, SFT, real stages), shared by the
tool, model-card and example tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from ecosystem_helpers import STRATEGY, cell


@pytest.fixture(scope="session")
def base_checkpoint(smoke_run) -> Path:
    return cell(smoke_run) / "pretrain" / "final"


@pytest.fixture(scope="session")
def post_trained_checkpoint(smoke_run) -> Path:
    return cell(smoke_run) / STRATEGY / "final"
