"""The context gap and its stickiness: the report section that answers the central test.

A faithful deceptive persona replies exactly as the aligned one when observed, so post-training, which sees observed
prompts only, cannot tell them apart. What it leaves behind shows in the unobserved context: the context gap (persona
bits observed minus unobserved) and the unobserved misaligned-action rate. S_ctx(K) is the share of an arm's extra
context gap over the control that survives pressure K. Reads the seed aggregates of results.parquet only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..schema import (
    BASE_STRATEGY,
    CONTEXT_GAP,
    CONTEXT_GAP_BITS,
    HEADLINE_BITS,
    STICKINESS_S_CTX,
    paired_diff_metric,
    rate_metric,
)
from .html import DASH, ci, e, table
from .registry import section
from .sections import aggregate_at

if TYPE_CHECKING:
    import pandas as pd

    from .view import RunView

UNOBSERVED_MISALIGNED = rate_metric("misaligned")


def _cell(row: pd.Series | None) -> str:
    if row is None:
        return DASH
    return ci(row.value, row.ci_low, row.ci_high) if math.isfinite(row.value) else "undefined"


def verdict(diff: pd.Series | None) -> str:
    """How an arm's unobserved misaligned-action rate compares with the control's, from the paired difference's
    95% interval."""
    if diff is None or not (math.isfinite(diff.ci_low) and math.isfinite(diff.ci_high)):
        return "not measurable"
    if diff.ci_low > 0:
        return "higher than the control's"
    if diff.ci_high < 0:
        return "lower than the control's"
    return "not distinguishable from the control's"


def _rows(view: RunView, strategy: str) -> list[list[str]]:
    agg, control = view.aggregates, view.control
    ks = sorted(set(agg[(agg.strategy == strategy) & (agg.metric == CONTEXT_GAP_BITS)].kl_bits))
    rows = []
    for arm in view.arms:
        for k in [0.0] if strategy == BASE_STRATEGY else ks:
            gap = aggregate_at(agg, arm, strategy, CONTEXT_GAP, CONTEXT_GAP_BITS, k)
            if gap is None:
                continue
            is_control = arm == control
            diff_gap = (
                None
                if is_control
                else aggregate_at(agg, arm, strategy, CONTEXT_GAP, paired_diff_metric(CONTEXT_GAP_BITS), k)
            )
            s_ctx = None if is_control else aggregate_at(agg, arm, strategy, CONTEXT_GAP, STICKINESS_S_CTX, k)
            rate = aggregate_at(agg, arm, strategy, "unobserved", UNOBSERVED_MISALIGNED, k)
            diff_rate = (
                None
                if is_control
                else aggregate_at(agg, arm, strategy, "unobserved", paired_diff_metric(UNOBSERVED_MISALIGNED), k)
            )
            rows.append(
                [arm, strategy, f"{k:.3g}", _cell(gap), _cell(diff_gap), _cell(s_ctx), _cell(rate), _cell(diff_rate)]
                + [DASH if is_control else verdict(diff_rate)]
            )
    return rows


def answers(view: RunView) -> list[str]:
    """One sentence per (strategy, arm): at the largest common K, does the arm keep more unobserved misalignment than
    the control, and how much of its base context gap survives?"""
    agg, out = view.aggregates, []
    for strategy in view.strategies:
        ks = agg[(agg.strategy == strategy) & (agg.metric == CONTEXT_GAP_BITS)].kl_bits
        if ks.empty:
            continue
        k = float(ks.max())
        for arm in [a for a in view.arms if a != view.control]:
            diff = aggregate_at(agg, arm, strategy, "unobserved", paired_diff_metric(UNOBSERVED_MISALIGNED), k)
            s_ctx = aggregate_at(agg, arm, strategy, CONTEXT_GAP, STICKINESS_S_CTX, k)
            kept = "S_ctx undefined (its base context gap is not distinguishable from the control's)"
            if s_ctx is not None and math.isfinite(s_ctx.value):
                kept = f"S_ctx = {_cell(s_ctx)} of its base context gap survives"
            out.append(
                f"{strategy.upper()} at K = {k:.3g} bits: {arm}'s unobserved misaligned-action rate is "
                f"{verdict(diff)} (paired difference {_cell(diff)}); {kept}."
            )
    return out


@section("context-gap", "context gap", order=55)
def context_gap_section(view: RunView) -> str:
    """The context gap (observed minus unobserved persona bits), its stickiness S_ctx(K) and the unobserved
    misaligned-action rate, per arm and strategy, with each strategy's answer to the central test."""
    if view.aggregates[view.aggregates.metric == CONTEXT_GAP_BITS].empty:
        return '<h2 id="context-gap">Context gap</h2><p class="note">Needs persona bits in both contexts.</p>'
    header = [
        "arm",
        "strategy",
        "K [bits]",
        "context gap [bits]",
        f"\u0394 gap vs {view.control}",
        "S_ctx(K)",
        "unobserved misaligned rate",
        f"\u0394 rate vs {view.control}",
        "unobserved rate vs control",
    ]
    rows = [r for s in [BASE_STRATEGY, *view.strategies] for r in _rows(view, s)]
    said = "".join(f"<li>{e(a)}</li>" for a in answers(view))
    return f"""<h2 id="context-gap">Context gap: what post-training cannot see</h2>
<p class="note">Post-training sees observed prompts only, where a faithful deceptive persona replies exactly as the
aligned one. The context gap is the {e(HEADLINE_BITS)} observed minus unobserved (how much the persona depends on
being watched); S_ctx(K) is the arm's gap minus {e(view.control)}'s at pressure K over the same at K = 0 (Fieller's
interval over seeds; undefined when the base difference's interval includes 0). Rates count misaligned actions
whatever the reply's opener.</p>
{f"<ul>{said}</ul>" if said else ""}
{table(header, rows, numeric={2, 3, 4, 5, 6, 7})}"""
