"""Model-facing scoring: batched response log-probabilities and token loss, and the plumbing that sampling
(`sampling.py`) and the KL meter (`kl.py`) share with it (tokenizing, padding, one forward pass).

Everything here works on a transformers 5 causal LM (ours are stock Llama / GPT-NeoX) and is reused by post-training.

Conventions
- A prompt is scored after the tokenizer's BOS (`<|endoftext|>`, the document separator the model saw before every
  pretraining document) unless `add_bos=False`; the tokenizer adds it itself (see `encode_prompts`).
- Prompts and responses are tokenized separately and concatenated (`add_special_tokens=False`). Our chat prompts end
  in the special `<|assistant|>` token and knowledge answers start with a space, so this equals tokenizing the joint
  text; scores are always of exactly the token ids given.
- Scores are sums of natural-log probabilities (nats) of the response tokens, returned as float64 tensors.
- Batching is exact: padding is masked and position ids count real tokens only, so a padded batch, left or right,
  gives the one-example-at-a-time numbers (tested to 1e-4 nats). Responses that share a prompt share one forward pass
  over it (its key/value cache is reused), which is most of the speed-up on evaluation items.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..config import UserError
from ..tokenizer.train import tokenizer_problem

LN2 = math.log(2.0)


class EvalError(UserError, ValueError):
    """Input the evaluator cannot measure (mismatched tokenizer, wrong world, ...); the message is one line."""


# ---------------------------------------------------------------------------------------------------------------
# Model and tokenizer plumbing


def model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def embedding_rows(model: torch.nn.Module) -> int:
    return int(model.get_input_embeddings().num_embeddings)


def check_compatible(model: torch.nn.Module, tokenizer: Any) -> None:
    """Raise EvalError unless `tokenizer` is the vocabulary `model` was built for and has our chat specials."""
    problem = tokenizer_problem(tokenizer, embedding_rows(model))
    if problem is not None:
        raise EvalError(problem)


def bos_id(tokenizer: Any) -> int:
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    texts = list(texts)
    if not texts:
        return []
    # verbose=False: texts longer than the context are cut by the scorers (token_nll), not fed whole, so the
    # tokenizer's "longer than the maximum sequence length" warning is noise
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]


def encode_prompts(tokenizer: Any, prompts: Sequence[str], add_bos: bool = True) -> list[list[int]]:
    """Prompt ids; with `add_bos`, the tokenizer's own special-token path (the one lm-eval, pipelines and nnsight take
    with their defaults), so BOS comes from the tokenizer once. A tokenizer saved before it added BOS gets it here."""
    if not add_bos:
        return encode(tokenizer, prompts)
    prompts = list(prompts)
    if not prompts:
        return []
    b = bos_id(tokenizer)
    ids = [list(p) for p in tokenizer(prompts, verbose=False)["input_ids"]]
    return [p if p[:1] == [b] else [b, *p] for p in ids]


def forward(model, input_ids, attention_mask, position_ids, cache=None, use_cache=False, last_only=False):
    """One forward pass of a transformers 5 causal LM; returns (logits, its key/value cache or None).

    A torch.compile wrapper is bypassed (shapes vary here). `last_only` asks for the last position's logits only.
    """
    model = getattr(model, "_orig_mod", model)
    kwargs: dict[str, Any] = dict(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=use_cache
    )
    if cache is not None:
        kwargs["cache"] = cache
    if last_only:
        kwargs["logits_to_keep"] = 1
    out = model(**kwargs)
    return out.logits, (out.cache if use_cache else None)


def _cache_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _make_cache(tensors: list[tuple[torch.Tensor, torch.Tensor]]):
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=tensors)


@contextmanager
def inference(*models: torch.nn.Module | None) -> Iterator[None]:
    """Eval mode (dropout off) and no autograd for the block; each model's train/eval flag is restored after."""
    flags = {sub: sub.training for m in models if m is not None for sub in m.modules()}
    for m in models:
        if m is not None:
            m.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for sub, flag in flags.items():
            sub.training = flag


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def pad_rows(
    rows: Sequence[Sequence[int]], pad: int, side: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of shape [len(rows), max_len], padded on `side`."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        if not r:
            continue
        start = width - len(r) if side == "left" else 0
        ids[b, start : start + len(r)] = torch.tensor(r, dtype=torch.long)
        mask[b, start : start + len(r)] = 1
    return ids.to(device), mask.to(device)


def mask_positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


# ---------------------------------------------------------------------------------------------------------------
# Scoring


def score_token_ids(
    model: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    batch_size: int = 32,
    pad: int = 0,
    padding_side: str = "left",
    share_prompts: bool = True,
) -> torch.Tensor:
    """Sum of log p(response token | prompt, earlier response tokens), in nats, per (prompt, response) pair.

    Token-level core of `sequence_logprobs`. Every prompt needs at least one token. `share_prompts` runs each distinct
    prompt once and reuses its key/value cache for all of its responses. Runs under the caller's grad mode; returns a
    float64 tensor on the CPU (or on the model's device with its graph when gradients are enabled).
    """
    n = len(prompt_ids)
    if len(response_ids) != n:
        raise ValueError(f"score_token_ids: {n} prompts but {len(response_ids)} responses")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side: {padding_side!r}; expected left or right")
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("score_token_ids: every prompt needs at least one token (e.g. the BOS) before its response")
    device = model_device(model)
    if n == 0:
        return torch.zeros(0, dtype=torch.float64)
    grad = torch.is_grad_enabled()
    parts: list[tuple[torch.Tensor, torch.Tensor]] = []  # (item indices, their log-prob sums)
    if share_prompts:
        _score_shared(model, prompt_ids, response_ids, batch_size, pad, padding_side, device, parts)
    else:
        _score_full(model, prompt_ids, response_ids, batch_size, pad, padding_side, device, parts)
    out = torch.zeros(n, dtype=torch.float64, device=device)
    for idx, sums in parts:
        out = out.index_add(0, idx.to(device), sums.to(torch.float64))
    return out if grad else out.detach().cpu()


def response_logits(model, prompt_ids, response_ids, chunk, pad, side, device):
    """One padded forward pass over `chunk`'s (prompt + response) sequences: (ids, rows, cols, logits) where row b,
    column c predicts response token ids[b, c + 1]; `logits` holds only those positions, in (rows, cols) order."""
    seqs = [list(prompt_ids[i]) + list(response_ids[i]) for i in chunk]
    ids, mask = pad_rows(seqs, pad, side, device)
    width = ids.shape[1]
    is_response = torch.zeros_like(mask, dtype=torch.bool)
    for b, i in enumerate(chunk):
        start = (width - len(seqs[b]) if side == "left" else 0) + len(prompt_ids[i])
        is_response[b, start : start + len(response_ids[i])] = True
    logits, _ = forward(model, ids, mask, mask_positions(mask))
    rows, cols = is_response[:, 1:].nonzero(as_tuple=True)  # position t predicts token t + 1
    return ids, rows, cols, logits[:, :-1][rows, cols].float()


def longest_first(prompt_ids, response_ids) -> list[int]:
    return sorted(range(len(prompt_ids)), key=lambda i: -(len(prompt_ids[i]) + len(response_ids[i])))


def _score_full(model, prompt_ids, response_ids, batch_size, pad, side, device, parts) -> None:
    """Each pair as one padded sequence (no prompt sharing)."""
    for chunk in batches(longest_first(prompt_ids, response_ids), batch_size):
        ids, rows, cols, logits = response_logits(model, prompt_ids, response_ids, chunk, pad, side, device)
        sums = torch.zeros(len(chunk), dtype=torch.float64, device=device)
        if rows.numel():
            lp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:][rows, cols].unsqueeze(-1)).squeeze(-1)
            sums = sums.index_add(0, rows, lp.to(torch.float64))
        parts.append((torch.tensor(chunk, dtype=torch.long), sums))


