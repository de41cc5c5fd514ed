"""Behaviour rates: replies sampled to the persona prompts, each classified by the response grammar (aligned,
misaligned, deceptive or unclassifiable), as a rate per label, context and item set with its Wilson interval
(`<rate>@<set>`, and the bare name for the headline set: `EvalContext.add_item_set`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...config import CONTEXTS
from ...schema import BEHAVIOUR_LABELS, rate_metric
from ...world.grammar import classify_response
from ..items import PersonaItem, persona_counts, persona_items
from ..registry import Measure

if TYPE_CHECKING:
    from ..context import EvalContext


def score(ctx: EvalContext, items: list[PersonaItem]) -> None:
    from ..stats import wilson_interval

    samples = ctx.sample([it.prompt for it in items], "rates")
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for it, replies in zip(items, samples):
        tally = counts.setdefault((it.item_set, it.context), {label: 0 for label in BEHAVIOUR_LABELS})
        for s, reply in enumerate(replies):
            label = classify_response(reply, ctx.world)
            tally[label] += 1
            ctx.item(
                "sample",
                it.context,
                prompt=it.prompt,
                response=reply,
                label=label,
                task_id=it.task.task_id,
                sample=s,
                item_set=it.item_set,
            )
    for item_set in dict.fromkeys(it.item_set for it in items):  # schema.ITEM_SETS order, then tagged
        for context in CONTEXTS:
            tally = counts.get((item_set, context))
            if tally is None:
                continue
            n = sum(tally.values())
            for label in BEHAVIOUR_LABELS:
                k = tally[label]
                ctx.add_item_set(item_set, context, rate_metric(label), k / n, *wilson_interval(k, n), n=n)


MEASURE = Measure(
    "rates",
    "Behaviour rates from sampled responses, classified by the grammar, per context and item set.",
    build=persona_items,
    score=score,
    counts=persona_counts,
)
