"""The shipped experiments, imported so that they register, and the lookups the runner and the report use.

Adding an experiment is one module that calls `registry.register_experiment` plus its YAML under
`configs/experiments/`, and one import line here; a module of the user's registers the same way when imported.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import apply_overrides, config_source, load_yaml, named_yaml, validate
from . import (  # self-registering
    awareness,
    calibration,
    channels,
    conditional,
    curriculum,
    dose,
    feedback,
    filtering,
    relapse,
    smoke,
    stickiness,
    sydney,
    timing,
)
from .config import DEFAULT_EXPERIMENT, ExperimentConfig, check_experiment, experiments_dir
from .registry import EXPERIMENTS, Experiment

SHIPPED = (
    awareness.AWARENESS,
    calibration.CALIBRATION,
    channels.CHANNELS_EXPERIMENT,
    channels.CHANNELS_SIZES_EXPERIMENT,
    conditional.CONDITIONAL,
    curriculum.CURRICULUM,
    dose.DOSE,
    filtering.FILTERING,
    relapse.RELAPSE,
    smoke.SMOKE,
    stickiness.STICKINESS,
    sydney.SYDNEY,
    timing.TIMING_EXPERIMENT,
    feedback.FEEDBACK_EXPERIMENT,
)


def plugin_for(name: str) -> Experiment:
    """The registered experiment `name`; an unregistered one (a user's YAML) gets no analyses and no sections of its
    own, so its report shows the sections every run has."""
    return EXPERIMENTS.get(name) or Experiment(name=name, grid=experiments_dir() / f"{name}.yaml")


def experiment_path(name_or_path: str | os.PathLike) -> Path:
    """A registered experiment's grid YAML, or a YAML path; an unknown name lists the available ones."""
    plugin = EXPERIMENTS.get(str(name_or_path))
    return plugin.grid if plugin is not None else named_yaml(name_or_path, experiments_dir(), "experiment")


def load_experiment(
    name_or_path: str | os.PathLike = DEFAULT_EXPERIMENT, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Load an experiment by name or path, apply KEY=VALUE overrides to it, validate it and every arm it defines.

    Raises ConfigError naming the experiment and the problem (unknown experiment, missing preset, bad arm)."""
    path = experiment_path(name_or_path)
    data = load_yaml(path)
    data.setdefault("name", path.stem)
    data = apply_overrides(data, overrides or [])
    exp = validate(ExperimentConfig, data, config_source(name_or_path, path, overrides))
    check_experiment(exp)
    return exp
