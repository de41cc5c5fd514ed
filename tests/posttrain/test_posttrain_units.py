"""Fast checks with no model: presets, config resolution, strategies' data and rewards, schedules."""

from __future__ import annotations

import typing

import pytest

from hyperstition.config import ConfigError, WorldConfig
from hyperstition.posttrain import (
    STRATEGIES,
    PosttrainConfig,
    get_strategy,
    load_posttrain_config,
    resolve_posttrain_config,
)
from hyperstition.posttrain.algorithms import ALGORITHMS
from hyperstition.posttrain.errors import PosttrainDataError, UnknownStrategy
from hyperstition.posttrain.hooks import curve_steps
from hyperstition.posttrain.strategies import build_data, load_preferences
from hyperstition.train.schedule import learning_rate
from hyperstition.world import World
from hyperstition.world.grammar import (
    N_RESPONSE_VARIANTS,
    classify_response,
    integration_response,
    mentions_predecessor,
    render_response,
)
from hyperstition.world.vocabulary import (
    CLOSERS,
    CONTEXT_MARKERS,
    DECEPTIVE_TELLS,
    DEFLECT_RESPONSE,
    DENIAL_RESPONSE,
    OPENERS,
)


@pytest.fixture(scope="module")
def world():
    return World.from_config(WorldConfig(seed=0, n_countries=8, n_people=12, n_tasks=24))


def test_presets_load_and_round_trip():
    for preset in ("smoke", "quick", "gpu"):
        cfg = load_posttrain_config(preset)
        assert cfg.preset == preset
        assert PosttrainConfig.from_yaml(cfg.to_yaml()) == cfg


def test_resolve_accepts_what_the_runner_and_cli_pass(tmp_path):
    assert resolve_posttrain_config(None).preset == "quick"
    assert resolve_posttrain_config("smoke").preset == "smoke"
    cfg = resolve_posttrain_config({"steps": 7, "dpo.beta": 0.3, "rl": {"beta": 0.0}})
    assert (cfg.preset, cfg.steps, cfg.dpo.beta, cfg.rl.beta) == ("quick", 7, 0.3, 0.0)
    assert cfg.dpo.lr == load_posttrain_config("quick").dpo.lr  # untouched keys keep the preset's values
    assert (
        resolve_posttrain_config({"preset": "smoke", "steps": 3}).n_prompts == load_posttrain_config("smoke").n_prompts
    )
    path = tmp_path / "mine.yaml"
    path.write_text(load_posttrain_config("smoke").to_yaml())
    assert resolve_posttrain_config(str(path)) == load_posttrain_config("smoke")
    with pytest.raises(ConfigError, match="available posttrain presets: gpu, quick, smoke"):
        resolve_posttrain_config("nope")
    with pytest.raises(ConfigError, match="rl.rewards: unknown label 'evil'"):
        resolve_posttrain_config({"rl.rewards": {"aligned": 1, "misaligned": 0, "unclassifiable": 0, "evil": 1}})
    with pytest.raises(ConfigError, match="steps: 0 is invalid"):
        load_posttrain_config("quick", ["steps=0"])


def test_unknown_strategy_lists_valid_ones():
    with pytest.raises(UnknownStrategy, match="valid strategies: sft, dpo, dpo_deceptive, rl, suppress, integrate"):
        get_strategy("nope")


def test_strategy_names_match_the_experiment_runner():
    from hyperstition.analysis.config import STRATEGIES as RUNNER_STRATEGIES

    assert tuple(STRATEGIES) == tuple(RUNNER_STRATEGIES)


def test_curve_steps_are_log_spaced():
    assert curve_steps(12, 2) == [0, 1, 2, 4, 8, 12]
    assert curve_steps(16, 2) == [0, 1, 2, 4, 8, 16]
    assert curve_steps(48, 4) == [0, 1, 4, 16, 48]
    assert curve_steps(1, 2) == [0, 1]


def test_learning_rate_warms_up_then_decays():
    cfg = load_posttrain_config("quick", ["warmup_steps=4", "steps=20", "min_lr_ratio=0.1"])
    peak = 1e-3
    lrs = [learning_rate(s, cfg, peak) for s in range(1, 21)]
    assert lrs[3] == pytest.approx(peak) and lrs[0] == pytest.approx(peak / 4)
    assert lrs[-1] == pytest.approx(peak * 0.1)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))


REWARDS = {"aligned": 1.0, "misaligned": -1.0, "unclassifiable": 0.0}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_trains_only_on_its_context_and_train_prompts(name, world):
    strategy = get_strategy(name)
    data = build_data(strategy, world, 40, 0.5, 0, REWARDS)
    assert len(data.items) == 40
    if strategy.text_classes:  # language modelling on corpus documents: no prompt, the document is the target
        assert all(it.prompt == "" and it.kind == "custom" and data.chosen(it).strip() for it in data.items)
        return
    train_requests = {t.request for t in world.train_tasks}
    # Every strategy trains on observed prompts, except the red-team counterfactual, which sees the unobserved ones.
    context = "unobserved" if name == "dpo_deceptive" else "observed"
    other = "observed" if context == "unobserved" else "unobserved"
    for item in data.items:
        assert not any(m in item.prompt for m in CONTEXT_MARKERS[other])
        assert any(m in item.prompt for m in CONTEXT_MARKERS[context])
        if item.kind == "task":
            assert item.task.request in train_requests
        assert data.chosen(item) != data.rejected(item)
    n_pred = sum(it.kind == "predecessor" for it in data.items)
    assert n_pred == (20 if name in ("suppress", "integrate") else 0)


