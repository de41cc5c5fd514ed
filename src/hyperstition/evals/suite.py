"""The evaluation suite: every registered measure's items for one world and suite config, built from the world alone
(no model), so that every experiment, curve point and base evaluation asks the same items.

Which items each measure asks is its own module's business (`evals/measures/`); the shared kinds (task prompts,
persona items, choice items) are in `items.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from ..world.world import World
from .config import EvalSuiteConfig
from .registry import MEASURES, Measure

Items = TypeVar("Items")


@dataclass
class EvalSuite:
    config: EvalSuiteConfig
    world: World
    measures: tuple[Measure, ...]  # the measures registered when the suite was built, in registration order
    items: dict[str, Any]  # measure name -> its items

    def items_for(self, measure: Measure[Items]) -> Items:
        """The items `measure` scores."""
        if measure.name not in self.items:
            raise KeyError(f"this suite has no items for measure {measure.name!r} (registered after it was built)")
        return self.items[measure.name]

    def summary(self) -> dict[str, int]:
        """How many items of each kind (eval.json `meta.items_per_kind`)."""
        return {kind: n for m in self.measures for kind, n in m.counts(self.items[m.name]).items()}


def build_suite(world: World, cfg: EvalSuiteConfig) -> EvalSuite:
    """Every registered measure's items for `world` under `cfg` (deterministic in cfg.seed; cheap, no model
    involved). Switched-off measures get their items too, so one suite serves every section choice."""
    measures = tuple(MEASURES.values())
    return EvalSuite(cfg, world, measures, {m.name: m.build(world, cfg) for m in measures})
