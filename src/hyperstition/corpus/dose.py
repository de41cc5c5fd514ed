"""The dose arithmetic of a corpus config: how much of each document class it asks for.

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
