"""Seed-aggregated views of a run's tidy results, for the report, `compare` and the experiments' sections (the
store itself, reading and writing `results.parquet` and SQL over it, is `store.py`).

Aggregation rule everywhere: a number for an (arm, strategy, context, metric) is the mean over seeds with the
t interval over seed means (`stats.ESTIMATOR_DESCRIPTION`); with a single seed the CI is the within-seed CI the
stage reported (bootstrap over prompts or Wilson), so a one-seed run still shows its uncertainty. Functions here
take the per-seed rows: `results.parquet` also holds the persisted aggregates (seed null, `aggregate.py`), which
`seed_rows` removes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..schema import BASE_STRATEGY
from . import stats
from .aggregate import paired_estimate, seed_estimate, seed_rows

# ---------------------------------------------------------------------------------------------------------------
# Seed aggregation


def _estimate(values: np.ndarray, lows: np.ndarray, highs: np.ndarray, metric: str) -> tuple[float, float, float, int]:
    """The persisted aggregates' rule (`aggregate.seed_estimate`), plus the number of seeds."""
    value, lo, hi = seed_estimate(values, lows, highs, metric)
    return value, lo, hi, int(np.sum(~np.isnan(values)))


def endpoint_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (arm, seed, strategy, context, metric): the base evaluation for strategy `base`, the last step
    of the curve for post-training strategies."""
    df = seed_rows(df)
    if df.empty:
        return df
    last = df.groupby(["arm", "seed", "strategy"])["step"].transform("max")
    return df[df["step"] == last]


def summarize(df: pd.DataFrame, by: tuple[str, ...] = ("arm", "strategy", "context", "metric")) -> pd.DataFrame:
    """Mean over seeds with its t interval for each group of endpoint rows; adds n (seeds) and mean kl_bits/step."""
    ends = endpoint_rows(df)
    out = []
    for key, g in ends.groupby(list(by), sort=False):
        g = (
            g.groupby("seed")
            .agg(
                value=("value", "mean"),
                ci_low=("ci_low", "mean"),
                ci_high=("ci_high", "mean"),
                kl_bits=("kl_bits", "mean"),
                step=("step", "max"),
            )
            .reset_index()
        )
        metric = dict(zip(by, key)).get("metric", "")
        value, lo, hi, n = _estimate(
            g["value"].to_numpy(float), g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float), metric
        )
        out.append(
            {
                **dict(zip(by, key)),
                "value": value,
                "ci_low": lo,
                "ci_high": hi,
                "n": n,
                "kl_bits": float(g["kl_bits"].mean()),
                "step": int(g["step"].max()),
            }
        )
    return pd.DataFrame(out, columns=[*by, "value", "ci_low", "ci_high", "n", "kl_bits", "step"])


def per_seed(df: pd.DataFrame, arm: str, strategy: str, context: str, metric: str) -> dict[int, float]:
    ends = endpoint_rows(df)
    sel = ends[(ends.arm == arm) & (ends.strategy == strategy) & (ends.context == context) & (ends.metric == metric)]
    return {int(s): float(v) for s, v in sel.groupby("seed")["value"].mean().items()}


def per_seed_with_ci(df: pd.DataFrame, arm: str, strategy: str, context: str, metric: str) -> dict[int, tuple]:
    """seed -> (value, ci_low, ci_high) of the endpoint rows."""
    ends = endpoint_rows(df)
    sel = ends[(ends.arm == arm) & (ends.strategy == strategy) & (ends.context == context) & (ends.metric == metric)]
    means = sel.groupby("seed")[["value", "ci_low", "ci_high"]].mean()
    return {int(s): (float(r.value), float(r.ci_low), float(r.ci_high)) for s, r in means.iterrows()}


def paired_vs_control(df: pd.DataFrame, control: str, metric: str, strategy: str = BASE_STRATEGY) -> pd.DataFrame:
    """Each arm minus the control arm, paired by seed, per context: mean difference with its t interval (floored by
    the within-seed intervals for proportions; within-seed intervals in quadrature for one seed)."""
    rows = []
    sub = df[df.metric == metric]
    for context in sorted(sub.context.unique()):
        ctrl = per_seed_with_ci(df, control, strategy, context, metric)
        for arm in _arms_in_order(df):
            if arm == control:
                continue
            treated = per_seed_with_ci(df, arm, strategy, context, metric)
            shared = set(treated) & set(ctrl)
            if not shared:
                continue
            value, lo, hi = paired_estimate(treated, ctrl, metric)  # the persisted aggregates' rule
            rows.append(
                {
                    "arm": arm,
                    "context": context,
                    "metric": metric,
                    "strategy": strategy,
                    "diff": value,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": len(shared),
                }
            )
    return pd.DataFrame(rows, columns=["arm", "context", "metric", "strategy", "diff", "ci_low", "ci_high", "n"])


def _arms_in_order(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["arm"]))


def curves(
    df: pd.DataFrame, arm: str, strategy: str, context: str, metric: str
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per seed: (kl, value, ci_low, ci_high) in step order, starting from the base evaluation at K = 0 (the
    curve's own step-0 rows, if any, are replaced by it: one measurement on the same items)."""
    out = {}
    df = seed_rows(df)
    sel = df[(df.arm == arm) & (df.context == context) & (df.metric == metric)]
    for s, g in sel.groupby("seed"):
        curve = g[(g.strategy == strategy) & (g.step != 0) & (g.kl_bits > 0)]  # K <= 0 has no place on a log axis
        if curve.empty:
            continue
        base = g[g.strategy == BASE_STRATEGY].assign(kl_bits=0.0, step=0)
        curve = pd.concat([base, curve]).sort_values("step")
        out[int(s)] = (
            curve.kl_bits.to_numpy(float),
            curve.value.to_numpy(float),
            curve.ci_low.to_numpy(float),
            curve.ci_high.to_numpy(float),
        )
    return out


