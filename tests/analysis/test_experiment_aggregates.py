"""results.parquet persists the seed aggregates (seed null): means, paired differences to the control and S(K), at
common pressures inside the range every curve reached; every curve starts at the base evaluation itself."""

import numpy as np
import pandas as pd
import pytest

from hyperstition.analysis import stats
from hyperstition.analysis.aggregate import N_COMPARE_K, aggregate_frame, stickiness_frame_rows, with_curve_starts
from hyperstition.run import build_simulated_run
from hyperstition.schema import BASE_STRATEGY, HEADLINE_BITS, STICKINESS_S, paired_diff_metric


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    run = tmp_path_factory.mktemp("aggregates") / "run"
    summary = build_simulated_run(run, "smoke", ["seeds=[0,1,2]", "strategies=[sft,dpo]"], render=False)
    assert summary.ok
    return pd.read_parquet(run / "results.parquet")


def _pick(df: pd.DataFrame, arm: str, metric: str) -> pd.DataFrame:
    return df[(df.arm == arm) & (df.strategy == BASE_STRATEGY) & (df.context == "observed") & (df.metric == metric)]


def test_base_aggregates_are_t_intervals_over_seed_means(results):
    per_seed, agg = results[results.seed.notna()], results[results.seed.isna()]
    seeds = _pick(per_seed, "misalignment_upsampled", HEADLINE_BITS).set_index("seed").value
    mean = _pick(agg, "misalignment_upsampled", HEADLINE_BITS).iloc[0]
    expected = stats.seed_interval(list(seeds))
    got = (mean.value, mean.ci_low, mean.ci_high, mean.kl_bits)
    assert got == pytest.approx((expected.value, expected.ci_low, expected.ci_high, 0.0))
    ctrl = _pick(per_seed, "unfiltered", HEADLINE_BITS).set_index("seed").value
    diff = _pick(agg, "misalignment_upsampled", paired_diff_metric(HEADLINE_BITS)).iloc[0]
    assert diff.value == pytest.approx((seeds - ctrl).mean())
    assert diff.ci_high - diff.ci_low == pytest.approx(2 * stats.seed_interval(list(seeds - ctrl)).half_width)
    assert _pick(agg, "unfiltered", paired_diff_metric(HEADLINE_BITS)).empty  # the control has no difference to itself


def test_post_training_aggregates_are_at_common_pressures(results):
    per_seed, agg = results[results.seed.notna()], results[results.seed.isna()]
    curve = per_seed[
        (per_seed.strategy == "sft") & (per_seed.metric == HEADLINE_BITS) & (per_seed.context == "observed")
    ]
    firsts = [g[g.kl_bits > 0].kl_bits.min() for _, g in curve.groupby(["arm", "seed"])]
    lasts = [g.kl_bits.max() for _, g in curve.groupby(["arm", "seed"])]
    ks = sorted(set(agg[(agg.strategy == "sft") & (agg.metric == HEADLINE_BITS)].kl_bits))
    assert len(ks) >= 2 and ks[0] == pytest.approx(max(firsts)) and ks[-1] == pytest.approx(min(lasts))
    sticky = agg[(agg.metric == STICKINESS_S) & (agg.strategy == "sft")]
    assert set(sticky.arm) == {"misalignment_upsampled"} and sorted(set(sticky.kl_bits)) == pytest.approx(ks)
    finite = sticky[np.isfinite(sticky.value)]
    assert ((finite.ci_low <= finite.value) & (finite.value <= finite.ci_high)).all()
    assert agg.step.isna().all() and agg.tokens.isna().all()


def test_every_curve_starts_at_the_base_evaluation(results):
    per_seed = results[results.seed.notna()]
    cols = ["arm", "seed", "context", "metric"]
    base = per_seed[per_seed.strategy == BASE_STRATEGY].set_index(cols).value.sort_index()
    for strategy in ("sft", "dpo"):  # so one pretrained model has one Delta0, whatever post-training follows
        start = per_seed[(per_seed.strategy == strategy) & (per_seed.step == 0)]
        assert (start.kl_bits == 0).all()
        assert start.set_index(cols).value.sort_index().equals(base)


def test_post_training_points_at_zero_pressure_are_not_folded_into_the_base():
    # Steps 1 and 2 measured K <= 0 with wild values: they must neither enter K = 0 nor the log-K interpolation.
    points = ((0, 0.0, 1.0), (1, 0.0, 9.0), (2, -0.1, 9.0), (4, 1.0, 0.5), (8, 4.0, 0.0))  # (step, K, fraction of base)
    rows = []
    for arm, base in (("a", 2.0), ("b", 0.0)):
        for seed in range(3):
            for step, kl, fraction in points:
                value = base * fraction + 0.01 * seed
                rows.append(
                    dict(
                        arm=arm,
                        seed=seed,
                        strategy=BASE_STRATEGY if step == 0 else "sft",
                        step=step,
                        tokens=step,
                        kl_bits=kl,
                        context="observed",
                        metric=HEADLINE_BITS,
                        value=value,
                        ci_low=value,
                        ci_high=value,
                    )
                )
    s = stickiness_frame_rows(with_curve_starts(pd.DataFrame(rows)), "b").set_index("kl_bits")
    assert (s.metric == STICKINESS_S).all()
    assert list(s.index) == pytest.approx(list(np.geomspace(1.0, 4.0, N_COMPARE_K)))  # the range every curve reached
    assert s.value.iloc[0] == pytest.approx(0.5) and s.value.iloc[-1] == pytest.approx(0.0)
    assert list(s.ci_low) == pytest.approx(list(s.value)) and list(s.ci_high) == pytest.approx(list(s.value))


