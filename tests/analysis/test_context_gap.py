"""The context-gap section: the central test's answer per strategy, from the persisted seed aggregates."""

import math

import pandas as pd
import pytest

from hyperstition.analysis.context_gap import verdict
from hyperstition.run import build_simulated_run
from hyperstition.schema import CONTEXT_GAP, CONTEXT_GAP_BITS, STICKINESS_S_CTX, paired_diff_metric


def _row(value, low, high):
    return pd.Series({"value": value, "ci_low": low, "ci_high": high})


def test_verdict_reads_the_interval_of_the_paired_difference():
    assert verdict(_row(0.2, 0.05, 0.35)) == "higher than the control's"
    assert verdict(_row(-0.2, -0.3, -0.1)) == "lower than the control's"
    assert verdict(_row(0.1, -0.05, 0.25)) == "not distinguishable from the control's"
    assert verdict(_row(0.1, math.nan, math.nan)) == "not measurable" and verdict(None) == "not measurable"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("context-gap") / "run"
    assert build_simulated_run(run, "smoke", ["seeds=[0,1,2]", "strategies=[sft]"]).ok
    return run


def test_context_gap_rows_and_section(smoke_run):
    results = pd.read_parquet(smoke_run / "results.parquet")
    agg = results[results.seed.isna() & (results.context == CONTEXT_GAP)]
    assert {CONTEXT_GAP_BITS, paired_diff_metric(CONTEXT_GAP_BITS), STICKINESS_S_CTX} <= set(agg.metric)
    page = (smoke_run / "report.html").read_text()
    assert 'id="context-gap"' in page and "SFT at K = " in page and "unobserved misaligned-action rate is" in page


def test_pressure_section_states_the_common_range_and_saturation(smoke_run):
    page = (smoke_run / "report.html").read_text()
    assert 'id="pressure"' in page and "orders of magnitude" in page and "measured points inside it" in page
    assert "saturation" in page and "largest K under sft" in page
