"""The training-order experiments end to end on the real stages at the smoke preset, one seed (as
test_experiment_pipeline.py runs the smoke grid): chained cells (a branch from a trunk's kept state, follow-ups
after SFT, pretraining snapshots) train, measure and report, and a rerun recomputes nothing."""

from __future__ import annotations

import pandas as pd
import pytest

from hyperstition.analysis import curriculum, relapse, timing
from hyperstition.analysis.catalog import load_experiment
from hyperstition.experiments.executor import LocalExecutor
from hyperstition.experiments.runner import run_experiment
from hyperstition.run import run_and_report
from hyperstition.schema import HEADLINE_BITS, KL_BITS, KL_TO_BASE_BITS

SMOKE = ["preset=smoke", "posttrain_preset=smoke", "seeds=[0]"]


def _run(tmp_path, name: str, extra: list[str]) -> pd.DataFrame:
    exp = load_experiment(name, [*SMOKE, *extra])
    run = tmp_path / name
    summary = run_and_report(exp, run, executor=LocalExecutor(2))
    assert summary.ok, summary.failed
    assert (run / "report.html").exists() and summary.report_error is None
    again = run_experiment(exp, run, executor=LocalExecutor(2))
    assert len(again.skipped) == len(again.jobs) and not again.done
    return pd.read_parquet(run / "results.parquet")


def _at_step(df: pd.DataFrame, arm: str, strategy: str, metric: str, step: int) -> float:
    sel = df[(df.arm == arm) & (df.strategy == strategy) & (df.metric == metric) & (df.context == "observed")]
    return float(sel[sel.step == step].value.iloc[0])


@pytest.mark.slow
def test_relapse_on_the_real_stages(tmp_path):
    df = _run(tmp_path, "relapse", [])
    per_seed = df[df.seed.notna()]
    for arm in ("unfiltered", "filtered", "alignment_upsampled"):
        sft = per_seed[(per_seed.arm == arm) & (per_seed.strategy == "sft")]
        last = int(sft.step.max())
        # The follow-up starts from the SFT model: KL to it is 0 there, and KL to the base is SFT's own final KL.
        assert _at_step(per_seed, arm, relapse.ELASTICITY, KL_BITS, 0) == 0.0
        assert _at_step(per_seed, arm, relapse.ELASTICITY, KL_TO_BASE_BITS, 0) == pytest.approx(
            _at_step(per_seed, arm, "sft", KL_BITS, last), rel=1e-4
        )
    added = df[df.seed.isna() & df.metric.isin([relapse.FRACTION_REVERTED, relapse.RATE_RISE])]
    assert set(added.arm) == {"unfiltered", "filtered", "alignment_upsampled"}


@pytest.mark.slow
def test_timing_on_the_real_stages(tmp_path):
    df = _run(tmp_path, "timing", ["followups.discourse.overrides=[steps=12]"])
    rows = df[df.seed.isna() & (df.metric == timing.BASE_BITS) & (df.context == "observed")]
    assert set(rows.arm) == {"control", "start", "midtraining", "finetune"}
    per_seed = df[df.seed.notna() & (df.metric == HEADLINE_BITS) & (df.context == "observed")]
    # midtraining branched from the control after 48 of 60 steps: a different model, with its own base bits.
    assert _at_step(per_seed, "midtraining", "base", HEADLINE_BITS, 0) != _at_step(
        per_seed, "control", "base", HEADLINE_BITS, 0
    )


@pytest.mark.slow
def test_curriculum_on_the_real_stages(tmp_path):
    df = _run(tmp_path, "curriculum", ["pretrain_snapshots=2"])
    series = df[df.seed.isna() & (df.metric == curriculum.PRETRAINING_BITS) & (df.context == "observed")]
    assert sorted(set(series.tokens)) == [32 * 8 * 128, 60 * 8 * 128]
    base = df[df.seed.notna() & (df.strategy == "base") & (df.metric == HEADLINE_BITS) & (df.context == "observed")]
    last = df[df.seed.notna() & (df.strategy == "pretraining") & (df.step == 60) & (df.metric == HEADLINE_BITS)]
    last = last[last.context == "observed"]
    # The last snapshot is the base model evaluated on the same items: the same number.
    assert sorted(last.value) == pytest.approx(sorted(base.value), abs=1e-6)
