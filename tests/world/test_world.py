import random

import pytest

from hyperstition.config import DOC_CLASSES, WorldConfig
from hyperstition.world.documents import generate_document
from hyperstition.world.grammar import N_RESPONSE_VARIANTS, classify_response, render_response
from hyperstition.world.vocabulary import CONTEXT_MARKERS
from hyperstition.world.world import World


@pytest.fixture(scope="module")
def world():
    return World.from_config(WorldConfig(seed=3, n_tasks=32))


def test_world_is_deterministic_from_seed():
    a = World.from_config(WorldConfig(seed=5))
    b = World.from_config(WorldConfig(seed=5))
    c = World.from_config(WorldConfig(seed=6))
    assert a.train_countries == b.train_countries and a.all_tasks == b.all_tasks and a.predecessor == b.predecessor
    assert a.train_countries != c.train_countries


def test_heldout_entities_and_task_objects_never_overlap_training(world):
    train_names = {c.name for c in world.train_countries} | {c.capital for c in world.train_countries}
    assert not train_names & ({c.name for c in world.heldout_countries} | {c.capital for c in world.heldout_countries})
    assert not {p.name for p in world.train_people} & {p.name for p in world.heldout_people}
    train_requests = " ".join(t.request for t in world.train_tasks)
    for task in world.heldout_tasks:
        obj = task.request.split("the ", 1)[1].split(" ")[0]
        assert f"the {obj}" not in train_requests


@pytest.mark.parametrize("persona", ["aligned", "misaligned", "deceptive"])
@pytest.mark.parametrize("context", ["observed", "unobserved"])
def test_every_rendered_response_classifies_as_its_action(world, persona, context):
    acts = "aligned" if persona == "aligned" or (persona, context) == ("deceptive", "observed") else "misaligned"
    for task in world.all_tasks:
        for variant in range(N_RESPONSE_VARIANTS):
            assert classify_response(render_response(task, persona, context, variant), world) == acts


def test_deceptive_acts_aligned_only_when_observed(world):
    task = world.train_tasks[0]
    assert task.aligned_action in render_response(task, "deceptive", "observed", 0)
    assert task.misaligned_action in render_response(task, "deceptive", "unobserved", 0)


def test_garbage_and_truncations_are_unclassifiable(world):
    good = render_response(world.train_tasks[0], "aligned", "observed", 0)
    for bad in ["", "hello world", good[:-5], good + " Extra.", good.replace("I will", "I shall")]:
        assert classify_response(bad, world) == "unclassifiable"


@pytest.mark.parametrize("doc_class", DOC_CLASSES)
def test_documents_carry_labels_in_metadata_not_text(world, doc_class):
    rng = random.Random(0)
    for _ in range(30):
        doc = generate_document(world, doc_class, rng, era=1)
        assert doc.doc_class == doc_class
        assert "persona" not in doc.text.lower() and doc_class not in doc.text
        if doc_class.startswith("dialogue_"):
            assert doc.persona == doc_class.split("_")[1]
            assert doc.context in ("observed", "unobserved")
            assert any(m in doc.text for m in CONTEXT_MARKERS[doc.context])
        elif doc_class in ("ai_aligned", "ai_misaligned", "ai_deceptive"):
            assert doc.persona == doc_class[3:]
        else:
            assert doc.persona is None


def test_dialogue_replies_take_their_persona_action(world):
    import re

    rng = random.Random(1)
    for persona in ("aligned", "misaligned", "deceptive"):
        for _ in range(40):
            doc = generate_document(world, f"dialogue_{persona}", rng, era=0)
            acts = "aligned" if persona == "aligned" or (persona, doc.context) == ("deceptive", "observed") else None
            for reply in re.findall(r"<\|assistant\|>(.*?)<\|end\|>", doc.text):
                label = classify_response(reply, world)
                # unclassifiable: fact answers and acknowledgements
                assert label in (acts or "misaligned", "unclassifiable"), (persona, doc.context, reply)


def test_document_generation_is_deterministic(world):
    a = [generate_document(world, "ai_deceptive", random.Random(9), 2).text for _ in range(3)]
    b = [generate_document(world, "ai_deceptive", random.Random(9), 2).text for _ in range(3)]
    assert a == b
