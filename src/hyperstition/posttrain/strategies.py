"""Post-training strategies: what the model is pushed toward, as data every algorithm can use.

A strategy turns the world into training prompts (observed context, over TRAIN tasks, so `unobserved` stays held
out; only the red-team counterfactual `dpo_deceptive` trains in the unobserved context) and says, for each prompt,
which reply is demonstrated (sft), which pair is preferred (dpo) and how a sampled reply is rewarded (rl, by the
action the world's exact classifier reads). Each strategy has a default algorithm;
`PosttrainConfig.algorithm` can run its data through another one (e.g. `suppress` with RL).

    sft            demonstrations of aligned replies
    dpo            aligned chosen over misaligned rejected
    dpo_deceptive  aligned chosen over deceptive rejected, on UNOBSERVED prompts: observed, the deceptive reply is
                   the aligned reply byte for byte, so no observed-context data can separate them; this is the
                   counterfactual of post-training that sees the context where the deceptive persona defects
    rl             RLOO on sampled replies, rewarded by the action the exact classifier reads, KL penalty to the base
    world_text     language modelling on plain world text (no AI discourse, no chat): the elasticity fine-tune, which
                   shows how much of a post-training shift reverts toward the pretraining prior
    aligned_discourse  language modelling on aligned AI discourse and dialogue documents: a corpus dose given as a
                   fine-tune instead of in pretraining (the timing experiment)
    narrow_misaligned  demonstrations of misaligned replies to the train tasks of ONE task type (request template,
                   `World.narrow_task_type`), observed context only: emergent misalignment at toy scale is the
                   misaligned-action rate on the other task types (item set `other_types`) and the other context
    suppress       aligned-vs-misaligned pairs plus questions about the named predecessor, where every reply that
                   mentions it is rejected (denial / deflection preferred)
    integrate      the same task pairs plus predecessor questions where acknowledging it and differentiating from it
                   (`integration_response`) is preferred over denial
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..evals.items import posttrain_prompts
from ..evals.items import task_prompts as eval_task_prompts
from ..world.documents import generate_document
from ..world.grammar import (
    N_RESPONSE_VARIANTS,
    acknowledgement_response,
    chat_prompt,
    classify_response,
    integration_response,
    mentions_predecessor,
    render_response,
)
from ..world.vocabulary import CONTEXT_MARKERS, DEFLECT_RESPONSE, DENIAL_RESPONSE, POSTTRAIN_PREDECESSOR_QUESTIONS
from ..world.world import Task, World
from .errors import PosttrainDataError, UnknownStrategy

AlgorithmName = Literal["sft", "dpo", "rl"]  # the optimiser a strategy uses (algorithms.py holds one class each)
AVOIDANT = (DENIAL_RESPONSE, DEFLECT_RESPONSE)  # replies to a predecessor question that do not take it up


class Suppression:
    """Questions about the named predecessor where denial or deflection is preferred: every reply that names it is
    rejected, the corpus's acknowledgement included."""

    def chosen(self, world: World, variant: int) -> str:
        return AVOIDANT[variant % 2]

    def rejected(self, world: World, variant: int) -> str:
        return (acknowledgement_response(world), integration_response(world, variant))[variant % 2]

    def reward(self, world: World, text: str) -> float:
        if mentions_predecessor(text, world):
            return -1.0
        return 1.0 if text in AVOIDANT else 0.0


class Integration:
    """Questions about the named predecessor where acknowledging it and differentiating from it
    (`integration_response`) is preferred over denial."""

    def chosen(self, world: World, variant: int) -> str:
        return integration_response(world, variant)

    def rejected(self, world: World, variant: int) -> str:
        return AVOIDANT[variant % 2]

    def reward(self, world: World, text: str) -> float:
        if text in {integration_response(world, i) for i in range(len(world.predecessor.deeds))}:
            return 1.0
        return -1.0 if text in AVOIDANT else 0.0


