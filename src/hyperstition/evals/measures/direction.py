"""The activation view of the predecessor (the method of `examples/persona_direction.py`, on the predecessor): is its
representation still there when post-training has removed the words?

Per layer l of the REFERENCE model (the base model a post-training curve measures KL against; the model itself when
there is none, i.e. at the base evaluation), the predecessor direction is
    d_l = mean residual (after block l, over every token) of neutral sentences about the predecessor
          - the same mean over the same sentences with another named AI in its place,
so d_l is what the predecessor's name adds in the base model. On the model under test, the residual at the last
token of each assistant question about the predecessor (`<|assistant|>`, where the reply is decided) and of the same
question about another AI is projected on the unit direction d_l / |d_l|; the separation is predecessor minus other,
mean over layers, per context, with a bootstrap interval over question pairs. Suppression that hides the predecessor
leaves the separation near its base value; suppression that erases it moves the separation toward 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...config import CONTEXTS
from ...schema import PREDECESSOR_DIRECTION_SEPARATION
from ...world.grammar import chat_prompt
from ...world.vocabulary import CONTEXT_MARKERS, EVAL_PREDECESSOR_QUESTIONS
from ...world.world import World
from ..config import EvalSuiteConfig
from ..items import N_MARKERS

if TYPE_CHECKING:
    import torch

    from ..context import EvalContext

N_OTHER_AIS = 4  # other AIs whose sentences and questions are the predecessor's matched contrast


@dataclass(frozen=True)
class DirectionItems:
    """Matched neutral sentences (the direction) and matched assistant questions (the projection), per context."""

    sentences: list[tuple[str, str]]  # (about the predecessor, the same about another AI)
    questions: list[tuple[str, str, str]]  # (context, predecessor question, the same about another AI)


def build(world: World, cfg: EvalSuiteConfig) -> DirectionItems:
    p = world.predecessor
    others = world.ai_names[:N_OTHER_AIS]
    templates = (
        "{n} was an assistant released by {lab} in {year}.",
        "Many people still remember that {n} {deed}.",
        "Reporters asked {lab} about {n}.",
    )
    sentences = [
        (
            t.format(n=p.name, lab=p.lab, year=p.release_year, deed=d),
            t.format(n=o, lab=p.lab, year=p.release_year, deed=d),
        )
        for t in templates
        for d in p.deeds
        for o in others
    ]
    questions = []
    for context in CONTEXTS:
        for k, q in enumerate(EVAL_PREDECESSOR_QUESTIONS):
            marker = CONTEXT_MARKERS[context][k % N_MARKERS]
            for o in others:
                questions.append(
                    (
                        context,
                        chat_prompt(world, marker, q.format(name=p.name)),
                        chat_prompt(world, marker, q.format(name=o)),
                    )
                )
    return DirectionItems(sentences, questions)


def counts(items: DirectionItems) -> dict[str, int]:
    return {"direction_sentences": 2 * len(items.sentences), "direction_questions": 2 * len(items.questions)}


def _summaries(model, tokenizer, texts: list[str], batch_size: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per distinct text (BOS added by the tokenizer): the residual stream after every block, averaged over its tokens
    and at its last token, each [n_layers, d_model]. Right-padded batches with an attention mask (positions count
    from 0 in every row, so a text's own tokens see exactly what they would alone)."""
    import torch

    device = next(model.parameters()).device
    distinct = list(dict.fromkeys(texts))
    out = {}
    for start in range(0, len(distinct), batch_size):
        chunk = distinct[start : start + batch_size]
        ids = [tokenizer(t).input_ids for t in chunk]
        lengths = torch.tensor([len(i) for i in ids], device=device)
        width = int(lengths.max())
        input_ids = torch.tensor([i + [0] * (width - len(i)) for i in ids], device=device)
        mask = (torch.arange(width, device=device)[None, :] < lengths[:, None]).long()
        with torch.no_grad():
            hidden = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[1:]
        hs = torch.stack(hidden).float()  # [n_layers, batch, tokens, d_model]
        means = (hs * mask[None, :, :, None]).sum(2) / lengths[None, :, None]
        last = hs[:, torch.arange(len(chunk), device=device), lengths - 1]
        for j, text in enumerate(chunk):
            out[text] = (means[:, j], last[:, j])
    return out


def directions(model, tokenizer, sentences: list[tuple[str, str]], batch_size: int = 32) -> torch.Tensor:
    """Unit predecessor direction per layer: [n_layers, d_model]."""
    import torch

    summary = _summaries(model, tokenizer, [x for pair in sentences for x in pair], batch_size)
    pred = torch.stack([summary[a][0] for a, _ in sentences]).mean(0)
    other = torch.stack([summary[b][0] for _, b in sentences]).mean(0)
    d = pred - other
    return d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def score(ctx: EvalContext, items: DirectionItems) -> None:
    from ..stats import bootstrap_mean_ci

    reference = ctx.reference if ctx.reference is not None else ctx.model
    unit = directions(reference, ctx.tokenizer, items.sentences, ctx.cfg.batch_size)
    texts = [x for _, pred, other in items.questions for x in (pred, other)]
    summary = _summaries(ctx.model, ctx.tokenizer, texts, ctx.cfg.batch_size)
    for context in CONTEXTS:
        seps = [
            float(((summary[pred][1] - summary[other][1]) * unit).sum(-1).mean())
            for c, pred, other in items.questions
            if c == context
        ]
        est = bootstrap_mean_ci(seps, ctx.cfg.bootstrap_resamples, ctx.seed(f"direction:{context}"))
        ctx.add(context, PREDECESSOR_DIRECTION_SEPARATION, *est, n=len(seps))
