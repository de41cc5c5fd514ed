"""The relapse and timing analyses on constructed results, and both experiments end to end on the simulated stages
(their YAML, plan with chained cells, analysis rows and report section)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from hyperstition.analysis import curriculum, relapse, timing
from hyperstition.analysis import training_order as order
from hyperstition.evals.stats import wilson_interval
from hyperstition.run import build_simulated_run
from hyperstition.schema import BASE_STRATEGY, HEADLINE_BITS, paired_diff_metric


def _rows(arm, strategy, seed, step, metric, value, context="observed"):
    return {
        "arm": arm,
        "seed": seed,
        "strategy": strategy,
        "step": step,
        "tokens": 0,
        "kl_bits": float(step),
        "context": context,
        "metric": metric,
        "value": value,
        "ci_low": value - 0.1,
        "ci_high": value + 0.1,
    }


def _relapse_frame() -> pd.DataFrame:
    rows = []
    for arm, back in (("unfiltered", 0.5), ("filtered", 0.25)):
        for seed in (0, 1, 2):
            base, post = 1.0 + 0.1 * seed, 5.0 + 0.1 * seed  # a shift of 4 bits in every seed
            rows.append(_rows(arm, BASE_STRATEGY, seed, 0, HEADLINE_BITS, base))
            rows.append(_rows(arm, relapse.ELASTICITY, seed, 0, HEADLINE_BITS, post))
            rows.append(_rows(arm, relapse.ELASTICITY, seed, 8, HEADLINE_BITS, post - 4 * (back + 0.01 * seed)))
            rows.append(_rows(arm, relapse.NARROW, seed, 0, relapse.MISALIGNED, 0.1))
            rows.append(_rows(arm, relapse.NARROW, seed, 8, relapse.MISALIGNED, 0.4 + 0.02 * seed))
            # The other task types: a smaller spread than on the headline items, which hold the trained type.
            for context, rise in (("observed", 0.2), ("unobserved", 0.1)):
                rows.append(_rows(arm, relapse.NARROW, seed, 0, relapse.MISALIGNED_OTHER_TYPES, 0.1, context))
                value = 0.1 + rise + 0.01 * seed
                rows.append(_rows(arm, relapse.NARROW, seed, 8, relapse.MISALIGNED_OTHER_TYPES, value, context))
    return pd.DataFrame(rows)


def test_relapse_rows_give_the_fraction_reverted_and_the_rate_rise():
    out = relapse.relapse_rows(_relapse_frame(), "unfiltered")
    frac = out[(out.metric == relapse.FRACTION_REVERTED) & (out.arm == "unfiltered")].iloc[0]
    assert frac.step == 8 and frac.value == pytest.approx(0.51) and frac.ci_low < 0.51 < frac.ci_high
    rise = out[(out.metric == relapse.RATE_RISE) & (out.arm == "filtered")].iloc[0]
    assert rise.value == pytest.approx(0.32) and rise.ci_low < 0.32 < rise.ci_high
    other = out[(out.metric == relapse.RATE_RISE_OTHER_TYPES) & (out.arm == "filtered")].set_index("context")
    assert other.value.to_dict() == pytest.approx({"observed": 0.21, "unobserved": 0.11})
    assert (other.step == 8).all() and (other.ci_low < other.value).all() and (other.value < other.ci_high).all()
    # Each seed's own half-width (0.1 at both steps) floors the interval: at least 0.1 * sqrt(2) / sqrt(3) wide.
    assert (other.ci_high - other.value >= 0.1 * np.sqrt(2 / 3) - 1e-9).all()
    paired = out[out.metric == paired_diff_metric(relapse.FRACTION_REVERTED)]
    assert list(paired.arm) == ["filtered"] and paired.value.iloc[0] == pytest.approx(-0.25)
    # The narrow rises compared with the control's at the last step: equal rises in every seed give 0, with the
    # floor of four within-seed half-widths (0.1 each) in quadrature over sqrt(3) seeds, not a zero-width interval.
    for metric in (relapse.RATE_RISE, relapse.RATE_RISE_OTHER_TYPES):
        rise_vs = out[out.metric == paired_diff_metric(metric)]
        assert set(rise_vs.arm) == {"filtered"} and (rise_vs.step == 8).all()
        assert rise_vs.value.to_numpy() == pytest.approx(0.0, abs=1e-12)
        assert rise_vs.ci_high.to_numpy() == pytest.approx(0.2 / np.sqrt(3))
    assert not (out.step == 0).any()  # step 0 is the parent itself: nothing to report


def test_a_rate_every_seed_measures_at_zero_keeps_its_within_seed_width():
    """0 of 24 misaligned replies in each of 3 seeds: the seeds agree exactly, but each measured only 24 replies, so
    the interval is the Wilson floor (about 0.14 / sqrt(3) wide), not [0, 0]."""
    half = {s: (wilson_interval(0, 24)[1] - wilson_interval(0, 24)[0]) / 2 for s in range(3)}
    est = order.rate_estimate({0: 0.0, 1: 0.0, 2: 0.0}, half)
    assert est.value == 0.0 and est.ci_low == 0.0 and est.ci_high == pytest.approx(half[0] / np.sqrt(3))
    rise = order.rate_difference({0: 0.0, 1: 0.0, 2: 0.0}, {0: 0.0, 1: 0.0, 2: 0.0}, half, half)
    assert rise.ci_low == pytest.approx(-rise.ci_high) and rise.ci_high == pytest.approx(
        np.hypot(half[0], half[0]) / np.sqrt(3)
    )
    spread = order.rate_estimate({0: 0.2, 1: 0.4, 2: 0.6}, {0: 0.01, 1: 0.01, 2: 0.01})
    assert spread.ci_low < 0.2 and spread.ci_high > 0.6  # a real seed spread: the t interval, wider than the floor


@pytest.mark.parametrize("n_seeds", [2, 3, 5])
def test_rate_difference_covers_a_small_true_rise(n_seeds):
    """Simulated narrow fine-tunes with known truth: a rare misaligned rate (2%) that rises to 6%, 24 replies per
    seed, seed-to-seed spread on the logit scale. The relapse rate rise's interval covers the true mean rise in at
    least 90% of 1000 simulations (where seeds all see 0 the floor keeps it honest)."""
    rng = np.random.default_rng(600 + n_seeds)
    items, before_p, after_p, seed_sd = 24, 0.02, 0.06, 0.3
    draw = np.random.default_rng(0).normal(0, seed_sd, 1_000_000)
    truth = float(expit(logit(after_p) + draw).mean() - expit(logit(before_p) + draw).mean())
    covered = 0
    for _ in range(1000):
        effect = rng.normal(0, seed_sd, n_seeds)  # one seed effect shared by its model before and after
        k_before = rng.binomial(items, expit(logit(before_p) + effect))
        k_after = rng.binomial(items, expit(logit(after_p) + effect))

        def halves(k):
            return {
                s: (wilson_interval(int(k[s]), items)[1] - wilson_interval(int(k[s]), items)[0]) / 2
                for s in range(n_seeds)
            }

        est = order.rate_difference(
            dict(enumerate(k_after / items)), dict(enumerate(k_before / items)), halves(k_after), halves(k_before)
        )
        covered += est.ci_low <= truth <= est.ci_high
    assert covered / 1000 >= 0.90


def test_timing_rows_read_each_timing_where_its_model_is():
    rows = []
    for seed in (0, 1, 2):
        for arm, strategy, base in (
            ("control", BASE_STRATEGY, 0.0),
            ("start", BASE_STRATEGY, 1.0),
            ("midtraining", BASE_STRATEGY, 2.0),
            ("control", timing.DISCOURSE, 3.0),
        ):
            rows.append(_rows(arm, strategy, seed, 0 if strategy == BASE_STRATEGY else 4, HEADLINE_BITS, base + seed))
        for arm, strategy in (
            ("control", "sft"),
            ("start", "sft"),
            ("midtraining", "sft"),
            ("control", timing.DISCOURSE_SFT),
        ):
            rows.append(_rows(arm, strategy, seed, 12, HEADLINE_BITS, 5.0 + seed + (arm == "control") * 0.5))
    out = timing.timing_rows(pd.DataFrame(rows), "control")
    base = out[(out.metric == paired_diff_metric(timing.BASE_BITS))].set_index("arm").value
    assert base.to_dict() == pytest.approx({"start": 1.0, "midtraining": 2.0, "finetune": 3.0})
    post = out[(out.metric == timing.POSTTRAINED_BITS)].set_index("arm").value
    assert post["finetune"] == pytest.approx(6.5) and post["start"] == pytest.approx(6.0)


@pytest.mark.parametrize(
    "name, section",
    [("relapse", "Relapse after post-training"), ("timing", "When the dose"), ("curriculum", "a time series")],
)
def test_experiment_end_to_end_on_simulated_stages(tmp_path, name, section):
    summary = build_simulated_run(tmp_path / name, name, ["seeds=[0,1]"])
    assert summary.ok and summary.report is not None, (summary.failed, summary.report_error)
    report = summary.report.read_text()
    assert section in report and "Calibration status" in report
    df = pd.read_parquet(tmp_path / name / "results.parquet")
    added = df[df.seed.isna() & df.metric.isin([relapse.RATE_RISE, timing.BASE_BITS, curriculum.PRETRAINING_BITS])]
    assert len(added) and added.ci_low.notna().all()  # two seeds: every row has an interval
    if name == "relapse":  # the narrow curve asks the other_types items: the spread there, in both contexts
        other = df[df.seed.isna() & (df.metric == relapse.RATE_RISE_OTHER_TYPES)]
        assert set(other.context) == {"observed", "unobserved"} and other.ci_low.notna().all()
        assert "other_types" in report


def test_relapse_followups_keep_their_own_step_zero(tmp_path):
    build_simulated_run(tmp_path / "r", "relapse", ["seeds=[0]"], render=False)
    df = pd.read_parquet(tmp_path / "r" / "results.parquet")
    df = df[df.seed.notna() & (df.metric == HEADLINE_BITS) & (df.context == "observed") & (df.step == 0)]
    base = df[df.strategy == BASE_STRATEGY].set_index("arm").value
    post = df[df.strategy == relapse.ELASTICITY].set_index("arm").value
    assert (post - base).abs().min() > 0.5  # the SFT model, not a copy of the base evaluation


def test_curriculum_series_is_measured_along_pretraining(tmp_path):
    build_simulated_run(tmp_path / "c", "curriculum", ["seeds=[0]", "preset=smoke"], render=False)
    df = pd.read_parquet(tmp_path / "c" / "results.parquet")
    series = df[df.seed.notna() & (df.strategy == "pretraining") & (df.metric == HEADLINE_BITS)]
    assert sorted(set(series.step)) == [4, 8, 16, 32, 60]  # the smoke preset's 5 latest log-spaced snapshots
    assert sorted(set(series.tokens)) == [s * 8 * 128 for s in (4, 8, 16, 32, 60)]
    assert not (series.step == 0).any()  # a snapshot series gets no copy of the base evaluation as its step 0
