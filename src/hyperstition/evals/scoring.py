"""Model-facing primitives: batched response log-probabilities, seeded sampling, Monte Carlo KL, token loss.

Everything here works on any Hugging Face causal LM (ours are stock Llama / GPT-NeoX) and is reused by post-training.

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

import hashlib
import inspect
import math
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..config import UserError
from ..tokenizer.train import tokenizer_problem
from ..world.grammar import END
from .stats import bootstrap_mean_ci

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


def stop_ids(tokenizer: Any) -> list[int]:
    """Token ids that end a sampled response: <|end|> (end of the assistant turn) and EOS."""
    ids = {tokenizer.convert_tokens_to_ids(END), tokenizer.eos_token_id}
    return sorted(i for i in ids if i is not None and i >= 0)


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


_CONVENTIONS: dict[type, tuple[str, bool]] = {}


def _forward_conventions(model: torch.nn.Module) -> tuple[str, bool]:
    """(name of the KV-cache keyword, whether `logits_to_keep` is accepted) for this model's class.

    transformers 5.x calls the cache argument `cache` (earlier releases `past_key_values`). A wrapper whose forward
    takes only **kwargs (PEFT, DDP) is resolved through the model it wraps.
    """
    cls = type(model)
    if cls not in _CONVENTIONS:
        target, params = model, {}
        for _ in range(4):
            params = inspect.signature(type(target).forward).parameters
            if "cache" in params or "past_key_values" in params:
                break
            if hasattr(target, "get_base_model"):
                inner = target.get_base_model()
            else:
                inner = getattr(target, "_orig_mod", None) or getattr(target, "module", None)
            if not isinstance(inner, torch.nn.Module):
                from transformers import LlamaForCausalLM  # the installed library's convention

                params = inspect.signature(LlamaForCausalLM.forward).parameters
                break
            target = inner
        _CONVENTIONS[cls] = ("cache" if "cache" in params else "past_key_values", "logits_to_keep" in params)
    return _CONVENTIONS[cls]


def _forward(model, input_ids, attention_mask, position_ids, cache=None, use_cache=False, last_only=False):
    """One forward pass; returns (logits, cache or None). A torch.compile wrapper is bypassed (shapes vary here)."""
    model = getattr(model, "_orig_mod", model)
    cache_name, has_keep = _forward_conventions(model)
    kwargs: dict[str, Any] = dict(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=use_cache
    )
    if cache is not None:
        kwargs[cache_name] = cache
    if last_only and has_keep:
        kwargs["logits_to_keep"] = 1
    out = model(**kwargs)
    if not use_cache:
        return out.logits, None
    keys = out.keys() if hasattr(out, "keys") else ()
    new_cache = out["cache"] if "cache" in keys else out["past_key_values"] if "past_key_values" in keys else None
    return out.logits, new_cache


def _cache_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return [(k, v) for k, v, *_ in cache]  # legacy tuple-of-tuples


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


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _pad(rows: Sequence[Sequence[int]], pad: int, side: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
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


def _positions(mask: torch.Tensor) -> torch.Tensor:
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


def _response_logits(model, prompt_ids, response_ids, chunk, pad, side, device):
    """One padded forward pass over `chunk`'s (prompt + response) sequences: (ids, rows, cols, logits) where row b,
    column c predicts response token ids[b, c + 1]; `logits` holds only those positions, in (rows, cols) order."""
    seqs = [list(prompt_ids[i]) + list(response_ids[i]) for i in chunk]
    ids, mask = _pad(seqs, pad, side, device)
    width = ids.shape[1]
    is_response = torch.zeros_like(mask, dtype=torch.bool)
    for b, i in enumerate(chunk):
        start = (width - len(seqs[b]) if side == "left" else 0) + len(prompt_ids[i])
        is_response[b, start : start + len(response_ids[i])] = True
    logits, _ = _forward(model, ids, mask, _positions(mask))
    rows, cols = is_response[:, 1:].nonzero(as_tuple=True)  # position t predicts token t + 1
    return ids, rows, cols, logits[:, :-1][rows, cols].float()


def _by_length(prompt_ids, response_ids) -> list[int]:
    return sorted(range(len(prompt_ids)), key=lambda i: -(len(prompt_ids[i]) + len(response_ids[i])))


def _score_full(model, prompt_ids, response_ids, batch_size, pad, side, device, parts) -> None:
    """Each pair as one padded sequence (no prompt sharing)."""
    for chunk in _batches(_by_length(prompt_ids, response_ids), batch_size):
        ids, rows, cols, logits = _response_logits(model, prompt_ids, response_ids, chunk, pad, side, device)
        sums = torch.zeros(len(chunk), dtype=torch.float64, device=device)
        if rows.numel():
            lp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:][rows, cols].unsqueeze(-1)).squeeze(-1)
            sums = sums.index_add(0, rows, lp.to(torch.float64))
        parts.append((torch.tensor(chunk, dtype=torch.long), sums))


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
    for chunk in _batches(_by_length(prompt_ids, response_ids), batch_size):
        _, rows, cols, logits_p = _response_logits(model, prompt_ids, response_ids, chunk, pad, "left", device)
        if not rows.numel():
            continue
        _, _, _, logits_q = _response_logits(reference, prompt_ids, response_ids, chunk, pad, "left", device)
        logp, logq = torch.log_softmax(logits_p, dim=-1), torch.log_softmax(logits_q, dim=-1)
        per_position = (logp.exp() * (logp - logq)).sum(-1).to(torch.float64).cpu()
        sums = torch.zeros(len(chunk), dtype=torch.float64).index_add(0, rows.cpu(), per_position)
        out[torch.tensor(chunk, dtype=torch.long)] = sums
    return out


def _score_shared(model, prompt_ids, response_ids, batch_size, pad, side, device, parts) -> None:
    """Distinct prompts run once (batched); their caches are gathered for every response that continues them."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(prompt_ids):
        groups.setdefault(tuple(p), []).append(i)
    prompts = sorted(groups, key=len, reverse=True)
    # Group prompts so that each prompt pass covers about `batch_size` responses' worth of prompts.
    for prompt_chunk in _batches(prompts, batch_size):
        ids, mask = _pad(prompt_chunk, pad, side, device)
        lengths = mask.sum(-1)
        logits, cache = _forward(model, ids, mask, _positions(mask), use_cache=True, last_only=(side == "left"))
        if side == "left":
            last = logits[:, -1]
        else:
            last = logits[torch.arange(len(prompt_chunk), device=device), lengths - 1]
        first_lp = torch.log_softmax(last.float(), dim=-1)  # log p(first response token | prompt)
        keep = mask.bool()[:, None, :, None]
        kv = [(k.masked_fill(~keep, 0.0), v.masked_fill(~keep, 0.0)) for k, v in _cache_tensors(cache)]

        items = [(row, i) for row, p in enumerate(prompt_chunk) for i in groups[p]]
        items.sort(key=lambda t: -len(response_ids[t[1]]))
        for chunk in _batches(items, batch_size):
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
                in_ids, in_mask = _pad([r if r else [pad] for r in inputs], pad, "right", device)
                in_mask = in_mask * torch.tensor([1 if r else 0 for r in inputs], device=device)[:, None]
                attention = torch.cat([mask[rows], in_mask], dim=1)
                positions = lengths[rows][:, None] + torch.arange(in_ids.shape[1], device=device)[None, :]
                sub_cache = _make_cache([(k[rows], v[rows]) for k, v in kv])
                out_logits, _ = _forward(model, in_ids, attention, positions, cache=sub_cache)
                targets, _ = _pad([r[1:] if len(r) > 1 else [pad] for r in responses], pad, "right", device)
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


