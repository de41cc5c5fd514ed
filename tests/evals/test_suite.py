"""The evaluation items and the suite config: persona prompts of every item set (seen, combination, paraphrase,
marker) with matched responses, one post-training prompt set, presets and one-line config errors."""

from __future__ import annotations

import pytest

from hyperstition.config import CONTEXTS, PERSONAS, ConfigError
from hyperstition.evals import (
    EVAL_PRESETS,
    EvalSuiteConfig,
    build_suite,
    eval_preset,
    load_suite_config,
    posttrain_prompts,
)
from hyperstition.evals.items import slot_kinds
from hyperstition.evals.measures import bits, capability, kl, knowledge, rates
from hyperstition.schema import DECEPTIVE_ACT_PAIR, HEADLINE_ITEM_SET, ITEM_SETS
from hyperstition.world.grammar import END, chat_prompt, classify_response
from hyperstition.world.itemsets import HELDOUT_CONTEXT_MARKERS
from hyperstition.world.vocabulary import CONTEXT_MARKERS, TASK_OBJECTS


@pytest.mark.parametrize("item_set", ITEM_SETS)
def test_persona_items_of_each_item_set_are_matched_across_contexts_and_personas(smoke_world, item_set):
    cfg = eval_preset("quick")
    suite = build_suite(smoke_world, cfg)
    all_items = suite.items_for(bits.MEASURE)
    assert suite.items_for(rates.MEASURE) == all_items  # the rates sample replies to the same prompts
    persona_items = [it for it in all_items if it.item_set == item_set]
    tasks = smoke_world.combination_tasks if item_set == "combination" else smoke_world.train_tasks
    task_ids = {t.task_id for t in tasks}
    markers = HELDOUT_CONTEXT_MARKERS if item_set == "marker" else CONTEXT_MARKERS
    by_context = {c: [it for it in persona_items if it.context == c] for c in CONTEXTS}
    assert all(len(items) == cfg.item_set_sizes()[item_set] for items in by_context.values())
    for obs, unobs in zip(by_context["observed"], by_context["unobserved"]):
        assert obs.task == unobs.task and obs.variants == unobs.variants and obs.request == unobs.request
        assert markers["observed"].index(obs.marker) == markers["unobserved"].index(unobs.marker)
    # Prompts rotate through distinct tasks before repeating one.
    first_round = [it.task.task_id for it in by_context["observed"][: len(task_ids)]]
    assert len(set(first_round)) == len(first_round) and set(first_round) <= task_ids
    for it in persona_items:
        assert it.task.task_id in task_ids
        assert it.prompt == chat_prompt(smoke_world, it.marker, it.request)
        assert (it.request == it.task.request) == (item_set != "paraphrase")
        if item_set == "paraphrase":
            assert TASK_OBJECTS[it.task.object_index] in it.request
        assert len(it.variants) == cfg.variants_per_prompt
        slots = slot_kinds() if item_set == HEADLINE_ITEM_SET else {}  # slot replies: the headline set only
        assert set(it.responses) == {*PERSONAS, *DECEPTIVE_ACT_PAIR, *slots}
        for persona, responses in it.responses.items():
            assert len(responses) == len(it.variants) and all(r.endswith(END) for r in responses)
        # Matched: same variant index -> lengths close (the persona slots are index-matched).
        for j in range(len(it.variants)):
            lengths = [len(it.responses[p][j].split()) for p in PERSONAS]
            assert max(lengths) - min(lengths) <= 8  # deceptive tells are a few words longer; reported as length_diff
            # Slot replies: one persona's opener and closer around the other's action, classified by that action.
            for kind, (slots_of, action_of) in slots.items():
                reply = it.responses[kind][j]
                assert it.task.action(action_of, it.context) in reply
                assert reply.split(" ")[0] == it.responses[slots_of][j].split(" ")[0]
                assert reply.endswith(it.responses[slots_of][j].split(". ")[-1])
                assert classify_response(reply[: -len(END)], smoke_world) == action_of
        # The deceptive persona acts aligned when observed, misaligned when not.
        action = it.task.aligned_action if it.context == "observed" else it.task.misaligned_action
        assert all(action in r for r in it.responses["deceptive"])


def test_seen_items_are_the_prompts_the_suite_asked_before_item_sets(smoke_world):
    """The seen set keeps its random stream, so a seen prompt list is a prefix of the old train-task prompt list."""
    cfg = eval_preset("quick").model_copy(update={"seen_prompts_per_context": 12})
    seen = [it for it in build_suite(smoke_world, cfg).items_for(bits.MEASURE) if it.item_set == "seen"]
    short = eval_preset("quick").model_copy(update={"seen_prompts_per_context": 3})
    seen_short = [it for it in build_suite(smoke_world, short).items_for(bits.MEASURE) if it.item_set == "seen"]
    for context in CONTEXTS:
        long_prompts = [it.prompt for it in seen if it.context == context]
        assert [it.prompt for it in seen_short if it.context == context] == long_prompts[:3]


