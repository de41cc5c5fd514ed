"""Seed aggregates persisted in `results.parquet`: rows with `seed` null, so nobody recomputes them from a plot.

For every metric, per (arm, strategy, context):
- `<metric>`: the mean over seeds with its t interval (`stats.ESTIMATOR_DESCRIPTION`);
- `paired_diff_<metric>`: the arm minus the control, paired by seed (the control's own rows are omitted);
- `stickiness_S` (headline bits only, `stickiness_frame_rows`; added by the experiments that register it as their
  analysis): Delta(K) / Delta0 against the control with Fieller's interval, NaN where the base gap's interval
  includes 0 (with one seed: its within-seed interval);
- `context_gap_<headline>` (context `observed_minus_unobserved`, also in `stickiness_frame_rows`): headline bits
  observed minus unobserved, per arm, with its paired difference to the control, and `stickiness_S_ctx`: that
  paired difference at K over the same at K = 0.
Base rows (strategy `base`) have kl_bits 0. Post-training rows are at the common pressures of their strategy:
`N_COMPARE_K` log-spaced KLs inside the range every (arm, seed) curve reached, each seed's curve interpolated on
log K, and `kl_bits` holds that K. Step and tokens are null (a common K is no single step).

`with_curve_starts` also makes step 0 of every post-training curve the base evaluation itself: the curve's own
step-0 measurement is replaced by a copy of the base rows (same items, measured once, K = 0 exactly). A chained
curve (a follow-up, whose rows measure KL_TO_BASE_BITS) starts from its parent instead and keeps its own step 0.

Pure functions of the per-seed rows; imports only `stats` and `schema`, so the runner can call them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..schema import (
    BASE_STRATEGY,
    CONTEXT_GAP,
    CONTEXT_GAP_BITS,
    HEADLINE_BITS,
    KL_TO_BASE_BITS,
    PRETRAINING_STRATEGY,
    RESULT_COLUMNS,
    STICKINESS_S,
    STICKINESS_S_CTX,
    is_proportion,
    paired_diff_metric,
)
from . import stats

N_COMPARE_K = 6  # common pressures per strategy persisted in results.parquet (the largest is the headline's)
INT_COLUMNS = ("seed", "step", "tokens")


def seed_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The per-seed measurements (aggregate rows, which have no seed, removed)."""
    return df[df["seed"].notna()] if "seed" in df.columns else df


def aggregate_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["seed"].isna()] if "seed" in df.columns else df.iloc[0:0]


def with_curve_starts(df: pd.DataFrame) -> pd.DataFrame:
    """Per-seed rows with each post-training curve's step 0 replaced by the base evaluation of its (arm, seed);
    chained curves (they measure KL_TO_BASE_BITS: their step 0 is their parent, not the base) keep their own, and
    pretraining snapshots (PRETRAINING_STRATEGY) get none."""
    base = df[df.strategy == BASE_STRATEGY]
    curves = df[df.strategy != BASE_STRATEGY]
    chained = set(df[df.metric == KL_TO_BASE_BITS].strategy)
    chained.add(PRETRAINING_STRATEGY)  # snapshots along pretraining: a time series, not a curve from the base
    starts = [curves[curves.strategy.isin(chained) & (curves.step == 0)]]
    for strategy in [s for s in dict.fromkeys(curves.strategy) if s not in chained]:
        cells = curves.loc[curves.strategy == strategy, ["arm", "seed"]].drop_duplicates()
        start = base.merge(cells, on=["arm", "seed"])
        starts.append(start.assign(strategy=strategy, step=0, tokens=0, kl_bits=0.0))
    out = pd.concat([base, curves[curves.step != 0], *starts], ignore_index=True)
    return out[list(df.columns)]


def seed_estimate(values: np.ndarray, lows: np.ndarray, highs: np.ndarray, metric: str) -> tuple[float, float, float]:
    """Seed mean with its t interval (floored by the seeds' own intervals for proportions); one seed keeps its
    within-seed interval (the only one it has)."""
    ok = ~np.isnan(values)
    if ok.sum() == 1:
        i = int(np.flatnonzero(ok)[0])
        return float(values[i]), float(lows[i]), float(highs[i])
    if not is_proportion(metric):
        est = stats.seed_interval(list(values))
        return est.value, est.ci_low, est.ci_high
    mean, lo, hi, _ = stats.floored_t_interval(values[ok], (highs[ok] - lows[ok]) / 2)  # NaN halves: no floor
    return float(mean), max(float(lo), 0.0), min(float(hi), 1.0)  # the truth is a proportion: clipping keeps coverage


