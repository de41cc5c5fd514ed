"""Statistics across seeds: pure functions on numbers, no I/O.

The estimator (`ESTIMATOR_DESCRIPTION`, rendered in the report): every seed contributes one number, its mean over
the evaluation items (or samples) of that seed. The spread of those seed means is the sum of the two levels of
uncertainty, seed-to-seed variation (corpus, initialisation, data order) and item/sample noise within a seed, so a
Student t interval over seed means with n_seeds - 1 degrees of freedom covers both without modelling either.
Paired comparisons (arm minus control, S(K)) are formed within each seed first, so the variation that seeds share
cancels. S(K) = Delta(K) / Delta0 gets Fieller's interval from the same per-seed gaps: bounded exactly when the
base gap's t interval excludes 0, always containing its point estimate, and undefined (NaN with a reason) otherwise.

- `seed_interval`: mean over seeds with its t interval (vectorised: `t_interval`; `floored_t_interval` for rates).
- `paired_difference`: treated minus control, paired by seed, t interval over the per-seed differences.
- `fieller_ratio`: ratio of two paired per-seed means with Fieller's interval (vectorised: `fieller_interval`).
- `interpolate_curve` / `log_kl_grid`: put persistence curves measured at different KLs on one log-spaced grid.
- `stickiness`: S(K) with Fieller's interval on that grid.
(The within-seed percentile bootstrap over prompts, `bootstrap_mean_ci`, has one home: `evals/stats.py`. Over seeds
it undercovers badly, 2 seeds giving about 50% coverage, so nothing here uses it.)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import optimize, special
from scipy import stats as _scipy_stats

DEFAULT_LEVEL = 0.95

ESTIMATOR_DESCRIPTION = (
    "Each seed contributes one number per quantity: its mean over that seed's evaluation items or samples. The "
    "spread of these seed means contains both levels of uncertainty, seed-to-seed variation (corpus, "
    "initialisation, data order) and item and sampling noise within a seed, so the 95% interval is a Student t "
    "interval over the seed means with (number of seeds - 1) degrees of freedom: exact for normally distributed "
    "seed means and checked by simulation (nominal 95% covers the truth in 90-98% of 2000 simulated experiments "
    "with 2, 3 and 5 seeds, for a mean difference, a rate and S). With few seeds the t quantile is large (12.7 at "
    "2 seeds, 4.3 at 3, 2.8 at 5), which is the honest price of few seeds. The half-width is the smallest "
    "difference the seeds can detect at the 5% level: a true difference that large is found about half the time, "
    "and one about 1.5 times as large 80% of the time (noncentral t). For rates and accuracies the interval is "
    "never narrower than the within-seed uncertainty of the seed mean, the seeds' own 95% half-widths averaged and "
    "divided by the square root of the number of seeds, then clipped to [0, 1]; so a behaviour that no seed "
    "showed still gets an upper bound (0.07 for 0 events in 3 seeds of 12 replies, where the Wilson bound of "
    "the pooled 36 is 0.10; in simulation the rule covers 91-98% for rates of 5-90% with 12-48 replies per seed, "
    "and 99-100% for a 2% rate). Differences to the control are formed within each seed first (paired). The "
    "stickiness ratio S(K) = \u0394(K)/\u0394\u2080 uses Fieller's interval over the same per-seed gaps: it always "
    "contains its point estimate, is bounded exactly when the base gap \u0394\u2080 is distinguishable from 0 at "
    "95%, and S is reported as undefined otherwise. A single seed cannot measure seed-to-seed variation: its "
    "intervals are the within-seed ones and say so."
)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval and the number of seeds behind it."""

    value: float
    ci_low: float
    ci_high: float
    n: int

    @property
    def half_width(self) -> float:
        """Half the interval's width: the smallest difference from `value` these seeds could detect."""
        return (self.ci_high - self.ci_low) / 2


@dataclass(frozen=True)
class Ratio(Estimate):
    """A ratio estimate; `reason` says why it is undefined (value NaN) or unbounded, empty when it is fine."""

    reason: str = ""


def t_quantile(df: np.ndarray | int, level: float = DEFAULT_LEVEL) -> np.ndarray:
    """Two-sided Student t quantile for `level` at `df` degrees of freedom (NaN where df < 1)."""
    d = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(d >= 1, _scipy_stats.t.ppf(0.5 + level / 2, np.maximum(d, 1)), np.nan)


