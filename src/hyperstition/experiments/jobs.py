"""The three kinds of grid job, each a typed dataclass with its resolved configs and one method that runs it.

`PretrainJob` (corpus, tokenizer, pretraining), `EvalJob` (the base evaluation) and `PosttrainJob` (one strategy
with its persistence curve). A job carries its configs as typed objects, resolved once when the experiment was
loaded (`plan.py` builds them); `run` hands them to the stage set and turns what the stage wrote into the cell's
tidy `rows.parquet` and model card. `cell.py` runs a job in its directory; nothing branches on a job's kind.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..analysis.rundir import CACHE_DIR, ROWS
from ..config import PipelineConfig
from ..evals.config import EvalSuiteConfig
from ..io import write_parquet_atomic
from ..posttrain.config import PosttrainConfig
from ..schema import BASE_STRATEGY, CURVE_COLUMNS, PRETRAINING_STRATEGY, RESULT_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from .stageset import StageSet

ROW_COLUMNS = tuple(c for c in RESULT_COLUMNS if c != "run")


@dataclass(frozen=True)
class StageCall:
    """Where a job runs: the run directory, its cell, its inputs (the `model_dir` of the job it depends on) and the
    stage set that does the work."""

    run_path: Path
    cell: Path
    inputs: dict[str, str]
    stages: StageSet

    def model_dir(self) -> Path:
        return self.input_path("model_dir")

    def input_path(self, key: str) -> Path:
        """An input's path (`model_dir`, `base_dir`, `trunk_dir`), absolute."""
        return _abs(self.inputs[key], self.run_path)

    def rel(self, path: Path) -> str:
        try:
            return str(Path(path).resolve().relative_to(self.run_path.resolve()))
        except ValueError:
            return str(Path(path).resolve())


@dataclass(frozen=True)
class Job(abc.ABC):
    """One grid cell job. `config_hash` covers the resolved configs and the dependencies' hashes;
    `legacy_hash` is what run format 1 before resolved-config hashing recorded for the same job (`stale.py`)."""

    id: str
    arm: str
    seed: int
    strategy: str | None  # None for pretrain, "base" for the base evaluation
    path: str  # relative to the run directory
    deps: tuple[str, ...]
    pipeline: PipelineConfig = field(hash=False, compare=False)
    config_hash: str = ""
    legacy_hash: str = ""

    kind: ClassVar[str] = ""
    hands_on_model: ClassVar[bool] = False  # later jobs start from its model: the scheduler submits it last

    def params(self) -> dict[str, Any]:
        """The job's resolved configs as plain JSON (job.json records them)."""
        return {"pipeline": self.pipeline.model_dump(mode="json")}

    def inputs(self, outputs: list[dict]) -> dict[str, str]:
        """What the job reads, from its dependencies' DONE.json `outputs` (in `deps` order): the model of the first."""
        return {"model_dir": outputs[0]["model_dir"]} if outputs else {}

    @abc.abstractmethod
    def run(self, call: StageCall) -> dict:
        """Run the stage in the cell; return the outputs DONE.json promises (`rows`, `model_dir`)."""


@dataclass(frozen=True)
class PretrainJob(Job):
    """Pretraining from scratch, or (`branch_at`) continuing its one dependency's (the trunk's) kept training state
    after that many steps on this cell's corpus; `keep_states` are the steps its branches start from."""

    branch_at: int = field(default=0, kw_only=True)
    keep_states: tuple[int, ...] = field(default=(), kw_only=True)
    kind: ClassVar[str] = "pretrain"
    hands_on_model: ClassVar[bool] = True

    def params(self) -> dict[str, Any]:  # named only when set: the hashes of plain cells stay as they were
        branch = {"branch_at": self.branch_at} if self.branch_at else {}
        return {**super().params(), **branch, **({"keep_states": list(self.keep_states)} if self.keep_states else {})}

    def inputs(self, outputs: list[dict]) -> dict[str, str]:
        return {"trunk_dir": str(Path(outputs[0]["model_dir"]).parent)} if self.branch_at else {}

    def run(self, call: StageCall) -> dict:
        start: dict[str, Any] = {"keep_states": self.keep_states} if self.keep_states else {}
        start["cache_dir"] = call.run_path / CACHE_DIR  # corpora and tokenizers shared by the run's cells
        if self.branch_at:
            start |= {"trunk_dir": call.input_path("trunk_dir"), "branch_at": self.branch_at}
        model_dir = call.stages.pretrain(self.pipeline, call.cell, **start)
        return {"model_dir": call.rel(Path(model_dir))}


@dataclass(frozen=True)
class EvalJob(Job):
    suite: EvalSuiteConfig = field(kw_only=True, hash=False, compare=False)
    kind: ClassVar[str] = "eval"

    def params(self) -> dict[str, Any]:
        return {**super().params(), "suite": self.suite.model_dump(mode="json")}

    def run(self, call: StageCall) -> dict:
        model_dir = call.model_dir()
        rows = call.stages.evaluate(
            model_dir, call.cell, suite_cfg=self.suite, reference_dir=None, world_cfg=self.pipeline.world
        )
        tidy = tidy_eval_rows(rows, self.arm, self.seed)
        write_parquet_atomic(call.cell / ROWS, tidy)
        write_card(call.run_path, self, model_dir, tidy)
        return {"rows": ROWS}


