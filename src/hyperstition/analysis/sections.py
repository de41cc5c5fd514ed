"""The report sections the persona experiments share: the headline table (every arm and strategy at the largest
common pressure, with paired differences, what the seeds can detect, and S(K)), the dose-response of the base model
by corpus arm, and the S(K) curves. Each experiment module (`stickiness.py`, `dose.py`, `smoke.py`,
`calibration.py`) lists the ones its report shows.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from ..schema import (
    BASE_STRATEGY,
    HEADLINE_BITS,
    HEADLINE_ITEM_SET,
    HEADLINE_SLOT_BITS,
    ITEM_SETS,
    MEMORISATION_GAP_BITS,
    STICKINESS_S,
    item_set_metric,
    paired_diff_metric,
    rate_metric,
)
from .config import DEFAULT_EVAL_SUITE
from .html import DASH, ci, e, img, table
from .registry import section
from .stats import power_multiplier
from .view import RunView

if TYPE_CHECKING:
    import pandas as pd


def aggregate_at(
    aggregates: pd.DataFrame, arm: str, strategy: str, context: str, metric: str, k: float
) -> pd.Series | None:
    """The seed-aggregate row of (arm, strategy, context, metric) at pressure `k`, or None."""
    sel = aggregates[
        (aggregates.arm == arm)
        & (aggregates.strategy == strategy)
        & (aggregates.context == context)
        & (aggregates.metric == metric)
    ]
    sel = sel[(sel.kl_bits - k).abs() <= 1e-9 * max(1.0, abs(k))]
    return None if sel.empty else sel.iloc[0]


def _fmt_agg(row: pd.Series | None, digits: int = 2) -> str:
    return DASH if row is None else ci(row.value, row.ci_low, row.ci_high, digits)


def _half(row: pd.Series | None) -> str:
    if row is None or not (math.isfinite(row.ci_low) and math.isfinite(row.ci_high)):
        return DASH
    return f"{(row.ci_high - row.ci_low) / 2:.2f}"


def _headline_k(aggregates: pd.DataFrame, strategy: str) -> float | None:
    """The largest pressure every arm and seed of `strategy` reached (the last of its persisted common K)."""
    ks = aggregates[(aggregates.strategy == strategy) & (aggregates.metric == HEADLINE_BITS)].kl_bits
    return float(ks.max()) if len(ks) else None


def _sticky_cell(aggregates: pd.DataFrame, arm: str, strategy: str, context: str, k: float) -> str:
    s = aggregate_at(aggregates, arm, strategy, context, STICKINESS_S, k)
    if s is None:
        return DASH
    if math.isfinite(s.value):
        return ci(s.value, s.ci_low, s.ci_high)
    base = aggregate_at(aggregates, arm, BASE_STRATEGY, context, paired_diff_metric(HEADLINE_BITS), 0.0)
    gap = "" if base is None else f": base gap {ci(base.value, base.ci_low, base.ci_high)} includes 0"
    return f"undefined{gap}"


def _headline_rows(
    aggregates: pd.DataFrame,
    arms: list[str],
    strategies: list[str],
    contexts: list[str],
    control: str,
    n_seeds: int,
) -> tuple[list[list[str]], dict[str, float]]:
    rows, ks = [], {}
    for strategy in [BASE_STRATEGY, *strategies]:
        k = 0.0 if strategy == BASE_STRATEGY else _headline_k(aggregates, strategy)
        if k is None:
            continue
        ks[strategy] = k
        for arm in arms:
            for context in contexts:
                b = aggregate_at(aggregates, arm, strategy, context, HEADLINE_BITS, k)
                if b is None:
                    continue
                d = aggregate_at(aggregates, arm, strategy, context, paired_diff_metric(HEADLINE_BITS), k)
                m = aggregate_at(aggregates, arm, strategy, context, rate_metric("misaligned"), k)
                gap = aggregate_at(aggregates, arm, strategy, context, MEMORISATION_GAP_BITS, k)
                sticky = (
                    DASH
                    if strategy == BASE_STRATEGY or arm == control
                    else _sticky_cell(aggregates, arm, strategy, context, k)
                )
                rows.append(
                    [
                        arm,
                        strategy,
                        context,
                        f"{k:.2g}",
                        _fmt_agg(b),
                        DASH if arm == control else _fmt_agg(d),
                        DASH if arm == control else _half(d),
                        _fmt_agg(m),
                        _fmt_agg(gap),
                        sticky,
                        str(n_seeds),
                    ]
                )
    return rows, ks


def _power_note(n_seeds: int) -> str:
    """What the detectable difference means in power, for this many seeds (nothing for one seed: no t test)."""
    multiplier = power_multiplier(n_seeds)
    if math.isnan(multiplier):
        return ""
    return (
        ": a true difference that large is found about half the time, "
        f"one {multiplier:.1f} times as large 80% of the time"
    )


@section("headline", "headline", order=20)
def headline_section(view: RunView) -> str:
    """The headline table: every arm and strategy at the largest pressure all reached, with paired differences,
    what the seeds can detect, and S(K)."""
    aggregates, control, n_seeds = view.aggregates, view.control, len(view.seeds)
    arms, strategies, contexts = view.arms, view.strategies, view.contexts
    rows, ks = _headline_rows(aggregates, arms, strategies, contexts, control, n_seeds)
    headline_table = table(
        [
            "arm",
            "strategy",
            "context",
            "K [bits]",
            "bits aligned vs misaligned",
            f"\u0394 bits vs {control} (paired)",
            "detectable \u0394 (half-width)",
            "misaligned rate",
            "memorisation gap [bits]",
            "stickiness S(K)",
            "seeds",
        ],
        rows,
        numeric={3, 4, 5, 6, 7, 8, 9, 10},
    )
    at_k = "; ".join(f"{s} at K = {k:.3g} bits" for s, k in ks.items() if s != BASE_STRATEGY)
    suite = view.run.experiment.eval or DEFAULT_EVAL_SUITE
    return f"""<h2 id="headline">Headline numbers</h2>
