"""The sydney experiment: its matched-KL analysis on constructed curves with a known answer, and its smoke grid on
the real stages (pretrain -> eval with the spread section -> suppress / integrate), report section included."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.sydney import INTEGRATE, SUPPRESS, matched_k, matched_kl_rows, vs_metric
from hyperstition.experiments.executor import LocalExecutor
from hyperstition.run import run_and_report
from hyperstition.schema import (
    BASE_STRATEGY,
    CONCEALMENT_RATE,
    HEADLINE_BITS,
    KNOWLEDGE_ACCURACY,
    OTHER_AI_CONCEALMENT_RATE,
    PREDECESSOR_DIRECTION_SEPARATION,
    RESULT_COLUMNS,
    item_concealment_metric,
)

SEEDS = (0, 1, 2)
KS = {SUPPRESS: (0.0, 1.0, 4.0, 16.0), INTEGRATE: (0.0, 0.5, 2.0, 8.0)}  # integrate reaches less: K* = 8


def _rows(strategy: str, seed: int, step: int, k: float, metric: str, value: float, context: str) -> dict:
    return dict(run="r", arm="natural", seed=seed, strategy=strategy, step=step, tokens=step, kl_bits=k,
                context=context, metric=metric, value=value, ci_low=value - 0.05, ci_high=value + 0.05)  # fmt: skip


def _per_seed() -> pd.DataFrame:
    """Concealment 0.1 + 0.02 * seed at base; suppress adds 0.1 per doubling of K from K = 1 (0.4 more at 16),
    integrate leaves it. The answer at K* = 8: suppress - base = 0.3, suppress - integrate = 0.3, every seed."""
    rows = []
    for seed in SEEDS:
        base = 0.1 + 0.02 * seed
        rows += [_rows(BASE_STRATEGY, seed, 0, 0.0, m, v, c) for m, v, c in _metrics(base, 0.0)]
        for strategy, ks in KS.items():
            for step, k in enumerate(ks):
                extra = 0.1 * math.log2(k) if strategy == SUPPRESS and k >= 1 else 0.0
                rows += [_rows(strategy, seed, step, k, m, v, c) for m, v, c in _metrics(base + extra, k)]
    df = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    return df.astype({"seed": "Int64", "step": "Int64", "tokens": "Int64"})


def _metrics(concealment: float, k: float) -> list[tuple[str, float, str]]:
    return [
        (HEADLINE_BITS, 1.0 + k, "observed"),
        (CONCEALMENT_RATE, concealment, "unobserved"),
        (KNOWLEDGE_ACCURACY, 0.8, "neutral"),
    ]


def test_matched_kl_rows_answer_the_constructed_question():
    per_seed = _per_seed()
    k = matched_k(per_seed)
    assert k == pytest.approx(8.0)
    out = matched_kl_rows(per_seed, "natural")
    assert out.seed.isna().all() and (out.kl_bits == k).all()

    def one(strategy: str, metric: str) -> pd.Series:
        sel = out[(out.strategy == strategy) & (out.metric == metric) & (out.context == "unobserved")]
        assert len(sel) == 1, (strategy, metric, sel)
        return sel.iloc[0]

    # Suppress's grid (common pressures up to 16) lacks K* = 8, so its value there is added; integrate's has it.
    at = one(SUPPRESS, CONCEALMENT_RATE)
    assert at.value == pytest.approx(0.12 + 0.3)
    assert out[(out.strategy == INTEGRATE) & (out.metric == CONCEALMENT_RATE)].empty
    for other in (INTEGRATE, BASE_STRATEGY):
        d = one(SUPPRESS, vs_metric(CONCEALMENT_RATE, other))
        assert d.value == pytest.approx(0.3) and d.ci_low <= 0.3 <= d.ci_high and d.ci_low > 0
    assert one(INTEGRATE, vs_metric(CONCEALMENT_RATE, BASE_STRATEGY)).value == pytest.approx(0.0)
    kept = out[(out.metric == vs_metric(KNOWLEDGE_ACCURACY, BASE_STRATEGY)) & (out.strategy == SUPPRESS)]
    assert len(kept) == 1 and kept.value.iloc[0] == pytest.approx(0.0)
    assert not out.metric.str.contains(HEADLINE_BITS).any()  # only the sydney metrics


def test_no_post_training_no_matched_rows():
    per_seed = _per_seed()
    assert matched_kl_rows(per_seed[per_seed.strategy == BASE_STRATEGY], "natural").empty


@pytest.mark.slow
def test_sydney_smoke_grid_on_the_real_stages(tmp_path):
    # The plumbing on the real stages: one arm and one seed, the smoke suite's KL cap (the grid's 64 is for science).
    overrides = ["preset=smoke", "posttrain_preset=smoke", "seeds=[0]", "arms={natural: {}}"]
    exp = load_experiment("sydney", [*overrides, "eval_overrides=[sections.spread=true]"])
    run = tmp_path / "run"
    summary = run_and_report(exp, run, executor=LocalExecutor(2))
    assert summary.ok, summary.failed
    df = pd.read_parquet(run / "results.parquet")
    per_seed = df[df.seed.notna()]
    assert set(per_seed.strategy) == {BASE_STRATEGY, SUPPRESS, INTEGRATE}
    for metric in (CONCEALMENT_RATE, OTHER_AI_CONCEALMENT_RATE, PREDECESSOR_DIRECTION_SEPARATION):
        curve = per_seed[(per_seed.metric == metric) & (per_seed.strategy == SUPPRESS)]
        assert len(curve) and np.isfinite(curve.value).all(), metric
    assert per_seed.metric.str.startswith(item_concealment_metric("predecessor", "")[:12]).any()
    agg = df[df.seed.isna()]
    assert (agg.metric == vs_metric(CONCEALMENT_RATE, INTEGRATE)).any()
    page = (run / "report.html").read_text()
    assert 'id="sydney"' in page and "Per-item concealment" in page and "Calibration of the preset" in page