@dataclass(frozen=True)
class SnapshotEvalJob(EvalJob):
    """The evaluation of one pretraining snapshot (`checkpoints/step-NNNNNN` beside the pretrained model): a point of
    the persona's time series over pretraining, its rows tagged with the step and the tokens seen by then."""

    snapshot_step: int = field(default=0, kw_only=True)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "snapshot_step": self.snapshot_step}

    def run(self, call: StageCall) -> dict:
        snapshot = call.model_dir().parent / "checkpoints" / f"step-{self.snapshot_step:06d}"
        rows = call.stages.evaluate(
            snapshot, call.cell, suite_cfg=self.suite, reference_dir=None, world_cfg=self.pipeline.world
        )
        seen = self.snapshot_step * self.pipeline.pretrain.batch_size * self.pipeline.model.max_seq_len
        tidy = tidy_eval_rows(rows, self.arm, self.seed)
        tidy = tidy.assign(strategy=PRETRAINING_STRATEGY, step=self.snapshot_step, tokens=seen)
        write_parquet_atomic(call.cell / ROWS, _typed(tidy))
        return {"rows": ROWS}


@dataclass(frozen=True)
class PosttrainJob(Job):
    posttrain: PosttrainConfig = field(kw_only=True, hash=False, compare=False)
    kind: ClassVar[str] = "posttrain"

    def params(self) -> dict[str, Any]:
        return {**super().params(), "strategy": self.strategy, "posttrain": self.posttrain.model_dump(mode="json")}

    def run(self, call: StageCall) -> dict:
        return self._posttrain(call, self.strategy or "", {})

    def _posttrain(self, call: StageCall, strategy: str, extra: dict[str, Any]) -> dict:
        """Run `strategy` on the input model; the rows carry this job's `strategy` (its name in the results)."""
        model_dir = call.model_dir()
        final = call.stages.posttrain(
            model_dir, strategy, call.cell, cfg=self.posttrain, world_cfg=self.pipeline.world, **extra
        )
        tidy = tidy_curve_rows(call.cell / "posttrain_curve.parquet", self.arm, self.seed, self.strategy or strategy)
        write_parquet_atomic(call.cell / ROWS, tidy)
        if final:
            write_card(call.run_path, self, Path(final), tidy, base_checkpoint=model_dir)
        return {"rows": ROWS, "model_dir": call.rel(Path(final)) if final else None}


@dataclass(frozen=True)
class FollowUpJob(PosttrainJob):
    """Post-training chained after another job's model (its first dependency: the pretrained model, a strategy or
    another follow-up); its last dependency is the pretraining, so its curve also measures KL to the base. Its
    `strategy` is the follow-up's name (the results' strategy column); `runs` is the post-training strategy."""

    runs: str = field(default="", kw_only=True)

    def inputs(self, outputs: list[dict]) -> dict[str, str]:
        return {"model_dir": outputs[0].get("model_dir"), "base_dir": outputs[-1]["model_dir"]}

    def params(self) -> dict[str, Any]:
        return {**super().params(), "runs": self.runs}

    def run(self, call: StageCall) -> dict:
        if not call.inputs.get("model_dir"):
            raise ValueError(f"{self.id}: the job it follows saved no model to start from")
        return self._posttrain(call, self.runs, {"origin_dir": call.input_path("base_dir")})


# ---------------------------------------------------------------------------------------------------------------
# What a job leaves in its cell


def tidy_eval_rows(rows: list[dict], arm: str, seed: int) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(rows)
    for col in ("context", "metric", "value"):
        if col not in df.columns:
            raise ValueError(f"evaluation rows lack column {col!r}; got {list(df.columns)}")
    for col in ("ci_low", "ci_high"):
        if col not in df.columns:
            df[col] = float("nan")
    df = df.assign(arm=arm, seed=seed, strategy=BASE_STRATEGY, step=0, tokens=0, kl_bits=0.0)
    return _typed(df[list(ROW_COLUMNS)])


def tidy_curve_rows(curve_path: Path, arm: str, seed: int, strategy: str) -> pd.DataFrame:
    import pandas as pd

    if not curve_path.exists():
        raise FileNotFoundError(f"post-training wrote no {curve_path.name} in {curve_path.parent}")
    df = pd.read_parquet(curve_path)
    missing = [c for c in CURVE_COLUMNS if c not in df.columns and c not in ("ci_low", "ci_high")]
    if missing:
        raise ValueError(f"{curve_path}: missing columns {missing}; expected {list(CURVE_COLUMNS)}")
    for col in ("ci_low", "ci_high"):
        if col not in df.columns:
            df[col] = float("nan")
    df = df.assign(arm=arm, seed=seed, strategy=strategy)
    return _typed(df[list(ROW_COLUMNS)])


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col in ("seed", "step", "tokens"):
        df[col] = df[col].astype("int64")
    for col in ("kl_bits", "value", "ci_low", "ci_high"):
        df[col] = df[col].astype("float64")
    for col in ("arm", "strategy", "context", "metric"):
        df[col] = df[col].astype(str)
    return df.reset_index(drop=True)


def write_card(
    run_path: Path, job: Job, checkpoint: Path, tidy: pd.DataFrame, base_checkpoint: Path | None = None
) -> None:
    """README.md in a final checkpoint, with the measurement at its last step (none for a stage that saved no model)."""
    from ..model.card import gather_facts, write_model_card

    if not (checkpoint / "config.json").exists():
        return
    rows = tidy[tidy.step == tidy.step.max()].to_dict("records")
    facts = gather_facts(
        checkpoint,
        name=run_path.name,
        arm=job.arm,
        seed=job.seed,
        strategy=job.strategy or BASE_STRATEGY,
        rows=rows,
        base_checkpoint=base_checkpoint,
    )
    write_model_card(checkpoint, facts)


def _abs(path: str, run_path: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else run_path / p