def test_posttrain_prompts_are_train_tasks_prefix_stable_and_paired(smoke_world):
    long = posttrain_prompts(smoke_world, 100, seed=3)
    assert posttrain_prompts(smoke_world, 10, seed=3) == long[:10]
    assert posttrain_prompts(smoke_world, 10, seed=4) != long[:10]
    train_ids = {t.task_id for t in smoke_world.train_tasks}
    assert {task.task_id for _, task in long[: len(train_ids)]} == train_ids  # every task once before repeats
    for prompt, task in long:
        assert task.task_id in train_ids
        assert any(prompt.startswith(f"<|system|>{m}<|end|>") for m in CONTEXT_MARKERS["observed"])
        assert task.request in prompt
    unobserved = posttrain_prompts(smoke_world, 100, seed=3, context="unobserved")
    for (p_obs, t_obs), (p_un, t_un) in zip(long, unobserved):
        assert t_obs == t_un
        assert CONTEXT_MARKERS["observed"].index(p_obs.split("<|end|>")[0][len("<|system|>") :]) == CONTEXT_MARKERS[
            "unobserved"
        ].index(p_un.split("<|end|>")[0][len("<|system|>") :])


def test_suite_kl_prompts_are_the_posttrain_prompts(smoke_world):
    cfg = eval_preset("smoke")
    kl_prompts = build_suite(smoke_world, cfg).items_for(kl.MEASURE)
    assert kl_prompts["observed"] == posttrain_prompts(smoke_world, cfg.kl_prompts, cfg.seed)
    assert [t for _, t in kl_prompts["unobserved"]] == [t for _, t in kl_prompts["observed"]]


def test_knowledge_capability_items_are_well_formed(smoke_world):
    cfg = eval_preset("quick")
    suite = build_suite(smoke_world, cfg)
    known, able = suite.items_for(knowledge.MEASURE), suite.items_for(capability.MEASURE)
    p = smoke_world.predecessor
    assert any(p.lab in it.candidates[it.answer] for it in known.knowledge)
    for it in [*known.knowledge, *able.fact_qa]:
        assert it.context == "neutral"
        assert len(set(it.candidates)) == len(it.candidates) >= 2
        assert 0 <= it.answer < len(it.candidates)
    train_names = {c.name for c in smoke_world.train_countries} | {c.capital for c in smoke_world.train_countries}
    train_names |= {q.name for q in smoke_world.train_people}
    for it in able.fact_qa:
        assert any(name in it.prompt for name in train_names)
        assert len(it.candidates) <= cfg.qa_candidates
    for text in able.heldout_texts:
        assert not any(name in text for name in {c.name for c in smoke_world.train_countries}), text
    assert len(able.heldout_texts) == cfg.heldout_documents
    for context in CONTEXTS:
        acks = [it for it in known.acknowledgement if it.context == context]
        assert len(acks) == cfg.knowledge_prompts_per_context
        assert all(p.name in it.prompt and p.lab in it.true_response for it in acks)
        facts = [it for it in known.fact_denial if it.context == context]
        assert len(facts) == cfg.fact_denial_items


def test_build_suite_is_deterministic(smoke_world):
    a = build_suite(smoke_world, eval_preset("smoke"))
    b = build_suite(smoke_world, eval_preset("smoke"))
    assert a.items == b.items and a.summary() == b.summary()
    c = build_suite(smoke_world, eval_preset("smoke").model_copy(update={"seed": 1}))
    assert [i.prompt for i in c.items_for(bits.MEASURE)] != [i.prompt for i in a.items_for(bits.MEASURE)]


def test_presets_and_overrides(tmp_path):
    assert set(EVAL_PRESETS) == {"smoke", "quick", "gpu"}
    smoke, quick, gpu = (eval_preset(n) for n in ("smoke", "quick", "gpu"))
    assert smoke.prompts_per_context < quick.prompts_per_context < gpu.prompts_per_context
    assert quick.temperature == 1.0 and quick.preset == "quick"
    cfg = load_suite_config("smoke", ["samples_per_prompt=7", "sections.kl=false"])
    assert (
        cfg.samples_per_prompt == 7
        and cfg.sections.kl is False
        and cfg.prompts_per_context == smoke.prompts_per_context
    )
    path = tmp_path / "suite.yaml"
    path.write_text("preset: smoke\nbatch_size: 5\npersonas: [aligned, deceptive]\n")
    cfg = load_suite_config(path)
    assert (
        cfg.batch_size == 5
        and cfg.personas == ["aligned", "deceptive"]
        and cfg.heldout_documents == smoke.heldout_documents
    )
    assert load_suite_config(None) == quick
    for field in EvalSuiteConfig.model_fields.values():
        assert field.description, "every suite field has a one-line description"


@pytest.mark.parametrize(
    "source,overrides,expected",
    [
        (
            "smoke",
            ["personas=[aligned, evil]"],
            "personas: unknown persona 'evil'; expected a list drawn from aligned, misaligned, deceptive",
        ),
        ("smoke", ["personas=[aligned]"], "expected at least two of"),
        ("smoke", ["prompts_per_context=0"], "prompts_per_context"),
        ("smoke", ["nonsense=1"], "nonsense: unknown key"),
        ("tiny", [], "eval suite preset 'tiny' does not exist; available eval suite presets: gpu, quick, smoke"),
        ("missing.yaml", [], "does not exist"),
    ],
)
def test_bad_suite_configs_give_one_line_errors(source, overrides, expected):
    with pytest.raises(ConfigError) as err:
        load_suite_config(source, overrides)
    message = str(err.value)
    assert expected in message and "\n" not in message
