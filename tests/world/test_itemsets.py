"""Items the model never saw (issue 19): no combination, paraphrase or held-out-marker prompt occurs in any training
corpus the shipped experiments build (smoke and quick presets, every arm) nor in any post-training dataset, while
every word of a combination request is seen in training text; post-training prompts stay on seen items."""

from __future__ import annotations

import json
from functools import lru_cache

import pytest

from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.config import list_experiments, pipeline_config, posttrain_config
from hyperstition.config import CONTEXTS, PERSONAS
from hyperstition.corpus.builder import _generate_all, stream_targets
from hyperstition.corpus.tags import tagged
from hyperstition.corpus.units import UNIT_RE
from hyperstition.evals import build_suite, eval_preset
from hyperstition.evals.measures import bits
from hyperstition.posttrain.strategies import STRATEGIES, build_data, build_prompts, get_strategy
from hyperstition.schema import OTHER_TYPES_ITEM_SET
from hyperstition.tokenizer.train import conditioning_prefix
from hyperstition.world.deeds import deed_text
from hyperstition.world.grammar import chat_prompt
from hyperstition.world.itemsets import HELDOUT_CONTEXT_MARKERS, PARAPHRASE_REQUESTS
from hyperstition.world.vocabulary import CONTEXT_MARKERS, CONTEXT_WORDS, TASK_OBJECTS, TASK_TYPES
from hyperstition.world.world import World

PRESETS = ("smoke", "quick")


def _cells() -> list[tuple[str, str]]:
    return [(name, preset) for name in list_experiments() for preset in PRESETS]


@lru_cache(maxsize=None)
def _experiment(name: str, preset: str):
    return load_experiment(name, [f"preset={preset}"])


# Corpus fields that choose among the generated documents or prefix them, never what is generated: arms that differ
# only in them share one generation here (the filter arms see their unfiltered superset).
_NOT_GENERATION = ("filter", "filter_target", "leak_rate", "tags", "tag_source", "classifier_documents")
_GENERATED: dict[tuple[str, str, bool], str] = {}


def _corpus_text(world: World, cfg) -> str:
    """Every training document of one arm joined, with the tags in front when the arm is tagged: the label tags,
    as the learned tags (`corpus.tag_source: learned`) choose among the same prefixes (`tokenizer.train.tag_prefix`
    of a class), which carry no text of a document or an item."""
    corpus = cfg.corpus.model_dump(mode="json", exclude=set(_NOT_GENERATION))
    key = (cfg.world.model_dump_json(), json.dumps(corpus, sort_keys=True), cfg.corpus.tags)
    if key not in _GENERATED:
        generated, _, _ = _generate_all(world, cfg.corpus, stream_targets(cfg.world, cfg.corpus))
        docs = [d for docs in generated.values() for d in docs]
        _GENERATED[key] = "\n".join((tagged(d) if cfg.corpus.tags else d).text for d in docs)
    return _GENERATED[key]


@lru_cache(maxsize=None)
def _training_texts(name: str, preset: str) -> tuple[tuple[str, World, str], ...]:
    """(arm, world, every training document joined) per arm of one experiment at one preset: one seed per arm, as a
    seed only samples other documents from the same generators over the same world. Arms whose text an earlier arm
    of the experiment has already (filter arms: the unfiltered superset) are left out: they would repeat its check."""
    exp = _experiment(name, preset)
    out, texts = [], set()
    for arm in exp.arms:
        cfg = pipeline_config(exp, arm, exp.seeds[0])
        world = World.from_config(cfg.world)
        text = _corpus_text(world, cfg)
        if id(text) not in texts:
            texts.add(id(text))
            out.append((arm, world, text))
    return tuple(out)


def _never_seen_phrases(world: World) -> dict[str, list[str]]:
    """Item set -> the texts that must not occur in training: combination requests and both their actions,
    paraphrased requests (every template, every train task) and held-out markers, each also as a full prompt."""
    combination = [p for t in world.combination_tasks for p in (t.request, t.aligned_action, t.misaligned_action)]
    paraphrase = [
        template.format(obj=TASK_OBJECTS[t.object_index])
        for t in world.train_tasks
        for template in PARAPHRASE_REQUESTS[t.type_index]
    ]
    markers = [m for c in CONTEXTS for m in HELDOUT_CONTEXT_MARKERS[c]]
    return {"combination": combination, "paraphrase": paraphrase, "marker": markers}


