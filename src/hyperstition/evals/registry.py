"""The registry of measures, in the style of lm-evaluation-harness's `register_metric` and inspect_ai's `@scorer`.

A measure is one module (the built-in ones live in `evals/measures/`) that builds its items from the world alone and
scores a model on them, writing tidy rows and item records into an `EvalContext`. Registering it is all it takes to
add it to an evaluation: its `sections.<name>` switch, its rows (in registration order), its items and its timing in
eval.json come from here, with no list elsewhere to keep in step.

    MEASURE = register_measure(Measure("toy", "What it reports, in one line.", build=my_items, score=my_score,
                                       counts=lambda items: {"toy_items": len(items)}))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Generic, TypeVar

from .config import EvalSections

if TYPE_CHECKING:
    from ..world.world import World
    from .config import EvalSuiteConfig
    from .context import EvalContext

Items = TypeVar("Items")


@dataclass(frozen=True)
class Measure(Generic[Items]):
    """One measurement: how its items are built and how a model is scored on them."""

    name: str  # its switch (`sections.<name>`) and its key in eval.json's `meta.seconds`
    description: str  # one line: what it reports
    build: Callable[[World, EvalSuiteConfig], Items]  # its items, deterministic in the suite seed, no model involved
    score: Callable[[EvalContext, Items], None]  # score the context's model on the items: rows and item records
    counts: Callable[[Items], dict[str, int]]  # how many items of each kind (eval.json `meta.items_per_kind`)
    default: bool = True  # whether it runs unless switched off; False: only where `sections.<name>=true`


MEASURES: dict[str, Measure] = {}


def register_measure(measure: Measure[Items]) -> Measure[Items]:
    """Add `measure` to every evaluation from now on (after the measures registered before it); returns it."""
    if not measure.name.isidentifier():
        raise ValueError(f"measure name {measure.name!r}: expected an identifier (it is a `sections.` key)")
    if measure.name in MEASURES:
        raise ValueError(f"measure {measure.name!r} is registered already")
    MEASURES[measure.name] = measure
    EvalSections.names.append(measure.name)
    if not measure.default:
        EvalSections.off_by_default.add(measure.name)
    return measure


def unregister_measure(name: str) -> Measure:
    """Remove the measure `name` (a plugin's, or a test's) from later evaluations; returns it."""
    if name not in MEASURES:
        raise KeyError(f"no measure {name!r}; registered: {', '.join(MEASURES)}")
    EvalSections.names.remove(name)
    EvalSections.off_by_default.discard(name)
    return MEASURES.pop(name)
