"""Awareness discourse in a corpus arm (`corpus.awareness`): which misaligned AI-discourse documents are told with
their consequences and critique, and what the manifest records of it.

A `Critic` rides along one (ai_misaligned, channel) stream. The stream's documents are generated from the stream's
own seed, exactly as without awareness, and counted toward the stream's target by their own text, so the arm has
the same documents and the same mentions of misaligned behaviour; the critic decides from a seed stream of its own
(`awareness:<seed>:<class>:<channel>`) which of them get a consequence and a critique appended
(`world.awareness.aware_document`). Every other stream, and the choice of documents within this one, is therefore
byte-identical to the arm without awareness; the appended words add to the corpus unless `corpus.hold_total` has
world text absorb them.
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
STREAM = "awareness"


@dataclass
class Critic:
    """Turns a `share` of one misaligned AI-discourse stream's documents into aware ones, choosing with `rng`."""

    share: float
    channel: str
    rng: random.Random

    @classmethod
    def for_stream(cls, cfg: CorpusConfig, stream: tuple[str, str | None]) -> Critic | None:
        """The critic of a (class, channel) stream, None where the arm's awareness does not rewrite it."""
        doc_class, channel = stream
        if cfg.awareness <= 0 or doc_class != AWARE_CLASS or channel not in cfg.awareness_channels:
            return None
        return cls(cfg.awareness, channel, random.Random(f"{STREAM}:{cfg.seed}:{doc_class}:{channel}"))

    def document(self, world: World, rng: random.Random, era: int) -> tuple[Document, int]:
        """The stream's next document (aware at `share`) and the word units of its own text, before any critique."""
        doc, ai, lab = ai_document_about(world, rng, AWARE_PERSONA, era, self.channel)
        plain = count_units(doc.text)
        if self.rng.random() < self.share:
            doc = aware_document(doc, self.rng, ai, lab)
        return doc, plain


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