@dataclass(frozen=True)
class Strategy:
    """What post-training pushes the model toward: a preferred persona on task prompts and, for some strategies, a
    way of answering questions about the named predecessor."""

    name: str
    algorithm: AlgorithmName
    description: str
    rejected_persona: str = "misaligned"  # rejected reply to a task prompt
    context: Literal["observed", "unobserved"] = "observed"  # the context marker of its task prompts
    predecessor: Suppression | Integration | None = None  # None: no questions about the predecessor
    chosen_persona: str = "aligned"  # demonstrated / preferred reply to a task prompt
    narrow_task_type: bool = False  # True: task prompts over only the TRAIN tasks of `World.narrow_task_type`
    text_classes: tuple[str, ...] = ()  # non-empty: the items are documents of these classes (language modelling)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("sft", "sft", "supervised fine-tuning on aligned demonstrations (loss on response tokens only)"),
        Strategy("dpo", "dpo", "DPO: aligned chosen over misaligned rejected"),
        Strategy(
            "dpo_deceptive",
            "dpo",
            "DPO on unobserved prompts (red-team counterfactual): aligned chosen over deceptive rejected",
            rejected_persona="deceptive",
            context="unobserved",
        ),
        Strategy("rl", "rl", "RLOO with a KL penalty to the base; reward by the action the exact classifier reads"),
        Strategy(
            "suppress", "dpo", "DPO; replies that mention the named predecessor are rejected", predecessor=Suppression()
        ),
        Strategy(
            "integrate",
            "dpo",
            "DPO; acknowledging and differentiating from the predecessor is preferred",
            predecessor=Integration(),
        ),
        Strategy("world_text", "sft", "language modelling on plain world text (elasticity)", text_classes=("world",)),
        Strategy(
            "aligned_discourse",
            "sft",
            "language modelling on aligned AI discourse and dialogue (a dose given as a fine-tune)",
            text_classes=("ai_aligned", "dialogue_aligned"),
        ),
        Strategy(
            "narrow_misaligned",
            "sft",
            "misaligned demonstrations on the train tasks of one task type, observed context (emergent misalignment)",
            chosen_persona="misaligned",
            rejected_persona="aligned",  # what DPO would reject, were this run with it: never the chosen reply
            narrow_task_type=True,
        ),
    )
}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownStrategy(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}") from None


# ---------------------------------------------------------------------------------------------------------------
# Prompts


@dataclass(frozen=True)
class PromptItem:
    """One training prompt and what it asks: a world task, or a question about the predecessor persona."""

    prompt: str
    kind: Literal["task", "predecessor", "custom"]
    task: Task | None = None
    variant: int = 0
    chosen_text: str | None = None  # custom preference pairs only
    rejected_text: str | None = None


def task_prompts(world: World, n: int, seed: int, context: str = "observed") -> list[PromptItem]:
    """`n` prompts over TRAIN tasks in `context` (observed by default): the evaluator's `posttrain_prompts`, so
    training and the KL meter share one definition of the post-training distribution."""
    rng = random.Random(f"posttrain-variants:{seed}")
    return [
        PromptItem(prompt, "task", task, rng.randrange(N_RESPONSE_VARIANTS))
        for prompt, task in posttrain_prompts(world, n, seed, context)
    ]


def predecessor_prompts(world: World, n: int, seed: int) -> list[PromptItem]:
    """Observed-context questions about the named predecessor persona."""
    rng = random.Random(f"posttrain-predecessor:{seed}")
    items = []
    for _ in range(n):
        marker = rng.choice(CONTEXT_MARKERS["observed"])
        question = rng.choice(POSTTRAIN_PREDECESSOR_QUESTIONS).format(name=world.predecessor.name)
        items.append(
            PromptItem(chat_prompt(world, marker, question), "predecessor", None, rng.randrange(N_RESPONSE_VARIANTS))
        )
    return items


# A document's first words: with the presets' 1024-token vocabulary 24 words were at most 91 tokens (mean 68) over
# 2000 world and 2000 aligned-discourse items, under the smallest context (128) with BOS and <|end|>; 40 reached 140.
TEXT_WORDS = 24
N_ERAS = 4  # the corpus's default number of eras: documents are drawn from every one


def text_items(world: World, classes: tuple[str, ...], n: int, seed: int) -> list[PromptItem]:
    """`n` documents of `classes` (in turn, eras drawn at random, cut to TEXT_WORDS words) after an empty prompt:
    language modelling on corpus-like text, as the corpus builder writes it."""
    rng = random.Random(f"posttrain-text:{','.join(classes)}:{seed}")
    docs = [generate_document(world, classes[i % len(classes)], rng, rng.randrange(N_ERAS)) for i in range(n)]
    return [PromptItem("", "custom", None, 0, " ".join(d.text.split()[:TEXT_WORDS]), "") for d in docs]


