"""The registry of named experiments: one plugin per experiment, registered in one place (its own module).

A plugin says where its grid lives (a YAML under `configs/experiments/`), which rows its analysis adds to
`results.parquet` (functions of the per-seed rows), which sections its report shows (functions of a `RunView`
returning HTML), and optionally which pass/fail controls it checks. The runner and the report know no experiment by
name: they look the run's experiment up here (`catalog.plugin_for`). Adding an experiment is one module that calls
`register_experiment` plus its YAML; `catalog.py` imports the shipped modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from .config import experiments_dir

if TYPE_CHECKING:
    import pandas as pd

    from .view import RunView


class Analysis(Protocol):
    def __call__(self, per_seed: pd.DataFrame, control: str | None) -> pd.DataFrame:
        """Rows to add to results.parquet (RESULT_COLUMNS less `run`, seed null) from the per-seed rows."""


@dataclass(frozen=True)
class Section:
    """One section of the report: `id` is its anchor, `title` its link in the navigation bar, `order` its place
    among the report's own sections (overview 0, persistence 40, toy 60, capability 70, samples 80, provenance 90)."""

    id: str
    title: str
    order: int
    render: Callable[[RunView], str]


class Control(Protocol):
    """The outcome of one pass/fail check of an experiment (`passed` None: the run lacks what the check needs)."""

    name: str
    passed: bool | None
    reason: str


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its grid YAML, its analyses, its report sections and its controls."""

    name: str
    grid: Path
    analyses: tuple[Analysis, ...] = ()
    sections: tuple[Section, ...] = ()
    controls: Callable[[pd.DataFrame], list[Control]] | None = None
    controls_title: str = "controls"


EXPERIMENTS: dict[str, Experiment] = {}


def shipped_grid(name: str) -> Path:
    """The grid YAML of a shipped experiment: configs/experiments/<name>.yaml."""
    return experiments_dir() / f"{name}.yaml"


def register_experiment(plugin: Experiment) -> Experiment:
    """Register `plugin` under its name (once; a second plugin of the same name is a programming error)."""
    if plugin.name in EXPERIMENTS:
        raise ValueError(f"experiment {plugin.name!r} is registered already")
    EXPERIMENTS[plugin.name] = plugin
    return plugin


def unregister_experiment(name: str) -> None:
    """Remove a registered experiment (for tests that register a temporary one)."""
    EXPERIMENTS.pop(name, None)


def section(id: str, title: str, order: int) -> Callable[[Callable[[RunView], str]], Section]:
    """Decorator: a function of a `RunView` returning HTML becomes a `Section` to list in a plugin."""

    def wrap(render: Callable[[RunView], str]) -> Section:
        return Section(id, title, order, render)

    return wrap