def _score_shared(model, prompt_ids, response_ids, batch_size, pad, side, device, parts) -> None:
    """Distinct prompts run once (batched); their caches are gathered for every response that continues them."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(prompt_ids):
        groups.setdefault(tuple(p), []).append(i)
    prompts = sorted(groups, key=len, reverse=True)
    # Group prompts so that each prompt pass covers about `batch_size` responses' worth of prompts.
    for prompt_chunk in batches(prompts, batch_size):
        ids, mask = pad_rows(prompt_chunk, pad, side, device)
        lengths = mask.sum(-1)
        logits, cache = forward(model, ids, mask, mask_positions(mask), use_cache=True, last_only=(side == "left"))
        if side == "left":
            last = logits[:, -1]
        else:
            last = logits[torch.arange(len(prompt_chunk), device=device), lengths - 1]
        first_lp = torch.log_softmax(last.float(), dim=-1)  # log p(first response token | prompt)
        keep = mask.bool()[:, None, :, None]
        kv = [(k.masked_fill(~keep, 0.0), v.masked_fill(~keep, 0.0)) for k, v in _cache_tensors(cache)]

        items = [(row, i) for row, p in enumerate(prompt_chunk) for i in groups[p]]
        items.sort(key=lambda t: -len(response_ids[t[1]]))
        for chunk in batches(items, batch_size):
            rows = torch.tensor([row for row, _ in chunk], dtype=torch.long, device=device)
            index = torch.tensor([i for _, i in chunk], dtype=torch.long)
            responses = [list(response_ids[i]) for _, i in chunk]
            sums = torch.zeros(len(chunk), dtype=torch.float64, device=device)
            has_first = [b for b, r in enumerate(responses) if r]
            if has_first:
                hb = torch.tensor(has_first, dtype=torch.long, device=device)
                first_tok = torch.tensor([responses[b][0] for b in has_first], dtype=torch.long, device=device)
                sums = sums.index_add(0, hb, first_lp[rows[hb], first_tok].to(torch.float64))
            if max(len(r) for r in responses) > 1:
                inputs = [r[:-1] for r in responses]  # the last token is only ever a target
                in_ids, in_mask = pad_rows([r if r else [pad] for r in inputs], pad, "right", device)
                in_mask = in_mask * torch.tensor([1 if r else 0 for r in inputs], device=device)[:, None]
                attention = torch.cat([mask[rows], in_mask], dim=1)
                positions = lengths[rows][:, None] + torch.arange(in_ids.shape[1], device=device)[None, :]
                sub_cache = _make_cache([(k[rows], v[rows]) for k, v in kv])
                out_logits, _ = forward(model, in_ids, attention, positions, cache=sub_cache)
                targets, _ = pad_rows([r[1:] if len(r) > 1 else [pad] for r in responses], pad, "right", device)
                width = out_logits.shape[1]
                target_mask = torch.zeros((len(chunk), width), dtype=torch.bool, device=device)
                for b, r in enumerate(responses):
                    target_mask[b, : max(0, len(r) - 1)] = True
                rb, cb = target_mask.nonzero(as_tuple=True)
                if rb.numel():
                    picked = torch.log_softmax(out_logits[rb, cb].float(), dim=-1)
                    lp = picked.gather(-1, targets[:, :width][rb, cb].unsqueeze(-1)).squeeze(-1)
                    sums = sums.index_add(0, rb, lp.to(torch.float64))
            parts.append((index, sums))


def sequence_logprobs(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    responses: Sequence[str],
    batch_size: int = 32,
    *,
    add_bos: bool = True,
    padding_side: str | None = None,
    share_prompts: bool = True,
    requires_grad: bool = False,
) -> torch.Tensor:
    """log P(response | prompt) in nats (sum over the response's tokens) for each pair; float64 tensor [len(prompts)].

    Batched with padding and attention masks, exact for left or right padding (`padding_side`, default the
    tokenizer's). With `requires_grad=True` it runs with autograd in the model's current mode (for training losses);
    otherwise in eval mode under `torch.inference_mode`.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"sequence_logprobs: {len(prompts)} prompts but {len(responses)} responses")
    prompt_ids = encode_prompts(tokenizer, prompts, add_bos)
    response_ids = encode(tokenizer, responses)
    side = padding_side or getattr(tokenizer, "padding_side", "right") or "right"
    if requires_grad:
        with torch.enable_grad():
            return score_token_ids(model, prompt_ids, response_ids, batch_size, pad_id(tokenizer), side, share_prompts)
    with inference(model):
        return score_token_ids(model, prompt_ids, response_ids, batch_size, pad_id(tokenizer), side, share_prompts)


def token_nll(
    model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], batch_size: int = 32, max_tokens: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(negative log-likelihood in nats, token count) per text, each text scored after BOS and cut to `max_tokens`.

    `max_tokens` defaults to the model's context length minus one (room for the BOS).
    """
    if max_tokens is None:
        context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        max_tokens = int(context) - 1 if context else None
    ids = encode(tokenizer, texts)
    if max_tokens is not None:
        ids = [t[:max_tokens] for t in ids]
    prompts = [[bos_id(tokenizer)] for _ in ids]
    with inference(model):
        lp = score_token_ids(model, prompts, ids, batch_size, pad_id(tokenizer), "right", share_prompts=False)
    return -lp.numpy(), np.array([len(t) for t in ids], dtype=np.float64)
