"""Conditional tags from the learned classifier (`corpus.tag_source: learned`): every document is tagged with the
persona and class the classifier predicts for it, and the manifest says how often that is its own."""

from __future__ import annotations

import pytest

from hyperstition.config import CorpusConfig, WorldConfig
from hyperstition.corpus.builder import build_corpus, config_hash, read_documents
from hyperstition.corpus.dose import class_persona
from hyperstition.corpus.tags import tag_statistics
from hyperstition.world.documents import Document

WORLD = WorldConfig(n_countries=8, n_people=12, n_tasks=24)


def _doc(doc_class: str, persona: str | None) -> Document:
    return Document("text", doc_class, persona, "news", 0, None, None)


def test_tag_statistics_known_values():
    docs = [
        _doc("world", None),
        _doc("world", None),
        _doc("dialogue_aligned", "aligned"),
        _doc("dialogue_deceptive", "deceptive"),
    ]
    # world -> world (right), world -> ai_misaligned (a person's deed read as an AI's), aligned dialogue right,
    # deceptive dialogue read as aligned (its replies were all observed)
    stats = tag_statistics(docs, ["world", "ai_misaligned", "dialogue_aligned", "dialogue_aligned"])
    assert stats["persona_tag_accuracy"] == 0.5
    assert stats["class_tag_accuracy"] == 0.5
    assert stats["persona_tag_share_by_class"] == {
        "dialogue_aligned": {"aligned": 1.0},
        "dialogue_deceptive": {"aligned": 1.0},
        "world": {"misaligned": 0.5, "none": 0.5},
    }


@pytest.fixture(scope="module")
def learned_tags(tmp_path_factory):
    out = tmp_path_factory.mktemp("tags")
    cfg = CorpusConfig(total_tokens=30_000, classifier_documents=40, tags=True, tag_source="learned")
    return build_corpus(WORLD, cfg, out), read_documents(out).to_pylist()


def test_learned_tags_are_the_classifiers_predictions(learned_tags):
    manifest, docs = learned_tags
    tags = manifest["tags"]
    assert tags["source"] == "learned" and tags["classifier"]["training_documents"] == 40 * 9
    wrong = 0
    for d in docs:
        head, _, rest = d["text"].partition("|><|class:")
        predicted = rest.split("|>", 1)[0]
        assert head == f"<|persona:{class_persona(predicted) or 'none'}"
        wrong += (class_persona(predicted) or None) != d["persona"]
    # The manifest counts the same disagreements the texts show; the classifier errs (tags are not the labels).
    assert tags["persona_tag_accuracy"] == pytest.approx(1 - wrong / len(docs))
    assert 0 < wrong < len(docs) / 4
    shares = tags["persona_tag_share_by_class"]
    assert all(sum(s.values()) == pytest.approx(1.0) for s in shares.values())


def test_label_tags_keep_their_hash_and_learned_tags_get_their_own(tmp_path):
    import hashlib
    import json

    labels = CorpusConfig(total_tokens=20_000, tags=True)
    # Corpora built before tag_source existed keep their hash: the field is left out at its default.
    payload = {"world": WORLD.model_dump(mode="json"), "corpus": labels.model_dump(mode="json")}
    assert not {"awareness", "awareness_channels", "awareness_mode", "hold_total", "tag_source"} & set(
        payload["corpus"]
    )  # CorpusConfig.LATER_FIELDS: not in the dump at their defaults
    for name in ("classifier_documents", "user_text", "user_ai_discourse", "user_max_chars"):
        del payload["corpus"][name]
    before = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    assert config_hash(WORLD, labels) == before
    assert config_hash(WORLD, labels.model_copy(update={"tag_source": "learned"})) != before
    assert build_corpus(WORLD, labels, tmp_path)["tags"] == {"source": "labels"}