def paired_estimate(treated: dict[int, tuple], control: dict[int, tuple], metric: str) -> tuple[float, float, float]:
    """Paired difference over shared seeds (t interval, floored for proportions like `seed_estimate`); one seed:
    within-seed intervals combined in quadrature."""
    shared = sorted(s for s in set(treated) & set(control) if np.isfinite(treated[s][0]) and np.isfinite(control[s][0]))
    if len(shared) == 1:
        (s,) = shared
        (a, alo, ahi), (b, blo, bhi) = treated[s], control[s]
        half = math.hypot((ahi - alo) / 2, (bhi - blo) / 2)
        return a - b, a - b - half, a - b + half
    diffs = np.array([treated[s][0] - control[s][0] for s in shared])
    if not is_proportion(metric):
        est = stats.seed_interval(list(diffs))
        return est.value, est.ci_low, est.ci_high
    halves = np.array([math.hypot(treated[s][2] - treated[s][1], control[s][2] - control[s][1]) / 2 for s in shared])
    mean, lo, hi, _ = stats.floored_t_interval(diffs, halves)
    return float(mean), max(float(lo), -1.0), min(float(hi), 1.0)


def _row(arm: str, strategy: str, k: float, context: str, metric: str, est: tuple[float, float, float]) -> dict:
    return {
        "arm": arm,
        "seed": pd.NA,
        "strategy": strategy,
        "step": pd.NA,
        "tokens": pd.NA,
        "kl_bits": float(k),
        "context": context,
        "metric": metric,
        "value": est[0],
        "ci_low": est[1],
        "ci_high": est[2],
    }


def _seed_points(df: pd.DataFrame, strategy: str, grid: np.ndarray) -> dict[tuple, dict[int, tuple]]:
    """(arm, context, metric) -> seed -> (values, lows, highs) at the pressures `grid` (the base rows when the grid
    is [0]); curves interpolated on log K with step 0 = the base evaluation."""
    out: dict[tuple, dict[int, tuple]] = {}
    if strategy == BASE_STRATEGY:
        sel = df[df.strategy == BASE_STRATEGY]
        for (arm, context, metric, seed), g in sel.groupby(["arm", "context", "metric", "seed"], sort=False):
            means = tuple(np.array([g[c].mean()]) for c in ("value", "ci_low", "ci_high"))
            out.setdefault((arm, context, metric), {})[int(seed)] = means
        return out
    sel = _placeable(df[df.strategy == strategy]).sort_values("step")
    for (arm, context, metric, seed), g in sel.groupby(["arm", "context", "metric", "seed"], sort=False):
        k = g.kl_bits.to_numpy(float)
        out.setdefault((arm, context, metric), {})[int(seed)] = tuple(
            stats.interpolate_curve(k, g[c].to_numpy(float), grid) for c in ("value", "ci_low", "ci_high")
        )
    return out


def _placeable(curve: pd.DataFrame) -> pd.DataFrame:
    """Curve rows that have a place on a pressure axis: step 0 (the base evaluation, K = 0 exactly) and post-training
    points with a positive measured KL; a post-training point measured at K <= 0 is kept in the per-seed rows but
    never averaged into K = 0."""
    return curve[(curve.step == 0) | (curve.kl_bits > 0)]


def compare_grid(df: pd.DataFrame, strategy: str, n: int = N_COMPARE_K) -> np.ndarray:
    """The common pressures of `strategy`: log-spaced inside the KL range every (arm, seed) curve reached."""
    sel = df[(df.strategy == strategy) & (df.metric == HEADLINE_BITS) & (df.context == "observed")]
    kls = [g.kl_bits.to_numpy(float) for _, g in sel.groupby(["arm", "seed"])]
    return stats.log_kl_grid(kls, n=n) if kls else np.array([])


