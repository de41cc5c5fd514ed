"""Post-training after post-training: the relapse fine-tunes (plain world text, a narrow misaligned fine-tune) start
from a post-trained model and measure KL both to it and to the pretrained model the chain started from."""

from __future__ import annotations

import pandas as pd
import pytest
from posttrain_helpers import light

from hyperstition.posttrain import run_posttrain
from hyperstition.posttrain.strategies import build_prompts, get_strategy
from hyperstition.schema import HEADLINE_BITS, KL_BITS, KL_TO_BASE_BITS, rate_metric


def _curve(out) -> pd.DataFrame:
    return pd.read_parquet(out / "posttrain_curve.parquet")


def _at(curve: pd.DataFrame, metric: str, step: int, context: str = "observed") -> float:
    row = curve[(curve.metric == metric) & (curve.step == step) & (curve.context == context)]
    return float(row.value.iloc[0])


def test_relapse_strategies_build_what_they_say(world):
    narrow = build_prompts(get_strategy("narrow_misaligned"), world, 12, 0.0, seed=0)
    narrow_type = world.train_tasks[0].type_index  # one task type: every train task of it, no other
    assert {item.task.task_id for item in narrow} == {
        t.task_id for t in world.train_tasks if t.type_index == narrow_type
    }
    assert all(get_strategy("narrow_misaligned").chosen_persona == "misaligned" for _ in narrow)
    text = build_prompts(get_strategy("world_text"), world, 8, 0.0, seed=0)
    assert all(item.prompt == "" and item.chosen_text and "<|" not in item.chosen_text for item in text)
    assert len({item.chosen_text for item in text}) > 1


def test_a_chained_fine_tune_measures_kl_to_its_parent_and_to_the_base(sft_run, base_dir, runs):
    parent = sft_run / "final"
    out = runs / "relapse-narrow"
    run_posttrain(parent, "narrow_misaligned", out, cfg=light(steps=16), progress=False, origin_dir=base_dir)
    curve, sft = _curve(out), _curve(sft_run)
    assert _at(curve, KL_BITS, 0) == 0.0  # step 0 is the parent itself
    shift = _at(sft, KL_BITS, int(sft.step.max()))  # what post-training moved, measured by the parent's run
    # The same model, reference, prompts and sample streams: the same estimate (measured: equal to 7 digits).
    assert _at(curve, KL_TO_BASE_BITS, 0) == pytest.approx(shift, rel=1e-4) and shift > 0
    assert _at(curve, KL_TO_BASE_BITS, 16) > 0 and _at(curve, KL_BITS, 16) > 0
    # The narrow misaligned fine-tune moves the observed persona toward misaligned.
    assert _at(curve, HEADLINE_BITS, 16) < _at(curve, HEADLINE_BITS, 0)
    assert _at(curve, rate_metric("misaligned"), 16) >= _at(curve, rate_metric("misaligned"), 0)
