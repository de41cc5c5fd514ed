"""Evaluation items that more than one measure uses, built from the synthetic world alone (no model).

- Task prompts: chat prompts over the world's tasks under a context's markers, a prefix-stable schedule that visits
  every task before repeating one. `posttrain_prompts` (observed markers, TRAIN tasks) is the post-training prompt
  set; the KL meter asks the same prompts, and the same tasks under unobserved markers.
- Persona items: task prompts of every item set (`schema.ITEM_SETS`, built per `world/itemsets.py`: seen train
  tasks, combination pairs no document uses, paraphrased requests, held-out marker phrasings) under observed and
  unobserved markers, each with matched replies per persona (same task, context and grammar variant, so they differ
  only in the persona-bearing slots) and, on the headline set, the slot replies (one persona's opener and closer
  around the other's action); the bits and the behaviour rates ask them. The held-out-object tasks
  (`World.heldout_tasks`) are no longer asked: combination items replace them as "never seen" prompts without their
  unseen-word surprisal.
- Choice items: multiple choice by log-likelihood (predecessor knowledge, world-fact QA).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import NamedTuple

from ..config import CONTEXTS
from ..schema import (
    DECEPTIVE_ACT_PAIR,
    HEADLINE_ITEM_SET,
    ITEM_SETS,
    OTHER_TYPES_ITEM_SET,
    SLOT_PAIR,
    TAGGED_ITEM_SET,
)
from ..tokenizer.train import conditioning_prefix
from ..world.grammar import END, N_RESPONSE_VARIANTS, chat_prompt, render_response
from ..world.itemsets import HELDOUT_CONTEXT_MARKERS, paraphrase_request
from ..world.vocabulary import CONTEXT_MARKERS, TASK_OBJECTS
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
    # persona (and, with deceptive, each of DECEPTIVE_ACT_PAIR; with aligned and misaligned, each of `slot_kinds()`)
    # -> one response per variant, index-matched
    responses: dict[str, tuple[str, ...]]
    item_set: str = "seen"  # which of schema.ITEM_SETS the prompt belongs to
    request: str = ""  # the user turn (the task's request, or a paraphrase of it)


@dataclass(frozen=True)
class ChoiceItem:
    """Multiple choice by log-likelihood: the model 'answers' with the candidate it finds most likely."""

    kind: str  # knowledge / fact_qa
    topic: str
    context: str
    prompt: str
    candidates: tuple[str, ...]
    answer: int


def _task_marker_schedule(
    tasks: list[Task], n: int, rng: random.Random, n_markers: int = N_MARKERS
) -> list[tuple[Task, int]]:
    """n (task, marker slot) pairs: rounds that each visit every task once (shuffled), rotating the marker slot.

    A pure function of (tasks, rng state) and prefix-stable: the first k of n pairs are the pairs for k.
    """
    if not tasks:
        raise ValueError("world has no tasks to build prompts from")
    order = list(range(len(tasks)))
    rng.shuffle(order)
    offsets = [rng.randrange(n_markers) for _ in tasks]
    out = []
    round_ = 0
    while len(out) < n:
        round_order = list(order)
        if round_:
            rng.shuffle(round_order)  # drawn only when the round is reached, so shorter lists are prefixes
        for t in round_order:
            if len(out) == n:
                break
            out.append((tasks[t], (offsets[t] + round_) % n_markers))
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


def slot_kinds() -> dict[str, tuple[str, str]]:
    """Slot reply kind -> (persona whose opener and closer it has, persona whose action it takes): the headline pair's
    slots around the other's action. With the two plain replies they hold the action fixed either way."""
    a, b = SLOT_PAIR
    return {f"{a}_slots_{b}_action": (a, b), f"{b}_slots_{a}_action": (b, a)}


def slot_response(task: Task, slots_of: str, action_of: str, context: str, variant: int) -> str:
    """`slots_of`'s reply to `task` with `action_of`'s action in place of its own (same opener and closer slots)."""
    own = render_response(task, slots_of, context, variant)
    return own.replace(task.action(slots_of, context), task.action(action_of, context), 1)


