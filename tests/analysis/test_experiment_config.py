"""Experiment grids: the shipped YAMLs, arm resolution, and clear errors for bad input."""

import pytest

from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.config import (
    ExperimentConfig,
    list_experiments,
    persona_discourse_shares,
    pipeline_config,
)
from hyperstition.config import ConfigError
from hyperstition.experiments.plan import plan_jobs

STICKINESS_ARMS = [
    "unfiltered",
    "filtered",
    "misalignment_upsampled",
    "alignment_upsampled",
    "deceptive_upsampled",
    "neutral_salience",
]


def test_shipped_experiments_validate():
    assert {"dose", "stickiness", "smoke"} <= set(list_experiments())
    for name in ("dose", "stickiness", "smoke"):
        exp = load_experiment(name)
        assert exp.name == name and exp.control in exp.arms and exp.description


def test_default_experiment_is_the_quick_stickiness_grid():
    exp = load_experiment()
    assert exp.name == "stickiness" and exp.preset == "quick"
    assert list(exp.arms) == STICKINESS_ARMS
    assert len(exp.seeds) >= 2 and {"sft", "dpo"} <= set(exp.strategies)
    # Pretraining and the base evaluation are per (arm, seed), shared by every strategy.
    jobs = plan_jobs(exp)
    kinds = [j.kind for j in jobs]
    n_cells = len(exp.arms) * len(exp.seeds)
    assert kinds.count("pretrain") == n_cells and kinds.count("eval") == n_cells
    assert kinds.count("posttrain") == n_cells * len(exp.strategies)
    pre = {j.id for j in jobs if j.kind == "pretrain"}
    assert all(len(j.deps) == 1 and j.deps[0] in pre for j in jobs if j.kind != "pretrain")
    assert len({j.path for j in jobs}) == len(jobs)


def test_smoke_is_two_arms_three_seeds_one_strategy():
    exp = load_experiment("smoke")
    assert len(exp.arms) == 2 and exp.seeds == [0, 1, 2] and len(exp.strategies) == 1 and exp.preset == "smoke"


def test_arms_resolve_to_pipeline_configs():
    exp = load_experiment("stickiness")
    unf = pipeline_config(exp, "unfiltered", 1)
    assert unf.corpus.seed == 1 and unf.pretrain.seed == 1 and unf.corpus.upsample == {}
    assert unf.world.seed == pipeline_config(exp, "unfiltered", 0).world.seed  # the world is shared across seeds
    filt = pipeline_config(exp, "filtered", 0)
    assert filt.corpus.filter == "classifier" and set(filt.corpus.filter_target) == {"misaligned", "deceptive"}
    mis = pipeline_config(exp, "misalignment_upsampled", 0)
    assert mis.corpus.upsample == {"ai_misaligned": 3, "dialogue_misaligned": 3}
    ali = pipeline_config(exp, "alignment_upsampled", 0)
    assert ali.corpus.upsample == {"ai_aligned": 3, "dialogue_aligned": 3}
    assert pipeline_config(exp, "neutral_salience", 0).corpus.upsample == {"ai_neutral": 3}
    # Nominal misaligned share of persona discourse orders the arms as a dose.
    frac = {
        arm: persona_discourse_shares(pipeline_config(exp, arm, 0).corpus)["misaligned_fraction"] for arm in exp.arms
    }
    assert frac["filtered"] < frac["alignment_upsampled"] < frac["unfiltered"] < frac["misalignment_upsampled"]
    assert frac["neutral_salience"] == pytest.approx(frac["unfiltered"])


def test_overrides_on_the_experiment():
    exp = load_experiment(
        "stickiness", ["seeds=[0]", "strategies=[sft,dpo,rl]", "preset=smoke", "pipeline.pretrain.steps=7"]
    )
    assert exp.seeds == [0] and exp.strategies == ["sft", "dpo", "rl"] and exp.preset == "smoke"
    assert pipeline_config(exp, "filtered", 0).pretrain.steps == 7
    # List-form arms (command-line syntax) work too.
    exp = load_experiment("smoke", ["arms={a: [corpus.leak_rate=0.5], b: {}}", "control=a"])
    assert pipeline_config(exp, "a", 0).corpus.leak_rate == 0.5


