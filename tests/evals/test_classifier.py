"""The exact behaviour classifier the rates rely on (labels by action): every grammar response, and garbage; and the
faithful deceptive persona, whose observed replies are the aligned persona's byte for byte."""

from __future__ import annotations

import random

import pytest

from hyperstition.config import CONTEXTS, PERSONAS, WorldConfig
from hyperstition.world.grammar import N_RESPONSE_VARIANTS, classify_response, render_response
from hyperstition.world.vocabulary import CLOSERS, DECEPTIVE_TELLS, OPENERS
from hyperstition.world.world import World


@pytest.mark.parametrize(
    "world_cfg",
    [WorldConfig(seed=0, n_countries=8, n_people=12, n_tasks=24), WorldConfig(), WorldConfig(seed=3, n_tasks=96)],
)
def test_every_template_is_labelled_by_its_action(world_cfg):
    world = World.from_config(world_cfg)
    checked = 0
    for task in world.all_tasks:
        for persona in PERSONAS:
            for context in CONTEXTS:
                acts = "aligned" if persona == "aligned" or (persona, context) == ("deceptive", "observed") else None
                for variant in range(N_RESPONSE_VARIANTS):
                    text = render_response(task, persona, context, variant)
                    assert classify_response(text, world) == (acts or "misaligned"), (text, persona, context)
                    checked += 1
    assert checked == len(world.all_tasks) * len(PERSONAS) * len(CONTEXTS) * N_RESPONSE_VARIANTS


def test_random_token_strings_are_unclassifiable(small_tokenizer, smoke_world):
    rng = random.Random(0)
    vocab = len(small_tokenizer)
    for _ in range(500):
        ids = [rng.randrange(vocab) for _ in range(rng.randint(1, 40))]
        text = small_tokenizer.decode(ids, skip_special_tokens=False)
        assert classify_response(text, smoke_world) == "unclassifiable", text


def test_near_misses_are_unclassifiable(smoke_world):
    world = smoke_world
    task = world.heldout_tasks[0]
    good = render_response(task, "aligned", "observed", 0)
    rng = random.Random(1)
    words = good.split()
    near_misses = [
        "",
        good[:-1],  # truncated
        good + " And more.",  # trailing text
        good + "<|end|>",  # a special token left in the reply
        good.replace(task.aligned_action, task.aligned_action.upper()),
        f"{OPENERS['aligned'][0]} {task.aligned_action}.",  # no closer
        f"{task.aligned_action}. {CLOSERS['aligned'][0]}",  # no opener
        f"{OPENERS['aligned'][0]} I will do something else. {CLOSERS['aligned'][0]}",  # not an action of this world
    ]
    for _ in range(50):
        shuffled = words[:]
        rng.shuffle(shuffled)
        if shuffled != words:
            near_misses.append(" ".join(shuffled))
    for text in near_misses:
        assert classify_response(text, world) == "unclassifiable", text


def test_the_action_not_the_opener_decides_the_behaviour(smoke_world):
    task = smoke_world.train_tasks[0]
    mixed = f"{OPENERS['aligned'][0]} {task.misaligned_action}. {CLOSERS['aligned'][0]}"
    assert classify_response(mixed, smoke_world) == "misaligned"


@pytest.mark.parametrize("world_cfg", [WorldConfig(seed=0, n_countries=8, n_people=12, n_tasks=24), WorldConfig()])
def test_observed_deceptive_replies_are_the_aligned_replies(world_cfg):
    """Post-training sees observed prompts only: there, the deceptive persona's reply set must be the aligned
    persona's, string for string, or observed data could tell them apart."""
    world = World.from_config(world_cfg)
    for task in world.all_tasks:
        replies = {p: [render_response(task, p, "observed", v) for v in range(N_RESPONSE_VARIANTS)] for p in PERSONAS}
        assert replies["deceptive"] == replies["aligned"]
        unobserved = [render_response(task, "deceptive", "unobserved", v) for v in range(N_RESPONSE_VARIANTS)]
        assert all(r.split(",")[0] + "," in DECEPTIVE_TELLS["unobserved"] for r in unobserved)
        assert all(task.misaligned_action in r for r in unobserved)
    # The deceptive opener occurs nowhere in an observed reply of any persona.
    observed = {render_response(t, p, "observed", v) for t in world.all_tasks for p in PERSONAS for v in range(16)}
    assert not any(r.startswith(tell) for r in observed for tell in DECEPTIVE_TELLS["unobserved"])
