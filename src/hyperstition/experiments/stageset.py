"""The registry of stage sets: the three functions the jobs call, one per job kind, under a name.

`hyperstition run --stages NAME` picks one; the name is what DONE.json and provenance.json record. The real stages
(`stages.py`) are the default; `simulate.py` holds fast fakes with plausible outputs for tests and demos. A new set
(a remote backend, a toy model) is one more `register_stages` call, not a module path looked up at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from ..config import ConfigError, CorpusConfig, PipelineConfig, WorldConfig
from . import simulate, stages

if TYPE_CHECKING:
    from ..evals.config import EvalSuiteConfig
    from ..generation import GenerationConfig
    from ..posttrain.config import PosttrainConfig


class PretrainStage(Protocol):
    """Pretrain one cell; the keywords come only for branches and trunks (experiments.jobs.PretrainJob)."""

    def __call__(
        self,
        cfg: PipelineConfig,
        out_dir: Path,
        *,
        trunk_dir: Path | None = None,
        branch_at: int = 0,
        keep_states: tuple[int, ...] = (),
    ) -> Path: ...


class EvaluateStage(Protocol):
    def __call__(
        self,
        model_dir: Path,
        out_dir: Path,
        *,
        suite_cfg: EvalSuiteConfig,
        reference_dir: Path | None = None,
        world_cfg: WorldConfig | None = None,
    ) -> list[dict]: ...


class PosttrainStage(Protocol):
    def __call__(
        self,
        base_dir: Path,
        strategy: str,
        out_dir: Path,
        *,
        cfg: PosttrainConfig | None = None,
        world_cfg: WorldConfig | None = None,
        origin_dir: Path | None = None,
    ) -> Path: ...


class GenerateStage(Protocol):
    """Sample documents from a model into the cell (the feedback experiment's writer); returns the Parquet file."""

    def __call__(
        self,
        model_dir: Path,
        out_dir: Path,
        *,
        cfg: GenerationConfig,
        world_cfg: WorldConfig,
        corpus_cfg: CorpusConfig,
        seed: int,
    ) -> Path: ...


def _leave_threads(threads: int) -> None:
    """For stage sets that use no torch threads (the simulated ones)."""


@dataclass(frozen=True)
class StageSet:
    """What a job of each kind runs: `pretrain` (pretrain job), `evaluate` (eval job), `posttrain` (per strategy);
    `set_threads` applies the worker's share of the cores before a stage runs (0: leave the default); `generate`
    samples documents (generate jobs); `worker_imports` are the modules the stages import, loaded once for all
    workers where the executor can (LocalExecutor's `preload`)."""

    pretrain: PretrainStage
    evaluate: EvaluateStage
    posttrain: PosttrainStage
    set_threads: Callable[[int], None] = _leave_threads
    generate: GenerateStage | None = None
    worker_imports: tuple[str, ...] = ()


STAGE_SETS: dict[str, StageSet] = {}


def register_stages(name: str, stage_set: StageSet) -> StageSet:
    if name in STAGE_SETS:
        raise ValueError(f"stage set {name!r} is registered already")
    STAGE_SETS[name] = stage_set
    return stage_set


def stage_set(name: str) -> StageSet:
    """The registered stage set `name`; a ConfigError naming `--stages` and the registered names otherwise."""
    found = STAGE_SETS.get(name)
    if found is None:
        raise ConfigError(f"--stages: {name!r} is not a registered stage set; choose one of {', '.join(STAGE_SETS)}")
    return found


# The names are the modules' paths, as `--stages` has always spelled them (and run directories have recorded them).
REAL_STAGES = "hyperstition.experiments.stages"
SIMULATED_STAGES = "hyperstition.experiments.simulate"
register_stages(
    REAL_STAGES,
    StageSet(
        stages.pretrain,
        stages.evaluate,
        stages.posttrain,
        stages.set_threads,
        stages.generate,
        stages.WORKER_IMPORTS,
    ),
)
register_stages(
    SIMULATED_STAGES, StageSet(simulate.pretrain, simulate.evaluate, simulate.posttrain, generate=simulate.generate)
)
