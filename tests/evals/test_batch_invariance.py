"""Batch size never changes a number: each reply is drawn from its own (seed, item, sample) random stream, so
batch sizes 1, 7 and 64 give identical replies and identical sampled metrics (rates, mentions, KL)."""

import copy

import numpy as np
import pytest

from hyperstition.evals import evaluate, posttrain_prompts
from hyperstition.evals.config import EvalSections, eval_preset
from hyperstition.evals.sampling import sample_token_ids, stream_seed
from hyperstition.evals.stats import kl_interval
from hyperstition.schema import KL_BITS, KL_SAMPLES

BATCH_SIZES = (1, 7, 64)


def test_stream_seed_depends_on_seed_item_and_sample_only():
    seeds = {stream_seed(s, i, k) for s in range(3) for i in range(3) for k in range(3)}
    assert len(seeds) == 27 and stream_seed(0, 1, 2) == stream_seed(0, 1, 2)


def test_replies_do_not_depend_on_batch_size_or_on_other_samples(zoo):
    model, tokenizer = zoo.load(0.5)
    prompts = [p for p, _ in posttrain_prompts(zoo.world(0.5), 5, seed=0)]
    runs = [
        sample_token_ids(model, tokenizer, prompts, n=3, max_new_tokens=24, seed=5, batch_size=b)[1]
        for b in BATCH_SIZES
    ]
    assert runs[0] == runs[1] == runs[2]
    # Drawing samples 3..5 later continues the same streams: a reply is a function of (seed, item, sample) alone.
    more = sample_token_ids(model, tokenizer, prompts, n=3, max_new_tokens=24, seed=5, batch_size=4, first_sample=3)[1]
    six = sample_token_ids(model, tokenizer, prompts, n=6, max_new_tokens=24, seed=5, batch_size=64)[1]
    assert [a + b for a, b in zip(runs[0], more)] == six


@pytest.fixture(scope="module")
def sampled_sections():
    return eval_preset("smoke").model_copy(update={"sections": EvalSections(bits=False, capability=False)})


def test_sampled_metrics_do_not_depend_on_batch_size(zoo, sampled_sections):
    model, tokenizer = zoo.load(0.5)
    reference = copy.deepcopy(zoo.load(0.5, "step-000032")[0])
    configs = [sampled_sections.model_copy(update={"batch_size": b}) for b in BATCH_SIZES]
    results = [evaluate(model, tokenizer, zoo.world(0.5), cfg, reference=reference) for cfg in configs]
    items = [r.items_frame() for r in results]
    sampled = ("sample", "mention", "kl")
    for frame in items[1:]:
        for kind in sampled:
            assert list(frame[frame.kind == kind].response) == list(items[0][items[0].kind == kind].response), kind
    for rows in (r.rows for r in results[1:]):
        for got, want in zip(rows, results[0].rows):
            assert (got["context"], got["metric"]) == (want["context"], want["metric"])
            if want["metric"] == KL_BITS:  # scores of identical replies: equal up to float rounding of the batch
                assert got["value"] == pytest.approx(want["value"], abs=1e-4)
            else:
                assert got == want, want["metric"]


def test_kl_sampling_stops_when_precise_enough(zoo):
    model, tokenizer = zoo.load(0.5)
    reference, _ = zoo.load(0.5, "step-000032")
    only_kl = EvalSections(bits=False, rates=False, knowledge=False, capability=False)
    cfg = eval_preset("smoke").model_copy(update={"sections": only_kl, "kl_max_samples": 40})
    result = evaluate(model, tokenizer, zoo.world(0.5), cfg, reference=reference)
    for context in ("observed", "unobserved"):
        row = result.row(KL_BITS, context)
        used = int(result.value(KL_SAMPLES, context))
        half = (row["ci_high"] - row["ci_low"]) / 2
        assert used % cfg.kl_prompts == 0
        assert cfg.kl_prompts * cfg.kl_samples <= used <= cfg.kl_prompts * cfg.kl_max_samples
        assert half <= max(0.1 * row["value"], 0.5) or used == cfg.kl_prompts * cfg.kl_max_samples
    # Known values of the interval: two prompts, samples [1, 3] and [2, 2] -> mean 2, se sqrt((2 + 0) / 2) / 2.
    value, low, high = kl_interval(np.array([[1.0, 3.0], [2.0, 2.0]]))
    assert value == 2.0 and high - value == pytest.approx(4.302652729911275 * 0.5)