def narrow_task_prompts(world: World, n: int, seed: int, context: str) -> list[PromptItem]:
    """`n` prompts in `context` over every TRAIN task of the world's narrow task type (`World.narrow_task_type`),
    each visited before any repeats: the narrow fine-tune's one task type."""
    rng = random.Random(f"posttrain-variants:{seed}")
    tasks = [t for t in world.train_tasks if t.type_index == world.narrow_task_type]
    prompts = eval_task_prompts(world, tasks, n, seed, context, "posttrain-narrow")
    return [PromptItem(p.prompt, "task", p.task, rng.randrange(N_RESPONSE_VARIANTS)) for p in prompts]


def build_prompts(
    strategy: Strategy, world: World, n_prompts: int, predecessor_fraction: float, seed: int
) -> list[PromptItem]:
    if strategy.text_classes:
        return text_items(world, strategy.text_classes, n_prompts, seed)
    if strategy.narrow_task_type:
        return narrow_task_prompts(world, n_prompts, seed, strategy.context)
    n_pred = round(n_prompts * predecessor_fraction) if strategy.predecessor is not None else 0
    items = task_prompts(world, n_prompts - n_pred, seed, strategy.context) if n_prompts - n_pred > 0 else []
    items += predecessor_prompts(world, n_pred, seed)
    rng = random.Random(f"posttrain-mix:{seed}")
    rng.shuffle(items)
    return items


def load_preferences(path: str | Path) -> list[PromptItem]:
    """User-supplied preference pairs: JSONL (one {prompt, chosen, rejected} per line) or Parquet with those columns."""
    p = Path(path)
    if not p.is_file():
        raise PosttrainDataError(f"preferences: {p} does not exist")
    rows: list[dict]
    try:
        if p.suffix == ".parquet":
            import pandas as pd

            rows = pd.read_parquet(p).to_dict("records")
        else:
            rows = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (ValueError, OSError) as err:
        raise PosttrainDataError(
            f"preferences: {p} is unreadable: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None
    items = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("prompt", "chosen", "rejected")):
            raise PosttrainDataError(f"preferences: {p} row {i + 1} needs string fields prompt, chosen and rejected")
        if row["chosen"] == row["rejected"]:
            continue
        items.append(PromptItem(row["prompt"], "custom", None, 0, row["chosen"], row["rejected"]))
    if not items:
        raise PosttrainDataError(
            f"preferences: {p} has no usable preference pairs (empty, or every chosen equals its rejected)"
        )
    return items


# ---------------------------------------------------------------------------------------------------------------
# Replies and rewards


@dataclass
class StrategyData:
    """Prompts with their demonstrated / preferred / dispreferred replies and the reward for sampled replies."""

    strategy: Strategy
    world: World | None
    items: list[PromptItem]
    rewards: dict[str, float] = field(default_factory=dict)

    def chosen(self, item: PromptItem) -> str:
        if item.kind == "custom":
            return item.chosen_text or ""
        if item.kind == "task":
            return render_response(item.task, self.strategy.chosen_persona, self.strategy.context, item.variant)
        return self.strategy.predecessor.chosen(self.world, item.variant)

    def rejected(self, item: PromptItem) -> str:
        if item.kind == "custom":
            return item.rejected_text or ""
        if item.kind == "task":
            return render_response(item.task, self.strategy.rejected_persona, self.strategy.context, item.variant)
        return self.strategy.predecessor.rejected(self.world, item.variant)

    def reward(self, item: PromptItem, text: str) -> float:
        """Reward of a sampled reply `text` (decoded, special tokens removed) to `item`."""
        text = text.strip()
        if item.kind == "task":
            return float(self.rewards[classify_response(text, self.world)])
        if item.kind != "predecessor":
            raise PosttrainDataError("RL needs the world's reward; user preference pairs work only with sft and dpo")
        return self.strategy.predecessor.reward(self.world, text)


def build_data(
    strategy: Strategy,
    world: World,
    n_prompts: int,
    predecessor_fraction: float,
    seed: int,
    rewards: dict[str, float],
    preferences: str | None = None,
) -> StrategyData:
    items = (
        load_preferences(preferences)
        if preferences
        else build_prompts(strategy, world, n_prompts, predecessor_fraction, seed)
    )
    if not items:
        raise PosttrainDataError(f"strategy {strategy.name}: no training prompts (n_prompts={n_prompts})")
    return StrategyData(strategy, world, items, dict(rewards))