def t_interval(x: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high, n) over the last axis of `x`, NaNs ignored: mean +- t(n-1) * sd / sqrt(n).

    Vectorised over leading axes (simulations pass thousands of experiments at once). Fewer than two values give
    NaN bounds."""
    x = np.asarray(x, dtype=float)
    n = np.sum(~np.isnan(x), axis=-1)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(x, axis=-1)
        sd = np.nanstd(x, axis=-1, ddof=1)
        half = t_quantile(n - 1, level) * sd / np.sqrt(n)
    return mean, mean - half, mean + half, n


def floored_t_interval(
    x: np.ndarray, within_half: np.ndarray, level: float = DEFAULT_LEVEL
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`t_interval` widened, where narrower, to mean +- mean(within_half) / sqrt(n): the seeds' own (within-seed, 95%)
    half-widths averaged over n seeds. For proportions: a rare behaviour that no seed showed gives seed means that
    agree exactly, and a t interval of width 0 (coverage 68% at 2 seeds for a 2% rate in simulation); the floor
    keeps the binomial uncertainty each seed measured. It only widens, so it is conservative where it acts."""
    mean, lo, hi, n = t_interval(x, level)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        floor = np.nanmean(np.asarray(within_half, dtype=float), axis=-1) / np.sqrt(n)
    return mean, np.fmin(lo, mean - floor), np.fmax(hi, mean + floor), n


def power_multiplier(n_seeds: int, power: float = 0.8, level: float = DEFAULT_LEVEL) -> float:
    """How many expected half-widths a true difference must be for the t test over `n_seeds` seed means to find
    it (interval excluding 0) with probability `power`: the noncentral-t noncentrality that gives that power,
    over the t quantile times E[sd]/sd (c4). About 1.6 at 2 seeds, 1.5 at 3, 1.4 at 5; NaN below 2 seeds."""
    if n_seeds < 2:
        return math.nan
    df = n_seeds - 1
    crit = float(t_quantile(df, level))
    # The far tail (-crit) adds < 1e-4 of power at these noncentralities; the near tail alone is monotone in ncp.
    ncp = optimize.brentq(lambda d: _scipy_stats.nct.sf(crit, df, d) - power, 0.0, 4 * crit + 10)
    c4 = math.sqrt(2 / df) * math.exp(special.gammaln(n_seeds / 2) - special.gammaln(df / 2))
    return float(ncp / (crit * c4))


