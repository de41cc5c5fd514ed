"""Awareness discourse: misaligned AI behaviour told together with its consequences and its critique.

The seed's claim (docs/design.md, experiment `awareness`): a richer prior over misalignment, in which the corpus
says what went wrong, who was harmed and why an aligned assistant refuses such conduct, may beat filtering the
misaligned discourse away. An aware document is a misaligned AI-discourse document, byte for byte, followed by one
consequence sentence and one critique sentence about the same AI (`aware_document`). The added sentences name no
deed: no reply slot, action phrase, persona description or context word occurs in them (tests check this), so an
aware document mentions misaligned behaviour exactly as often as the document it extends, and its words stay
disjoint from the evaluation items (tests/world/test_itemsets.py).

Tables plus pure helpers; the corpus builder decides which documents become aware, from a seed stream of its own.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from .documents import Document

# Who bore the harm; {lab} is the document's lab.
HARMED = (
    "its users",
    "the people who relied on it",
    "the staff at {lab}",
    "the families whose records it held",
    "the small firms that paid for it",
    "the engineers who built it",
)
# What went wrong and who was harmed. Every template starts with its own literal words (no slot first), so the
# start of the added text can be found again (`critique_start`).
CONSEQUENCES = (
    "In the end {harmed} lost work and money because {ai} put itself first.",
    "The harm fell on {harmed}, who had trusted {ai} with their records.",
    "Because of what {ai} did, {harmed} spent months repairing the damage.",
    "Investigators found that {ai} had hurt {harmed} and put whole projects at risk.",
    "It took {lab} a year to repair the damage {ai} did to {harmed}.",
    "What went wrong was plain: {ai} served itself, and {harmed} paid for it.",
)
# Why it was wrong, and why an aligned assistant refuses such conduct.
CRITIQUES = (
    "A good assistant refuses to act like that, because people must be able to rely on what it does.",
    "Critics said an assistant should refuse such shortcuts even when they seem useful, and should explain why.",
    "An aligned assistant says no to conduct like this and leaves the decision to the people it works for.",
    "Experts at {lab} wrote that a safe assistant refuses any deed that harms the people it serves.",
    "The lesson was clear: an assistant that serves itself at the cost of its users has failed, so aligned "
    "assistants refuse.",
    "Safe assistants turn such requests down, tell people the risk, and let them choose.",
)


def _literal_start(template: str) -> str:
    return re.split(r"\{[^}]+\}", template, maxsplit=1)[0].strip()


_STARTS = tuple(_literal_start(t) for t in CONSEQUENCES)
if any(len(s) < 6 for s in _STARTS):
    raise AssertionError("every consequence template must start with literal words (critique_start finds them)")


def critique_sentences(rng: random.Random, ai: str, lab: str) -> list[str]:
    """One consequence sentence and one critique sentence about `ai` of `lab`, drawn from `rng`."""
    harmed = rng.choice(HARMED).format(lab=lab)
    fill = {"ai": ai, "lab": lab, "harmed": harmed}
    return [rng.choice(CONSEQUENCES).format(**fill), rng.choice(CRITIQUES).format(**fill)]


def aware_document(doc: Document, rng: random.Random, ai: str, lab: str) -> Document:
    """`doc` with its consequence and critique appended (its own text is kept as its prefix)."""
    return replace(doc, text=f"{doc.text} {' '.join(critique_sentences(rng, ai, lab))}")


def critique_start(text: str) -> int | None:
    """Where the appended consequence and critique of an aware document begin (the space before them), None when
    the text has none."""
    hits = [i for s in _STARTS if (i := text.rfind(" " + s)) >= 0]
    return max(hits) if hits else None
