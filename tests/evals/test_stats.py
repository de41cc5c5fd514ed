"""Wilson and bootstrap intervals on known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from hyperstition.evals import bootstrap_mean_ci, wilson_interval
from hyperstition.evals.stats import bootstrap_product_ci, bootstrap_ratio_ci


@pytest.mark.parametrize(
    "k,n,low,high",
    [
        (0, 10, 0.0, 0.277533),
        (5, 10, 0.236593, 0.763407),
        (10, 10, 0.722467, 1.0),
        (1, 20, 0.008881, 0.236132),
        (81, 263, 0.255289, 0.366210),
    ],
)
def test_wilson_known_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=2e-6)
    assert hi == pytest.approx(high, abs=2e-6)


def test_wilson_matches_scipy_everywhere():
    for n in (1, 2, 7, 50, 333):
        for k in range(0, n + 1, max(1, n // 9)):
            ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
            lo, hi = wilson_interval(k, n)
            assert lo == pytest.approx(ci.low, abs=1e-9)
            assert hi == pytest.approx(ci.high, abs=1e-9)
            assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_edge_cases():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(3, 2)


def test_bootstrap_constant_and_tiny_inputs():
    assert bootstrap_mean_ci([2.5] * 7, 100, 0) == (2.5, 2.5, 2.5)
    assert bootstrap_mean_ci([4.0], 100, 0) == (4.0, 4.0, 4.0)
    assert all(math.isnan(x) for x in bootstrap_mean_ci([], 100, 0))


def test_bootstrap_matches_normal_theory_and_is_seeded():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=400)
    mean, lo, hi = bootstrap_mean_ci(x, 4000, seed=7)
    assert mean == pytest.approx(x.mean())
    half = 1.959964 * x.std(ddof=1) / math.sqrt(x.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)
    assert (mean - lo) == pytest.approx(half, rel=0.15) and (hi - mean) == pytest.approx(half, rel=0.15)
    assert bootstrap_mean_ci(x, 4000, seed=7) == (mean, lo, hi)
    assert bootstrap_mean_ci(x, 4000, seed=8) != (mean, lo, hi)


def test_bootstrap_coverage_near_nominal():
    rng = np.random.default_rng(0)
    covered = 0
    trials = 300
    for t in range(trials):
        x = rng.exponential(1.0, size=40)  # skewed: percentile bootstrap still near 95%
        _, lo, hi = bootstrap_mean_ci(x, 400, seed=t)
        covered += lo <= 1.0 <= hi
    assert 0.88 <= covered / trials <= 0.99


def test_ratio_and_product_intervals():
    num = np.array([10.0, 20.0, 30.0, 40.0])
    den = np.array([5.0, 10.0, 15.0, 20.0])
    assert bootstrap_ratio_ci(num, den, 200, 0) == (2.0, 2.0, 2.0)  # every resample has ratio 2
    value, lo, hi = bootstrap_product_ci([1, 1, 0, 0], [1, 0, 1, 1], 500, 0)
    assert value == pytest.approx(0.5 * 0.75)
    assert 0.0 <= lo <= value <= hi <= 1.0
    assert bootstrap_product_ci([1, 1], [0, 0], 100, 0) == (0.0, 0.0, 0.0)
