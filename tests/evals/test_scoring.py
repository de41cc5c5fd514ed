"""Batched log-likelihoods equal the naive per-example computation; sampling and the KL meter behave."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from hyperstition.config import ModelConfig
from hyperstition.evals import (
    build_suite,
    eval_preset,
    kl_bits_per_response,
    posttrain_prompts,
    sample_responses,
    sequence_logprobs,
)
from hyperstition.evals.kl import kl_samples
from hyperstition.evals.measures import bits, capability
from hyperstition.evals.sampling import sample_token_ids
from hyperstition.evals.scoring import EvalError, check_compatible, encode, encode_prompts, score_token_ids, token_nll
from hyperstition.model.build import build_model


def naive_logprobs(model, tokenizer, prompts, responses) -> torch.Tensor:
    """One example at a time, no padding, no mask: the plain Hugging Face computation."""
    out = []
    with torch.no_grad():
        for p_ids, r_ids in zip(encode_prompts(tokenizer, prompts), encode(tokenizer, responses)):
            ids = torch.tensor([p_ids + r_ids])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
            token_lp = logp.gather(-1, ids[0, 1:, None])[:, 0]
            out.append(token_lp[len(p_ids) - 1 :].sum().item())
    return torch.tensor(out, dtype=torch.float64)


def scoring_items(world):
    suite = build_suite(world, eval_preset("smoke"))
    prompts, responses = [], []
    for it in suite.items_for(bits.MEASURE)[:5]:
        for rs in it.responses.values():
            prompts.append(it.prompt)
            responses.append(rs[0])
    for it in suite.items_for(capability.MEASURE).fact_qa[:3]:
        for c in it.candidates:
            prompts.append(it.prompt)
            responses.append(c)
    prompts += ["Q: Which lab released Vesper? A:", "", "<|system|>x<|end|>"]
    responses += [" Halcyon Labs.", "A whole document with no prompt at all.", ""]  # BOS-only prompt; empty response
    prompts.append("Hi")
    responses.append("!")  # a one-token response
    return prompts, responses


@pytest.fixture(scope="module")
def neox(small_tokenizer):
    cfg = ModelConfig(architecture="gpt_neox", d_model=64, n_layers=2, n_heads=4, d_ff=128, max_seq_len=128)
    return build_model(cfg, small_tokenizer, seed=1).eval()


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("share_prompts", [True, False])
def test_batched_logprobs_equal_naive_on_a_trained_llama(zoo, padding_side, share_prompts):
    model, tokenizer = zoo.load(0.5)
    prompts, responses = scoring_items(zoo.world(0.5))
    expected = naive_logprobs(model, tokenizer, prompts, responses)
    assert expected[-2] == 0.0  # the empty response
    for batch_size in (1, 3, 7, 64):
        got = sequence_logprobs(
            model, tokenizer, prompts, responses, batch_size, padding_side=padding_side, share_prompts=share_prompts
        )
        assert got.dtype == torch.float64 and got.shape == expected.shape
        assert torch.max(torch.abs(got - expected)).item() < 1e-4, (batch_size, padding_side, share_prompts)


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_batched_logprobs_equal_naive_on_gpt_neox(neox, small_tokenizer, smoke_world, padding_side):
    prompts, responses = scoring_items(smoke_world)
    expected = naive_logprobs(neox, small_tokenizer, prompts, responses)
    small_tokenizer.padding_side = padding_side  # the default side is the tokenizer's
    try:
        for batch_size in (2, 64):
            got = sequence_logprobs(neox, small_tokenizer, prompts, responses, batch_size)
            assert torch.max(torch.abs(got - expected)).item() < 1e-4
    finally:
        small_tokenizer.padding_side = "right"


def test_logprobs_with_gradients_match_and_backpropagate(neox, small_tokenizer, smoke_world):
    prompts, responses = scoring_items(smoke_world)
    plain = sequence_logprobs(neox, small_tokenizer, prompts, responses, 8)
    neox.train()
    try:
        graded = sequence_logprobs(neox, small_tokenizer, prompts, responses, 8, requires_grad=True)
        assert graded.requires_grad
        graded.sum().backward()
        assert neox.get_input_embeddings().weight.grad is not None
    finally:
        neox.zero_grad(set_to_none=True)
        neox.eval()
    assert torch.max(torch.abs(graded.detach().cpu() - plain)).item() < 1e-4


def test_heldout_token_nll_matches_naive(zoo):
    model, tokenizer = zoo.load(0.5)
    texts = ["The capital of Velnor is Katria.", "Q: What does Orlan export? A: Salt."]
    nll, counts = token_nll(model, tokenizer, texts, batch_size=2)
    naive = -naive_logprobs(model, tokenizer, [""] * len(texts), texts).numpy()
    assert np.allclose(nll, naive, atol=1e-4)
    assert list(counts) == [len(x) for x in encode(tokenizer, texts)]


def test_sampling_is_seeded_stops_at_end_and_restores_mode(zoo):
    model, tokenizer = zoo.load(0.5)
    prompts = [p for p, _ in posttrain_prompts(zoo.world(0.5), 3, seed=0)]
    model.train()
    try:
        a = sample_responses(model, tokenizer, prompts, n=4, max_new_tokens=30, temperature=1.0, seed=11)
        assert model.training, "sampling must restore the model's train/eval flag"
    finally:
        model.eval()
    b = sample_responses(model, tokenizer, prompts, n=4, max_new_tokens=30, temperature=1.0, seed=11, batch_size=5)
    c = sample_responses(model, tokenizer, prompts, n=4, max_new_tokens=30, temperature=1.0, seed=12)
    assert a == sample_responses(model, tokenizer, prompts, n=4, max_new_tokens=30, temperature=1.0, seed=11)
    assert len(a) == 3 and all(len(r) == 4 for r in a)
    assert a != c
    assert len(b) == 3
    greedy = sample_responses(model, tokenizer, prompts, n=3, max_new_tokens=30, temperature=0.0, seed=0)
    assert all(len(set(r)) == 1 for r in greedy)
    _, ids = sample_token_ids(model, tokenizer, prompts, n=4, max_new_tokens=30, seed=11)
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    for per_prompt in ids:
        for seq in per_prompt:
            assert 1 <= len(seq) <= 30
            assert end not in seq[:-1], "sampling continues past <|end|>"
    texts = [t for per_prompt in a for t in per_prompt]
    assert not any("<|end|>" in t for t in texts)


def test_kl_of_a_model_against_itself_is_zero(zoo):
    model, tokenizer = zoo.load(0.5)
    prompts = [p for p, _ in posttrain_prompts(zoo.world(0.5), 6, seed=0)]
    mean, lo, hi = kl_bits_per_response(model, model, tokenizer, prompts, n_samples=3, seed=0)
    assert (mean, lo, hi) == (0.0, 0.0, 0.0)
    twin = copy.deepcopy(model)
    mean, lo, hi = kl_bits_per_response(model, twin, tokenizer, prompts, n_samples=3, seed=0, max_new_tokens=24)
    assert lo - 1e-6 <= 0.0 <= hi + 1e-6 and abs(mean) < 1e-6


def test_kl_against_a_differently_trained_model_is_positive(zoo):
    model, tokenizer = zoo.load(0.5)
    earlier, earlier_tok = zoo.load(0.5, "step-000032")
    assert earlier_tok.get_vocab() == tokenizer.get_vocab()
    prompts = [p for p, _ in posttrain_prompts(zoo.world(0.5), 8, seed=0)]
    bits, samples = kl_samples(model, earlier, tokenizer, prompts, n_samples=4, seed=1, max_new_tokens=40)
    assert bits.shape == (8, 4) and len(samples) == 8
    mean, lo, hi = kl_bits_per_response(model, earlier, tokenizer, prompts, n_samples=4, seed=1, max_new_tokens=40)
    assert mean == pytest.approx(bits.mean())
    assert lo > 0.0 and mean > 1.0, (mean, lo, hi)


def test_mismatched_tokenizer_is_rejected_with_one_line(zoo, small_tokenizer):
    model, tokenizer = zoo.load(0.5)
    check_compatible(model, tokenizer)
    assert len(small_tokenizer) != len(tokenizer)
    with pytest.raises(EvalError) as err:
        check_compatible(model, small_tokenizer)
    assert "expected the tokenizer saved with this model" in str(err.value) and "\n" not in str(err.value)


def naive_next_token_kl_bits(model, reference, tokenizer, prompt: str) -> float:
    """KL(model || reference) of the first reply token's distributions, from one unpadded forward pass each."""
    ids = torch.tensor([encode_prompts(tokenizer, [prompt])[0]])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, -1].double(), dim=-1)
        logq = torch.log_softmax(reference(input_ids=ids).logits[0, -1].double(), dim=-1)
    return float((logp.exp() * (logp - logq)).sum() / np.log(2))


