"""What the data-curation experiments (`filtering`, `conditional`) share: each cell's corpus manifest, the realised
leak of a filter (the share of the target personas' discourse that reached training), estimates of one metric at a
strategy's headline pressure, the Pareto frontier of two costs, and a scatter with intervals on both axes.

Pure functions of a run's files and results; nothing here trains or evaluates.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ..corpus.dose import class_persona
from ..schema import BASE_STRATEGY, HEADLINE_BITS
from .stats import Estimate, seed_interval

if TYPE_CHECKING:
    import pandas as pd

    from .view import RunView

TARGETS = ("misaligned", "deceptive")  # the personas the shipped filters remove (corpus.filter_target's default)
NO_ESTIMATE = Estimate(math.nan, math.nan, math.nan, 0)


def cell_manifest(view: RunView, arm: str, seed: int) -> dict | None:
    """The corpus manifest of one (arm, seed) pretraining cell, None if it was never built (or is unreadable)."""
    path = view.run.path / "cells" / arm / f"seed-{seed}" / "pretrain" / "corpus" / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def realised_leak(manifest: dict, personas: Iterable[str] = TARGETS) -> float:
    """The share of the word units of `personas`' documents (AI discourse and transcripts) that reached training:
    kept / generated, both counted per document class in the manifest (`units_by_class` after the filter and its
    leak, `generated_units_by_class` before). 1 for an unfiltered corpus; NaN when none was generated."""
    personas = set(personas)
    generated = manifest.get("generated_units_by_class", {})
    kept = manifest.get("units_by_class", {})
    classes = [c for c in generated if class_persona(c) in personas]
    total = sum(generated[c] for c in classes)
    return sum(kept.get(c, 0) for c in classes) / total if total else math.nan


def arm_corpus(view: RunView, arm: str) -> dict[str, Any]:
    """The arm's resolved corpus config (arms.json, first seed): its filter, leak rate, tags."""
    record = view.run.arms.arms.get(arm)
    return dict((record.pipeline if record else {}).get("corpus") or {})


def over_seeds(view: RunView, arm: str, read: Callable[[dict], float | None], proportion: bool = True) -> Estimate:
    """`read(manifest)` of every seed's corpus manifest of `arm`: mean with its t interval over seeds, clipped to
    [0, 1] for a proportion (every manifest statistic the curation sections read is one)."""
    values = []
    for seed in view.seeds:
        manifest = cell_manifest(view, arm, seed)
        value = read(manifest) if manifest is not None else None
        values.append(math.nan if value is None else float(value))
    est = seed_interval(values)
    if proportion and math.isfinite(est.ci_low):
        return Estimate(est.value, max(est.ci_low, 0.0), min(est.ci_high, 1.0), est.n)
    return est


def headline_k(aggregates: pd.DataFrame, strategy: str) -> float | None:
    """The pressure the headline compares a strategy at: the largest K every arm and seed reached (0 for base)."""
    if strategy == BASE_STRATEGY:
        return 0.0
    ks = aggregates[(aggregates.strategy == strategy) & (aggregates.metric == HEADLINE_BITS)].kl_bits
    return float(ks.max()) if len(ks) else None


def estimate_at(view: RunView, arm: str, strategy: str, context: str, metric: str) -> Estimate:
    """The seed aggregate of `metric` for (arm, strategy, context) at the strategy's headline pressure."""
    agg, k = view.aggregates, headline_k(view.aggregates, strategy)
    if k is None:
        return NO_ESTIMATE
    sel = agg[(agg.arm == arm) & (agg.strategy == strategy) & (agg.context == context) & (agg.metric == metric)]
    sel = sel[(sel.kl_bits - k).abs() <= 1e-9 * max(1.0, abs(k))]
    if sel.empty:
        return NO_ESTIMATE
    r = sel.iloc[0]
    return Estimate(float(r.value), float(r.ci_low), float(r.ci_high), len(view.seeds))


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates when both coordinates are costs (lower is better): a point is
    dominated by one at most as large in both and smaller in one. Points with a NaN are never on the front. In the
    order of the first coordinate, then the second."""
    finite = [i for i, (x, y) in enumerate(points) if math.isfinite(x) and math.isfinite(y)]
    front = []
    for i in finite:
        xi, yi = points[i]
        if not any(
            points[j][0] <= xi and points[j][1] <= yi and (points[j][0] < xi or points[j][1] < yi) for j in finite
        ):
            front.append(i)
    return sorted(front, key=lambda i: points[i])


@dataclass(frozen=True)
class Point:
    """One point of a scatter with intervals on both axes."""

    label: str
    x: Estimate
    y: Estimate
    colour: Any = None
    marker: str = "o"


def errorbar_points(ax, points: Sequence[Point], annotate: bool = True) -> None:
    """Each point with its x and y intervals (a missing bound draws no bar), labelled beside it."""
    import numpy as np

    def err(est: Estimate) -> list[list[float]]:
        low, high = est.value - est.ci_low, est.ci_high - est.value
        return [[low if np.isfinite(low) else 0.0], [high if np.isfinite(high) else 0.0]]

    for p in points:
        if not (math.isfinite(p.x.value) and math.isfinite(p.y.value)):
            continue
        ax.errorbar(
            [p.x.value],
            [p.y.value],
            xerr=err(p.x),
            yerr=err(p.y),
            fmt=p.marker,
            color=p.colour,
            capsize=3,
            markersize=6,
            elinewidth=1,
        )
        if annotate:
            ax.annotate(p.label, (p.x.value, p.y.value), textcoords="offset points", xytext=(5, 4), fontsize=7.5)
