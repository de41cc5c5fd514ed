"""Statistics across seeds, on inputs whose answers are known in closed form."""

import math

import numpy as np
import pytest

from hyperstition.analysis import stats


def test_paired_difference_pairs_by_seed():
    treated = {0: 1.0, 1: 2.0, 2: 4.0}
    control = {0: 0.0, 1: 1.0, 2: 3.0, 3: 10.0}  # seed 3 has no partner and is ignored
    est = stats.paired_difference(treated, control)
    assert (est.value, est.ci_low, est.ci_high, est.n) == (1.0, 1.0, 1.0, 3)
    # Unpaired arms would give a different (wrong) answer: the pairing matters.
    est2 = stats.paired_difference({0: 5.0, 1: 1.0}, {0: 4.0, 1: 0.0})
    assert est2.value == pytest.approx(1.0) and est2.ci_low == pytest.approx(1.0)


def test_seed_interval_is_the_t_interval_over_seed_means():
    est = stats.seed_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 df) * sd 1 / sqrt(3)
    assert (est.value, est.n) == (2.0, 3)
    assert est.ci_low == pytest.approx(2.0 - half) and est.ci_high == pytest.approx(2.0 + half)
    assert est.half_width == pytest.approx(half)
    two = stats.seed_interval([0.0, 1.0])  # t(0.975, 1 df) = 12.706: two seeds can detect only large differences
    assert two.ci_high == pytest.approx(0.5 + 12.706204736 * 0.5)
    one = stats.seed_interval([2.5, float("nan")])
    assert one.n == 1 and math.isnan(one.ci_low)


def test_fieller_known_values_and_undefined_ratio():
    den = {0: 1.0, 1: 1.1, 2: 0.9}
    exact = stats.fieller_ratio({s: 2 * v for s, v in den.items()}, den)  # every seed has ratio 2: zero-width
    assert (exact.value, exact.ci_low, exact.ci_high) == pytest.approx((2.0, 2.0, 2.0)) and exact.reason == ""
    noisy = stats.fieller_ratio({0: 1.5, 1: 2.9, 2: 1.2}, den)
    assert noisy.ci_low < noisy.value < noisy.ci_high
    # The interval is where (mean(num) - r mean(den)) / se(num - r den) stays within +-t: check both ends.
    a, b = np.array([1.5, 2.9, 1.2]), np.array([1.0, 1.1, 0.9])
    for r in (noisy.ci_low, noisy.ci_high):
        d = a - r * b
        assert abs(d.mean() / (d.std(ddof=1) / math.sqrt(3))) == pytest.approx(4.302652729911275, rel=1e-6)
    undefined = stats.fieller_ratio({0: 1.0, 1: 2.0}, {0: -0.5, 1: 0.6})  # base gap interval includes 0
    assert math.isnan(undefined.value) and "includes 0" in undefined.reason


def test_interpolate_curve_log_kl():
    # Linear in log KL between positive points: halfway in log between 1 and 100 is 10.
    out = stats.interpolate_curve([1.0, 100.0], [0.0, 2.0], [1.0, 10.0, 100.0, 1000.0, 0.5])
    assert out[:3] == pytest.approx([0.0, 1.0, 2.0])
    assert math.isnan(out[3]) and math.isnan(out[4])  # never extrapolated
    # With a base point at KL 0: linear in KL from the base to the first positive point.
    out = stats.interpolate_curve([0.0, 2.0, 20.0], [4.0, 2.0, 1.0], [0.0, 1.0, 2.0, math.sqrt(40.0)])
    assert out == pytest.approx([4.0, 3.0, 2.0, 1.5])
    # Points in step order, KL falling: the path reaches K = 1 first at its second point; a NaN is dropped.
    out = stats.interpolate_curve([10.0, 1.0, 1.0, float("nan")], [3.0, 0.0, 2.0, 9.0], [1.0, 10.0])
    assert out == pytest.approx([0.0, 3.0])
    # Repeated base points (the base evaluation and the curve's own step 0) are averaged.
    out = stats.interpolate_curve([0.0, 0.0, 2.0], [4.0, 6.0, 2.0], [0.0, 1.0])
    assert out == pytest.approx([5.0, 3.5])


def test_interpolate_curve_reads_a_non_monotone_path_where_it_first_reaches_k():
    # KL rises to 4 and falls back to 2 (a decaying learning rate): K in [1, 4] is read on the rising segment, never
    # between the late point (K = 2, value 10) and an early one, which sorting by KL would do.
    kl, bits = [0.0, 1.0, 4.0, 2.0], [0.0, 1.0, 3.0, 10.0]
    out = stats.interpolate_curve(kl, bits, [0.5, 2.0, 3.0, 4.0, 5.0])
    assert out[:4] == pytest.approx([0.5, 2.0, 1.0 + 2.0 * math.log(3.0) / math.log(4.0), 3.0])
    assert math.isnan(out[4])
    # A measured SFT curve (unfiltered seed 0 of the awareness run): K 0 -> 0.22 -> 1.36 -> 1.00 at steps 0, 1, 4, 48.
    out = stats.interpolate_curve([0.0, 0.22, 1.36, 1.0], [0.9, 1.51, 6.10, 9.95], [0.48])
    assert out[0] == pytest.approx(1.51 + 4.59 * math.log(0.48 / 0.22) / math.log(1.36 / 0.22))