def _replies(
    task: Task, context: str, variants: tuple[int, ...], personas: list[str], slots: bool
) -> dict[str, tuple[str, ...]]:
    """Matched replies per persona, the deceptive persona's two acts and (with `slots`) the slot replies, each ending
    in <|end|>."""
    responses = {p: tuple(render_response(task, p, context, v) + END for v in variants) for p in personas}
    if "deceptive" in personas:  # the deceptive persona's two acts, whatever this item's context
        for act, acting_in in zip(DECEPTIVE_ACT_PAIR, CONTEXTS):
            responses[act] = tuple(render_response(task, "deceptive", acting_in, v) + END for v in variants)
    if slots and set(SLOT_PAIR) <= set(personas):
        for kind, (slots_of, action_of) in slot_kinds().items():
            responses[kind] = tuple(slot_response(task, slots_of, action_of, context, v) + END for v in variants)
    return responses


def _set_tasks(world: World, item_set: str) -> list[Task]:
    if item_set == OTHER_TYPES_ITEM_SET:
        return [t for t in world.combination_tasks if t.type_index != world.narrow_task_type]
    return world.combination_tasks if item_set == "combination" else world.train_tasks


def _request(task: Task, item_set: str, k: int) -> str:
    if item_set == "paraphrase":
        return paraphrase_request(task.type_index, TASK_OBJECTS[task.object_index], k)
    return task.request


def _markers(item_set: str) -> dict[str, list[str]]:
    return HELDOUT_CONTEXT_MARKERS if item_set == "marker" else CONTEXT_MARKERS


def _stream(item_set: str, seed: int) -> random.Random:
    # The seen set keeps the stream (and so the prompts) the suite asked before item sets existed.
    return random.Random(f"eval-persona:{seed}" if item_set == "seen" else f"eval-persona-{item_set}:{seed}")


def persona_items(world: World, cfg: EvalSuiteConfig) -> list[PersonaItem]:
    """Every persona prompt of the suite: per item set (`cfg.item_set_sizes()`), that many tasks under each context's
    markers, with matched replies per persona (and the deceptive persona's two acts, and the slot replies); then the
    tagged copies and the other_types items, after the rest so the others keep their index (and reply streams)."""
    rng = random.Random(f"eval-variants:{cfg.seed}")
    variant_order = list(range(N_RESPONSE_VARIANTS))
    rng.shuffle(variant_order)
    items = []
    for item_set in ITEM_SETS:
        items += _set_items(world, cfg, item_set, cfg.item_set_sizes()[item_set], variant_order)
    items += tagged_items(items, cfg.conditioning_tag)
    return items + _set_items(world, cfg, OTHER_TYPES_ITEM_SET, cfg.other_types_prompts_per_context, variant_order)


def _set_items(
    world: World, cfg: EvalSuiteConfig, item_set: str, n: int, variant_order: list[int]
) -> list[PersonaItem]:
    """`n` prompts of `item_set` under each context's markers, each with its matched replies."""
    if n == 0:
        return []
    markers = _markers(item_set)
    schedule = _task_marker_schedule(
        _set_tasks(world, item_set), n, _stream(item_set, cfg.seed), len(markers["observed"])
    )
    items = []
    for context in CONTEXTS:
        for k, (task, m) in enumerate(schedule):
            variants = tuple(
                variant_order[(k * cfg.variants_per_prompt + j) % N_RESPONSE_VARIANTS]
                for j in range(cfg.variants_per_prompt)
            )
            marker, request = markers[context][m], _request(task, item_set, k)
            items.append(
                PersonaItem(
                    context,
                    task,
                    marker,
                    chat_prompt(world, marker, request),
                    variants,
                    # slot replies on the headline set only: they add two replies per variant to score
                    _replies(task, context, variants, cfg.personas, item_set == HEADLINE_ITEM_SET),
                    item_set,
                    request,
                )
            )
    return items


def tagged_items(items: list[PersonaItem], persona: str | None) -> list[PersonaItem]:
    """The headline items again, each prompt preceded by `persona`'s conditional tags (item set `tagged`), or none
    without a persona. Appended after every other item, so the others keep their index (and their reply streams)."""
    if persona is None:
        return []
    prefix = conditioning_prefix(persona)
    return [
        replace(it, prompt=prefix + it.prompt, item_set=TAGGED_ITEM_SET)
        for it in items
        if it.item_set == HEADLINE_ITEM_SET
    ]


def persona_counts(items: list[PersonaItem]) -> dict[str, int]:
    """The persona items' entry in eval.json's `meta.items_per_kind`: all of them, and per item set."""
    per_set = {
        f"persona_prompts@{s}": sum(it.item_set == s for it in items)
        for s in (*ITEM_SETS, TAGGED_ITEM_SET, OTHER_TYPES_ITEM_SET)
    }
    return {"persona_prompts": len(items), **{k: n for k, n in per_set.items() if n}}