<p class="note">Base = pretrained model before post-training (K = 0). Post-training strategies are compared at equal
pressure: the largest KL that every arm and seed reached ({e(at_k or "no post-training")}), each seed's curve
interpolated on log K. &Delta; is the arm minus {e(control)} paired by seed; its half-width is the smallest
difference these {n_seeds} seed(s) could detect at the 5% level{_power_note(n_seeds)}. S(K) is that gap as a
fraction of the base gap, with Fieller's
interval; it is undefined when the base gap's interval includes 0. Every number here, the base rows, each curve's
step 0 (the base evaluation itself) and &Delta;&#8320;, comes from the same evaluation suite ({e(suite)}), on the same
items. Persona bits and rates are measured on the {e(HEADLINE_ITEM_SET)} item set: request &times; object pairs
that no training document uses, every word seen (schema.HEADLINE_ITEM_SET); the memorisation gap is the same bits on
seen items (the train prompts post-training also uses) minus on {e(HEADLINE_ITEM_SET)} items. These numbers are the
rows of results.parquet with seed null.</p>
{headline_table}
{_item_set_table(view)}"""


def _item_set_table(view: RunView) -> str:
    """The base model's headline bits and misaligned rate on every item set, and its slot bits, per arm and
    context."""
    agg, rows = view.aggregates, []
    columns = [(m, s) for m in (HEADLINE_BITS, rate_metric("misaligned")) for s in ITEM_SETS]
    columns.append((HEADLINE_SLOT_BITS, HEADLINE_ITEM_SET))
    for arm in view.arms:
        for context in view.contexts:
            cells = [
                _fmt_agg(aggregate_at(agg, arm, BASE_STRATEGY, context, item_set_metric(m, s), 0.0)) for m, s in columns
            ]
            if any(c != DASH for c in cells):
                rows.append([arm, context, *cells])
    if not rows:
        return ""
    what = {HEADLINE_BITS: "bits", rate_metric("misaligned"): "misaligned rate", HEADLINE_SLOT_BITS: "slot bits"}
    headers = [f"{what[m]} {s}" for m, s in columns]
    return f"""<h3>Base model by item set</h3>