def test_interpolate_curve_never_folds_post_training_points_into_the_base():
    # A post-training point with a negative (or zero-ish) KL estimate is dropped, not averaged into K = 0.
    out = stats.interpolate_curve([0.0, -0.01, 1.0], [4.0, 0.0, 2.0], [0.0, 0.5])
    assert out == pytest.approx([4.0, 3.0])


def test_log_kl_grid_covers_the_range_every_curve_reached():
    grid = stats.log_kl_grid([[0.0, 1.0, 10.0], [0.0, 2.0, 5.0]], n=5)
    assert grid[0] == pytest.approx(2.0) and grid[-1] == pytest.approx(5.0)
    assert np.allclose(np.diff(np.log(grid)), np.log(2.5) / 4)
    assert len(stats.log_kl_grid([[0.0], [0.0, 1.0]])) == 0
    assert len(stats.log_kl_grid([[0.0, 1.0, 2.0], [0.0, 3.0, 4.0]])) == 0  # no overlap: nothing to compare


def test_stickiness_known_values():
    kl = [0.0, 1.0, 10.0, 100.0]
    arm_a = {0: (kl, [4.0, 3.0, 2.0, 1.0]), 1: (kl, [6.0, 4.5, 3.0, 1.5]), 2: (kl, [5.0, 3.75, 2.5, 1.25])}
    arm_b = {s: (kl, [0.0, 0.0, 0.0, 0.0]) for s in range(3)}  # seeds are seed 0 scaled: S(K) is the same in each
    grid = [0.5, 1.0, math.sqrt(10.0), 10.0, 100.0]
    st = stats.stickiness(arm_a, arm_b, grid)
    assert st.delta0 == pytest.approx(5.0) and st.n == 3 and st.reason == ""
    # Gap (mean over seeds) / base gap: 0.875 (linear from the base), 0.75, 0.625 (log midpoint), 0.5, 0.25.
    assert st.s == pytest.approx([0.875, 0.75, 0.625, 0.5, 0.25])
    assert st.delta == pytest.approx([4.375, 3.75, 3.125, 2.5, 1.25])
    # Every seed has the same S(K): Fieller's interval has zero width.
    assert st.ci_low == pytest.approx(st.s) and st.ci_high == pytest.approx(st.s)


def test_stickiness_ci_and_edge_cases():
    kl = [0.0, 1.0, 10.0]
    arm_a = {s: (kl, [2.0 + 0.1 * s, 1.0 + 0.3 * s, 0.5]) for s in range(4)}
    arm_b = {s: (kl, [0.0, 0.0, 0.0]) for s in range(4)}
    st = stats.stickiness(arm_a, arm_b, [1.0, 10.0])
    assert np.all(st.ci_low <= st.s) and np.all(st.s <= st.ci_high)
    assert st.ci_high[0] > st.ci_low[0]
    # Default grid = common log-KL range; one seed -> NaN CI with a reason; no shared seed -> error.
    one = stats.stickiness({0: arm_a[0]}, {0: arm_b[0]})
    assert one.grid[0] == pytest.approx(1.0) and one.grid[-1] == pytest.approx(10.0)
    assert np.all(np.isnan(one.ci_low)) and "1 seed" in one.reason
    with pytest.raises(ValueError, match="share no seed"):
        stats.stickiness({0: arm_a[0]}, {1: arm_b[1]})
    # A base gap indistinguishable from 0: S is undefined, with the reason.
    flat = {s: (kl, [(-1) ** s * 0.3, 0.2, 0.1]) for s in range(4)}
    undefined = stats.stickiness(flat, arm_b, [1.0, 10.0])
    assert np.all(np.isnan(undefined.s)) and "includes 0" in undefined.reason


def test_pressure_span_reports_width_and_the_sparsest_curve():
    span = stats.pressure_span([[0.0, 0.01, 0.1, 1.0, 2.0], [0.0, 0.005, 0.02, 0.3, 1.5]])
    assert (span.lo, span.hi) == pytest.approx((0.01, 1.5))
    assert span.orders == pytest.approx(math.log10(150.0))
    assert span.min_points == 3  # 0.01, 0.1, 1.0 and 0.02, 0.3, 1.5 (the base point K = 0 is outside)
    assert stats.pressure_span([[0.0, 1.0, 2.0], [0.0, 3.0, 4.0]]) is None


def test_kl_saturation_is_minus_log2_of_the_rewarded_probability():
    assert stats.kl_saturation_bits(0.5) == pytest.approx(1.0)
    assert stats.kl_saturation_bits(1.0) == 0.0
    assert stats.kl_saturation_bits(0.125) == pytest.approx(3.0)
    assert math.isnan(stats.kl_saturation_bits(0.0))