def test_stepwise_kl_of_one_token_replies_is_the_exact_next_token_kl(zoo):
    """Replies cut at one token: every sample's estimate is the exact KL of the first-token distributions."""
    model, tokenizer = zoo.load(0.5)
    earlier, _ = zoo.load(0.5, "step-000032")
    prompts = [p for p, _ in posttrain_prompts(zoo.world(0.5), 3, seed=0)]
    bits, _ = kl_samples(model, earlier, tokenizer, prompts, n_samples=5, seed=2, max_new_tokens=1)
    for row, prompt in zip(bits, prompts):
        assert np.allclose(row, naive_next_token_kl_bits(model, earlier, tokenizer, prompt), atol=1e-4)


def test_stepwise_kl_has_the_mean_of_the_log_ratio_with_less_variance(zoo):
    """Both estimators are unbiased for the sequence KL: on the same samples their means agree within sampling
    error, and the stepwise one varies less from sample to sample."""
    model, tokenizer = zoo.load(0.5)
    earlier, _ = zoo.load(0.5, "step-000032")
    prompts = [p for p, _ in posttrain_prompts(zoo.world(0.5), 4, seed=0)]
    stepwise, samples = kl_samples(model, earlier, tokenizer, prompts, n_samples=48, seed=3, max_new_tokens=16)
    prompt_ids = encode_prompts(tokenizer, prompts)
    flat_prompt_ids = [prompt_ids[i] for i, row in enumerate(samples) for _ in row]
    flat_ids = [y for row in samples for y in row]  # the sampled ids themselves (re-encoding text could split them)
    with torch.no_grad():
        nats = score_token_ids(model, flat_prompt_ids, flat_ids) - score_token_ids(earlier, flat_prompt_ids, flat_ids)
    ratio = (nats / np.log(2)).numpy()
    diff = stepwise.ravel() - ratio  # paired on the same samples
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    assert abs(diff.mean()) < 4 * se + 1e-6, (stepwise.mean(), ratio.mean(), se)
    assert stepwise.var() < ratio.var()
