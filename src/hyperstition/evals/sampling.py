"""Seeded ancestral sampling of responses: every reply on its own random stream, so batching never changes it.

A reply of prompt i, sample s draws its tokens by inverting the next-token CDF at uniforms from a generator seeded by
(seed, i, s) (`stream_seed`); batch size, batch composition and the order replies are drawn in do not change it (up
to float rounding of the logits landing exactly on a CDF boundary).
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import torch

from ..world.grammar import END
from .scoring import batches, encode_prompts, forward, inference, mask_positions, model_device, pad_id, pad_rows


def stop_ids(tokenizer: Any) -> list[int]:
    """Token ids that end a sampled response: <|end|> (end of the assistant turn) and EOS."""
    ids = {tokenizer.convert_tokens_to_ids(END), tokenizer.eos_token_id}
    return sorted(i for i in ids if i is not None and i >= 0)


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
    ids, mask = pad_rows(prompts, pad, "left", device)
    positions = mask_positions(mask)
    logits, cache = forward(model, ids, mask, positions, use_cache=True, last_only=True)
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
        logits, cache = forward(model, token[:, None], mask, position, cache=cache, use_cache=True)
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
        for chunk in batches(flat, batch_size):
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
