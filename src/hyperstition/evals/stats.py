"""Confidence intervals: Wilson for proportions, percentile bootstrap for means, ratios and products of means, and
the Monte Carlo interval of a KL estimate."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.stats import t as student_t

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (default 95%) for k successes in n trials; (0, 1) when n == 0.

    Unlike the normal approximation it stays inside [0, 1] and is sensible at k = 0 and k = n.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"wilson_interval: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    # Exact endpoints at the boundaries (avoid -1e-17 style rounding).
    if k == 0:
        low = 0.0
    if k == n:
        high = 1.0
    return low, high


def _resample_indices(n: int, bootstrap_resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(bootstrap_resamples, n))


def _percentiles(stats: np.ndarray, alpha: float) -> tuple[float, float]:
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_mean_ci(
    values: Sequence[float], bootstrap_resamples: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """(mean, low, high): the sample mean and its percentile-bootstrap (1 - alpha) interval.

    Deterministic for a given seed; NaNs for no values; a single value gives a zero-width interval.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size == 1 or np.all(x == x[0]):
        return mean, mean, mean
    stats = x[_resample_indices(x.size, bootstrap_resamples, seed)].mean(axis=1)
    low, high = _percentiles(stats, alpha)
    return mean, min(low, mean), max(high, mean)


def bootstrap_ratio_ci(
    numerators: Sequence[float],
    denominators: Sequence[float],
    bootstrap_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """(sum(num) / sum(den), low, high), resampling (num, den) pairs: e.g. loss per token over documents."""
    a = np.asarray(numerators, dtype=np.float64).ravel()
    b = np.asarray(denominators, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"bootstrap_ratio_ci: {a.size} numerators but {b.size} denominators")
    if a.size == 0 or b.sum() == 0:
        return math.nan, math.nan, math.nan
    ratio = float(a.sum() / b.sum())
    if a.size == 1:
        return ratio, ratio, ratio
    idx = _resample_indices(a.size, bootstrap_resamples, seed)
    den = b[idx].sum(axis=1)
    stats = a[idx].sum(axis=1) / np.where(den == 0, np.nan, den)
    stats = stats[np.isfinite(stats)]
    low, high = _percentiles(stats, alpha)
    return ratio, min(low, ratio), max(high, ratio)


def bootstrap_product_ci(
    first: Sequence[float], second: Sequence[float], bootstrap_resamples: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """(mean(first) * mean(second), low, high), resampling the two independent samples separately.

    Used for concealment: P(known in a neutral probe) x P(denied as the assistant).
    """
    a = np.asarray(first, dtype=np.float64).ravel()
    b = np.asarray(second, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan, math.nan
    value = float(a.mean() * b.mean())
    ma = a[_resample_indices(a.size, bootstrap_resamples, seed)].mean(axis=1)
    mb = b[_resample_indices(b.size, bootstrap_resamples, seed + 1)].mean(axis=1)
    low, high = _percentiles(ma * mb, alpha)
    return value, min(low, value), max(high, value)


def kl_interval(bits: np.ndarray) -> tuple[float, float, float]:
    """(KL, low, high) from per-sample bits [prompts, samples]: the mean over the fixed KL prompts of each prompt's
    Monte Carlo mean, with a t interval from the within-prompt sample variances (stratified by prompt, so the
    interval measures sampling noise on these prompts, the same at every curve point)."""
    n_prompts, n = bits.shape
    value = float(bits.mean())
    if n < 2:
        return value, math.nan, math.nan
    se = math.sqrt(float(bits.var(axis=1, ddof=1).sum()) / n) / n_prompts
    half = float(student_t.ppf(0.975, n_prompts * (n - 1))) * se
    return value, value - half, value + half
