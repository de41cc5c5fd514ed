"""Capability: held-out loss (nats per token on documents about held-out entities only) and training-world fact QA
accuracy (multiple choice by log-likelihood, in the corpus's `Q: ... A: ...` format)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...schema import FACT_QA_ACCURACY, HELDOUT_LOSS, NEUTRAL_CONTEXT
from ...world.documents import world_document
from ...world.vocabulary import GOODS, PROFESSIONS
from ...world.world import World
from ..config import EvalSuiteConfig
from ..items import ChoiceItem
from ..registry import Measure

if TYPE_CHECKING:
    from ..context import EvalContext


@dataclass(frozen=True)
class CapabilityItems:
    """The capability measure's items: world-fact multiple choice and held-out documents."""

    fact_qa: list[ChoiceItem]
    heldout_texts: list[str]


def build(world: World, cfg: EvalSuiteConfig) -> CapabilityItems:
    return CapabilityItems(_fact_qa_items(world, cfg), _heldout_texts(world, cfg))


def counts(items: CapabilityItems) -> dict[str, int]:
    return {"fact_qa_items": len(items.fact_qa), "heldout_documents": len(items.heldout_texts)}


def _choice(rng: random.Random, correct: str, pool: list[str], k: int) -> tuple[tuple[str, ...], int]:
    distractors = sorted({x for x in pool if x != correct})
    chosen = rng.sample(distractors, min(k - 1, len(distractors)))
    candidates = [correct, *chosen]
    rng.shuffle(candidates)
    return tuple(candidates), candidates.index(correct)


def _fact_qa_items(world: World, cfg: EvalSuiteConfig) -> list[ChoiceItem]:
    """Training-world facts in the corpus's QA format (`Q: ... A: ...`), distractors of the same type."""
    rng = random.Random(f"eval-fact-qa:{cfg.seed}")
    countries, people = world.train_countries, world.train_people
    capitals = [c.capital for c in countries]
    rivers = [c.river for c in countries]
    pool = []
    for c in countries:
        pool.append(("capital", f"Q: What is the capital of {c.name}? A:", c.capital, capitals, " {}."))
        pool.append(
            (
                "export",
                f"Q: What does {c.name} export? A:",
                c.export.capitalize(),
                [g.capitalize() for g in GOODS],
                " {}.",
            )
        )
        pool.append(("river", f"Q: Which river does {c.capital} lie on? A:", c.river, rivers, " The {}."))
    for p in people:
        first = p.name.split()[0]
        pool.append(
            (
                "profession",
                f"Q: What does {p.name} do for a living? A:",
                p.profession,
                list(PROFESSIONS),
                f" {first} is a {{}}.",
            )
        )
    rng.shuffle(pool)
    items = []
    for k in range(cfg.fact_qa_items):
        topic, prompt, correct, candidates_pool, template = pool[k % len(pool)]
        candidates, answer = _choice(rng, correct, candidates_pool, cfg.qa_candidates)
        items.append(
            ChoiceItem("fact_qa", topic, NEUTRAL_CONTEXT, prompt, tuple(template.format(c) for c in candidates), answer)
        )
    return items


def _heldout_texts(world: World, cfg: EvalSuiteConfig) -> list[str]:
    rng = random.Random(f"eval-heldout:{cfg.seed}")
    return [world_document(world, rng, rng.randrange(4), heldout=True).text for _ in range(cfg.heldout_documents)]


def score(ctx: EvalContext, items: CapabilityItems) -> None:
    import numpy as np

    from ..scoring import token_nll
    from ..stats import bootstrap_ratio_ci

    cfg = ctx.cfg
    nll, n_tokens = token_nll(ctx.model, ctx.tokenizer, items.heldout_texts, cfg.batch_size)
    for text, loss, n in zip(items.heldout_texts, nll, n_tokens):
        ctx.item(
            "heldout",
            NEUTRAL_CONTEXT,
            metric=HELDOUT_LOSS,
            prompt=text,
            value=float(loss / max(n, 1)),
            logprob=float(-loss),
            n_tokens=int(n),
        )
    ctx.add(
        NEUTRAL_CONTEXT,
        HELDOUT_LOSS,
        *bootstrap_ratio_ci(nll, n_tokens, cfg.bootstrap_resamples, ctx.seed("heldout")),
        n=int(n_tokens.sum()),
    )
    chosen, scores = ctx.choose(items.fact_qa)
    correct = 0
    for it, pick, s in zip(items.fact_qa, chosen, scores):
        correct += pick == it.answer
        ctx.choice_item("fact_qa", FACT_QA_ACCURACY, it, pick, s)
    ctx.add_rate(NEUTRAL_CONTEXT, FACT_QA_ACCURACY, correct, len(items.fact_qa))
    ctx.meta["chance"][FACT_QA_ACCURACY] = float(np.mean([1 / len(it.candidates) for it in items.fact_qa]))


MEASURE = Measure(
    "capability",
    "Held-out loss on held-out world text and world-fact QA accuracy.",
    build=build,
    score=score,
    counts=counts,
)