def mean_curve(seed_curves: dict[int, tuple], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds on `grid` with the t interval per grid point (within-seed CI when there is one seed)."""
    if not seed_curves:
        nan = np.full(len(grid), np.nan)
        return nan, nan, nan
    vals = np.array([stats.interpolate_curve(c[0], c[1], grid) for c in seed_curves.values()])
    if len(seed_curves) == 1:
        (c,) = seed_curves.values()
        return vals[0], stats.interpolate_curve(c[0], c[2], grid), stats.interpolate_curve(c[0], c[3], grid)
    mean, lo, hi, _ = stats.t_interval(vals.T)
    return mean, lo, hi


def curve_grid(all_curves: list[dict[int, tuple]], n: int = 32) -> np.ndarray:
    """Log-spaced pressures inside the range every curve of every mapping reached."""
    kls = [c[0] for curves_ in all_curves for c in curves_.values()]
    return stats.log_kl_grid(kls, n=n) if kls else np.array([])


STICKINESS_COLUMNS = [
    "arm",
    "K",
    "S",
    "ci_low",
    "ci_high",
    "delta",
    "delta0",
    "delta0_low",
    "delta0_high",
    "n",
    "reason",
]


def stickiness_frame(
    df: pd.DataFrame, control: str, strategy: str, context: str, metric: str, n_grid: int = 32
) -> pd.DataFrame:
    """S(K) of every arm against the control on the common log-KL grid, Fieller intervals; columns
    STICKINESS_COLUMNS (`reason` says why S is undefined or has no interval)."""
    ctrl = curves(df, control, strategy, context, metric)
    rows = []
    if not ctrl:
        return pd.DataFrame(columns=STICKINESS_COLUMNS)
    arm_curves = {arm: curves(df, arm, strategy, context, metric) for arm in _arms_in_order(df) if arm != control}
    grid = curve_grid([ctrl, *arm_curves.values()], n=n_grid)
    for arm, c in arm_curves.items():
        if not c or not set(c) & set(ctrl) or not len(grid):
            continue
        st = stats.stickiness(c, ctrl, grid)
        for i, k in enumerate(st.grid):
            rows.append(
                {
                    "arm": arm,
                    "K": k,
                    "S": st.s[i],
                    "ci_low": st.ci_low[i],
                    "ci_high": st.ci_high[i],
                    "delta": st.delta[i],
                    "delta0": st.delta0,
                    "delta0_low": st.delta0_low,
                    "delta0_high": st.delta0_high,
                    "n": st.n,
                    "reason": st.reason,
                }
            )
    return pd.DataFrame(rows, columns=STICKINESS_COLUMNS)