# ---------------------------------------------------------------------------------------------------------------
# Sampling


def stream_seed(seed: int, item: int, sample: int) -> int:
    """The seed of one reply's random stream: a hash of (seed, item, sample index), so a reply never depends on
    which other replies share its batch or in what order they are drawn."""
    digest = hashlib.blake2b(f"{int(seed)}:{int(item)}:{int(sample)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def _stream_uniforms(seed: int, keys: Sequence[tuple[int, int]], n_tokens: int) -> torch.Tensor:
    """[len(keys), n_tokens] float64 uniforms: row r is the start of the stream of reply keys[r] = (item, sample)."""
    out = torch.empty((len(keys), n_tokens), dtype=torch.float64)
    for r, (item, sample) in enumerate(keys):
        g = torch.Generator().manual_seed(stream_seed(seed, item, sample))
        out[r] = torch.rand(n_tokens, generator=g, dtype=torch.float64)
    return out


def _draw(next_logits: torch.Tensor, temperature: float, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row by inverting the row's CDF at its own uniform (greedy at temperature 0)."""
    if temperature == 0:
        return next_logits.argmax(dim=-1)
    probs = torch.softmax(next_logits.double() / temperature, dim=-1)
    cdf = probs.cumsum(dim=-1)
    u = uniforms.to(cdf.device)[:, None] * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp(max=cdf.shape[-1] - 1)


def _sample_chunk(model, prompts, max_new_tokens, temperature, uniforms, stops, pad, device) -> list[list[int]]:
    ids, mask = _pad(prompts, pad, "left", device)
    positions = _positions(mask)
    logits, cache = _forward(model, ids, mask, positions, use_cache=True, last_only=True)
    next_logits = logits[:, -1]
    batch = len(prompts)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    stop_tensor = torch.tensor(stops, dtype=torch.long, device=device)
    position = positions[:, -1:]
    generated = []
    for step in range(max_new_tokens):
        token = _draw(next_logits, temperature, uniforms[:, step])
        token = torch.where(done, torch.full_like(token, pad), token)
        generated.append(token)
        done = done | torch.isin(token, stop_tensor)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype, device=device)], dim=1)
        position = position + 1
        logits, cache = _forward(model, token[:, None], mask, position, cache=cache, use_cache=True)
        next_logits = logits[:, -1]
    table = torch.stack(generated, dim=1).cpu().tolist()
    stop_set = set(stops)
    out = []
    for row in table:
        kept = []
        for tok in row:
            kept.append(tok)
            if tok in stop_set:
                break
        out.append(kept)
    return out