def _strategy_rows(df: pd.DataFrame, strategy: str, grid: np.ndarray, control: str | None) -> list[dict]:
    points = _seed_points(df, strategy, grid)
    rows = []
    for (arm, context, metric), per_seed in points.items():
        ctrl = points.get((control, context, metric)) if control is not None and arm != control else None
        for i, k in enumerate(grid):
            at = {s: (v[0][i], v[1][i], v[2][i]) for s, v in per_seed.items()}
            values = np.array([v[0] for v in at.values()])
            if np.isnan(values).all():
                continue
            lows, highs = np.array([v[1] for v in at.values()]), np.array([v[2] for v in at.values()])
            rows.append(_row(arm, strategy, k, context, metric, seed_estimate(values, lows, highs, metric)))
            if ctrl is not None:
                control_at = {s: (v[0][i], v[1][i], v[2][i]) for s, v in ctrl.items()}
                rows.append(
                    _row(arm, strategy, k, context, paired_diff_metric(metric), paired_estimate(at, control_at, metric))
                )
    return rows


def stickiness_rows(df: pd.DataFrame, strategy: str, grid: np.ndarray, control: str) -> list[dict]:
    """stickiness_S of every arm against the control at the pressures `grid`, per context (headline bits)."""
    rows = []
    sel = df[df.metric == HEADLINE_BITS]
    for context in sorted(set(sel.context)):
        curves = {arm: _curves(sel, arm, strategy, context) for arm in dict.fromkeys(sel.arm)}
        if not curves.get(control):
            continue
        for arm, c in curves.items():
            if arm == control or not c or not set(c) & set(curves[control]):
                continue
            st = stats.stickiness(c, curves[control], grid)
            for i, k in enumerate(st.grid):
                rows.append(_row(arm, strategy, k, context, STICKINESS_S, (st.s[i], st.ci_low[i], st.ci_high[i])))
    return rows


CURVE_FIELDS = ("kl_bits", "value", "ci_low", "ci_high")


def _curves(sel: pd.DataFrame, arm: str, strategy: str, context: str) -> dict[int, tuple[np.ndarray, ...]]:
    """Per seed: (kl, value, ci_low, ci_high) of one arm's curve in one context, in step order."""
    g = _placeable(sel[(sel.arm == arm) & (sel.strategy == strategy) & (sel.context == context)]).sort_values("step")
    return {int(s): tuple(c[f].to_numpy(float) for f in CURVE_FIELDS) for s, c in g.groupby("seed")}


def context_gap_curves(sel: pd.DataFrame, arm: str, strategy: str) -> dict[int, tuple[np.ndarray, ...]]:
    """Per seed: (kl, observed - unobserved, low, high) at the steps both contexts were measured; the within-seed
    interval is the two contexts' intervals combined in quadrature (their items are different prompts)."""
    g = _placeable(sel[(sel.arm == arm) & (sel.strategy == strategy)])
    out = {}
    for seed, c in g.groupby("seed"):
        obs = c[c.context == "observed"].groupby("step")[list(CURVE_FIELDS)].mean()
        unobs = c[c.context == "unobserved"].groupby("step")[list(CURVE_FIELDS)].mean()
        steps = obs.index.intersection(unobs.index)
        if steps.empty:
            continue
        obs, unobs = obs.loc[steps], unobs.loc[steps]
        gap = (obs.value - unobs.value).to_numpy(float)
        half = np.hypot((obs.ci_high - obs.ci_low) / 2, (unobs.ci_high - unobs.ci_low) / 2).to_numpy(float)
        out[int(seed)] = (obs.kl_bits.to_numpy(float), gap, gap - half, gap + half)
    return out


def context_gap_rows(df: pd.DataFrame, strategy: str, grid: np.ndarray, control: str | None) -> list[dict]:
    """The headline context gap of every arm at the pressures `grid`, its paired difference to the control, and
    (post-training only) S_ctx: that difference at K over the same at K = 0, with Fieller's interval."""
    sel = df[df.metric == HEADLINE_BITS]
    curves = {arm: context_gap_curves(sel, arm, strategy) for arm in dict.fromkeys(sel.arm)}
    points = {arm: {s: _at(c, grid) for s, c in per_seed.items()} for arm, per_seed in curves.items() if per_seed}
    rows = []
    for arm, per_seed in points.items():
        ctrl = points.get(control) if control is not None and arm != control else None
        for i, k in enumerate(grid):
            at = {s: tuple(v[i] for v in values) for s, values in per_seed.items()}
            values, lows, highs = (np.array([v[j] for v in at.values()]) for j in range(3))
            if np.isnan(values).all():
                continue
            rows.append(_row(arm, strategy, k, CONTEXT_GAP, CONTEXT_GAP_BITS, seed_estimate(values, lows, highs, "")))
            if ctrl is not None:
                control_at = {s: tuple(v[i] for v in values) for s, values in ctrl.items()}
                diff = paired_estimate(at, control_at, CONTEXT_GAP_BITS)
                rows.append(_row(arm, strategy, k, CONTEXT_GAP, paired_diff_metric(CONTEXT_GAP_BITS), diff))
        if ctrl is not None and strategy != BASE_STRATEGY and set(curves[arm]) & set(curves[control]):
            st = stats.stickiness(curves[arm], curves[control], grid)
            rows += [
                _row(arm, strategy, k, CONTEXT_GAP, STICKINESS_S_CTX, (st.s[i], st.ci_low[i], st.ci_high[i]))
                for i, k in enumerate(st.grid)
            ]
    return rows


