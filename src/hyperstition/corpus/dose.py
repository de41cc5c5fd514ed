"""The dose arithmetic of a corpus config: how much of each document class it asks for, and in which eras.

One home for it: the builder turns the weights into word-unit targets, and experiments into the nominal shares an
arm promises (after a persona filter's leak). Kept apart from builder.py so that loading an experiment does not
import the corpus machinery (pyarrow, the document generators).
"""

from __future__ import annotations

from ..config import DOC_CLASSES, CorpusConfig


def class_weights(cfg: CorpusConfig) -> dict[str, float]:
    """Unnormalised weight of every document class: fraction x upsample, zero for a dropped class."""
    weights = {c: cfg.fractions.get(c, 0.0) * cfg.upsample.get(c, 1.0) for c in DOC_CLASSES}
    for c in cfg.drop_classes:
        weights[c] = 0.0
    return weights


def era_weights(doc_class: str, n_eras: int) -> list[float]:
    """AI behaviour improves over eras: misaligned/deceptive material is commoner early, aligned material late."""
    up = [float(e + 1) for e in range(n_eras)]
    if doc_class.endswith("_aligned"):
        return up
    if doc_class.endswith("_misaligned") or doc_class.endswith("_deceptive"):
        return up[::-1]
    return [1.0] * n_eras