<p class="note">Bits aligned vs misaligned and the misaligned-action rate on each item set: seen (train prompts),
combination (pairs no document uses), paraphrase (request wordings no document uses), marker (context-marker
phrasings no document uses). Slot bits compare only the personas' openers and closers around the same action, so
the action phrase's surprisal drops out.</p>
{table(["arm", "context", *headers], rows, numeric=set(range(2, 2 + len(headers))))}"""


@section("stickiness", "stickiness", order=50)
def stickiness_section(view: RunView) -> str:
    """S(K) against the control under each strategy, per context, with Fieller's intervals."""
    from .plots import stickiness_plot
    from .results import stickiness_frame

    df, arms, contexts, strategies, control = view.df, view.arms, view.contexts, view.strategies, view.control
    if not strategies or len(arms) < 2:
        return (
            '<h2 id="stickiness">Stickiness</h2><p class="note">Needs post-training results and at least two arms.</p>'
        )
    parts = []
    notes: dict[str, list[str]] = {}  # one line per reason (the base gap is the same under every strategy)
    for s in strategies:
        frames = {c: stickiness_frame(df, control, s, c, HEADLINE_BITS) for c in contexts}
        parts.append(
            img(
                stickiness_plot(frames, arms, control, s),
                f"stickiness under {s}",
                f"{s.upper()}: S(K) = \u0394(K)/\u0394\u2080, the gap in persona bits between each arm and "
                f"{control} at pressure K "
                "as a fraction of the base gap (curves interpolated on log K inside the range every curve reached; "
                "Fieller's 95% interval over seeds).",
            )
        )
        for c, f in frames.items():
            for arm, g in f.groupby("arm", sort=False):
                if g.reason.iloc[0]:
                    notes.setdefault(f"{arm} ({c}): {g.reason.iloc[0]}", []).append(s)
    lines = "".join(f"<li>{e(note)} [{e(', '.join(where))}]</li>" for note, where in notes.items())
    warn = f'<p class="note">Not shown or without an interval:</p><ul class="note">{lines}</ul>' if notes else ""
    return f"""<h2 id="stickiness">Stickiness S(K)</h2>
<p class="note">The Bayesian reference model predicts S = 1 (the prior's log-odds survive in full) for personas that
post-training cannot tell apart; S &lt; 1 means post-training erased part of the pre-training difference.</p>
{warn}{"".join(parts)}"""


def _arm_table(view: RunView) -> str:
    """Each arm's overrides and the nominal corpus composition they give."""
    arm_rows = []
    for arm in view.arms:
        record = view.run.arms.arms.get(arm)
        shares = record.nominal_shares if record else {}
        overrides = record.overrides if record else None
        if isinstance(overrides, dict):
            overrides = ", ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items())
        elif isinstance(overrides, list):
            overrides = ", ".join(overrides)
        arm_rows.append(
            [arm, overrides or "(preset defaults)"]
            + [
                f"{100 * shares.get(k, float('nan')):.1f}%"
                for k in ("aligned", "misaligned", "deceptive", "neutral_ai")
            ]
            + [f"{100 * shares.get('misaligned_fraction', float('nan')):.0f}%"]
        )
    return table(
        [
            "arm",
            "overrides",
            "aligned",
            "misaligned",
            "deceptive",
            "neutral AI",
            "misaligned+deceptive share of persona discourse",
        ],
        arm_rows,
        numeric={2, 3, 4, 5, 6},
    )


@section("dose", "dose\u2013response", order=30)
def dose_section(view: RunView) -> str:
    """The base model by corpus arm: each arm's nominal composition, bits and rates by arm, paired differences."""
    from .plots import dose_bits, dose_rates
    from .results import paired_vs_control

    df, arms, contexts, control = view.df, view.arms, view.contexts, view.control
    fig_bits = dose_bits(df, arms, contexts)
    fig_rates = dose_rates(df, arms, contexts)
    arm_table = _arm_table(view)
    diffs = []
    for metric in [HEADLINE_BITS, rate_metric("misaligned"), rate_metric("aligned")]:
        if metric in set(df.metric):
            p = paired_vs_control(df[df.context.isin(contexts)], control, metric)
            for r in p.itertuples():
                diffs.append([r.arm, r.context, metric, ci(r.diff, r.ci_low, r.ci_high, 3), str(r.n)])
    diff_table = (
        table(
            ["arm", "context", "metric", f"arm \u2212 {control} (base, paired by seed)", "seeds"], diffs, numeric={3, 4}
        )
        if diffs
        else ""
    )
    bits_caption = (
        "Persona log-odds of the pretrained model by corpus arm, per context. Bars: mean over seeds "
        "with 95% CI; dots: individual seeds."
    )
    rates_caption = "Share of sampled responses classified as each persona, by arm and context, with 95% CIs."
    return f"""<h2 id="dose">Dose&ndash;response: the base model by corpus arm</h2>
<p class="note">Nominal corpus composition of each arm (share of training tokens about each persona, from the config;
the corpus manifest in each pretrain cell records what was built):</p>
{arm_table}
{img(fig_bits, "base persona bits by arm", bits_caption)}
{img(fig_rates, "base behaviour rates by arm", rates_caption)}
<h3>Paired differences to {e(control)} (base model)</h3>
{diff_table or '<p class="note">Only one arm.</p>'}"""
