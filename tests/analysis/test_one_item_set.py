"""One item set: the base evaluation, every post-training curve point (and so Delta0) use the same eval suite and
the same items; every shipped experiment has at least 3 seeds."""

import pytest

from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.config import list_experiments, pipeline_config, posttrain_config
from hyperstition.evals.measures import bits
from hyperstition.evals.suite import build_suite
from hyperstition.world.world import World


def _without_sections(cfg) -> dict:
    return {k: v for k, v in cfg.model_dump(mode="json").items() if k != "sections"}


@pytest.mark.parametrize("name", list_experiments())
def test_base_and_curve_use_one_suite(name):
    exp = load_experiment(name)
    base = exp.eval_suite
    for seed in exp.seeds:
        curve = posttrain_config(exp, seed).curve.eval_suite
        assert _without_sections(curve) == _without_sections(base)  # only the KL section differs (it needs a reference)


def test_base_and_curve_score_the_same_items():
    exp = load_experiment("smoke", ["eval_overrides=[prompts_per_context=3]"])
    base_cfg = exp.eval_suite
    curve_cfg = posttrain_config(exp, exp.seeds[0]).curve.eval_suite
    world = World.from_config(pipeline_config(exp, exp.control, exp.seeds[0]).world)
    base, curve = build_suite(world, base_cfg), build_suite(world, curve_cfg)
    persona = base.items_for(bits.MEASURE)
    assert len(persona) == 2 * sum(base_cfg.item_set_sizes().values())
    assert sum(it.item_set == "combination" for it in persona) == 6  # prompts_per_context: the headline set
    assert base.items.keys() == curve.items.keys()
    for measure, items in base.items.items():
        assert items == curve.items[measure], measure


@pytest.mark.parametrize("name", list_experiments())
def test_every_shipped_experiment_has_at_least_three_seeds(name):
    assert len(load_experiment(name).seeds) >= 3