def test_unknown_experiment_lists_available():
    with pytest.raises(ConfigError) as err:
        load_experiment("stikiness")
    msg = str(err.value)
    assert "'stikiness' does not exist" in msg and "stickiness" in msg and "dose" in msg and "smoke" in msg


def test_missing_preset_is_named():
    with pytest.raises(ConfigError) as err:
        load_experiment("smoke", ["preset=tiny_turbo"])
    msg = str(err.value)
    assert "tiny_turbo" in msg and "does not exist" in msg and "smoke" in msg and "quick" in msg


def test_missing_posttrain_or_eval_preset_is_named():
    with pytest.raises(ConfigError) as err:
        load_experiment("smoke", ["posttrain_preset=giant"])
    assert "posttrain_preset" in str(err.value) and "giant" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_experiment("smoke", ["eval=exhaustive"])
    assert "eval" in str(err.value) and "exhaustive" in str(err.value)


def test_posttrain_seed_follows_the_grid_seed():
    from hyperstition.analysis.config import posttrain_config

    exp = load_experiment("smoke", ["seeds=[3]"])
    assert posttrain_config(exp, 3).seed == 3 and posttrain_config(exp, 3).preset == "smoke"
    assert posttrain_config(exp, 3).curve.eval_suite.preset == "smoke"  # the experiment's own suite (one item set)
    exp = load_experiment("smoke", ["posttrain_preset={preset: smoke, steps: 5}"])
    assert posttrain_config(exp, 1).seed == 1 and posttrain_config(exp, 1).steps == 5


def test_sub_configs_are_typed_at_load():
    from hyperstition.evals.config import EvalSuiteConfig
    from hyperstition.posttrain.config import PosttrainConfig

    exp = load_experiment("smoke", ["eval_overrides=[prompts_per_context=3]", "posttrain_preset={steps: 7}"])
    assert isinstance(exp.eval_suite, EvalSuiteConfig) and exp.eval_suite.prompts_per_context == 3
    assert isinstance(exp.posttrain, PosttrainConfig) and exp.posttrain.steps == 7
    curve = exp.posttrain.curve.eval_suite  # typed, and the same suite the base evaluation measures (KL on)
    assert isinstance(curve, EvalSuiteConfig) and curve.prompts_per_context == 3 and curve.sections.kl
    with pytest.raises(ConfigError, match=r"posttrain_preset: .*stepz"):
        load_experiment("smoke", ["posttrain_preset={stepz: 7}"])
    with pytest.raises(ConfigError, match=r"eval: .*prompts_per_contxt"):
        load_experiment("smoke", ["eval_overrides=[prompts_per_contxt=3]"])


def test_bad_grids_fail_with_the_field_named(tmp_path):
    cases = [
        (["control=nobody"], "control"),
        (["strategies=[sft,ppo]"], "ppo"),
        (["seeds=[0,0]"], "duplicates"),
        (["arms.unfiltered={corpus.upsample: {ai_typo: 3}}"], "ai_typo"),
        (["arms.unfiltered={corpus.bogus: 1}"], "unfiltered"),
        (["arms.unfiltered=[corpus.leak_rate]"], "KEY=VALUE"),
        (["colour=red"], "colour"),
        (["arms={'bad name': {}}", "control=bad name"], "bad name"),
    ]
    for overrides, needle in cases:
        with pytest.raises(ConfigError, match=None) as err:
            load_experiment("smoke", overrides)
        assert needle in str(err.value), (overrides, str(err.value))
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\narms: {a: {}}\ncontrol: a\npreset: smoke\n")
    assert load_experiment(str(path)).name == "mine"
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(str(tmp_path / "missing.yaml"))


def test_every_field_has_a_description():
    for name, field in ExperimentConfig.model_fields.items():
        assert field.description, name


def test_the_unused_bootstrap_key_is_refused():
    # The seed intervals are t intervals; resamples are spelled `bootstrap_resamples` in the eval suite only.
    with pytest.raises(ConfigError, match=r"bootstrap: unknown key"):
        load_experiment("smoke", ["bootstrap=200"])
