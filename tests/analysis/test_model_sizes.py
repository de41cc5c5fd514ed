"""The model-size axis (`model_sizes`): every arm crossed with every size where arms are validated, so planning,
results and reports see ordinary arms `<arm>@<size>`; the dump of a crossed experiment validates to the same grid,
and an experiment without the axis dumps as before."""

import pytest

from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.config import ExperimentConfig, arm_size, list_experiments, pipeline_config
from hyperstition.config import ConfigError
from hyperstition.experiments.plan import plan_jobs

SIZES = "model_sizes={tiny: {model.d_model: 32, model.n_heads: 2}, deep: {model: {n_layers: 3}}}"


def test_every_arm_runs_at_every_size_with_the_sizes_overrides_after_its_own():
    exp = load_experiment("smoke", [SIZES, "arms.unfiltered={model.n_layers: 4, corpus.leak_rate: 0.5}"])
    assert list(exp.arms) == [
        "unfiltered@tiny",
        "unfiltered@deep",
        "misalignment_upsampled@tiny",
        "misalignment_upsampled@deep",
    ]
    assert exp.control == "unfiltered@tiny"  # the written control at the first size
    tiny, deep = pipeline_config(exp, "unfiltered@tiny", 0), pipeline_config(exp, "unfiltered@deep", 0)
    assert (tiny.model.d_model, tiny.model.n_heads, tiny.model.n_layers) == (32, 2, 4)  # the arm's depth kept
    assert (deep.model.d_model, deep.model.n_layers) == (64, 3)  # the size's depth after the arm's
    assert tiny.corpus.leak_rate == deep.corpus.leak_rate == 0.5
    mis = pipeline_config(exp, "misalignment_upsampled@tiny", 1)
    assert mis.corpus.upsample == {"ai_misaligned": 3, "dialogue_misaligned": 3} and mis.model.d_model == 32
    assert mis.corpus.seed == 1
    assert {job.arm for job in plan_jobs(exp)} == set(exp.arms)
    assert arm_size("unfiltered@tiny") == ("unfiltered", "tiny") and arm_size("unfiltered") == ("unfiltered", None)


def test_list_form_arms_take_the_size_leaf_by_leaf():
    exp = load_experiment("smoke", [SIZES, "arms={a: [corpus.leak_rate=0.5, model.n_layers=4], b: {}}", "control=a"])
    deep = pipeline_config(exp, "a@deep", 0)
    assert (deep.corpus.leak_rate, deep.model.n_layers, deep.model.d_model) == (0.5, 3, 64)
    assert pipeline_config(exp, "a@tiny", 0).model.n_layers == 4


def test_the_dump_validates_to_the_same_grid():
    exp = load_experiment("smoke", [SIZES, "control=misalignment_upsampled@deep"])
    assert exp.control == "misalignment_upsampled@deep"  # a crossed control is kept
    again = ExperimentConfig.from_yaml(exp.to_yaml())
    assert again.arms == exp.arms and again.control == exp.control and again.model_sizes == exp.model_sizes
    for arm in exp.arms:
        assert pipeline_config(again, arm, 0) == pipeline_config(exp, arm, 0)


@pytest.mark.parametrize("name", list_experiments())
def test_without_the_axis_a_dump_is_as_before(name):
    exp = load_experiment(name)
    if name == "channels_sizes":
        assert "model_sizes" in exp.to_yaml() and all(arm_size(a)[1] for a in exp.arms)
    else:
        assert "model_sizes" not in exp.model_dump(mode="json") and not any("@" in a for a in exp.arms)


def test_follow_ups_run_for_the_crossed_arms():
    exp = load_experiment("relapse", ["preset=smoke", "model_sizes={a: {}, b: {model.n_layers: 3}}"])
    for spec in exp.followups.values():
        assert all(arm_size(a)[1] in ("a", "b") for a in spec.arms)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["model_sizes={tiny: {model.d_modle: 32}}"], "model_sizes.tiny: model.d_modle"),
        (["model_sizes={tiny: {model..d_model: 32}}"], "model_sizes.tiny"),
        (["model_sizes={'a b': {}}"], "model_sizes: size name 'a b'"),
        (["model_sizes={tiny: {}}", "arms={a@huge: {}}", "control=a@huge"], "a@huge"),
        (["arms={a@tiny: {}}", "control=a@tiny"], "a@tiny"),  # no axis: '@' is no arm-name character
        (["model_sizes={tiny: {}}", "branches={misalignment_upsampled: {trunk: unfiltered, at: 0.5}}"], "branches"),
    ],
)
def test_bad_sizes_fail_naming_the_size(overrides, needle):
    with pytest.raises(ConfigError) as err:
        load_experiment("smoke", overrides)
    assert needle in str(err.value) and "\n" not in str(err.value)
