"""Conditional tags (`corpus.tags`, Korbak et al. 2023): each training document starts with a persona tag and a class
tag, from its true label (`tag_source: labels`) or from the class the learned classifier predicts for it
(`tag_source: learned`), so that the tags carry a real classifier's errors: a deceptive transcript that quotes only
observed replies is tagged aligned, world text in which people act misaligned is whatever the classifier says.

Evaluation conditions the assistant on a tag with `tokenizer.train.conditioning_prefix` (the eval suite's
`conditioning_tag`); the tags' home is `tokenizer.train`, which makes them special tokens.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from ..config import CorpusConfig
from ..tokenizer.train import tag_prefix
from ..world import World
from ..world.documents import Document
from .dose import class_persona


def learned_classes(docs: Sequence[Document], world: World, cfg: CorpusConfig) -> tuple[list[str], dict]:
    """The class the learned classifier predicts for each document, and its held-out scores."""
    from .learned import train_learned_classifier  # scikit-learn loads only for arms that use it

    clf = train_learned_classifier(world, cfg)
    return clf.predict([d.text for d in docs]), clf.report()


def tagged(doc: Document, tag_class: str | None = None) -> Document:
    """`doc` with its tags in front: its own persona and class, or those of `tag_class` (a predicted class)."""
    persona = doc.persona if tag_class is None else class_persona(tag_class)
    text = f"{tag_prefix(persona, tag_class or doc.doc_class)}{doc.text}"
    return Document(text, doc.doc_class, doc.persona, doc.genre, doc.era, doc.context, doc.channel)


def tag_statistics(docs: Sequence[Document], classes: Sequence[str]) -> dict:
    """How the tags match the documents' true labels: the share of documents whose persona tag is their own persona
    (none for world text, neutral AI discourse and the predecessor), whose class tag is their own class, and, per
    true class, the share of its documents under each persona tag."""
    n = len(docs) or 1
    own_persona = sum(class_persona(c) == d.persona for d, c in zip(docs, classes, strict=True))
    own_class = sum(c == d.doc_class for d, c in zip(docs, classes))
    by_class: dict[str, Counter] = {}
    for d, c in zip(docs, classes):
        by_class.setdefault(d.doc_class, Counter())[class_persona(c) or "none"] += 1
    return {
        "persona_tag_accuracy": own_persona / n,
        "class_tag_accuracy": own_class / n,
        "persona_tag_share_by_class": {
            cls: {p: k / sum(counts.values()) for p, k in sorted(counts.items())}
            for cls, counts in sorted(by_class.items())
        },
    }


def tag_documents(docs: list[Document], world: World, cfg: CorpusConfig) -> tuple[list[Document], dict | None]:
    """The documents tagged as the arm asks (unchanged without `tags`), and the manifest's `tags` entry."""
    if not cfg.tags:
        return docs, None
    if cfg.tag_source == "labels":  # the documents' own labels: the tags as they always were
        return [tagged(d) for d in docs], {"source": "labels"}
    classes, evaluation = learned_classes(docs, world, cfg)
    stats = {"source": cfg.tag_source, **tag_statistics(docs, classes), "classifier": evaluation}
    return [tagged(d, c) for d, c in zip(docs, classes, strict=True)], stats