def _at(curve: tuple[np.ndarray, ...], grid: np.ndarray) -> tuple[np.ndarray, ...]:
    """(values, lows, highs) of a (kl, value, low, high) curve at the pressures `grid`."""
    kl = curve[0]
    return tuple(stats.interpolate_curve(kl, c, grid) for c in curve[1:4])


def aggregate_frame(df: pd.DataFrame, control: str | None) -> pd.DataFrame:
    """Every seed aggregate of the per-seed rows `df` (curves already starting at the base evaluation)."""
    df = seed_rows(df)
    rows = _strategy_rows(df, BASE_STRATEGY, np.array([0.0]), control)
    for strategy in [s for s in dict.fromkeys(df.strategy) if s != BASE_STRATEGY]:
        grid = compare_grid(df, strategy)
        if not len(grid):
            continue
        rows += _strategy_rows(df, strategy, grid, control)
    return _frame(rows)


def stickiness_frame_rows(df: pd.DataFrame, control: str | None) -> pd.DataFrame:
    """stickiness_S of every arm, strategy and context at its strategy's common pressures, and the context gap with
    its stickiness S_ctx (seed-null rows)."""
    df = seed_rows(df)
    rows: list[dict] = context_gap_rows(df, BASE_STRATEGY, np.array([0.0]), control)
    for strategy in [s for s in dict.fromkeys(df.strategy) if s != BASE_STRATEGY]:
        grid = compare_grid(df, strategy)
        if not len(grid):
            continue
        rows += context_gap_rows(df, strategy, grid, control)
        if control is not None:
            rows += stickiness_rows(df, strategy, grid, control)
    return _frame(rows)


def _frame(rows: list[dict]) -> pd.DataFrame:
    return _nullable(pd.DataFrame(rows, columns=[c for c in RESULT_COLUMNS if c != "run"]))


def _nullable(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col in INT_COLUMNS:
        df[col] = df[col].astype("Int64")
    for col in ("kl_bits", "value", "ci_low", "ci_high"):
        df[col] = df[col].astype("float64")
    return df


def with_aggregates(df: pd.DataFrame, control: str | None) -> pd.DataFrame:
    """Per-seed rows (curves starting at the base evaluation) followed by their seed aggregates; seed, step and
    tokens become nullable integers."""
    per_seed = _nullable(with_curve_starts(seed_rows(df)))
    aggregates = aggregate_frame(per_seed, control)
    if "run" in df.columns:
        aggregates.insert(0, "run", df["run"].iloc[0] if len(df) else "")
    return pd.concat([per_seed, aggregates[list(per_seed.columns)]], ignore_index=True)


def seed_values_at(df: pd.DataFrame, strategy: str, k: float) -> dict[tuple, dict[int, tuple[float, float, float]]]:
    """(arm, context, metric) -> seed -> (value, low, high) of `strategy` at pressure `k` (each seed's curve
    interpolated on log K, step 0 the base evaluation; the base rows themselves for the base strategy)."""
    grid = np.array([0.0 if strategy == BASE_STRATEGY else float(k)])
    points = _seed_points(seed_rows(df), strategy, grid)
    return {key: {s: tuple(float(v[0]) for v in vals) for s, vals in per.items()} for key, per in points.items()}


def aggregate_row(arm: str, strategy: str, k: float, context: str, metric: str, est: tuple) -> dict:
    """One seed-null row of results.parquet (RESULT_COLUMNS less `run`)."""
    return _row(arm, strategy, k, context, metric, est)


def aggregate_rows_frame(rows: list[dict]) -> pd.DataFrame:
    """Seed-null rows as an analysis returns them (nullable integer columns, float values)."""
    return _frame(rows)
