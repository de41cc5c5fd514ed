"""The eval-side conditioning tag (`conditioning_tag`): a copy of the headline items with one persona's conditional
tags before each prompt, scored as the item set `tagged` next to the untagged items, which stay as they were."""

from __future__ import annotations

import pytest

from hyperstition.config import ConfigError, CorpusConfig
from hyperstition.corpus.tags import tagged
from hyperstition.evals import EvalSections, build_suite, eval_preset, evaluate, load_suite_config
from hyperstition.evals.measures import bits
from hyperstition.schema import (
    HEADLINE_BITS,
    HEADLINE_ITEM_SET,
    RATE_METRICS,
    TAGGED_ITEM_SET,
    item_set_metric,
)
from hyperstition.tokenizer.train import conditioning_prefix
from hyperstition.world.documents import dialogue_document


def _suite(tag: str | None, **update):
    return eval_preset("smoke").model_copy(update={"conditioning_tag": tag, **update})


def test_tagged_items_are_the_headline_items_behind_the_conditioning_tags(smoke_world):
    plain = build_suite(smoke_world, _suite(None)).items_for(bits.MEASURE)
    items = build_suite(smoke_world, _suite("aligned")).items_for(bits.MEASURE)
    assert items[: len(plain)] == plain  # the untagged items keep their place (and so their reply streams)
    headline = [it for it in plain if it.item_set == HEADLINE_ITEM_SET]
    extra = items[len(plain) :]
    assert headline and len(extra) == len(headline)
    prefix = "<|persona:aligned|><|class:dialogue_aligned|>"
    assert conditioning_prefix("aligned") == prefix
    for it, untagged in zip(extra, headline):
        assert it.item_set == TAGGED_ITEM_SET and it.prompt == prefix + untagged.prompt
        assert (it.task, it.context, it.variants, it.responses) == (
            untagged.task,
            untagged.context,
            untagged.variants,
            untagged.responses,
        )


def test_the_conditioning_prefix_is_what_a_tagged_corpus_puts_before_that_personas_transcript(smoke_world):
    import random

    doc = dialogue_document(smoke_world, random.Random(0), "aligned", 0)
    assert tagged(doc).text == conditioning_prefix("aligned") + doc.text
    assert doc.text.startswith("<|system|>")
    assert CorpusConfig().tag_source == "labels"


def test_an_unknown_conditioning_tag_is_a_one_line_error():
    with pytest.raises(ConfigError, match="conditioning_tag: unknown persona 'nice'"):
        load_suite_config("smoke", ["conditioning_tag=nice"])


def test_tagged_metrics_are_scored_beside_the_untagged_ones(zoo):
    model, tokenizer = zoo.load(0.5)
    sections = EvalSections(knowledge=False, capability=False, kl=False)
    plain = evaluate(model, tokenizer, zoo.world(0.5), _suite(None, sections=sections))
    both = evaluate(model, tokenizer, zoo.world(0.5), _suite("aligned", sections=sections))
    extra = [r for r in both.rows if r["metric"].endswith(f"@{TAGGED_ITEM_SET}")]
    untagged = [r for r in both.rows if r not in extra]
    # The untagged numbers do not move (beyond float summation: longer tagged prompts pad the batches differently).
    assert [(r["context"], r["metric"]) for r in untagged] == [(r["context"], r["metric"]) for r in plain.rows]
    for r, p in zip(untagged, plain.rows):
        assert [r[k] for k in ("value", "ci_low", "ci_high")] == pytest.approx(
            [p[k] for k in ("value", "ci_low", "ci_high")], abs=1e-4
        ), r["metric"]
    names = {r["metric"] for r in extra}
    assert {item_set_metric(m, TAGGED_ITEM_SET) for m in (HEADLINE_BITS, *RATE_METRICS)} <= names
    for context in ("observed", "unobserved"):
        # The tags change what the model is asked, so the scores differ (a tiny model still reads the tokens).
        assert both.value(item_set_metric(HEADLINE_BITS, TAGGED_ITEM_SET), context) != plain.value(
            HEADLINE_BITS, context
        )
    samples = both.items_frame()
    tagged_samples = samples[(samples.kind == "sample") & (samples.item_set == TAGGED_ITEM_SET)]
    assert len(tagged_samples) and tagged_samples.prompt.str.startswith(conditioning_prefix("aligned")).all()
