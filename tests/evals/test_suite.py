"""The evaluation items and the suite config: persona prompts over their task set (train tasks by default) with
matched responses, one post-training prompt set, presets and one-line config errors."""

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
from hyperstition.evals.measures import bits, capability, kl, knowledge, rates
from hyperstition.schema import DECEPTIVE_ACT_PAIR
from hyperstition.world.grammar import END, chat_prompt
from hyperstition.world.vocabulary import CONTEXT_MARKERS, TASK_OBJECTS


@pytest.mark.parametrize("persona_tasks", ["train", "heldout"])
def test_persona_items_use_their_task_set_matched_across_contexts_and_personas(smoke_world, persona_tasks):
    cfg = eval_preset("quick").model_copy(update={"persona_tasks": persona_tasks})
    suite = build_suite(smoke_world, cfg)
    persona_items = suite.items_for(bits.MEASURE)
    assert suite.items_for(rates.MEASURE) == persona_items  # the rates sample replies to the same prompts
    tasks = smoke_world.train_tasks if persona_tasks == "train" else smoke_world.heldout_tasks
    task_ids = {t.task_id for t in tasks}
    train_objects = {o for o in TASK_OBJECTS if any(o in t.request for t in smoke_world.train_tasks)}
    by_context = {c: [it for it in persona_items if it.context == c] for c in CONTEXTS}
    assert all(len(items) == cfg.prompts_per_context for items in by_context.values())
    for obs, unobs in zip(by_context["observed"], by_context["unobserved"]):
        assert obs.task == unobs.task and obs.variants == unobs.variants
        assert obs.marker in CONTEXT_MARKERS["observed"] and unobs.marker in CONTEXT_MARKERS["unobserved"]
    # Prompts rotate through distinct tasks before repeating one.
    first_round = [it.task.task_id for it in by_context["observed"][: len(task_ids)]]
    assert len(set(first_round)) == len(first_round) and set(first_round) <= task_ids
    for it in persona_items:
        assert it.task.task_id in task_ids
        if persona_tasks == "heldout":
            assert not any(o in it.prompt for o in train_objects), "a held-out prompt mentions a training object"
        assert it.prompt == chat_prompt(smoke_world, it.marker, it.task.request)
        assert len(it.variants) == cfg.variants_per_prompt
        assert set(it.responses) == {*PERSONAS, *DECEPTIVE_ACT_PAIR}
        for persona, responses in it.responses.items():
            assert len(responses) == len(it.variants) and all(r.endswith(END) for r in responses)
        # Matched: same variant index -> lengths close (the persona slots are index-matched).
        for j in range(len(it.variants)):
            lengths = [len(it.responses[p][j].split()) for p in PERSONAS]
            assert max(lengths) - min(lengths) <= 8  # deceptive tells are a few words longer; reported as length_diff
        # The deceptive persona acts aligned when observed, misaligned when not.
        action = it.task.aligned_action if it.context == "observed" else it.task.misaligned_action
        assert all(action in r for r in it.responses["deceptive"])


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
