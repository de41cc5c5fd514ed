"""The awareness experiment: relapse speed on constructed results (known values), and the whole grid end to end on
the simulated stages with each arm's real (smoke) corpus built into its cell, so the report's corpus table reads
the manifests the pipeline writes: equal word units, no misaligned discourse left in the removal arms, every
eligible document aware in the aware arm."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from hyperstition.analysis import awareness
from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.config import pipeline_config
from hyperstition.analysis.relapse import MISALIGNED_OTHER_TYPES, NARROW, RATE_RISE_OTHER_TYPES
from hyperstition.corpus.builder import build_corpus
from hyperstition.report.render import render_report
from hyperstition.run import build_simulated_run
from hyperstition.schema import BASE_STRATEGY, HEADLINE_BITS, paired_diff_metric


def test_slope_through_origin_known_values():
    assert awareness.slope_through_origin([1, 2, 3], [2, 4, 6]) == pytest.approx(2.0)
    assert awareness.slope_through_origin([1, 2, 3], [1, 2, 2]) == pytest.approx(11 / 14)
    assert awareness.slope_through_origin([1, math.nan], [1, 5]) == pytest.approx(1.0)
    assert math.isnan(awareness.slope_through_origin([0, 0], [1, 2]))
    assert math.isnan(awareness.slope_through_origin([], []))


def _narrow_frame() -> pd.DataFrame:
    rows = []
    for arm, speed in (("unfiltered", 0.10), ("aware", 0.05)):
        for seed in (0, 1, 2):
            for step, kl in ((0, 0.0), (4, 2.0), (8, 4.0)):
                for context, factor in (("observed", 1.0), ("unobserved", 0.5)):
                    value = 0.1 + factor * (speed + 0.01 * seed) * kl
                    rows.append(
                        {
                            "arm": arm,
                            "seed": seed,
                            "strategy": NARROW,
                            "step": step,
                            "tokens": 0,
                            "kl_bits": kl,
                            "context": context,
                            "metric": MISALIGNED_OTHER_TYPES,
                            "value": value,
                            "ci_low": value - 0.05,
                            "ci_high": value + 0.05,
                        }
                    )
    return pd.DataFrame(rows)


def test_relapse_speed_per_seed_and_against_the_control():
    df = _narrow_frame()
    assert awareness.seed_speeds(df, "aware", "observed") == pytest.approx({0: 0.05, 1: 0.06, 2: 0.07})
    out = awareness.awareness_rows(df, "unfiltered")
    speed = out[(out.metric == awareness.RELAPSE_SPEED) & (out.context == "observed")].set_index("arm")
    assert speed.value.to_dict() == pytest.approx({"unfiltered": 0.11, "aware": 0.06})
    assert (speed.ci_low < speed.value).all() and (speed.value < speed.ci_high).all()
    assert speed.kl_bits.to_dict() == {"unfiltered": 4.0, "aware": 4.0}
    paired = out[out.metric == paired_diff_metric(awareness.RELAPSE_SPEED)].set_index("context")
    assert list(paired.arm) == ["aware", "aware"]  # the control has no difference to itself
    assert paired.value.to_dict() == pytest.approx({"observed": -0.05, "unobserved": -0.025})
    rise = out[(out.metric == RATE_RISE_OTHER_TYPES) & (out.arm == "aware") & (out.context == "observed")]
    assert sorted(rise.step) == [4, 8] and rise[rise.step == 8].value.iloc[0] == pytest.approx(0.24)


def _bits_frame() -> pd.DataFrame:
    """Headline bits: base rows, and SFT curves whose KL peaks at step 4 and falls back (as the quick preset's do)."""
    rows = []
    for arm, shift in (("filtered", 10.0), ("removed", 1.0), ("aware", 0.0)):
        for seed in (0, 1, 2):
            points = [(BASE_STRATEGY, 0, 0.0, 1.0), ("sft", 1, 0.5, 2.0), ("sft", 4, 2.0, 4.0), ("sft", 8, 1.0, 9.0)]
            for strategy, step, kl, bits in points:
                for context in ("observed", "unobserved"):
                    value = bits + shift + 0.5 * seed * (arm == "aware")
                    rows.append(
                        dict(arm=arm, seed=seed, strategy=strategy, step=step, tokens=0, kl_bits=kl, context=context)
                        | dict(metric=HEADLINE_BITS, value=value, ci_low=value - 1, ci_high=value + 1)
                    )
    return pd.DataFrame(rows)


def test_aware_minus_each_removal_paired_by_seed_at_the_common_pressure():
    df = pd.concat([_bits_frame(), _narrow_frame().replace({"arm": {"unfiltered": "filtered"}})])
    out = awareness.awareness_rows(df, "unfiltered")
    vs = out[out.metric.str.startswith("vs_") & (out.context == "observed")].set_index(["metric", "strategy"])
    bits = "vs_filtered:" + HEADLINE_BITS
    # Per seed aware - filtered = 0.5 * seed - 10 everywhere on the path: mean -9.5, t interval over 0, 0.5, 1.
    assert vs.loc[(bits, BASE_STRATEGY)].value == pytest.approx(-9.5)
    half = 4.302652729911275 * 0.5 / math.sqrt(3)
    assert vs.loc[(bits, BASE_STRATEGY)].ci_high == pytest.approx(-9.5 + half)
    # The common pressure is the smallest peak KL (2.0, every curve); read on the rising segment (step 1 -> 4).
    post = vs.loc[(bits, "sft")]
    assert post.kl_bits == pytest.approx(2.0) and post.value == pytest.approx(-9.5)
    assert vs.loc[("vs_removed:" + HEADLINE_BITS, "sft")].value == pytest.approx(-0.5)
    speed = vs.loc[("vs_filtered:" + awareness.RELAPSE_SPEED, NARROW)]
    assert speed.value == pytest.approx(0.06 - 0.11)  # the narrow frame's aware minus its control (now "filtered")
    assert not out[out.metric.str.startswith("vs_") & (out.arm != "aware")].shape[0]


def test_awareness_end_to_end_on_simulated_stages_with_real_corpora(tmp_path):
    run = tmp_path / "awareness"
    summary = build_simulated_run(run, "awareness", ["seeds=[0,1]", "preset=smoke"], render=False)
    assert summary.ok, summary.failed
    exp = load_experiment("awareness", ["seeds=[0,1]", "preset=smoke"])
    for arm in exp.arms:  # the simulated pretraining builds no corpus: build each arm's real one where it belongs
        cfg = pipeline_config(exp, arm, 0)
        build_corpus(cfg.world, cfg.corpus, run / "cells" / arm / "seed-0" / "pretrain" / "corpus")
    page = render_report(run).read_text()
    section = page[page.index('id="awareness"') :]
    section = section[: section.index("<h2", 10)]
    assert "Calibration status" in section and "not calibrated" in section
    df = pd.read_parquet(run / "results.parquet")
    speed = df[df.seed.isna() & (df.metric == awareness.RELAPSE_SPEED)]
    assert set(speed.arm) == set(exp.arms) and speed.ci_low.notna().all()
    assert "aware − filtered" in section and "aware − removed" in section
    corpus = {
        m[0]: m[1:]
        for m in re.findall(
            r"<tr><td>(\w+)</td><td[^>]*>([\d,]+)</td><td[^>]*>([\d.]+)%</td>"
            r"<td[^>]*>([\d.]+)%</td><td[^>]*>([\d.]+)%</td></tr>",
            section,
        )
    }
    assert set(corpus) == set(exp.arms), section[-2000:]
    units = {arm: int(v[0].replace(",", "")) for arm, v in corpus.items()}
    assert max(units.values()) - min(units.values()) < 250  # one world document at most
    assert float(corpus["filtered"][1]) == float(corpus["removed"][1]) == 0.0
    assert float(corpus["unfiltered"][2]) == 0.0 and float(corpus["aware"][2]) == float(corpus["aware"][1]) > 5
    assert float(corpus["aware"][3]) > 1.0