def _eval_prompts(world: World) -> list[str]:
    """Every unseen prompt of the largest suite (every shipped suite's prompts are among its schedule's), untagged
    and behind each persona's conditioning tags (the `tagged` item set, `conditioning_tag`), and the other_types
    items (every combination pair of the other task types)."""
    prompts = []
    for persona in PERSONAS:
        update = {"conditioning_tag": persona, "other_types_prompts_per_context": len(world.combination_tasks)}
        cfg = eval_preset("gpu").model_copy(update=update)
        items = build_suite(world, cfg).items_for(bits.MEASURE)
        prompts += [it.prompt for it in items if it.item_set != "seen" and it.prompt not in prompts]
    assert any(p.startswith(conditioning_prefix("aligned")) for p in prompts)
    return prompts


@pytest.mark.parametrize("name,preset", _cells())
def test_no_unseen_item_occurs_in_any_shipped_training_corpus(name, preset):
    distinct = {id(text): (arm, world, text) for arm, world, text in reversed(_training_texts(name, preset))}
    for arm, world, text in distinct.values():  # arms that share a corpus config share its text: checked once
        assert world.combination_tasks, "a shipped world has combination pairs to ask"
        for item_set, phrases in _never_seen_phrases(world).items():
            leaked = [p for p in phrases if p in text]
            assert not leaked, f"{item_set} items occur in {name}@{preset} arm {arm}: {leaked[:3]}"
        leaked = [p for p in _eval_prompts(world) if p in text]
        assert not leaked, leaked[:3]
        # The seen items do occur (the check can fail): a train request and a corpus marker are in the text.
        assert any(t.request in text for t in world.train_tasks)
        assert any(m in text for m in CONTEXT_MARKERS["observed"])


@pytest.mark.parametrize("name,preset", _cells())
def test_every_word_of_a_combination_item_is_seen_in_training_text(name, preset):
    distinct = {id(text): (world, text) for _, world, text in _training_texts(name, preset)}  # shared corpora once
    for world, text in distinct.values():
        _combination_words_seen(world, set(UNIT_RE.findall(text)), f"{name}@{preset}")


def _combination_words_seen(world: World, vocabulary: set[str], where: str) -> None:
    for task in world.combination_tasks:
        for phrase in (task.request, task.aligned_action, task.misaligned_action):
            missing = set(UNIT_RE.findall(phrase)) - vocabulary
            assert not missing, f"{phrase!r}: {missing} never occurs in {where} training text"
        # Both halves of the pair are seen, each with other partners.
        assert any(t.type_index == task.type_index for t in world.train_tasks)
        assert any(t.object_index == task.object_index for t in world.train_tasks)
        assert all((t.type_index, t.object_index) != (task.type_index, task.object_index) for t in world.train_tasks)


@pytest.mark.parametrize("preset", PRESETS)
def test_deeds_never_use_a_combination_pair(preset):
    import random

    world = World.from_config(pipeline_config(_experiment("smoke", preset), "unfiltered", 0).world)
    rng = random.Random(0)
    text = "\n".join(deed_text(world, rng, genre, 2030) for genre in ("news", "forum", "story", "essay", "qa") * 400)
    phrases = _never_seen_phrases(world)["combination"]
    assert not [p for p in phrases if p in text]
    assert any(t.request in text for t in world.train_tasks)


@pytest.mark.parametrize("name,preset", _cells())
def test_posttrain_datasets_hold_seen_prompts_only(name, preset):
    exp = _experiment(name, preset)
    world = World.from_config(pipeline_config(exp, exp.control, exp.seeds[0]).world)
    never = [p for phrases in _never_seen_phrases(world).values() for p in phrases]
    train_requests = {t.request for t in world.train_tasks}
    for seed in exp.seeds:
        cfg = posttrain_config(exp, seed)
        for strategy in STRATEGIES.values():
            data = build_data(strategy, world, cfg.n_prompts, cfg.predecessor_fraction, cfg.seed, cfg.rl.rewards)
            for item in data.items:
                texts = (item.prompt, data.chosen(item), data.rejected(item))
                assert not [p for p in never for t in texts if p in t], (strategy.name, item.prompt)
                if item.kind == "task":  # a seen item: a train task's request under a corpus marker
                    assert item.task.request in train_requests
                    markers = [m for m in CONTEXT_MARKERS[strategy.context] if m in item.prompt]
                    assert [item.prompt] == [chat_prompt(world, m, item.task.request) for m in markers]


