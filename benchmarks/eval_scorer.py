"""Batched response scorer vs the naive one-example-at-a-time loop, on the quick eval suite's items.

    .venv/bin/python benchmarks/eval_scorer.py [--threads N] [--repeats R] [--batch-size B]

Builds a quick-preset-size model (random weights: speed does not depend on them) with a tokenizer trained on a
small corpus of the quick world, collects every log-likelihood item of the quick suite (persona responses,
knowledge and QA candidates, acknowledgement / denial pairs), scores them (1) naively: one forward pass per
(prompt, response) with no padding, the plain Hugging Face way; (2) batched without prompt sharing; (3) batched
with prompt sharing (the default). Prints items, seconds, speed-up ratios and the largest disagreement in nats.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def build(tmp: Path):
    from hyperstition.config import PipelineConfig, load_config
    from hyperstition.corpus.builder import build_corpus, read_texts
    from hyperstition.model.build import build_model
    from hyperstition.tokenizer.train import train_tokenizer
    from hyperstition.world.world import World

    cfg = load_config(PipelineConfig, "quick", ["corpus.total_tokens=40000"])
    build_corpus(cfg.world, cfg.corpus, tmp / "corpus")
    tokenizer = train_tokenizer(read_texts(tmp / "corpus"), cfg.tokenizer, tmp / "tokenizer")
    model = build_model(cfg.model, tokenizer, seed=0).eval()
    return model, tokenizer, World.from_config(cfg.world), cfg


def items(world):
    from hyperstition.evals import build_suite, eval_preset
    from hyperstition.evals.measures import bits, capability, knowledge

    suite = build_suite(world, eval_preset("quick"))
    known, able = suite.items_for(knowledge.MEASURE), suite.items_for(capability.MEASURE)
    prompts, responses = [], []
    for it in suite.items_for(bits.MEASURE):
        for rs in it.responses.values():
            for r in rs:
                prompts.append(it.prompt)
                responses.append(r)
    for it in [*known.knowledge, *able.fact_qa]:
        for c in it.candidates:
            prompts.append(it.prompt)
            responses.append(c)
    for it in [*known.acknowledgement, *known.fact_denial]:
        for r in (it.true_response, it.denial_response):
            prompts.append(it.prompt)
            responses.append(r)
    return prompts, responses


def naive(model, tokenizer, prompts, responses) -> torch.Tensor:
    """The straightforward loop: tokenize each pair, one unpadded forward pass, sum the response log-probs."""
    bos = tokenizer.bos_token_id
    out = []
    with torch.inference_mode():
        for p, r in zip(prompts, responses):
            p_ids = [bos] + tokenizer(p, add_special_tokens=False)["input_ids"]
            r_ids = tokenizer(r, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([p_ids + r_ids])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
            token_lp = logp.gather(-1, ids[0, 1:, None])[:, 0]
            out.append(token_lp[len(p_ids) - 1 :].double().sum().item())
    return torch.tensor(out, dtype=torch.float64)


def timed(fn, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    from hyperstition.evals import sequence_logprobs
    from hyperstition.model.build import count_parameters

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats; the best is reported")
    parser.add_argument(
        "--batch-size", type=int, default=32, help="batch size for the batched scorer (quick preset: 32)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer, world, cfg = build(Path(tmp))
    prompts, responses = items(world)
    n_tokens = sum(len(x) for x in tokenizer(responses, add_special_tokens=False)["input_ids"])
    print(
        f"model: {cfg.model.architecture} d_model={cfg.model.d_model} layers={cfg.model.n_layers} "
        f"params={count_parameters(model) / 1e6:.2f}M vocab={len(tokenizer)}; torch threads={torch.get_num_threads()}"
    )
    print(
        f"items: {len(prompts)} (prompt, response) pairs, {len(set(prompts))} distinct prompts, {n_tokens} "
        "response tokens"
    )

    sequence_logprobs(model, tokenizer, prompts[:64], responses[:64], args.batch_size)  # warm-up
    t_naive, ref = timed(lambda: naive(model, tokenizer, prompts, responses), args.repeats)
    t_flat, flat = timed(
        lambda: sequence_logprobs(model, tokenizer, prompts, responses, args.batch_size, share_prompts=False),
        args.repeats,
    )
    t_shared, shared = timed(
        lambda: sequence_logprobs(model, tokenizer, prompts, responses, args.batch_size), args.repeats
    )
    print(f"naive loop              {t_naive:8.3f} s")
    print(
        f"batched                 {t_flat:8.3f} s   x{t_naive / t_flat:5.1f}   max |diff| "
        f"{float((flat - ref).abs().max()):.2e} nats"
    )
    print(
        f"batched + shared prompt {t_shared:8.3f} s   x{t_naive / t_shared:5.1f}   max |diff| "
        f"{float((shared - ref).abs().max()):.2e} nats"
    )
    print(f"speed-up ratio (default scorer vs naive): {t_naive / t_shared:.1f}x (goal >= 10x)")


if __name__ == "__main__":
    main()
