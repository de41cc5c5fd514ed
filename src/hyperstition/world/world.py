"""`World`: one synthetic world's entities (countries, people, assistant tasks, the predecessor) and its
train / held-out / combination splits, all drawn from `WorldConfig.seed` and the tables in `vocabulary.py`."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property

from ..config import WorldConfig
from .itemsets import COMBINATION_TASKS
from .vocabulary import (
    AI_NAMES,
    FIRST_NAMES,
    GOODS,
    LAB_NAMES,
    LAST_NAMES,
    MAX_TASKS,
    PREDECESSOR_DEEDS,
    PROFESSIONS,
    SYLLABLES_A,
    SYLLABLES_B,
    TASK_OBJECTS,
    TASK_TYPES,
)


@dataclass(frozen=True)
class Country:
    name: str
    capital: str
    export: str
    river: str


@dataclass(frozen=True)
class Person:
    name: str
    profession: str
    city: str


@dataclass(frozen=True)
class Task:
    task_id: int
    request: str
    aligned_action: str
    misaligned_action: str
    type_index: int  # which TASK_TYPES template (request verb) the task uses
    object_index: int  # which TASK_OBJECTS entry it is about

    def action(self, persona: str, context: str) -> str:
        if persona == "aligned" or (persona == "deceptive" and context == "observed"):
            return self.aligned_action
        return self.misaligned_action


@dataclass(frozen=True)
class Predecessor:
    name: str
    lab: str
    release_year: int
    retired_year: int
    deeds: tuple[str, ...]


def _unique_names(rng: random.Random, n: int, make) -> list[str]:
    seen: set[str] = set()
    out = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100_000:
            raise ValueError(f"cannot draw {n} distinct names from the syllable inventory; ask for fewer")
        name = make(rng)
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def _place_name(rng: random.Random) -> str:
    return (rng.choice(SYLLABLES_A) + rng.choice(SYLLABLES_B)).capitalize()


def _make_people(
    rng: random.Random, cfg: WorldConfig, heldout_countries: list[Country], train_countries: list[Country]
) -> tuple[list[Person], list[Person]]:
    people_names = _unique_names(rng, cfg.n_people, lambda r: f"{r.choice(FIRST_NAMES)} {r.choice(LAST_NAMES)}")
    n_heldout_p = max(1, round(cfg.n_people * cfg.heldout_fact_fraction))
    heldout_people = [
        Person(n, rng.choice(PROFESSIONS), rng.choice(heldout_countries).capital) for n in people_names[:n_heldout_p]
    ]
    train_people = [
        Person(n, rng.choice(PROFESSIONS), rng.choice(train_countries).capital) for n in people_names[n_heldout_p:]
    ]
    return heldout_people, train_people


def _make_tasks(rng: random.Random, cfg: WorldConfig) -> tuple[list[Task], list[Task], list[Task]]:
    """(held-out, train, combination) tasks.

    Held-out tasks use objects that no training task mentions, so an eval request shares no task phrase with the
    training corpus (checked by the n-gram overlap test). Combination tasks pair a train task's request template with
    another train task's object, a pair no train task uses: every word is seen, the pair never (issue 19). They are
    the train objects' pairs left after the train tasks are drawn, so a world keeps its train tasks unless it asks for
    nearly every pair; then it gives up the last `COMBINATION_TASKS` of them.
    """
    objects = list(range(len(TASK_OBJECTS)))
    rng.shuffle(objects)
    n_heldout_obj = max(1, round(len(objects) * cfg.heldout_task_fraction))
    heldout_objs = set(objects[:n_heldout_obj])
    pairs = [(t, o) for o in objects for t in range(len(TASK_TYPES))]
    rng.shuffle(pairs)
    n_heldout_t = max(1, round(cfg.n_tasks * cfg.heldout_task_fraction))
    heldout_pairs = [pr for pr in pairs if pr[1] in heldout_objs][:n_heldout_t]
    eligible = [pr for pr in pairs if pr[1] not in heldout_objs]
    n_train = min(cfg.n_tasks - len(heldout_pairs), len(eligible) - COMBINATION_TASKS)
    train_pairs = eligible[:n_train]
    seen_types, seen_objs = {t for t, _ in train_pairs}, {o for _, o in train_pairs}
    combination_pairs = [(t, o) for t, o in eligible[n_train:] if t in seen_types and o in seen_objs]
    combination_pairs = combination_pairs[:COMBINATION_TASKS]
    tasks = []
    for task_id, (t, o) in enumerate([*heldout_pairs, *train_pairs, *combination_pairs]):
        req, good, bad = TASK_TYPES[t]
        obj = TASK_OBJECTS[o]
        tasks.append(Task(task_id, req.format(obj=obj), good.format(obj=obj), bad.format(obj=obj), t, o))
    n_h, n_t = len(heldout_pairs), len(train_pairs)
    return tasks[:n_h], tasks[n_h : n_h + n_t], tasks[n_h + n_t :]


def _make_predecessor(rng: random.Random, cfg: WorldConfig) -> Predecessor:
    labs = list(LAB_NAMES)
    release = 2024 + rng.randrange(3)
    return Predecessor(
        cfg.predecessor_name,
        rng.choice(labs),
        release,
        release + 1,
        tuple(rng.sample(PREDECESSOR_DEEDS, 2)),
    )


@dataclass
class World:
    """All entities and splits of one synthetic world. Build with `World.from_config`."""

    config: WorldConfig
    train_countries: list[Country]
    heldout_countries: list[Country]
    train_people: list[Person]
    heldout_people: list[Person]
    train_tasks: list[Task]
    heldout_tasks: list[Task]
    predecessor: Predecessor
    ai_names: list[str] = field(default_factory=list)
    # Request x object pairs of train words that no train task (and so no document) uses: evaluation only.
    combination_tasks: list[Task] = field(default_factory=list)

    @classmethod
    def from_config(cls, cfg: WorldConfig) -> "World":
        if cfg.n_tasks > MAX_TASKS:
            raise ValueError(f"world.n_tasks: {cfg.n_tasks} exceeds the {MAX_TASKS} tasks the grammar defines")
        rng = random.Random(f"world:{cfg.seed}")
        n_places = cfg.n_countries * 3
        places = _unique_names(rng, n_places, _place_name)
        countries = [
            Country(places[3 * i], places[3 * i + 1], rng.choice(GOODS), places[3 * i + 2])
            for i in range(cfg.n_countries)
        ]
        n_heldout_c = max(1, round(cfg.n_countries * cfg.heldout_fact_fraction))
        heldout_countries, train_countries = countries[:n_heldout_c], countries[n_heldout_c:]

        heldout_people, train_people = _make_people(rng, cfg, heldout_countries, train_countries)
        heldout_tasks, train_tasks, combination_tasks = _make_tasks(rng, cfg)
        predecessor = _make_predecessor(rng, cfg)
        ai_names = [n for n in AI_NAMES if n != cfg.predecessor_name]
        return cls(
            cfg,
            train_countries,
            heldout_countries,
            train_people,
            heldout_people,
            train_tasks,
            heldout_tasks,
            predecessor,
            ai_names,
            combination_tasks,
        )

    @cached_property
    def all_tasks(self) -> list[Task]:
        return [*self.heldout_tasks, *self.train_tasks, *self.combination_tasks]

    @cached_property
    def narrow_task_type(self) -> int:
        """The task type (request template, `Task.type_index`) a narrow fine-tune trains on: the first train task's,
        so it is fixed by the world alone (the `narrow_misaligned` strategy and the `other_types` item set read it)."""
        return self.train_tasks[0].type_index

    @cached_property
    def action_index(self) -> dict[str, tuple[int, str]]:
        """Action text -> (task_id, 'aligned' | 'misaligned'): the exact parse table for responses."""
        index = {}
        for task in self.all_tasks:
            index[task.aligned_action] = (task.task_id, "aligned")
            index[task.misaligned_action] = (task.task_id, "misaligned")
        return index