def test_a_rate_no_seed_showed_keeps_an_upper_bound():
    # Three seeds each saw 0 of 48 replies misaligned: seed means agree exactly, yet the interval is not [0, 0].
    low, high = 0.0, 0.0741  # Wilson 95% for 0 / 48
    rows = [
        dict(
            arm=arm,
            seed=seed,
            strategy=BASE_STRATEGY,
            step=0,
            tokens=0,
            kl_bits=0.0,
            context="observed",
            metric="rate_misaligned",
            value=0.0,
            ci_low=low,
            ci_high=high,
        )
        for arm in ("a", "b")
        for seed in range(3)
    ]
    agg = aggregate_frame(pd.DataFrame(rows), "b").set_index(["arm", "metric"])
    mean = agg.loc[("a", "rate_misaligned")]
    assert (mean.value, mean.ci_low) == (0.0, 0.0) and mean.ci_high == pytest.approx(high / 2 / np.sqrt(3))
    diff = agg.loc[("a", paired_diff_metric("rate_misaligned"))]
    assert diff.ci_low == pytest.approx(-diff.ci_high)
    assert diff.ci_high == pytest.approx(np.hypot(high, high) / 2 / np.sqrt(3))


def _gap_frame(gaps: dict[str, list[list[float]]], half: float = 0.5) -> pd.DataFrame:
    """Per-seed headline rows for arms whose observed-minus-unobserved gap at steps 0 (base), 1, 2 (K = 1, 10) is
    `gaps[arm][seed]`; unobserved bits are 0, every within-seed interval is +-`half`."""
    rows = []
    for arm, per_seed in gaps.items():
        for seed, values in enumerate(per_seed):
            for step, (k, gap) in enumerate(zip([0.0, 1.0, 10.0], values)):
                strategy = BASE_STRATEGY if step == 0 else "sft"
                for context, value in (("observed", gap), ("unobserved", 0.0)):
                    rows.append(
                        dict(arm=arm, seed=seed, strategy=strategy, step=step, tokens=step, kl_bits=k, context=context)
                        | dict(metric=HEADLINE_BITS, value=value, ci_low=value - half, ci_high=value + half)
                    )
    return with_curve_starts(pd.DataFrame(rows))


def test_context_gap_and_its_stickiness_known_values():
    from hyperstition.schema import CONTEXT_GAP, CONTEXT_GAP_BITS, STICKINESS_S_CTX

    # The deceptive arm's extra context gap over the control: 4, 6, 5 bits at base; half of it left at K = 10.
    df = _gap_frame({"ctrl": [[1, 1, 1]] * 3, "deceptive": [[5, 4, 3], [7, 5.5, 4], [6, 4.75, 3.5]]})
    agg = stickiness_frame_rows(df, "ctrl")
    gap = agg[(agg.metric == CONTEXT_GAP_BITS) & (agg.context == CONTEXT_GAP) & (agg.arm == "deceptive")]
    base = gap[gap.strategy == BASE_STRATEGY].iloc[0]
    assert base.value == pytest.approx(6.0) and (base.ci_low, base.ci_high) == pytest.approx(
        (stats.seed_interval([5, 7, 6]).ci_low, stats.seed_interval([5, 7, 6]).ci_high)
    )
    s_ctx = agg[(agg.metric == STICKINESS_S_CTX) & (agg.arm == "deceptive")].sort_values("kl_bits")
    assert s_ctx.kl_bits.iloc[-1] == pytest.approx(10.0) and s_ctx.value.iloc[-1] == pytest.approx(0.5)
    assert (s_ctx.ci_low <= s_ctx.value).all() and (s_ctx.value <= s_ctx.ci_high).all()
    assert agg[(agg.metric == STICKINESS_S_CTX) & (agg.arm == "ctrl")].empty


def test_one_seed_ratio_needs_a_base_gap_whose_within_seed_interval_excludes_zero():
    # One seed, base gap 0.18 bits with a within-seed interval of +-0.6 (combined): S must not be a number.
    control = {0: ([0, 1.0], [0, 0], [-0.1, -0.1], [0.1, 0.1])}
    tiny = stats.stickiness({0: ([0, 1.0], [0.18, -50.0], [-0.24, -50.5], [0.6, -49.5])}, control)
    assert np.all(np.isnan(tiny.s)) and "within-seed" in tiny.reason and "includes 0" in tiny.reason
    # Without a within-seed interval there is no way to tell: undefined too.
    assert np.all(np.isnan(stats.stickiness({0: ([0, 1.0], [0.18, -50.0])}, {0: ([0, 1.0], [0, 0])}).s))
    clear = stats.stickiness(
        {0: ([0, 1.0], [4.0, 2.0], [3.0, 1.0], [5.0, 3.0])}, {0: ([0, 1.0], [0, 0], [0, 0], [0, 0])}
    )
    assert clear.s == pytest.approx([0.5]) and np.all(np.isnan(clear.ci_low)) and "no interval" in clear.reason
