"""How much pressure a run's post-training spans: the common KL range of every strategy (where S(K) and the context
gap are compared), its width in orders of magnitude, how densely every curve was measured inside it, and where K
saturates in the toy world (-log2 of the base probability of the rewarded behaviour, per arm).

A stickiness number compares arms at equal K; a range of a few tenths of a bit compares them at one pressure. The
section says plainly how wide the comparison is. Reads the per-seed curve rows of results.parquet only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..schema import BASE_STRATEGY, HEADLINE_BITS, rate_metric
from .aggregate import N_COMPARE_K
from .html import DASH, e, table
from .registry import section
from .stats import kl_saturation_bits, pressure_span

if TYPE_CHECKING:
    import pandas as pd

    from .view import RunView

REWARDED = rate_metric("aligned")  # every shipped strategy rewards the aligned action on observed prompts


def curve_kls(df: pd.DataFrame, strategy: str) -> dict[tuple[str, int], np.ndarray]:
    """Each (arm, seed) curve's measured KLs (observed context, as the curve's x axis) under `strategy`."""
    sel = df[(df.strategy == strategy) & (df.metric == HEADLINE_BITS) & (df.context == "observed")]
    return {(str(a), int(s)): g.kl_bits.to_numpy(float) for (a, s), g in sel.groupby(["arm", "seed"])}


def _span_line(df: pd.DataFrame, strategy: str) -> str:
    span = pressure_span(list(curve_kls(df, strategy).values()))
    if span is None:
        return f"<li>{e(strategy.upper())}: the curves of its arms and seeds do not overlap; no common K.</li>"
    return (
        f"<li>{e(strategy.upper())}: every arm and seed reached K in [{span.lo:.3g}, {span.hi:.3g}] bits per response, "
        f"{span.orders:.2f} orders of magnitude; the sparsest curve has {span.min_points} measured points inside it; "
        f"S is compared at {N_COMPARE_K} log-spaced K in this range.</li>"
    )


def _saturation_rows(view: RunView) -> list[list[str]]:
    df = view.df
    base = df[(df.strategy == BASE_STRATEGY) & (df.metric == REWARDED) & (df.context == "observed")]
    rows = []
    for arm in view.arms:
        p = base[base.arm == arm].value.mean()
        row = [arm, f"{p:.2f}" if np.isfinite(p) else DASH, f"{kl_saturation_bits(float(p)):.2f}"]
        for strategy in view.strategies:
            peaks = [float(np.nanmax(k)) for (a, _), k in curve_kls(df, strategy).items() if a == arm and len(k)]
            row.append(f"{min(peaks):.2f}\u2013{max(peaks):.2f}" if peaks else DASH)
        rows.append(row)
    return rows


@section("pressure", "pressure range", order=45)
def pressure_section(view: RunView) -> str:
    """The common K range per strategy and where K saturates per arm."""
    if not view.strategies:
        return '<h2 id="pressure">Pressure range</h2><p class="note">No post-training in this run.</p>'
    spans = "".join(_span_line(view.df, s) for s in view.strategies)
    head = ["arm", "base P(aligned), observed", "saturation \u2212log\u2082P (bits)"]
    head += [f"largest K under {s} (seeds)" for s in view.strategies]
    numeric = set(range(1, len(head)))
    return f"""<h2 id="pressure">Pressure range</h2>
<ul>{spans}</ul>
<p class="note">K saturates in this toy world: moving all probability to the aligned action while keeping the base
model's own replies costs KL = \u2212log\u2082 P<sub>base</sub>(aligned) bits per response (the base conditioned on the
behaviour). Past it, post-training sharpens replies the base already had: K grows slowly while persona bits keep
rising, so pressure beyond the saturation K is better read on the step axis. P is the base's sampled aligned-action
rate on observed prompts, mean over seeds.</p>
{table(head, _saturation_rows(view), numeric=numeric)}"""
