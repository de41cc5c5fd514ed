"""What the training-order experiments (`curriculum`, `timing`, `relapse`) share: per-seed values of one metric,
seed intervals along a curve's steps, the rows they add to results.parquet, and the calibration status line each
report section carries (the instrument is calibrated at one preset; a number from another tests plumbing only)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..schema import RESULT_COLUMNS
from .html import e
from .stats import Estimate, fieller_interval, floored_t_interval, seed_interval

if TYPE_CHECKING:
    import pandas as pd

    from .view import RunView

CALIBRATED_PRESET = "quick"  # every calibration control passes there, 3 seeds (README, "Calibration")


def values(df: pd.DataFrame, arm: str, strategy: str, metric: str, context: str) -> dict[tuple[int, int], float]:
    """{(seed, step): value} of one metric of one (arm, strategy, context)."""
    sel = df[(df.arm == arm) & (df.strategy == strategy) & (df.metric == metric) & (df.context == context)]
    return {(int(r.seed), int(r.step)): float(r.value) for r in sel.itertuples()}


def halves(df: pd.DataFrame, arm: str, strategy: str, metric: str, context: str) -> dict[tuple[int, int], float]:
    """{(seed, step): half-width of that seed's own 95% interval} of one metric (NaN where the row has none)."""
    sel = df[(df.arm == arm) & (df.strategy == strategy) & (df.metric == metric) & (df.context == context)]
    return {(int(r.seed), int(r.step)): (float(r.ci_high) - float(r.ci_low)) / 2 for r in sel.itertuples()}


def _floored(values: list[float], within: list[float], low: float, high: float) -> Estimate:
    """Seed mean with the t interval floored by the seeds' own within-seed half-widths (stats.floored_t_interval),
    clipped to [low, high], the range the truth lies in. For rates: seeds that all show the same boundary rate (0 of
    24 in every seed) agree exactly, and the plain t interval would have width 0, a precision no seed measured."""
    x = np.array(values, dtype=float)
    if len(x) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean, lo, hi, n = floored_t_interval(x, np.array(within, dtype=float))
    return Estimate(float(mean), max(float(lo), low), min(float(hi), high), int(n))


def rate_estimate(per: dict[int, float], half: dict[int, float]) -> Estimate:
    """A proportion's mean over seeds with the floored t interval, clipped to [0, 1]; `half`: {seed: within-seed
    half-width}."""
    seeds = [s for s in sorted(per) if math.isfinite(per[s])]
    return _floored([per[s] for s in seeds], [half.get(s, math.nan) for s in seeds], 0.0, 1.0)


def rate_difference(
    after: dict[int, float],
    before: dict[int, float],
    half_after: dict[int, float],
    half_before: dict[int, float],
    bound: float = 1.0,
) -> Estimate:
    """Paired difference over shared seeds, floored by each seed's within-seed half-widths in quadrature and clipped
    to [-bound, bound]: 1 for a difference of two proportions, 2 for a difference of two rises."""
    seeds = [s for s in sorted(set(after) & set(before)) if math.isfinite(after[s]) and math.isfinite(before[s])]
    within = [math.hypot(half_after.get(s, math.nan), half_before.get(s, math.nan)) for s in seeds]
    return _floored([after[s] - before[s] for s in seeds], within, -bound, bound)


def at_step(points: dict[tuple[int, int], float], step: int) -> dict[int, float]:
    """{seed: value} at `step`."""
    return {seed: v for (seed, s), v in points.items() if s == step}


def steps(points: dict[tuple[int, int], float]) -> list[int]:
    return sorted({s for _, s in points})


def ratio(num: dict[int, float], den: dict[int, float]) -> Estimate:
    """mean(num) / mean(den) over shared seeds with Fieller's interval (NaN bounds where the denominator's interval
    includes 0, or with fewer than two seeds: the point alone)."""
    shared = sorted(s for s in set(num) & set(den) if math.isfinite(num[s]) and math.isfinite(den[s]))
    if not shared:
        return Estimate(math.nan, math.nan, math.nan, 0)
    a, b = np.array([num[s] for s in shared]), np.array([den[s] for s in shared])
    if len(shared) < 2:
        return Estimate(float(a.mean() / b.mean()), math.nan, math.nan, 1)
    r, lo, hi, _ = fieller_interval(a, b)
    return Estimate(float(r), float(lo), float(hi), len(shared))


def difference(after: dict[int, float], before: dict[int, float]) -> Estimate:
    """Mean over shared seeds of after - before, with its t interval."""
    return seed_interval([after[s] - before[s] for s in sorted(set(after) & set(before))])


def row(arm: str, strategy: str, context: str, metric: str, step: int | None, kl: float, est: Estimate) -> dict:
    """A seed-null result row (RESULT_COLUMNS less `run`)."""
    return {
        "arm": arm,
        "seed": None,
        "strategy": strategy,
        "step": step,
        "tokens": None,
        "kl_bits": kl,
        "context": context,
        "metric": metric,
        "value": est.value,
        "ci_low": est.ci_low,
        "ci_high": est.ci_high,
    }


def frame(rows: list[dict]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(rows, columns=[c for c in RESULT_COLUMNS if c != "run"])
    for col in ("seed", "step", "tokens"):
        df[col] = df[col].astype("Int64")
    return df.astype({c: "float64" for c in ("kl_bits", "value", "ci_low", "ci_high")})


# What the last calibration run found at the calibrated preset (README, "Status"): stated, not assumed.
QUICK_CALIBRATION = (
    "on combination items all 7 calibration controls pass (seeds 3-5; seeds 0-2 miss the 80% classifiable "
    "share in one arm, 79.2%; README)"
)


def calibration_status(view: RunView) -> str:
    """One line: whether this run's preset is the calibrated one."""
    preset = view.run.experiment.preset
    if preset == CALIBRATED_PRESET:
        state = f"the {e(preset)} preset: {e(QUICK_CALIBRATION)}"
    else:
        state = (
            f"the {e(preset)} preset is not calibrated (the calibration controls pass at {CALIBRATED_PRESET}); "
            "these numbers test the machinery, not the claim"
        )
    return f'<p class="note"><b>Calibration status:</b> {state}. Intervals are 95% over {len(view.seeds)} seed(s).</p>'