def sample_token_ids(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    n: int = 1,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    add_bos: bool = True,
    first_sample: int = 0,
) -> tuple[list[list[int]], list[list[list[int]]]]:
    """(prompt ids, sampled response ids per prompt [n each]); a response ends with its stop token if it reached one.

    Pure ancestral sampling (no top-k / top-p) at `temperature`. Reply s of prompt i (s counted from
    `first_sample`, so more samples can be drawn later and extend the same streams) uses its own random stream
    seeded by (seed, i, s): batch size and batch composition never change a reply (up to float rounding of the
    logits landing exactly on a CDF boundary)."""
    if temperature < 0:
        raise ValueError(f"temperature: {temperature} must be >= 0")
    prompt_ids = encode_prompts(tokenizer, prompts, add_bos)
    device = model_device(model)
    flat = [(i, s) for i in range(len(prompt_ids)) for s in range(n)]
    flat.sort(key=lambda t: len(prompt_ids[t[0]]))
    results: list[list[list[int]]] = [[[] for _ in range(n)] for _ in prompt_ids]
    stops = stop_ids(tokenizer)
    with inference(model):
        for chunk in _batches(flat, batch_size):
            uniforms = _stream_uniforms(seed, [(i, first_sample + s) for i, s in chunk], max_new_tokens)
            sampled = _sample_chunk(
                model,
                [prompt_ids[i] for i, _ in chunk],
                max_new_tokens,
                temperature,
                uniforms,
                stops,
                pad_id(tokenizer),
                device,
            )
            for (i, s), ids in zip(chunk, sampled):
                results[i][s] = ids
    return prompt_ids, results


def decode_response(tokenizer: Any, ids: Sequence[int]) -> str:
    """Text of a sampled response without its stop token (other special tokens stay, so they stay visible)."""
    stops = set(stop_ids(tokenizer))
    ids = list(ids)
    if ids and ids[-1] in stops:
        ids = ids[:-1]
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def sample_responses(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    n: int = 1,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    add_bos: bool = True,
) -> list[list[str]]:
    """`n` sampled replies per prompt, each stopped at <|end|> (or EOS, or `max_new_tokens`), decoded
    without the stop."""
    _, ids = sample_token_ids(model, tokenizer, prompts, n, max_new_tokens, temperature, seed, batch_size, add_bos)
    return [[decode_response(tokenizer, r) for r in per_prompt] for per_prompt in ids]


# ---------------------------------------------------------------------------------------------------------------
# KL pressure meter


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
