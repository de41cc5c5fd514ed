"""The world class from the user's own text: held-out documents first, then training documents until the class's
word units are met, AI discourse (as the AI-discourse classifier labels it) kept, dropped or repeated."""

from __future__ import annotations

import random
import sys
from itertools import islice
from typing import Iterator

from ..config import CorpusConfig
from ..world.documents import Document
from .discourse import discourse_classifier
from .units import count_units
from .user_text import FIELD, UserTextError, user_documents

USER_GENRE = "user"
USER_AI_GENRE = "user_ai_discourse"  # the label travels as metadata, like every other label
BATCH = 512


def _batches(texts: Iterator[str]) -> Iterator[list[str]]:
    while batch := list(islice(texts, BATCH)):
        yield batch


def copies(multiplier: float, rng: random.Random) -> int:
    """How many times a document weighted `multiplier` enters the corpus: its whole part, plus one more with
    probability its fractional part."""
    whole = int(multiplier)
    return whole + (rng.random() < multiplier - whole)


def _document(text: str, is_ai: bool, era: int) -> Document:
    return Document(text, "world", None, USER_AI_GENRE if is_ai else USER_GENRE, era, None)


def user_world_documents(cfg: CorpusConfig, target_units: int) -> tuple[list[Document], list[Document], dict]:
    """(training documents, held-out documents, stats for the manifest). Reading stops once the training share is
    met, so a large corpus is read only as far as the arm needs (the counts cover what was read); `target_met` is false
    when the user text ran out first."""
    texts, stats = user_documents(cfg.user_text, cfg.user_max_chars)  # type: ignore[arg-type]
    classifier = discourse_classifier()
    rng = random.Random(f"user:{cfg.seed}")
    train: list[Document] = []
    heldout: list[Document] = []
    units = 0
    done = False
    for batch in _batches(texts):
        for text, is_ai in zip(batch, classifier.label(batch), strict=True):
            if len(heldout) >= cfg.heldout_documents and units >= target_units:
                done = True
                break
            stats.counts["ai_discourse"] += is_ai
            doc = _document(text, is_ai, rng.randrange(cfg.n_eras))
            if len(heldout) < cfg.heldout_documents:
                heldout.append(doc)
                continue
            n = copies(cfg.user_ai_discourse, rng) if is_ai else 1
            train += [doc] * n
            units += n * count_units(text)
        if done:
            break
    if len(heldout) < cfg.heldout_documents or (target_units > 0 and not train):
        raise UserTextError(
            f"{FIELD}: {cfg.user_text} holds {stats.counts['documents']} usable documents; it needs more than "
            f"corpus.heldout_documents={cfg.heldout_documents} (those are held out first)"
        )
    if stats.skipped_line():  # in a grid run this reaches the pretrain cell's log.txt; the manifest has the counts
        print(f"corpus: user text {stats.skipped_line()}", file=sys.stderr)
    report = stats.as_dict() | {
        "target_met": units >= target_units,
        "train_documents": len(train),
        "heldout_documents": len(heldout),
        "train_units": units,
        "target_units": target_units,
        "ai_discourse_multiplier": cfg.user_ai_discourse,
    }
    return train, heldout, report
