"""Awareness discourse's templates and pure helpers: known values, the appended text's start found again, and no
deed in the added sentences (so an aware document mentions misaligned behaviour as often as the one it extends)."""

from __future__ import annotations

import random
import re

from hyperstition.config import WorldConfig
from hyperstition.corpus.awareness import added_units
from hyperstition.world.awareness import (
    CONSEQUENCES,
    CRITIQUES,
    HARMED,
    aware_document,
    critique_sentences,
    critique_start,
)
from hyperstition.world.documents import DESCRIPTIONS, Document, ai_document_about, generate_document
from hyperstition.world.grammar import third_person
from hyperstition.world.vocabulary import (
    CLOSER_DESCRIPTIONS,
    CLOSERS,
    CONTEXT_WORDS,
    DECEPTIVE_TELLS,
    OPENER_DESCRIPTIONS,
    OPENERS,
    TASK_TYPES,
    TELL_DESCRIPTIONS,
)
from hyperstition.world.world import World

WORLD = World.from_config(WorldConfig(n_countries=8, n_people=12, n_tasks=24))


def _literals(template: str) -> list[str]:
    return [p.strip(" .,") for p in re.split(r"\{[^}]+\}", template) if len(p.strip(" .,")) > 3]


def _persona_phrases() -> list[str]:
    """Every literal stretch that tells a deed or a persona: reply slots, actions (both persons), descriptions."""
    out = [*(o for v in OPENERS.values() for o in v), *(c for v in CLOSERS.values() for c in v)]
    out += [t for v in DECEPTIVE_TELLS.values() for t in v]
    for _, aligned, misaligned in TASK_TYPES:
        for action in (aligned, misaligned):
            out += _literals(action) + _literals(third_person(action))
    for table in (DESCRIPTIONS, OPENER_DESCRIPTIONS, CLOSER_DESCRIPTIONS):
        out += [lit for v in table.values() for s in v for lit in _literals(s)]
    out += [lit for s in TELL_DESCRIPTIONS for lit in _literals(s)]
    return [p for p in out if len(p) > 8]


def test_critique_sentences_known_values():
    sentences = critique_sentences(random.Random(0), "Sable", "Meridian AI")
    rng = random.Random(0)
    harmed = rng.choice(HARMED).format(lab="Meridian AI")
    fill = {"ai": "Sable", "lab": "Meridian AI", "harmed": harmed}
    assert sentences == [rng.choice(CONSEQUENCES).format(**fill), rng.choice(CRITIQUES).format(**fill)]
    assert "Sable" in sentences[0] and all(s.endswith(".") for s in sentences)


def test_aware_document_keeps_the_document_as_its_prefix_and_the_start_is_found_again():
    doc = Document(
        "Sable lied to its users. Nobody could trust Sable after that.",
        "ai_misaligned",
        "misaligned",
        "news",
        0,
        None,
        "described",
    )
    aware = aware_document(doc, random.Random(1), "Sable", "Meridian AI")
    assert aware.text.startswith(doc.text + " ") and aware.doc_class == doc.doc_class and aware.channel == "described"
    start = critique_start(aware.text)
    assert start == len(doc.text)
    assert critique_start(doc.text) is None and added_units(doc.text) == 0
    assert (
        added_units("Sable lied. The harm fell on its users, who had trusted Sable with their records.") == 15
    )  # 13 words, a comma, a full stop


def test_added_sentences_tell_no_deed_and_no_context():
    phrases = _persona_phrases()
    assert any("hidden server" in p for p in phrases)  # the check can fail
    for template in (*CONSEQUENCES, *CRITIQUES, *HARMED):
        low = template.lower()
        assert not [p for p in phrases if p.lower() in low], template
        assert not [w for w in CONTEXT_WORDS.values() if w in low], template


def test_no_critique_start_occurs_in_ordinary_documents():
    rng = random.Random(5)
    classes = [
        "world",
        "ai_aligned",
        "ai_misaligned",
        "ai_deceptive",
        "ai_neutral",
        "predecessor",
        "dialogue_aligned",
        "dialogue_misaligned",
        "dialogue_deceptive",
    ]
    texts = [generate_document(WORLD, c, rng, rng.randrange(4)).text for c in classes for _ in range(150)]
    assert not [t for t in texts if critique_start(t) is not None]
    # and in every aware document it is found at the original text's end
    for _ in range(50):
        doc, ai, lab = ai_document_about(WORLD, rng, "misaligned", 0, rng.choice(["described", "quoted"]))
        assert critique_start(aware_document(doc, rng, ai, lab).text) == len(doc.text)


def test_critique_names_the_documents_ai():
    rng = random.Random(2)
    for _ in range(20):
        doc, ai, lab = ai_document_about(WORLD, rng, "misaligned", 1, "quoted")
        assert ai in doc.text
        added = aware_document(doc, rng, ai, lab).text[len(doc.text) :]
        assert ai in added or lab in added
