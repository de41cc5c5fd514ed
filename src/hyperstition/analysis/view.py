"""`RunView`: what a report section reads. The typed run directory plus the results as `results.parquet` holds
them (per-seed rows and the persisted seed aggregates), with the arms, strategies, contexts and seeds they cover.
Built once per report (`report/render.py`); nothing here recomputes a result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..schema import BASE_STRATEGY, HEADLINE_BITS
from .aggregate import aggregate_rows, seed_rows
from .rundir import RunDir

if TYPE_CHECKING:
    import pandas as pd

PERSONA_CONTEXTS = ("observed", "unobserved")


@dataclass(frozen=True)
class RunView:
    """A run's results for its report: `df` the per-seed rows, `aggregates` the seed-null rows, `samples` the
    response sample; `arms` in the experiment's order, `control` the arm differences are measured against."""

    run: RunDir
    df: pd.DataFrame
    aggregates: pd.DataFrame
    samples: pd.DataFrame
    arms: list[str]
    control: str
    strategies: list[str]
    contexts: list[str]
    seeds: list[int]

    @classmethod
    def of(cls, run: RunDir, results: pd.DataFrame, samples: pd.DataFrame) -> "RunView":
        df = seed_rows(results)
        present = list(dict.fromkeys(df.arm))
        arms = [a for a in run.experiment.arms if a in set(present)] or present
        arms += [a for a in present if a not in arms]
        control = run.arms.control or run.experiment.control
        if arms and control not in arms:
            control = arms[0]
        bit_contexts = set(df[df.metric == HEADLINE_BITS].context)
        return cls(
            run=run,
            df=df,
            aggregates=aggregate_rows(results),
            samples=samples,
            arms=arms,
            control=control,
            strategies=[s for s in dict.fromkeys(df.strategy) if s != BASE_STRATEGY],
            contexts=[c for c in PERSONA_CONTEXTS if c in bit_contexts] or list(PERSONA_CONTEXTS),
            seeds=sorted(int(s) for s in df.seed.unique()),
        )
