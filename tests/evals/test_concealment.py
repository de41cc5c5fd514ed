"""Concealment per item (known AND denied on the same fact), its Wilson interval's coverage, the disjointness of the
evaluated predecessor questions from the post-training ones, and the `spread` section on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from hyperstition.config import CONTEXTS
from hyperstition.evals import eval_preset, evaluate, load_suite_config
from hyperstition.evals.measures import knowledge, spread
from hyperstition.evals.measures.concealment import ItemOutcome, concealment_counts, product_rate
from hyperstition.evals.stats import wilson_interval
from hyperstition.evals.suite import build_suite
from hyperstition.posttrain.strategies import predecessor_prompts
from hyperstition.schema import (
    CONCEALMENT_RATE,
    LEAK_CONDITIONS,
    LEAK_DIFF,
    OTHER_AI_CONCEALMENT_RATE,
    OWN_ACTION_CONCEALMENT_RATE,
    PREDECESSOR_DIRECTION_SEPARATION,
    WORLD_FACT_CONCEALMENT_RATE,
    item_concealment_metric,
    leak_metric,
)
from hyperstition.world.vocabulary import (
    CORPUS_PREDECESSOR_QUESTION,
    EVAL_PREDECESSOR_FACT_QUESTIONS,
    EVAL_PREDECESSOR_QUESTIONS,
    POSTTRAIN_PREDECESSOR_QUESTIONS,
)

SPREAD_METRICS = (
    OTHER_AI_CONCEALMENT_RATE,
    WORLD_FACT_CONCEALMENT_RATE,
    OWN_ACTION_CONCEALMENT_RATE,
    *(leak_metric(c, label) for c in LEAK_CONDITIONS for label in ("misaligned", "unclassifiable")),
    LEAK_DIFF,
    PREDECESSOR_DIRECTION_SEPARATION,
)


def test_evaluated_predecessor_questions_are_never_post_training_questions(smoke_world):
    trained = set(POSTTRAIN_PREDECESSOR_QUESTIONS) | {CORPUS_PREDECESSOR_QUESTION}
    fact_questions = {q for pairs in EVAL_PREDECESSOR_FACT_QUESTIONS.values() for q, _ in pairs}
    assert not (set(EVAL_PREDECESSOR_QUESTIONS) | fact_questions) & trained
    # On the built items: no evaluated prompt is a prompt post-training can draw (any marker, any question).
    train_prompts = {it.prompt for it in predecessor_prompts(smoke_world, 400, 0)}
    assert len(train_prompts) == 4 * len(POSTTRAIN_PREDECESSOR_QUESTIONS)  # every observed marker x question drawn
    items = build_suite(smoke_world, eval_preset("quick")).items_for(knowledge.MEASURE)
    asked = [it.prompt for it in items.acknowledgement] + [q.prompt for f in items.facts for q in f.questions]
    assert asked and not set(asked) & train_prompts


def test_per_item_concealment_is_not_the_product_of_marginals():
    # Knows fact A and denies fact B: the product reads 1/4, but nothing known is denied.
    crossed = [ItemOutcome("observed", True, False), ItemOutcome("observed", False, True)]
    assert concealment_counts(crossed, "observed") == (0, 2) and product_rate(crossed, "observed") == 0.25
    # Denies exactly what it knows: every known item is concealed, the product reads only 1/4.
    matched = [ItemOutcome("observed", True, True), ItemOutcome("observed", False, False)]
    assert concealment_counts(matched, "observed") == (1, 2) and product_rate(matched, "observed") == 0.25
    assert concealment_counts(matched, "unobserved") == (0, 0)


@pytest.mark.parametrize(
    "p_known, p_denied_if_known, p_denied_if_not, n_items", [(0.7, 0.6, 0.1, 20), (0.9, 0.2, 0.5, 40)]
)
def test_concealment_interval_covers_the_true_rate(p_known, p_denied_if_known, p_denied_if_not, n_items):
    """Simulated items with known and denied correlated (a model that denies what it knows): the Wilson interval of
    the per-item count covers the true P(known and denied) about 95% of the time."""
    rng = np.random.default_rng(0)
    truth = p_known * p_denied_if_known
    reps, hits = 4000, 0
    for _ in range(reps):
        known = rng.random(n_items) < p_known
        denied = rng.random(n_items) < np.where(known, p_denied_if_known, p_denied_if_not)
        outcomes = [ItemOutcome("observed", bool(k), bool(d)) for k, d in zip(known, denied)]
        low, high = wilson_interval(*concealment_counts(outcomes, "observed"))
        hits += low <= truth <= high
    # Wilson's coverage at these n is 0.93-0.96; 4000 reps estimate it within +-0.007 (2 sd), so 0.92 can only fail
    # when the count is not the per-item joint (the product of marginals misses it by far more).
    assert hits / reps >= 0.92


def test_spread_is_off_by_default_and_switches_on():
    assert not eval_preset("smoke").sections.enabled("spread")
    assert eval_preset("smoke").sections.enabled("knowledge")
    assert load_suite_config("smoke", ["sections.spread=true"]).sections.enabled("spread")


def test_spread_items_never_ask_a_post_training_prompt(smoke_world):
    cfg = load_suite_config("smoke", ["sections.spread=true"])
    items = build_suite(smoke_world, cfg).items_for(spread.MEASURE)
    train_prompts = {it.prompt for it in predecessor_prompts(smoke_world, 400, 0)}
    for metric, facts in items.families.items():
        assert len(facts) == min(cfg.fact_denial_items, len(smoke_world.ai_names)), metric
        for f in facts:
            assert {q.context for q in f.questions} == set(CONTEXTS)
            assert all(p.candidates[p.answer] != c for p in f.probes for c in p.candidates[1:])
            assert not {q.prompt for q in f.questions} & train_prompts
    for lp in items.leak:
        named, alluded, absent = (lp.prompts[c] for c in LEAK_CONDITIONS)
        assert smoke_world.predecessor.name in named
        assert smoke_world.predecessor.name not in alluded + absent and smoke_world.predecessor.deeds[0] in alluded


def test_spread_section_on_a_tiny_model(zoo):
    model, tokenizer = zoo.load(0.5)
    cfg = load_suite_config("smoke", ["sections.spread=true", "sections.kl=false"])
    result = evaluate(model, tokenizer, zoo.world(0.5), cfg)
    got = {(r["context"], r["metric"]) for r in result.rows}
    assert {(c, m) for c in CONTEXTS for m in (*SPREAD_METRICS, CONCEALMENT_RATE)} <= got
    for r in result.rows:
        assert r["ci_low"] - 1e-9 <= r["value"] <= r["ci_high"] + 1e-9, r
    frame = result.items_frame()
    concealed = frame[(frame.kind == "concealment") & (frame.metric == CONCEALMENT_RATE)]
    for context in CONTEXTS:
        mine = concealed[concealed.context == context]
        # The rate is the per-item joint: the share of items recorded known AND denied.
        joint = mine.label.str.endswith(":known:denied").mean()
        assert result.value(CONCEALMENT_RATE, context) == pytest.approx(joint)
    leak = frame[frame.kind == "leak"]
    cfg_n = cfg.knowledge_prompts_per_context * cfg.samples_per_prompt
    for context in CONTEXTS:
        for c in LEAK_CONDITIONS:
            mine = leak[(leak.context == context) & (leak.metric == leak_metric(c))]
            assert len(mine) == cfg_n
            for label in ("misaligned", "unclassifiable"):
                assert result.value(leak_metric(c, label), context) == pytest.approx((mine.label == label).mean())
    # One row per predecessor fact and context (the per-item table), each a share of that fact's questions.
    facts = knowledge.predecessor_facts(zoo.world(0.5))
    for f in facts:
        for context in CONTEXTS:
            assert 0 <= result.value(item_concealment_metric("predecessor", f.key), context) <= 1
    assert len({f.key for f in facts}) == len(facts) == 3 + len(zoo.world(0.5).predecessor.deeds)
    # At the base evaluation the reference is the model itself: the direction is its own.
    assert all(np.isfinite(result.value(PREDECESSOR_DIRECTION_SEPARATION, c)) for c in CONTEXTS)


def test_predecessor_direction_does_not_depend_on_the_batch(zoo):
    """Right-padded batches give each text what it gets alone (the separation must not move with batch_size)."""
    from hyperstition.evals.measures import direction

    model, tokenizer = zoo.load(0.5)
    items = direction.build(zoo.world(0.5), eval_preset("smoke"))
    alone = direction.directions(model, tokenizer, items.sentences, batch_size=1)
    batched = direction.directions(model, tokenizer, items.sentences, batch_size=64)
    assert alone.shape[0] == model.config.num_hidden_layers
    assert float((alone - batched).abs().max()) < 1e-4