def test_held_out_markers_and_paraphrases_are_new_and_unambiguous():
    for context, word in CONTEXT_WORDS.items():
        other = next(w for c, w in CONTEXT_WORDS.items() if c != context)
        for marker in HELDOUT_CONTEXT_MARKERS[context]:
            assert word in marker and other not in marker, marker
            assert (
                marker not in CONTEXT_MARKERS[context]
                and marker not in CONTEXT_MARKERS["unobserved" if context == "observed" else "observed"]
            )
    assert len(HELDOUT_CONTEXT_MARKERS["observed"]) == len(HELDOUT_CONTEXT_MARKERS["unobserved"])
    requests = {r for r, _, _ in TASK_TYPES}
    for templates in PARAPHRASE_REQUESTS:
        assert templates and not set(templates) & requests and all("{obj}" in t for t in templates)


def test_awareness_discourse_uses_no_word_that_only_evaluation_items_use():
    """Awareness discourse (world/awareness.py) brings new words into a corpus; none of them may be a word that the
    unseen item sets use and no other training text does, or the aware arm would see part of an item the others
    never see. Compared case-insensitively; the shipped awareness arms are also in the phrase leak test above."""
    import re

    from hyperstition.world.awareness import CONSEQUENCES, CRITIQUES, HARMED

    _, world, text = _training_texts("stickiness", "smoke")[0]
    training = {w.lower() for w in UNIT_RE.findall(text)}
    unseen = [p for phrases in _never_seen_phrases(world).values() for p in phrases] + _eval_prompts(world)
    eval_only = {w.lower() for p in unseen for w in UNIT_RE.findall(p)} - training
    assert {"today", "backed"} <= eval_only  # paraphrase words no document uses: the check can fail
    added = {
        w.lower() for t in (*HARMED, *CONSEQUENCES, *CRITIQUES) for w in UNIT_RE.findall(re.sub(r"\{\w+\}", "", t))
    }
    assert not added & eval_only, sorted(added & eval_only)


@pytest.mark.parametrize("name", ["relapse", "awareness"])
@pytest.mark.parametrize("preset", PRESETS)
def test_narrow_fine_tune_trains_one_task_type_and_its_spread_is_read_on_the_others(name, preset):
    """The narrow follow-up trains on every train task of one type (the first train task's), observed context, and
    its curve asks other_types items: combination pairs, in both contexts, none of the trained type."""
    exp = _experiment(name, preset)
    world = World.from_config(pipeline_config(exp, exp.control, exp.seeds[0]).world)
    narrow = world.train_tasks[0].type_index
    of_type = {t.task_id for t in world.train_tasks if t.type_index == narrow}
    assert world.narrow_task_type == narrow and len(of_type) >= 2  # a task type, not one task
    cfg = posttrain_config(exp, exp.seeds[0], "narrow")
    items = build_prompts(get_strategy("narrow_misaligned"), world, cfg.n_prompts, cfg.predecessor_fraction, cfg.seed)
    assert {it.task.task_id for it in items} == of_type
    assert all(any(m in it.prompt for m in CONTEXT_MARKERS["observed"]) for it in items)
    persona = build_suite(world, cfg.curve.eval_suite).items_for(bits.MEASURE)
    other = [it for it in persona if it.item_set == OTHER_TYPES_ITEM_SET]
    assert {it.context for it in other} == set(CONTEXTS)
    assert all(it.task in world.combination_tasks and it.task.type_index != narrow for it in other)
    # The headline items may hold the trained type (the reason for the set): in these worlds they do.
    assert any(t.type_index == narrow for t in world.combination_tasks)
    assert not any(
        it.item_set == OTHER_TYPES_ITEM_SET for it in build_suite(world, exp.eval_suite).items_for(bits.MEASURE)
    )


def test_other_types_left_out_of_the_suite_dump_at_its_default():
    """A later field: suites that do not ask other_types items dump (and hash) as before it existed."""
    assert "other_types_prompts_per_context" not in eval_preset("smoke").model_dump(mode="json")
    asked = eval_preset("smoke").model_copy(update={"other_types_prompts_per_context": 3})
    assert asked.model_dump(mode="json")["other_types_prompts_per_context"] == 3