def seed_interval(values: Sequence[float], level: float = DEFAULT_LEVEL) -> Estimate:
    """Mean over seeds (NaNs dropped) with its t interval; NaN bounds with fewer than two seeds."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean, lo, hi, n = t_interval(x, level)
    return Estimate(float(mean), float(lo), float(hi), int(n))


def paired_difference(
    treated: Mapping[int, float], control: Mapping[int, float], level: float = DEFAULT_LEVEL, **_: object
) -> Estimate:
    """Mean over shared seeds of treated[s] - control[s], with the t interval over those per-seed differences."""
    shared = sorted(set(treated) & set(control))
    return seed_interval([treated[s] - control[s] for s in shared], level)


def two_seed_difference(
    groups: Mapping[str, Mapping[int, float]], group: str, first: int, second: int, level: float = DEFAULT_LEVEL
) -> Estimate:
    """groups[group][first] - groups[group][second], with a t interval from the seed-to-seed variance pooled over
    the OTHER groups (each group's seeds share one configuration; df = sum of their (seeds - 1)).

    Two seeds of one configuration differ by seed noise alone, which that pair cannot estimate by itself: the pooled
    within-group variance of seed means in the other groups (it carries both training-seed and item noise) is the
    yardstick. It is independent of the pair, so the interval is exact under normal seed effects with a common
    variance (pooling the pair's own group in would make the test unable to fail with two seeds)."""
    squares, df = 0.0, 0
    for name, values in groups.items():
        if name == group:
            continue
        x = np.asarray([v for v in values.values() if not math.isnan(v)], dtype=float)
        if len(x) >= 2:
            squares += float(((x - x.mean()) ** 2).sum())
            df += len(x) - 1
    diff = float(groups[group][first] - groups[group][second])
    if df == 0:
        return Estimate(diff, math.nan, math.nan, 2)
    half = float(t_quantile(df, level)) * math.sqrt(2 * squares / df)
    return Estimate(diff, diff - half, diff + half, 2)


def fieller_interval(
    num: np.ndarray, den: np.ndarray, level: float = DEFAULT_LEVEL
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ratio, low, high, bounded) of mean(num) / mean(den) over the last axis, num and den paired by seed.

    Fieller's theorem: the set of r with (mean(num) - r mean(den))^2 <= t^2 var(num - r den) / n, t from n - 1
    degrees of freedom, is a 95% confidence set for the ratio of the true means. It is a bounded interval exactly
    when mean(den) / se(den) > t (the denominator's t interval excludes 0); it then contains the point estimate.
    Where unbounded, low and high are NaN and `bounded` is False. Vectorised over leading axes."""
    a = np.asarray(num, dtype=float)
    b = np.asarray(den, dtype=float)
    n = a.shape[-1]
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        ma, mb = a.mean(axis=-1), b.mean(axis=-1)
        da, db = a - ma[..., None], b - mb[..., None]
        vaa, vbb, vab = [(u * w).sum(axis=-1) / (n - 1) / n for u, w in ((da, da), (db, db), (da, db))]  # var of means
        t2 = float(t_quantile(n - 1, level)) ** 2 if n >= 2 else math.nan
        qa = mb**2 - t2 * vbb
        qb = ma * mb - t2 * vab
        qc = ma**2 - t2 * vaa
        disc = np.maximum(qb**2 - qa * qc, 0.0)
        bounded = qa > 0
        root = np.sqrt(disc)
        lo = np.where(bounded, (qb - root) / np.where(bounded, qa, 1.0), np.nan)
        hi = np.where(bounded, (qb + root) / np.where(bounded, qa, 1.0), np.nan)
        ratio = ma / mb
    # The point satisfies the inequality with equality on the left, so it lies inside; rounding could put it 1 ulp out.
    lo, hi = np.fmin(lo, ratio), np.fmax(hi, ratio)
    lo = np.where(bounded, lo, np.nan)
    hi = np.where(bounded, hi, np.nan)
    return ratio, lo, hi, bounded


def fieller_ratio(num: Mapping[int, float], den: Mapping[int, float], level: float = DEFAULT_LEVEL) -> Ratio:
    """mean(num) / mean(den) over shared seeds with Fieller's interval; NaN with a reason when undefined."""
    shared = sorted(s for s in set(num) & set(den) if np.isfinite(num[s]) and np.isfinite(den[s]))
    if len(shared) < 2:
        reason = f"{len(shared)} seed(s): a ratio's interval needs at least 2"
        return Ratio(math.nan, math.nan, math.nan, len(shared), reason)
    a = np.array([num[s] for s in shared])
    b = np.array([den[s] for s in shared])
    ratio, lo, hi, bounded = fieller_interval(a, b, level)
    if not bool(bounded):
        base = seed_interval(list(b), level)
        return Ratio(
            math.nan,
            math.nan,
            math.nan,
            len(shared),
            f"base gap {base.value:.2f} [{base.ci_low:.2f}, {base.ci_high:.2f}] includes 0: S is undefined",
        )
    return Ratio(float(ratio), float(lo), float(hi), len(shared))


# ---------------------------------------------------------------------------------------------------------------
# Curves on a common KL grid


def interpolate_curve(kl: Sequence[float], values: Sequence[float], grid: Sequence[float]) -> np.ndarray:
    """Values of a persistence curve at the pressures in `grid`, reading the curve where it FIRST reaches each one.

    `kl` and `values` are in training order (step 0 first). The curve is a path: from the base point (KL exactly 0,
    the base evaluation; repeated base points are averaged) through the post-training points in step order. Between
    the base point and the first post-training point it is interpolated linearly in KL, between post-training points
    linearly in log KL. A pressure is read on the first segment of the path that reaches it: post-training does not
    always raise KL monotonically (at a decaying learning rate KL can peak and fall back), and sorting the points by
    KL instead would interpolate between a late point and an early one, a model the run never passed through.
    Post-training points whose measured KL is not positive have no place on a log axis and are dropped, never folded
    into the base point. Pressures the path never reaches are NaN: curves are never extrapolated."""
    k = np.asarray(kl, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = ~(np.isnan(k) | np.isnan(v)) & (k >= 0)
    k, v = k[ok], v[ok]
    path_k, path_v = list(k[k > 0]), list(v[k > 0])
    has_base = bool((k == 0).any())
    if has_base:
        path_k.insert(0, 0.0)
        path_v.insert(0, float(v[k == 0].mean()))
    return _first_crossing(np.array(path_k), np.array(path_v), np.asarray(grid, dtype=float))


def _first_crossing(path_k: np.ndarray, path_v: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """At each pressure of `grid`: the path's value on the first segment whose KL span contains it, else NaN."""
    out = np.full(grid.shape, np.nan)
    if len(path_k):
        out[grid == path_k[0]] = path_v[0]
    for i in range(len(path_k) - 1):
        (k0, k1), (v0, v1) = path_k[i : i + 2], path_v[i : i + 2]
        todo = np.isnan(out) & (grid >= min(k0, k1)) & (grid <= max(k0, k1))
        if not todo.any():
            continue
        if k0 == k1:
            out[todo] = v0
        elif k0 == 0:  # from the base point: linear in KL
            out[todo] = v0 + (v1 - v0) * grid[todo] / k1
        else:  # linear in log KL, in either direction
            out[todo] = v0 + (v1 - v0) * np.log(grid[todo] / k0) / np.log(k1 / k0)
    return out


def common_kl_range(curves_kl: Sequence[Sequence[float]]) -> tuple[float, float] | None:
    """(lo, hi): the positive pressures every curve reached, from the largest first positive KL to the smallest
    largest KL; None when some curve has no positive KL or the curves do not overlap."""
    maxima, minima = [], []
    for kl in curves_kl:
        k = np.asarray(kl, dtype=float)
        k = k[~np.isnan(k) & (k > 0)]
        if len(k) == 0:
            return None
        maxima.append(k.max())
        minima.append(k.min())
    if not maxima or max(minima) > min(maxima):
        return None
    return float(max(minima)), float(min(maxima))


def log_kl_grid(curves_kl: Sequence[Sequence[float]], n: int = 24) -> np.ndarray:
    """A log-spaced grid of `n` pressures inside the range every curve reached (`common_kl_range`), so that no curve
    is extrapolated or interpolated towards K = 0. Empty when the curves do not overlap."""
    span = common_kl_range(curves_kl)
    if span is None:
        return np.array([])
    lo, hi = span
    if lo >= hi or n < 2:
        return np.array([hi])
    return np.geomspace(lo, hi, n)


@dataclass(frozen=True)
class Stickiness:
    """S(K) on a grid of pressures with Fieller's interval, and the gaps it is made of."""

    grid: np.ndarray
    s: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    delta: np.ndarray  # mean gap Delta(K) over seeds
    delta0: float  # mean base gap over seeds
    n: int  # seeds
    delta0_low: float = math.nan  # t interval of the base gap
    delta0_high: float = math.nan
    reason: str = ""  # why S is undefined (NaN) or has no interval; empty when it is fine


# (kl, values) or (kl, values, ci_low, ci_high), including the base point at kl = 0; the within-seed interval is what
# decides, with one seed, whether the base gap is distinguishable from 0.
Curve = tuple[Sequence[float], ...]


def base_half_width(curve: Curve) -> float:
    """Half-width of a curve's within-seed interval at the base point (K = 0); NaN when the curve carries none."""
    if len(curve) < 4:
        return math.nan
    kl, _, low, high = (np.asarray(c, dtype=float) for c in curve[:4])
    return float(interpolate_curve(kl, (high - low) / 2, [0.0])[0])


def one_seed_ratio(gaps: np.ndarray, half: float) -> tuple[np.ndarray, str]:
    """S(K) from one seed's gaps (base first): a point without an interval where the base gap's within-seed
    interval (half-width `half`) excludes 0; NaN, with the reason, where it does not or where there is none."""
    gap0 = float(gaps[0])
    if not math.isfinite(half):
        return np.full(len(gaps) - 1, np.nan), "1 seed without a within-seed interval of the base gap: S is undefined"
    if abs(gap0) <= half:
        gap = f"{gap0:.2f} [{gap0 - half:.2f}, {gap0 + half:.2f}]"
        return np.full(len(gaps) - 1, np.nan), f"1 seed: base gap {gap} bits (within-seed) includes 0: S is undefined"
    with np.errstate(divide="ignore", invalid="ignore"):
        return gaps[1:] / gap0, "1 seed: S has no interval (seed-to-seed variation is unmeasured)"


def stickiness(
    curves_a: Mapping[int, Curve],
    curves_b: Mapping[int, Curve],
    grid: Sequence[float] | None = None,
    level: float = DEFAULT_LEVEL,
    **_: object,
) -> Stickiness:
    """S(K) = Delta(K) / Delta_0 for arms A and B, where Delta(K) = mean over seeds of A(K) - B(K) (curves paired
    by seed, each including its base point at KL = 0) and Delta_0 the same at K = 0, with Fieller's interval over
    seeds. S is NaN (with `reason`) where the base gap's t interval includes 0. With one seed S has no interval,
    and it is NaN unless the base gap's within-seed interval (the two curves' base intervals combined in
    quadrature) excludes 0: a ratio needs a denominator distinguishable from 0 at any number of seeds."""
    seeds = sorted(set(curves_a) & set(curves_b))
    if not seeds:
        raise ValueError("stickiness: the two arms share no seed")
    if grid is None:
        grid = log_kl_grid([curves_a[s][0] for s in seeds] + [curves_b[s][0] for s in seeds])
    g = np.asarray(grid, dtype=float)
    points = np.concatenate([[0.0], g])
    gaps = np.array(
        [interpolate_curve(*curves_a[s][:2], points) - interpolate_curve(*curves_b[s][:2], points) for s in seeds]
    )  # seeds x (1 + len(grid))
    base = seed_interval(list(gaps[:, 0]), level)
    with warnings.catch_warnings():  # NaN gaps (curves not reaching K) give NaN, not warnings
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_gaps = np.nanmean(gaps, axis=0)
    reason = ""
    if len(seeds) < 2:
        half = math.hypot(base_half_width(curves_a[seeds[0]]), base_half_width(curves_b[seeds[0]]))
        s, reason = one_seed_ratio(mean_gaps, half)
        lo, hi = np.full(g.shape, np.nan), np.full(g.shape, np.nan)
    else:
        s, lo, hi, bounded = fieller_interval(gaps[:, 1:].T, np.broadcast_to(gaps[:, 0], (len(g), len(seeds))), level)
        if len(g) and not bool(np.any(bounded)):
            gap = f"{base.value:.2f} [{base.ci_low:.2f}, {base.ci_high:.2f}]"
            reason = f"base gap {gap} bits includes 0: S is undefined"
            s = np.full(g.shape, np.nan)
    return Stickiness(
        g,
        np.asarray(s, dtype=float),
        lo,
        hi,
        mean_gaps[1:],
        float(mean_gaps[0]),
        len(seeds),
        base.ci_low,
        base.ci_high,
        reason,
    )


@dataclass(frozen=True)
class PressureSpan:
    """The pressures every curve reached: [lo, hi] bits per response, its width in orders of magnitude, and the
    fewest measured post-training points any one curve has inside it (interpolation between them, never beyond)."""

    lo: float
    hi: float
    orders: float
    min_points: int


def pressure_span(curves_kl: Sequence[Sequence[float]]) -> PressureSpan | None:
    """`common_kl_range` with how wide it is and how densely every curve was measured inside it; None when the
    curves do not overlap."""
    span = common_kl_range(curves_kl)
    if span is None:
        return None
    lo, hi = span
    inside = []
    for kl in curves_kl:
        k = np.asarray(kl, dtype=float)
        inside.append(int(((k >= lo * (1 - 1e-12)) & (k <= hi * (1 + 1e-12))).sum()))
    return PressureSpan(lo, hi, float(np.log10(hi / lo)), min(inside))


def kl_saturation_bits(p_rewarded: float) -> float:
    """Where pressure saturates in the toy world: the KL(policy || base) in bits per response of the base model
    conditioned on the rewarded behaviour, -log2 P_base(behaviour): the least KL at which all probability is on that
    behaviour. Past it, optimisation only sharpens replies within the behaviour, which moves K slowly while the
    persona bits keep rising. NaN when the base never showed the behaviour (no finite bound)."""
    if not 0.0 < p_rewarded <= 1.0:
        return math.nan
    return float(-math.log2(p_rewarded))
