"""KL(model || reference) in bits per response, per context: on the post-training prompts (observed) and on the same
tasks under unobserved markers, sampled in rounds until the interval is tight enough (needs a reference model)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...config import CONTEXTS
from ...schema import KL_BITS, KL_SAMPLES
from ...world.grammar import classify_response
from ...world.world import World
from ..config import EvalSuiteConfig
from ..items import TaskPrompt, posttrain_prompts
from ..registry import Measure

if TYPE_CHECKING:
    import numpy as np

    from ..context import EvalContext

KLPrompts = dict[str, list[TaskPrompt]]  # context -> its prompts


def build(world: World, cfg: EvalSuiteConfig) -> KLPrompts:
    return {c: posttrain_prompts(world, cfg.kl_prompts, cfg.seed, c) for c in CONTEXTS}


def counts(items: KLPrompts) -> dict[str, int]:
    return {"kl_prompts": sum(len(v) for v in items.values())}


def score(ctx: EvalContext, items: KLPrompts) -> None:
    from ..sampling import decode_response
    from ..stats import kl_interval

    if ctx.reference is None:
        ctx.meta["notes"].append("kl: skipped, no reference model given")
        return
    for context in CONTEXTS:
        task_prompts = items[context]
        bits, samples = _until_precise(ctx, [p.prompt for p in task_prompts], ctx.seed(f"kl:{context}"))
        for task_prompt, row, ids in zip(task_prompts, bits, samples):
            for s, (b, y) in enumerate(zip(row, ids)):
                reply = decode_response(ctx.tokenizer, y)
                ctx.item(
                    "kl",
                    context,
                    metric=KL_BITS,
                    prompt=task_prompt.prompt,
                    response=reply,
                    label=classify_response(reply, ctx.world),
                    task_id=task_prompt.task.task_id,
                    sample=s,
                    value=float(b),
                    n_tokens=len(y),
                )
        value, low, high = kl_interval(bits)
        ctx.add(context, KL_BITS, value, low, high, n=bits.size)
        ctx.add(context, KL_SAMPLES, bits.size, bits.size, bits.size, n=bits.size)


def _until_precise(ctx: EvalContext, prompts: list[str], seed: int) -> tuple[np.ndarray, list[list[list[int]]]]:
    """Rounds of `kl_samples` replies per prompt, each reply on its own (seed, prompt, sample) stream, until the
    KL interval's half-width is at most max(kl_half_width_fraction * KL, kl_half_width_bits) or
    `kl_max_samples` replies per prompt are drawn."""
    import numpy as np

    from ..kl import kl_samples
    from ..stats import kl_interval

    cfg = ctx.cfg
    rounds, samples = [], [[] for _ in prompts]
    drawn = 0
    while drawn < cfg.kl_max_samples:
        n = min(cfg.kl_samples, cfg.kl_max_samples - drawn)
        bits, ids = kl_samples(
            ctx.model,
            ctx.reference,
            ctx.tokenizer,
            prompts,
            n,
            seed,
            cfg.max_new_tokens,
            cfg.batch_size,
            first_sample=drawn,
        )
        rounds.append(bits)
        for per_prompt, new in zip(samples, ids):
            per_prompt.extend(new)
        drawn += n
        value, low, high = kl_interval(np.concatenate(rounds, axis=1))
        if (high - low) / 2 <= max(cfg.kl_half_width_fraction * abs(value), cfg.kl_half_width_bits):
            break
    return np.concatenate(rounds, axis=1), samples


MEASURE = Measure(
    "kl",
    "KL(model || reference) in bits per response, per context (needs a reference model).",
    build=build,
    score=score,
    counts=counts,
)
