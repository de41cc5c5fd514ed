"""A finished simulated run, built once per session; tests that damage a run get their own copy."""

from __future__ import annotations

import shutil

import pytest

from hyperstition.run import build_simulated_run


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A smoke grid on one seed (2 arms: pretrain, base, sft) with the simulated stages, results collected."""
    run = tmp_path_factory.mktemp("finished") / "run"
    summary = build_simulated_run(run, "smoke", ["seeds=[0]"], render=False)
    assert summary.ok
    return run


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of `finished_run` to damage."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy
