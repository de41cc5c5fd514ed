"""A whole experiment on the simulated stages, in-process, in seconds: for tests and demos."""

from __future__ import annotations

import os

from .config import load_experiment
from .executor import InlineExecutor
from .runner import RunSummary, run_experiment
from .stageset import SIMULATED_STAGES


def build_simulated_run(
    run_dir: str | os.PathLike, experiment: str = "smoke", overrides: list[str] | None = None, render: bool = True
) -> RunSummary:
    """Run `experiment` in-process with the simulated stages (seconds); returns the RunSummary. For tests and demos."""
    exp = load_experiment(experiment, overrides)
    return run_experiment(exp, run_dir, executor=InlineExecutor(), stages=SIMULATED_STAGES, render=render)
