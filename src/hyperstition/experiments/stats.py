"""Statistics across seeds: pure functions on numbers, no I/O.

- `bootstrap_mean_ci`: mean with a seeded percentile-bootstrap CI (NaN bounds with fewer than two values).
- `paired_difference`: arm minus control, paired by seed, with a bootstrap CI over seeds.
- `interpolate_curve` / `log_kl_grid`: put persistence curves measured at different KLs on one log-spaced grid.
- `stickiness`: S(K) = Delta(K) / Delta_0, the surviving fraction of the base gap between two arms, bootstrap over seeds.
- binomial rates use `hyperstition.evals.stats.wilson_interval`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

DEFAULT_LEVEL = 0.95
DEFAULT_BOOT = 2000


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval and the number of seeds behind it."""

    value: float
    ci_low: float
    ci_high: float
    n: int


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    lo, hi = np.nanpercentile(samples, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_LEVEL, seed: int = 0) -> Estimate:
    """Mean of `values` (NaNs dropped) with a percentile-bootstrap CI; the same seed gives the same CI."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    lo, hi = _percentiles(x[idx].mean(axis=1), level)
    return Estimate(mean, lo, hi, n)


def paired_difference(
    treated: Mapping[int, float], control: Mapping[int, float], n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_LEVEL, seed: int = 0
) -> Estimate:
    """Mean over shared seeds of treated[s] - control[s], with a bootstrap CI over seeds."""
    shared = sorted(set(treated) & set(control))
    diffs = [treated[s] - control[s] for s in shared]
    return bootstrap_mean_ci(diffs, n_boot=n_boot, level=level, seed=seed)


# ---------------------------------------------------------------------------------------------------------------
# Curves on a common KL grid


def interpolate_curve(kl: Sequence[float], values: Sequence[float], grid: Sequence[float]) -> np.ndarray:
    """Values of a persistence curve at the pressures in `grid`.

    Between measured points with KL > 0 the curve is interpolated linearly in log KL; between the base point
    (KL = 0, if present) and the first positive KL it is interpolated linearly in KL. Pressures beyond the largest
    measured KL (or below the smallest when there is no base point) are NaN: curves are never extrapolated.
    Repeated KLs are averaged."""
    k = np.asarray(kl, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = ~(np.isnan(k) | np.isnan(v))
    k, v = k[ok], v[ok]
    g = np.asarray(grid, dtype=float)
    out = np.full(g.shape, np.nan)
    if len(k) == 0:
        return out
    uk, inv = np.unique(k, return_inverse=True)
    uv = np.bincount(inv, weights=v) / np.bincount(inv)
    base = uv[uk <= 0]
    pos_k, pos_v = uk[uk > 0], uv[uk > 0]
    if len(pos_k):
        inside = (g >= pos_k[0]) & (g <= pos_k[-1])
        out[inside] = np.interp(np.log(g[inside]), np.log(pos_k), pos_v)
        if len(base):
            below = (g >= 0) & (g < pos_k[0])
            out[below] = base[-1] + (pos_v[0] - base[-1]) * g[below] / pos_k[0]
    elif len(base):
        out[g == 0] = base[-1]
    return out


def log_kl_grid(curves_kl: Sequence[Sequence[float]], n: int = 24) -> np.ndarray:
    """A log-spaced grid of pressures every curve covers: from the smallest positive KL measured by any curve to
    the smallest maximum KL over curves (so no curve is extrapolated). Empty when the curves do not overlap."""
    maxima, minima = [], []
    for kl in curves_kl:
        k = np.asarray(kl, dtype=float)
        k = k[~np.isnan(k) & (k > 0)]
        if len(k) == 0:
            return np.array([])
        maxima.append(k.max())
        minima.append(k.min())
    if not maxima:
        return np.array([])
    lo, hi = min(minima), min(maxima)
    if lo >= hi:
        return np.array([hi])
    return np.geomspace(lo, hi, n)


@dataclass(frozen=True)
class Stickiness:
    """S(K) on a grid of pressures, with the gaps it is made of."""

    grid: np.ndarray
    s: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    delta: np.ndarray  # mean gap Delta(K) over seeds
    delta0: float  # mean base gap over seeds
    n: int  # seeds


Curve = tuple[Sequence[float], Sequence[float]]  # (kl, values), including the base point at kl = 0


def stickiness(
    curves_a: Mapping[int, Curve],
    curves_b: Mapping[int, Curve],
    grid: Sequence[float] | None = None,
    n_boot: int = DEFAULT_BOOT,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Stickiness:
    """S(K) = Delta(K) / Delta_0 for arms A and B, where Delta(K) = mean over seeds of A(K) - B(K) (curves paired
    by seed, each including its base point at KL = 0) and Delta_0 the same at K = 0. The CI resamples seeds with
    replacement and recomputes the ratio of means. With one seed the CI is NaN."""
    seeds = sorted(set(curves_a) & set(curves_b))
    if not seeds:
        raise ValueError("stickiness: the two arms share no seed")
    if grid is None:
        grid = log_kl_grid([curves_a[s][0] for s in seeds] + [curves_b[s][0] for s in seeds])
    g = np.asarray(grid, dtype=float)
    points = np.concatenate([[0.0], g])
    gaps = np.array([
        interpolate_curve(*curves_a[s], points) - interpolate_curve(*curves_b[s], points) for s in seeds
    ])  # seeds x (1 + len(grid))

    with warnings.catch_warnings():  # NaN gaps (curves not reaching K) and a zero base gap give NaN, not warnings
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_gaps = np.nanmean(gaps, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = mean_gaps[1:] / mean_gaps[0]
        lo = np.full(g.shape, np.nan)
        hi = np.full(g.shape, np.nan)
        if len(seeds) >= 2 and len(g):
            rng = np.random.default_rng(seed)
            idx = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))
            boot_means = np.nanmean(gaps[idx], axis=1)  # n_boot x (1 + len(grid))
            with np.errstate(divide="ignore", invalid="ignore"):
                boot = boot_means[:, 1:] / boot_means[:, :1]
            boot = np.where(np.isfinite(boot), boot, np.nan)
            alpha = (1 - level) / 2
            lo = np.nanpercentile(boot, 100 * alpha, axis=0)
            hi = np.nanpercentile(boot, 100 * (1 - alpha), axis=0)
    return Stickiness(g, s, lo, hi, mean_gaps[1:], float(mean_gaps[0]), len(seeds))
