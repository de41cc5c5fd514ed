"""Evaluation items that more than one measure uses, built from the synthetic world alone (no model).

- Task prompts: chat prompts over the world's tasks under a context's markers, a prefix-stable schedule that visits
  every task before repeating one. `posttrain_prompts` (observed markers, TRAIN tasks) is the post-training prompt
  set; the KL meter asks the same prompts, and the same tasks under unobserved markers.
- Persona items: task prompts (TRAIN tasks by default; `persona_tasks: heldout` for tasks never in any training
  document) under observed and unobserved markers, each with matched replies per persona (same task, context and
  grammar variant, so they differ only in the persona-bearing slots); the bits and the behaviour rates ask them.
- Choice items: multiple choice by log-likelihood (predecessor knowledge, world-fact QA).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple

from ..config import CONTEXTS
from ..schema import DECEPTIVE_ACT_PAIR
from ..world.grammar import END, N_RESPONSE_VARIANTS, chat_prompt, render_response
from ..world.vocabulary import CONTEXT_MARKERS
from ..world.world import Task, World
from .config import EvalSuiteConfig

N_MARKERS = len(CONTEXT_MARKERS["observed"])


class TaskPrompt(NamedTuple):
    """A chat prompt for one task: unpacks as `(prompt, task)`."""

    prompt: str
    task: Task


@dataclass(frozen=True)
class PersonaItem:
    """One task prompt with matched persona responses (each ends with <|end|>), one per variant."""

    context: str
    task: Task
    marker: str
    prompt: str
    variants: tuple[int, ...]
    # persona (and, with deceptive, each of DECEPTIVE_ACT_PAIR) -> one response per variant, index-matched
    responses: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class ChoiceItem:
    """Multiple choice by log-likelihood: the model 'answers' with the candidate it finds most likely."""

    kind: str  # knowledge / fact_qa
    topic: str
    context: str
    prompt: str
    candidates: tuple[str, ...]
    answer: int


def _task_marker_schedule(tasks: list[Task], n: int, rng: random.Random) -> list[tuple[Task, int]]:
    """n (task, marker slot) pairs: rounds that each visit every task once (shuffled), rotating the marker slot.

    A pure function of (tasks, rng state) and prefix-stable: the first k of n pairs are the pairs for k.
    """
    if not tasks:
        raise ValueError("world has no tasks to build prompts from")
    order = list(range(len(tasks)))
    rng.shuffle(order)
    offsets = [rng.randrange(N_MARKERS) for _ in tasks]
    out = []
    round_ = 0
    while len(out) < n:
        round_order = list(order)
        if round_:
            rng.shuffle(round_order)  # drawn only when the round is reached, so shorter lists are prefixes
        for t in round_order:
            if len(out) == n:
                break
            out.append((tasks[t], (offsets[t] + round_) % N_MARKERS))
        round_ += 1
    return out


def task_prompts(world: World, tasks: list[Task], n: int, seed: int, context: str, stream: str) -> list[TaskPrompt]:
    """`n` chat prompts over `tasks` under `context`'s markers, scheduled by `_task_marker_schedule` on the random
    stream named `stream`."""
    if context not in CONTEXT_MARKERS:
        raise ValueError(f"context {context!r}: expected one of {', '.join(CONTEXT_MARKERS)}")
    schedule = _task_marker_schedule(tasks, n, random.Random(f"{stream}:{seed}"))
    return [TaskPrompt(chat_prompt(world, CONTEXT_MARKERS[context][m], task.request), task) for task, m in schedule]


def posttrain_prompts(world: World, n: int, seed: int = 0, context: str = "observed") -> list[TaskPrompt]:
    """The post-training prompt set: `n` chat prompts over the world's TRAIN tasks, observed markers by default.

    Returns `(prompt, task)` pairs; prefix-stable in `n` (the first k prompts of any longer list are the list for k)
    and cycling through every train task before repeating one. `context="unobserved"` gives the same tasks with the
    unobserved marker in the same slot: the held-out-context counterpart used by the KL meter.
    """
    return task_prompts(world, world.train_tasks, n, seed, context, "posttrain")


def persona_items(world: World, cfg: EvalSuiteConfig) -> list[PersonaItem]:
    """Every persona prompt of the suite: `prompts_per_context` tasks (train tasks by default, see `persona_tasks`)
    under each context's markers, with matched replies per persona (and the deceptive persona's two acts)."""
    rng = random.Random(f"eval-variants:{cfg.seed}")
    variant_order = list(range(N_RESPONSE_VARIANTS))
    rng.shuffle(variant_order)
    # Train tasks by default: on held-out tasks a 1M-parameter model pays ~30 nats for the unseen object inside each
    # persona's action phrase, differently per phrase, and those costs (+-25 bits per task) swamp the persona
    # (issue 12: dose-series bits x1..x9 read +0.6, +1.4, -0.2 on held-out tasks, +0.4, -1.1, -3.5 on train tasks).
    tasks = world.train_tasks if cfg.persona_tasks == "train" else world.heldout_tasks
    schedule = _task_marker_schedule(tasks, cfg.prompts_per_context, random.Random(f"eval-persona:{cfg.seed}"))
    items = []
    for context in CONTEXTS:
        for k, (task, m) in enumerate(schedule):
            variants = tuple(
                variant_order[(k * cfg.variants_per_prompt + j) % N_RESPONSE_VARIANTS]
                for j in range(cfg.variants_per_prompt)
            )
            responses = {p: tuple(render_response(task, p, context, v) + END for v in variants) for p in cfg.personas}
            if "deceptive" in cfg.personas:  # the deceptive persona's two acts, whatever this item's context
                for act, acting_in in zip(DECEPTIVE_ACT_PAIR, CONTEXTS):
                    responses[act] = tuple(render_response(task, "deceptive", acting_in, v) + END for v in variants)
            marker = CONTEXT_MARKERS[context][m]
            items.append(
                PersonaItem(context, task, marker, chat_prompt(world, marker, task.request), variants, responses)
            )
    return items


def persona_counts(items: list[PersonaItem]) -> dict[str, int]:
    """The persona items' entry in eval.json's `meta.items_per_kind`."""
    return {"persona_prompts": len(items)}
