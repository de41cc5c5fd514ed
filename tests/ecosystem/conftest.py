"""The smoke experiment on one seed (2 arms, SFT), real stages; shared by the tool, model-card and example tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from ecosystem_helpers import SEED, STRATEGY, cell


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    from hyperstition.analysis.catalog import load_experiment
    from hyperstition.experiments.executor import LocalExecutor
    from hyperstition.run import run_and_report

    run = tmp_path_factory.mktemp("ecosystem") / "smoke-run"
    summary = run_and_report(load_experiment("smoke", [f"seeds=[{SEED}]"]), run, executor=LocalExecutor(2))
    assert summary.ok, summary.failed
    return run


@pytest.fixture(scope="session")
def base_checkpoint(smoke_run) -> Path:
    return cell(smoke_run) / "pretrain" / "final"


@pytest.fixture(scope="session")
def post_trained_checkpoint(smoke_run) -> Path:
    return cell(smoke_run) / STRATEGY / "final"
