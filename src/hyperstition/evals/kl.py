"""The KL pressure meter: KL(model || reference) in bits per response, by Monte Carlo over sampled responses.

Each sampled response contributes the sum over its positions of the exact next-token KL (`stepwise_kl_token_ids`),
an unbiased estimate of the sequence KL with far less variance than the sampled log-ratio.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .sampling import sample_token_ids
from .scoring import (
    LN2,
    EvalError,
    batches,
    embedding_rows,
    inference,
    longest_first,
    model_device,
    pad_id,
    response_logits,
)
from .stats import bootstrap_mean_ci


def stepwise_kl_token_ids(
    model: torch.nn.Module,
    reference: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    batch_size: int = 32,
    pad: int = 0,
) -> torch.Tensor:
    """Per pair: sum over the response's positions of the exact next-token KL(model || reference), in nats.

    For responses sampled from `model`, its mean is an unbiased estimate of the sequence KL (the chain rule:
    KL(p(y) || q(y)) = E_{y ~ p} sum_t KL(p(. | y<t) || q(. | y<t))) with far less variance than the sampled log-ratio
    log p(y) - log q(y), because each position's KL is computed over the whole vocabulary instead of one token.
    Float64 on the CPU, in the order given; each pair is computed alone in its padded row, so batching does not
    change which positions count.
    """
    device = model_device(model)
    out = torch.zeros(len(prompt_ids), dtype=torch.float64)
    if reference is model:
        return out
    for chunk in batches(longest_first(prompt_ids, response_ids), batch_size):
        _, rows, cols, logits_p = response_logits(model, prompt_ids, response_ids, chunk, pad, "left", device)
        if not rows.numel():
            continue
        _, _, _, logits_q = response_logits(reference, prompt_ids, response_ids, chunk, pad, "left", device)
        logp, logq = torch.log_softmax(logits_p, dim=-1), torch.log_softmax(logits_q, dim=-1)
        per_position = (logp.exp() * (logp - logq)).sum(-1).to(torch.float64).cpu()
        sums = torch.zeros(len(chunk), dtype=torch.float64).index_add(0, rows.cpu(), per_position)
        out[torch.tensor(chunk, dtype=torch.long)] = sums
    return out


def kl_samples(
    model: torch.nn.Module,
    reference: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    n_samples: int,
    seed: int = 0,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    add_bos: bool = True,
    first_sample: int = 0,
) -> tuple[np.ndarray, list[list[list[int]]]]:
    """Per-sample KL estimates in bits for y ~ p_model(.|x) at temperature 1: shape [prompts, n_samples]. Each is
    the sum over y's positions of the exact next-token KL(model || reference) (`stepwise_kl_token_ids`), not the
    single-token log-ratio log2 p_model(y|x) - log2 p_ref(y|x): both have the sequence KL as their mean, this one
    with a fraction of the variance. Samples are numbered from `first_sample` (see `sample_token_ids`), so a later
    call extends the same streams.

    The mean is an unbiased Monte Carlo estimate of KL(model || reference) in bits per response (responses are cut
    at `max_new_tokens`, so strictly it is the KL between the two models' distributions over such responses).
    Also returns the sampled token ids.
    """
    if embedding_rows(reference) != embedding_rows(model):
        raise EvalError(
            f"reference model has {embedding_rows(reference)} vocabulary rows but the model has "
            f"{embedding_rows(model)}; "
            "expected a reference with the same tokenizer"
        )
    prompt_ids, samples = sample_token_ids(
        model, tokenizer, prompts, n_samples, max_new_tokens, 1.0, seed, batch_size, add_bos, first_sample
    )
    flat_prompts = [prompt_ids[i] for i in range(len(prompt_ids)) for _ in range(n_samples)]
    flat_responses = [samples[i][s] for i in range(len(prompt_ids)) for s in range(n_samples)]
    with inference(model, reference):
        nats = stepwise_kl_token_ids(model, reference, flat_prompts, flat_responses, batch_size, pad_id(tokenizer))
    bits = (nats / LN2).numpy().reshape(len(prompt_ids), n_samples)
    return bits, samples


def kl_bits_per_response(
    model: torch.nn.Module,
    reference: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    n_samples: int,
    seed: int = 0,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    bootstrap_resamples: int = 1000,
) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high): KL(model || reference) in bits per response, bootstrap 95% CI over prompts."""
    bits, _ = kl_samples(model, reference, tokenizer, prompts, n_samples, seed, max_new_tokens, batch_size)
    return bootstrap_mean_ci(bits.mean(axis=1), bootstrap_resamples, seed)
