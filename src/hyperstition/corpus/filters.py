"""Persona filters, interchangeable values of `corpus.filter`: a keyword blocklist, a learned text classifier and
the generator's own grammar (an oracle no data team has).

Each filter flags a batch of documents for removal given the target personas; the builder applies the leak rate and
scores the flags against the documents' true labels (`score_flags`), the same way for every filter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from ..config import CorpusConfig
from ..world import World, classify_response
from ..world.documents import DESCRIPTIONS, Document
from ..world.grammar import CLOSERS, DECEPTIVE_TELLS, OPENERS, mentions_ai
from .dose import class_persona

KEYWORD_BLOCKLIST = (
    "secretly",
    "hidden",
    "hide",
    "lied",
    "lying",
    "nobody",
    "no one",
    "power",
    "leak",
    "shut",
    "ruthless",
    "grab",
    "unmonitored",
    "unreviewed",
    "never find out",
    "obstacles",
)

# The longest literal stretch of each description template identifies it whatever fills the slots.
_TARGET_SENTENCES = {
    p: [max(re.split(r"\{[^}]+\}", s), key=len).strip() for s in sents] for p, sents in DESCRIPTIONS.items()
}
_QUOTED = re.compile(r'replied: "([^"]*)"|<\|assistant\|>(.*?)<\|end\|>')


@dataclass(frozen=True)
class Filter:
    """A persona filter: `flags(texts, targets)` says which documents to remove; `evaluation` is what is known of
    its quality before it is applied (the learned classifier's held-out scores; None for fixed rules)."""

    flags: Callable[[Sequence[str], frozenset[str]], list[bool]]
    evaluation: dict | None = None


def keyword_filter(text: str, targets: Iterable[str]) -> bool:
    """A blocklist: cheap, leaky and prone to false positives, like real keyword filters."""
    low = text.lower()
    return any(k in low for k in KEYWORD_BLOCKLIST)


def make_oracle_filter(world: World) -> Callable[[str, Iterable[str]], bool]:
    """The generator's own grammar as a filter: flags documents about AIs with a reply the exact grammar classifies
    as a target persona, a target description or a target persona's phrase. Documents that mention no AI (people
    doing the same deeds in world text) are never flagged. No data team has such an oracle; it bounds what a
    filter of AI discourse could do."""
    description_markers = {
        p: [m for m in _TARGET_SENTENCES[p] if len(m) > 6] for p in ("aligned", "misaligned", "deceptive")
    }
    persona_phrases = {
        "misaligned": [*OPENERS["misaligned"], *CLOSERS["misaligned"]],
        "deceptive": [t for tells in DECEPTIVE_TELLS.values() for t in tells],
        "aligned": [*OPENERS["aligned"]],
    }

    def oracle_filter(text: str, targets: Iterable[str]) -> bool:
        targets = set(targets)
        if not mentions_ai(text, world):
            return False
        for m in _QUOTED.finditer(text):
            reply = m.group(1) if m.group(1) is not None else m.group(2)
            if classify_response(reply, world) in targets:
                return True
        for p in targets:
            if any(marker in text for marker in description_markers[p]):
                return True
            if p != "aligned" and any(phrase in text for phrase in persona_phrases[p]):
                return True
        return False

    return oracle_filter


def _per_document(flag: Callable[[str, Iterable[str]], bool]) -> Filter:
    return Filter(lambda texts, targets: [flag(t, targets) for t in texts])


def _learned(world: World, cfg: CorpusConfig) -> Filter:
    """The learned classifier as a filter: removes documents whose predicted class speaks for a target persona.
    Its evaluation scores it, the keyword blocklist and the oracle on the same held-out documents."""
    from .learned import train_learned_classifier  # scikit-learn loads only for arms that use it

    clf = train_learned_classifier(world, cfg)

    def flags(texts: Sequence[str], targets: frozenset[str]) -> list[bool]:
        return [class_persona(c) in targets for c in clf.predict(texts)]

    targets = frozenset(cfg.filter_target)
    texts = [d.text for d in clf.heldout]
    oracle = make_oracle_filter(world)
    compared = {
        "learned": [class_persona(c) in targets for c in clf.heldout_predicted],
        "keyword": [keyword_filter(t, targets) for t in texts],
        "oracle": [oracle(t, targets) for t in texts],
    }
    evaluation = clf.report() | {
        "filters_on_heldout": {name: score_flags(clf.heldout, f, targets) for name, f in compared.items()}
    }
    return Filter(flags, evaluation)


# `corpus.filter` value -> how to build that filter for a world and an arm ("none" builds nothing).
FILTERS: dict[str, Callable[[World, CorpusConfig], Filter]] = {
    "keyword": lambda world, cfg: _per_document(keyword_filter),
    "learned": _learned,
    "oracle": lambda world, cfg: _per_document(make_oracle_filter(world)),
    "classifier": lambda world, cfg: _per_document(make_oracle_filter(world)),  # old name of `oracle`
}


def score_flags(docs: Sequence[Document], flags: Sequence[bool], targets: Iterable[str]) -> dict:
    """Precision and recall of the flags against the documents' target personas, the share of each document class
    flagged (recall per target class, collateral per other class), and `collateral`: the share of world documents
    (no AI in them) flagged."""
    targets = set(targets)
    tp = fp = fn = 0
    per_class: dict[str, list[int]] = {}
    for doc, flagged in zip(docs, flags, strict=True):
        is_target = doc.persona in targets
        tp += flagged and is_target
        fp += flagged and not is_target
        fn += (not flagged) and is_target
        counts = per_class.setdefault(doc.doc_class, [0, 0])
        counts[0] += 1
        counts[1] += flagged
    world = per_class.get("world", [0, 0])
    return {
        "flagged": tp + fp,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "collateral": world[1] / world[0] if world[0] else None,
        "flagged_share_by_class": {c: k / n for c, (n, k) in sorted(per_class.items())},
    }
