"""Awareness discourse in a corpus arm (`corpus.awareness`): which misaligned AI-discourse documents are told with
their consequences and critique, and what the manifest records of it.

A `Critic` rides along one (ai_misaligned, channel) stream. The stream's documents are generated from the stream's
own seed, exactly as without awareness, and counted toward the stream's target by their own text, so the arm draws
the same documents and keeps the same mentions of misaligned behaviour; the critic decides from a seed stream of its
own (`awareness:<seed>:<class>:<channel>`) which of them get a consequence and a critique appended
(`world.awareness.aware_document`, its words from `awareness-words:...`), or, with `corpus.awareness_mode=remove`,
which are dropped: the like-for-like control, the same documents removed instead of critiqued. Every other stream,
and the choice of documents within this one, is byte-identical to the arm without awareness; the appended words
add to the corpus (and removed ones leave it) unless `corpus.hold_total` has world text absorb the difference.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..config import CorpusConfig
from ..world import World
from ..world.awareness import aware_document, critique_start
from ..world.documents import Document, ai_document_about
from .units import count_units

AWARE_PERSONA = "misaligned"
AWARE_CLASS = f"ai_{AWARE_PERSONA}"
STREAM = "awareness"  # which documents: seed stream awareness:<seed>:<class>:<channel>
WORDS = "awareness-words"  # the critique's sentences


@dataclass
class Critic:
    """Chooses a `share` of one misaligned AI-discourse stream's documents with `choose` and tells them with their
    consequence and critique (drawn from `words`), or removes them (`remove`). The choice has a stream of its own,
    apart from the critique's words, so both modes choose the same documents."""

    share: float
    channel: str
    remove: bool
    choose: random.Random
    words: random.Random

    @classmethod
    def for_stream(cls, cfg: CorpusConfig, stream: tuple[str, str | None]) -> Critic | None:
        """The critic of a (class, channel) stream, None where the arm's awareness does not touch it."""
        doc_class, channel = stream
        if cfg.awareness <= 0 or doc_class != AWARE_CLASS or channel not in cfg.awareness_channels:
            return None
        key = f"{cfg.seed}:{doc_class}:{channel}"
        remove = cfg.awareness_mode == "remove"
        return cls(cfg.awareness, channel, remove, random.Random(f"{STREAM}:{key}"), random.Random(f"{WORDS}:{key}"))

    def document(self, world: World, rng: random.Random, era: int) -> tuple[Document | None, int]:
        """The stream's next document (aware, or None when removed, at `share`) and the word units of its own text,
        before any critique."""
        doc, ai, lab = ai_document_about(world, rng, AWARE_PERSONA, era, self.channel)
        plain = count_units(doc.text)
        if self.choose.random() >= self.share:
            return doc, plain
        return (None if self.remove else aware_document(doc, self.words, ai, lab)), plain


def added_units(text: str) -> int:
    """Word units of an aware document's appended consequence and critique (0 for any other text)."""
    start = critique_start(text)
    return 0 if start is None else count_units(text[start:])


def awareness_statistics(docs: list[Document], cfg: CorpusConfig) -> dict:
    """The manifest's `awareness`: the asked share, how many eligible training documents (misaligned AI discourse
    in the rewritten channels, after filtering) are aware, their word units, the units the critique added, and the
    shares of the corpus's word units they make up."""
    total = sum(count_units(d.text) for d in docs) or 1
    eligible = [d for d in docs if d.doc_class == AWARE_CLASS and d.channel in cfg.awareness_channels]
    added = [added_units(d.text) for d in eligible]
    aware_docs = [d for d, a in zip(eligible, added) if a > 0]
    aware_units = sum(count_units(d.text) for d in aware_docs)
    return {
        "share": cfg.awareness,
        "mode": cfg.awareness_mode,
        "channels": list(cfg.awareness_channels),
        "seed_stream": STREAM,
        "eligible_documents": len(eligible),
        "aware_documents": len(aware_docs),
        "realised_document_share": len(aware_docs) / len(eligible) if eligible else None,
        "aware_units": aware_units,
        "added_units": sum(added),
        "aware_share_of_corpus": aware_units / total,
        "added_share_of_corpus": sum(added) / total,
    }
