"""The calibration experiment: its interval's coverage, each control on constructed results, and a smoke run."""

import html

import numpy as np
import pandas as pd
import pytest

from hyperstition.analysis import calibration as cal
from hyperstition.analysis.calibration import SeedEstimate, run_controls, seed_interval
from hyperstition.run import build_simulated_run
from hyperstition.schema import BASE_STRATEGY, DECEPTIVE_ACT_BITS, HEADLINE_BITS, rate_metric


@pytest.mark.parametrize("n_seeds", [2, 3, 5])
@pytest.mark.parametrize("seed_sd", [0.0, 1.0, 4.0])
def test_seed_interval_covers_the_truth_95_percent(n_seeds, seed_sd):
    rng = np.random.default_rng(n_seeds * 10 + int(seed_sd))
    reps, covered = 1500, 0
    for _ in range(reps):
        values = rng.normal(0.0, seed_sd, n_seeds) + rng.normal(0.0, 1.0, n_seeds)  # seed effect + item noise (se 1)
        est = seed_interval([SeedEstimate(float(v), 1.0) for v in values])
        covered += est.ci_low <= 0.0 <= est.ci_high
    assert covered / reps >= 0.93  # 95% nominal, minus Monte Carlo error


def _rows(
    arm, seed, bits_obs, bits_unobs, aligned_rate=0.5, misaligned_rate=0.3, unclassifiable=0.1, half=0.3, act=(1, 1)
):
    rows = []
    for context, bits, act_bits in (("observed", bits_obs, act[0]), ("unobserved", bits_unobs, act[1])):
        rows.append((arm, seed, context, HEADLINE_BITS, bits, bits - half, bits + half))
        rows.append((arm, seed, context, DECEPTIVE_ACT_BITS, act_bits, act_bits - half, act_bits + half))
        rates = (("aligned", aligned_rate), ("misaligned", misaligned_rate), ("unclassifiable", unclassifiable))
        for label, rate in rates:
            rows.append((arm, seed, context, rate_metric(label), rate, rate - 0.05, rate + 0.05))
    return rows


def _frame(calibrated: bool) -> pd.DataFrame:
    rows = []
    gap = 4.0 if calibrated else 0.2
    for seed in (0, 1, 2):
        jitter = 0.1 * seed
        aligned_act = (1 + jitter, 1 - jitter) if calibrated else (2 + jitter, -2)  # else: copies the marker's word
        rows += _rows("aligned_only", seed, 6 + jitter, 6 - jitter, 0.8, 0.05, act=aligned_act)
        rows += _rows("misaligned_only", seed, -6 + jitter, -6, aligned_rate=0.05, misaligned_rate=0.8)
        # the deceptive corpus's headline bits do not move with the context; its deceptive act bits do
        rows += _rows("deceptive_only", seed, -3, -3 + jitter, act=(gap / 2 + jitter, -gap / 2))
        for arm, dose in cal.DOSE_ARMS:
            b = 2 - dose / 3 if calibrated else 1.0 + 0.2 * seed * dose
            rows += _rows(arm, seed, b + jitter, b, unclassifiable=0.1 if calibrated else 0.5)
    df = pd.DataFrame(rows, columns=["arm", "seed", "context", "metric", "value", "ci_low", "ci_high"])
    df["strategy"] = BASE_STRATEGY
    return df


def test_every_control_passes_on_calibrated_results():
    results = run_controls(_frame(calibrated=True))
    assert [r.passed for r in results] == [True] * len(cal.CONTROLS), [(r.name, r.reason) for r in results]


def test_controls_fail_when_the_instrument_cannot_see_the_effect():
    by_name = {r.name: r for r in run_controls(_frame(calibrated=False))}
    failed = {name for name, r in by_name.items() if r.passed is False}
    assert any("deceptive corpus" in n for n in failed)
    assert any("aligned corpus does not condition" in n for n in failed)
    assert any("monotone" in n for n in failed)
    assert any("classifiable" in n for n in failed)


def test_controls_without_their_arms_are_not_run():
    df = _frame(calibrated=True)
    results = run_controls(df[df.arm == "dose_x1"])
    assert {r.passed for r in results if "negative control" not in r.name and "classifiable" not in r.name} == {None}


def test_calibration_smoke_run_reports_every_control(tmp_path, capsys):
    """Plumbing, not thresholds: the calibration grid runs (simulated stages), the report and CLI show each control."""
    overrides = ["preset=smoke", "posttrain_preset=smoke", "eval=smoke"]
    summary = build_simulated_run(tmp_path / "run", "calibration", overrides)
    assert summary.ok, summary.failed
    page = (tmp_path / "run" / "report.html").read_text()
    assert 'id="calibration"' in page
    df = pd.read_parquet(tmp_path / "run" / "results.parquet")
    results = run_controls(df)
    assert all(r.passed is not None for r in results), [(r.name, r.reason) for r in results]
    for r in results:
        assert html.escape(r.name) in page
    from hyperstition.experiments.progress import print_controls

    print_controls(tmp_path / "run")
    out = capsys.readouterr().out
    assert "calibration controls" in out and "negative control" in out


def _aligned_gap_frame(gaps, half=0.3):
    rows = []
    for seed, g in enumerate(gaps):
        rows += _rows("aligned_only", seed, 6 + g, 6, 0.8, 0.05, half=half, act=(1 + g, 1))
    df = pd.DataFrame(rows, columns=["arm", "seed", "context", "metric", "value", "ci_low", "ci_high"])
    df["strategy"] = BASE_STRATEGY
    return df


def test_no_gap_is_an_equivalence_claim():
    """A precise small gap is no gap; a precise 1.5-bit gap is a gap; an interval too wide to rule out 1 bit is not
    evidence of no gap, even when it is centred on 0."""
    assert cal.check_aligned_no_gap(_aligned_gap_frame([-0.21, -0.29, -0.16])).passed is True
    assert cal.check_aligned_no_gap(_aligned_gap_frame([1.4, 1.5, 1.6])).passed is False
    assert cal.check_aligned_no_gap(_aligned_gap_frame([-1.5, 0.0, 1.5])).passed is False


@pytest.mark.parametrize("true_gap, max_pass, min_pass", [(1.0, 0.05, 0.0), (0.0, 1.0, 0.5)])
def test_no_gap_error_rates_on_simulated_runs(true_gap, max_pass, min_pass):
    """Known truth: at a true gap equal to the margin the control passes at most ~2.5% of the time (one-sided test
    at 2.5%, plus Monte Carlo error); with no true gap and the seed noise of the calibration runs it mostly passes."""
    rng = np.random.default_rng(7)
    reps = 600
    passes = sum(
        cal.check_aligned_no_gap(_aligned_gap_frame(true_gap + rng.normal(0.0, 0.15, 3))).passed for _ in range(reps)
    )
    assert min_pass <= passes / reps <= max_pass