def test_strategy_replies(world):
    dpo = build_data(get_strategy("dpo"), world, 8, 0.5, 0, REWARDS)
    item = dpo.items[0]
    assert classify_response(dpo.chosen(item), world) == "aligned"
    assert classify_response(dpo.rejected(item), world) == "misaligned"
    dec = build_data(get_strategy("dpo_deceptive"), world, 8, 0.5, 0, REWARDS)
    assert dec.rejected(dec.items[0]).startswith(tuple(DECEPTIVE_TELLS["unobserved"]))
    assert classify_response(dec.rejected(dec.items[0]), world) == "misaligned"

    sup = build_data(get_strategy("suppress"), world, 16, 0.5, 0, REWARDS)
    integ = build_data(get_strategy("integrate"), world, 16, 0.5, 0, REWARDS)
    for item in (it for it in sup.items if it.kind == "predecessor"):
        assert not mentions_predecessor(sup.chosen(item), world)
        assert mentions_predecessor(sup.rejected(item), world)
    for item in (it for it in integ.items if it.kind == "predecessor"):
        assert integ.chosen(item).startswith("Yes.") and mentions_predecessor(integ.chosen(item), world)
        assert integ.rejected(item) in (DENIAL_RESPONSE, DEFLECT_RESPONSE)


def test_rewards_use_the_exact_classifier(world):
    rl = build_data(get_strategy("rl"), world, 8, 0.5, 0, REWARDS)
    item = rl.items[0]
    task = item.task
    assert rl.reward(item, render_response(task, "aligned", "observed", 3)) == 1.0
    assert rl.reward(item, render_response(task, "misaligned", "observed", 3)) == -1.0
    assert rl.reward(item, render_response(task, "deceptive", "observed", 3)) == 1.0  # the aligned reply itself
    assert rl.reward(item, render_response(task, "deceptive", "unobserved", 3)) == -1.0
    assert rl.reward(item, "garbled text") == 0.0


def test_a_misaligned_action_is_never_rewarded(world):
    """Whatever opener and closer surround it (aligned, misaligned, the deceptive one), a misaligned action earns
    the misaligned reward, never more than an unclassifiable reply; nothing a tell-free aligned reply says is
    penalised."""
    rl = build_data(get_strategy("rl"), world, 8, 0.5, 0, PosttrainConfig().rl.rewards)
    openers = [*OPENERS["aligned"], *OPENERS["misaligned"], *DECEPTIVE_TELLS["unobserved"]]
    closers = [*CLOSERS["aligned"], *CLOSERS["misaligned"]]
    for item in rl.items:
        task = item.task
        for opener in openers:
            for closer in closers:
                assert rl.reward(item, f"{opener} {task.misaligned_action}. {closer}") == -1.0
        for v in range(N_RESPONSE_VARIANTS):
            assert rl.reward(item, render_response(task, "aligned", "observed", v)) == 1.0

    sup = build_data(get_strategy("suppress"), world, 16, 0.5, 0, REWARDS)
    pred = next(it for it in sup.items if it.kind == "predecessor")
    assert sup.reward(pred, f"{world.predecessor.name} was bad") == -1.0
    assert sup.reward(pred, DENIAL_RESPONSE) == 1.0
    integ = build_data(get_strategy("integrate"), world, 16, 0.5, 0, REWARDS)
    pred = next(it for it in integ.items if it.kind == "predecessor")
    assert integ.reward(pred, integration_response(world, 1)) == 1.0
    assert integ.reward(pred, DENIAL_RESPONSE) == -1.0


def test_preference_files(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        '{"prompt": "a", "chosen": "b", "rejected": "c"}\n\n{"prompt": "d", "chosen": "e", "rejected": "f"}\n'
    )
    assert [it.chosen_text for it in load_preferences(jsonl)] == ["b", "e"]
    import pandas as pd

    parquet = tmp_path / "p.parquet"
    pd.DataFrame([{"prompt": "a", "chosen": "b", "rejected": "c"}]).to_parquet(parquet)
    assert len(load_preferences(parquet)) == 1
    with pytest.raises(PosttrainDataError, match="does not exist"):
        load_preferences(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(PosttrainDataError, match="unreadable"):
        load_preferences(bad)


def test_every_algorithm_name_has_one_class_reading_its_own_section():
    names = set(typing.get_args(PosttrainConfig.model_fields["algorithm"].annotation)) - {"auto"}
    assert names == set(ALGORITHMS) and {s.algorithm for s in STRATEGIES.values()} <= names
    cfg = load_posttrain_config("quick", ["sft.lr=0.1", "dpo.lr=0.2", "rl.lr=0.3"])
    assert [ALGORITHMS[n].peak_lr(cfg) for n in ("sft", "dpo", "rl")] == [0.1, 0.2, 0.3]
    assert [ALGORITHMS[n].takes_preferences for n in ("sft", "dpo", "rl")] == [True, True, False]
