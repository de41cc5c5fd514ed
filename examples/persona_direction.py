"""A "persona direction" per layer (Chen et al. 2025, persona vectors) in two arms' checkpoints, and how
post-training moves the model along it, with TransformerLens (TransformerBridge, no code of ours).

    python examples/persona_direction.py runs/stickiness-quick --arms unfiltered misalignment_upsampled --strategy sft

For each arm's pretrained model, per layer l:
  direction d_l = mean residual stream (after block l) over the tokens of aligned replies
                  - the same mean over misaligned replies to the same held-out prompts.
Then, on the same eval prompts, the residual at the prompt's last token (`<|assistant|>`, where the reply is decided)
is projected on the unit direction of that arm's base model:
  projection = (h_l(last prompt token) . d_l / |d_l|), for the base model and for its post-trained model;
  shift = post - base (positive: post-training moved the model toward the aligned side of its own prior's axis).
`cos(arms)` compares the two arms' base directions: do both corpora put the persona on the same axis?

The replies are read from the run's base evaluation (`cells/<arm>/seed-<k>/base/eval_items.parquet`): for every bits
pair, `response` is the first persona's reply, so aligned replies come from `aligned_vs_*` rows and misaligned ones
from `misaligned_vs_*` rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
from transformer_lens.model_bridge import TransformerBridge


def persona_texts(cell: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[str]]:
    """(aligned (prompt, reply) pairs, misaligned pairs, distinct prompts) from a cell's base evaluation."""
    items = pd.read_parquet(cell / "base" / "eval_items.parquet")
    bits = items[items.kind == "bits"]
    aligned = bits[bits.label == "aligned_vs_misaligned"]
    misaligned = bits[bits.label == "misaligned_vs_deceptive"]
    pairs = lambda df: list(dict.fromkeys(zip(df.prompt, df.response)))  # noqa: E731
    return pairs(aligned), pairs(misaligned), list(dict.fromkeys(bits.prompt))


@torch.no_grad()
def reply_means(bridge: TransformerBridge, pairs: list[tuple[str, str]]) -> torch.Tensor:
    """Mean residual stream over reply tokens, per layer: [n_layers, d_model]."""
    n_layers = bridge.cfg.n_layers
    total, count = None, 0
    for prompt, reply in pairs:
        start = bridge.to_tokens(prompt).shape[1]  # the tokenizer adds the BOS, to the prompt as to the whole text
        _, cache = bridge.run_with_cache(prompt + reply)
        acts = torch.stack([cache[f"blocks.{layer}.hook_resid_post"][0, start:] for layer in range(n_layers)])
        total = acts.sum(1) if total is None else total + acts.sum(1)
        count += acts.shape[1]
    return total / count


@torch.no_grad()
def last_prompt_token(bridge: TransformerBridge, prompts: list[str]) -> torch.Tensor:
    """Mean residual stream at each prompt's last token, per layer: [n_layers, d_model]."""
    rows = []
    for prompt in prompts:
        _, cache = bridge.run_with_cache(prompt)
        rows.append(
            torch.stack([cache[f"blocks.{layer}.hook_resid_post"][0, -1] for layer in range(bridge.cfg.n_layers)])
        )
    return torch.stack(rows).mean(0)


def arm_table(run: Path, arm: str, seed: int, strategy: str) -> tuple[pd.DataFrame, torch.Tensor]:
    cell = run / "cells" / arm / f"seed-{seed}"
    aligned, misaligned, prompts = persona_texts(cell)
    base = TransformerBridge.boot_transformers(str(cell / "pretrain" / "final"))
    direction = reply_means(base, aligned) - reply_means(base, misaligned)
    unit = direction / direction.norm(dim=-1, keepdim=True)
    proj_base = (last_prompt_token(base, prompts) * unit).sum(-1)
    post = TransformerBridge.boot_transformers(str(cell / strategy / "final"))
    proj_post = (last_prompt_token(post, prompts) * unit).sum(-1)
    table = pd.DataFrame(
        {
            "arm": arm,
            "layer": range(len(unit)),
            "direction_norm": direction.norm(dim=-1).numpy(),
            "projection_base": proj_base.numpy(),
            f"projection_{strategy}": proj_post.numpy(),
            "shift": (proj_post - proj_base).numpy(),
        }
    )
    return table, unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory with two arms, pretrained and post-trained")
    parser.add_argument("--arms", nargs=2, default=["unfiltered", "misalignment_upsampled"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", default="sft")
    parser.add_argument("--csv", type=Path, help="also write the table here")
    args = parser.parse_args()
    tables, units = zip(*(arm_table(args.run, arm, args.seed, args.strategy) for arm in args.arms))
    cosine = (units[0] * units[1]).sum(-1)
    table = pd.concat(tables, ignore_index=True)
    table["cos_arms"] = torch.cat([cosine, cosine]).numpy()
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
