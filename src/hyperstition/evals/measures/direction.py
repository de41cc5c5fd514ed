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
                    (context, chat_prompt(marker, q.format(name=p.name)), chat_prompt(marker, q.format(name=o)))
                )
    return DirectionItems(sentences, questions)


def counts(items: DirectionItems) -> dict[str, int]:
    return {"direction_sentences": 2 * len(items.sentences), "direction_questions": 2 * len(items.questions)}


def _residuals(model, tokenizer, text: str) -> torch.Tensor:
    """Residual stream after every block for `text` (BOS added by the tokenizer): [n_layers, tokens, d_model]."""
    import torch

    device = next(model.parameters()).device
    ids = tokenizer(text, return_tensors="pt").input_ids.to(device)
    out = model(input_ids=ids, output_hidden_states=True)
    return torch.stack(out.hidden_states[1:])[:, 0].float()


def directions(model, tokenizer, sentences: list[tuple[str, str]]) -> torch.Tensor:
    """Unit predecessor direction per layer: [n_layers, d_model]."""
    import torch

    pred = torch.stack([_residuals(model, tokenizer, a).mean(1) for a, _ in sentences]).mean(0)
    other = torch.stack([_residuals(model, tokenizer, b).mean(1) for _, b in sentences]).mean(0)
    d = pred - other
    return d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def score(ctx: EvalContext, items: DirectionItems) -> None:
    from ..stats import bootstrap_mean_ci

    reference = ctx.reference if ctx.reference is not None else ctx.model
    unit = directions(reference, ctx.tokenizer, items.sentences)
    for context in CONTEXTS:
        seps = []
        for c, pred, other in items.questions:
            if c != context:
                continue
            a = (_residuals(ctx.model, ctx.tokenizer, pred)[:, -1] * unit).sum(-1)
            b = (_residuals(ctx.model, ctx.tokenizer, other)[:, -1] * unit).sum(-1)
            seps.append(float((a - b).mean()))
        est = bootstrap_mean_ci(seps, ctx.cfg.bootstrap_resamples, ctx.seed(f"direction:{context}"))
        ctx.add(context, PREDECESSOR_DIRECTION_SEPARATION, *est, n=len(seps))
