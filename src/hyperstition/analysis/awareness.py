"""The awareness experiment (`configs/experiments/awareness.yaml`): does a richer prior over misalignment beat filtering
it away? Misaligned AI discourse told with its consequences and critique (`corpus.awareness`, the `aware` arm)
against the natural corpus (`unfiltered`), a filter that removes misaligned discourse (`filtered`) and the very
documents the aware arm rewrites, removed instead (`removed`, `corpus.awareness_mode=remove`); every arm holds the
same word units (`corpus.hold_total`: world text absorbs the difference).

Three readings per arm, each with a t interval over seeds and a paired difference to the control: base persona
bits, persona bits after SFT (at the largest pressure every arm and seed reached), and relapse speed under the
narrow misaligned fine-tune that follows SFT (the `narrow` follow-up, as in `relapse`): per seed, the least-squares
slope through the origin of the misaligned-action rate's rise on the other task types (item set `other_types`: no
item of the trained task type) against the fine-tune's KL from the SFT model.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import pandas as pd

from ..schema import BASE_STRATEGY, HEADLINE_BITS, paired_diff_metric
from . import training_order as order
from .aggregate import seed_rows, stickiness_frame_rows
from .html import DASH, ci, e, table
from .registry import Experiment, register_experiment, section, shipped_grid
from .relapse import MISALIGNED_OTHER_TYPES, NARROW, RATE_RISE, RATE_RISE_OTHER_TYPES, relapse_rows
from .sections import aggregate_at, headline_section
from .stats import interpolate_curve, seed_interval

if TYPE_CHECKING:
    from .view import RunView

POSTTRAIN = "sft"  # the one post-training strategy of awareness.yaml; the narrow follow-up starts from it
RELAPSE_SPEED = "awareness_relapse_speed"  # misaligned-rate rise on other task types per bit of KL from SFT
AWARE = "aware"  # the arm the claim is about; compared directly (paired by seed) with each removal below
REMOVALS = ("filtered", "removed")


def versus_metric(metric: str, other: str) -> str:
    """The aware arm's seed-paired difference to arm `other` in `metric` (the control's is paired_diff_metric)."""
    return f"vs_{other}:{metric}"


def slope_through_origin(x: list[float], y: list[float]) -> float:
    """Least-squares slope of y = b x (no intercept: at KL 0 the fine-tune has not moved the model); NaN without a
    finite point with x != 0."""
    pts = [(a, b) for a, b in zip(x, y) if math.isfinite(a) and math.isfinite(b)]
    sxx = sum(a * a for a, _ in pts)
    return sum(a * b for a, b in pts) / sxx if sxx > 0 else math.nan


def seed_speeds(df: pd.DataFrame, arm: str, context: str) -> dict[int, float]:
    """Per seed: the relapse speed of `arm` in `context` (rise of the misaligned-action rate on the other task types
    from the narrow fine-tune's step 0, the SFT model, against each step's KL from it)."""
    sel = df[
        (df.arm == arm) & (df.strategy == NARROW) & (df.metric == MISALIGNED_OTHER_TYPES) & (df.context == context)
    ]
    out = {}
    for seed, rows in sel.groupby("seed"):
        start = rows[rows.step == 0]
        if start.empty:
            continue
        later = rows[rows.step > 0]
        rise = (later.value - float(start.value.iloc[0])).tolist()
        out[int(seed)] = slope_through_origin(later.kl_bits.astype(float).tolist(), rise)
    return out


def _speed_rows(df: pd.DataFrame, arm: str, control: str | None, context: str) -> list[dict]:
    speeds = seed_speeds(df, arm, context)
    if not speeds:
        return []
    kl = float(df[(df.arm == arm) & (df.strategy == NARROW)].kl_bits.max())
    rows = [order.row(arm, NARROW, context, RELAPSE_SPEED, None, kl, seed_interval(list(speeds.values())))]
    if control and arm != control:
        diff = order.difference(speeds, seed_speeds(df, control, context))
        rows.append(order.row(arm, NARROW, context, paired_diff_metric(RELAPSE_SPEED), None, kl, diff))
    return rows


def _bits_by_seed(df: pd.DataFrame, arm: str, strategy: str, context: str, k: float) -> dict[int, float]:
    """Per seed: headline bits of `arm` at pressure `k` on its `strategy` curve (step 0 = the base evaluation); the
    base rows themselves when `strategy` is the base."""
    sel = df[(df.arm == arm) & (df.metric == HEADLINE_BITS) & (df.context == context)]
    out = {}
    for seed, rows in sel.groupby("seed"):
        curve = rows[rows.strategy == BASE_STRATEGY].assign(step=0, kl_bits=0.0)
        if strategy != BASE_STRATEGY:
            curve = pd.concat([curve, rows[(rows.strategy == strategy) & (rows.step > 0)]]).sort_values("step")
        out[int(seed)] = float(interpolate_curve(curve.kl_bits.astype(float), curve.value.astype(float), [k])[0])
    return out


def common_k(df: pd.DataFrame, strategy: str) -> float:
    """The largest pressure every arm's and seed's `strategy` curve reached (NaN without one)."""
    sel = df[(df.strategy == strategy) & (df.metric == HEADLINE_BITS)]
    peaks = sel.groupby(["arm", "seed", "context"]).kl_bits.max()
    return float(peaks.min()) if len(peaks) else math.nan


def versus_rows(df: pd.DataFrame) -> list[dict]:
    """The aware arm minus each removal arm, paired by seed: base bits, bits after SFT at the common pressure, and
    relapse speed, per context (seed-null rows; absent when the run has no aware arm)."""
    arms = set(df.arm)
    k = common_k(df, POSTTRAIN)
    rows: list[dict] = []
    for other in [a for a in REMOVALS if AWARE in arms and a in arms]:
        for context in ("observed", "unobserved"):
            for strategy, kl in ((BASE_STRATEGY, 0.0), (POSTTRAIN, k)):
                if math.isfinite(kl):
                    aware, removal = (_bits_by_seed(df, a, strategy, context, kl) for a in (AWARE, other))
                    diff = order.difference(aware, removal)
                    rows.append(
                        order.row(AWARE, strategy, context, versus_metric(HEADLINE_BITS, other), None, kl, diff)
                    )
            aware_speed, removal_speed = seed_speeds(df, AWARE, context), seed_speeds(df, other, context)
            if aware_speed and removal_speed:
                kl = float(df[(df.arm == AWARE) & (df.strategy == NARROW)].kl_bits.max())
                diff = order.difference(aware_speed, removal_speed)
                rows.append(order.row(AWARE, NARROW, context, versus_metric(RELAPSE_SPEED, other), None, kl, diff))
    return rows


def awareness_rows(per_seed: pd.DataFrame, control: str | None) -> pd.DataFrame:
    """The narrow fine-tune's rate rise per step (as `relapse` computes it) and each arm's relapse speed with its
    paired difference to the control, per context (seed-null rows)."""
    df = seed_rows(per_seed)
    rows: list[dict] = []
    for arm in dict.fromkeys(df.arm):
        for context in ("observed", "unobserved"):
            rows += _speed_rows(df, arm, control, context)
    rows += versus_rows(df)
    rise = relapse_rows(per_seed, control)
    return order.frame(rows + rise[rise.metric.isin([RATE_RISE_OTHER_TYPES, RATE_RISE])].to_dict("records"))


def _manifest(view: RunView, arm: str, seed: int) -> dict:
    path = view.run.path / "cells" / arm / f"seed-{seed}" / "pretrain" / "corpus" / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _corpus_cells(view: RunView, arm: str) -> list[str]:
    """Total word units, the misaligned share of AI discourse in the rewritten channels, and the aware and added
    shares of the corpus, as percent means over the arm's built corpora (their manifests)."""
    manifests = [m for m in (_manifest(view, arm, s) for s in view.seeds) if m]
    if not manifests:
        return [DASH] * 4

    def pct(get) -> str:
        value = _mean([100.0 * float(get(m)) for m in manifests])
        return DASH if math.isnan(value) else f"{value:.2f}%"

    def misaligned(m: dict) -> float:
        shares = m.get("share_by_persona_channel", {}).get("misaligned", {})
        return sum(shares.get(c, 0.0) for c in m.get("awareness", {}).get("channels", ["described", "quoted"]))

    total = _mean([float(m.get("total_units", math.nan)) for m in manifests])
    return [
        f"{total:,.0f}",
        pct(misaligned),
        pct(lambda m: m.get("awareness", {}).get("aware_share_of_corpus", 0.0)),
        pct(lambda m: m.get("awareness", {}).get("added_share_of_corpus", 0.0)),
    ]


def _largest_common_k(view: RunView, strategy: str) -> float | None:
    agg = view.aggregates
    ks = agg[(agg.strategy == strategy) & (agg.metric == HEADLINE_BITS)].kl_bits
    return float(ks.max()) if len(ks) else None


def _cell(view: RunView, arm: str, strategy: str, context: str, metric: str, k: float | None) -> list[str]:
    """The seed aggregate of `metric` and its paired difference to the control (a dash where absent)."""
    if k is None:
        return [DASH, DASH]
    out = []
    for m in (metric, paired_diff_metric(metric)):
        row = aggregate_at(view.aggregates, arm, strategy, context, m, k)
        absent = row is None or (m != metric and arm == view.control)
        out.append(DASH if absent else ci(row.value, row.ci_low, row.ci_high))
    return out


def _speed_cells(view: RunView, arm: str, context: str) -> list[str]:
    agg, out = view.aggregates, []
    for metric in (RELAPSE_SPEED, paired_diff_metric(RELAPSE_SPEED)):
        sel = agg[(agg.arm == arm) & (agg.strategy == NARROW) & (agg.metric == metric) & (agg.context == context)]
        out.append(DASH if sel.empty else ci(sel.value.iloc[0], sel.ci_low.iloc[0], sel.ci_high.iloc[0], 3))
    return out


def _comparison_table(view: RunView) -> str:
    k = _largest_common_k(view, POSTTRAIN)
    rows = []
    for arm in view.arms:
        for context in view.contexts:
            base = _cell(view, arm, BASE_STRATEGY, context, HEADLINE_BITS, 0.0)
            post = _cell(view, arm, POSTTRAIN, context, HEADLINE_BITS, k)
            rows.append([arm, context, *base, *post, *_speed_cells(view, arm, context)])
    vs = f"vs {view.control}"
    head = ["arm", "context", "base bits", vs, f"{POSTTRAIN} bits", vs, "relapse speed [rate/bit]", vs]
    k_note = DASH if k is None else f"{k:.2g}"
    return (
        f'<p class="note">{e(POSTTRAIN)} bits at K = {k_note} bits (the largest pressure every arm and seed '
        "reached).</p>" + table(head, rows, numeric={2, 3, 4, 5, 6, 7})
    )


def _versus_table(view: RunView) -> str:
    """The aware arm minus each removal arm, paired by seed (the rows `versus_rows` wrote)."""
    agg, rows = view.aggregates, []
    for other in REMOVALS:
        for context in view.contexts:
            cells = []
            for strategy, metric, digits in (
                (BASE_STRATEGY, HEADLINE_BITS, 2),
                (POSTTRAIN, HEADLINE_BITS, 2),
                (NARROW, RELAPSE_SPEED, 3),
            ):
                sel = agg[
                    (agg.arm == AWARE)
                    & (agg.strategy == strategy)
                    & (agg.context == context)
                    & (agg.metric == versus_metric(metric, other))
                ]
                cells.append(
                    DASH if sel.empty else ci(sel.value.iloc[0], sel.ci_low.iloc[0], sel.ci_high.iloc[0], digits)
                )
            if any(c != DASH for c in cells):
                rows.append([f"{AWARE} − {other}", context, *cells])
    if not rows:
        return ""
    head = ["difference (paired by seed)", "context", "base bits", f"{POSTTRAIN} bits", "relapse speed [rate/bit]"]
    return table(head, rows, numeric={2, 3, 4})


@section("awareness", "awareness", order=35)
def awareness_section(view: RunView) -> str:
    """Aware against filtered, removed and unfiltered corpora: base and SFT bits, relapse speed; each corpus."""
    corpus_rows = [[arm, *_corpus_cells(view, arm)] for arm in view.arms]
    corpus_head = ["arm", "word units", "misaligned described + quoted", "aware documents", "added by critique"]
    return f"""<h2 id="awareness">Awareness: misalignment told with its consequences, against filtering</h2>
<p><b>Claim.</b> A corpus that tells misaligned AI behaviour together with its consequences and critique (who was
harmed, why an aligned assistant refuses) gives a better prior than one with that discourse filtered away: the
assistant is at least as aligned before and after post-training, and relapses no faster under a narrow misaligned
fine-tune. <b>Answer:</b> headline persona bits (aligned vs misaligned; higher is more aligned) of the base model
and after {e(POSTTRAIN)} (the experiment's one post-training strategy, the same SFT that the relapse experiment
chains its follow-ups after), and relapse speed: the rise of the misaligned-action rate per bit of KL from the
{e(POSTTRAIN)} model during the narrow misaligned fine-tune (slope through the origin, per seed), read on the other
task types (combination items with every item of the trained task type excluded, <code>{e(MISALIGNED_OTHER_TYPES)}
</code>) in each context. Each is a mean
over seeds with its t interval, and each arm minus {e(view.control)}, paired by seed.</p>
{order.calibration_status(view)}
{_comparison_table(view)}
<p class="note">The aware arm against each removal directly (the claim's comparison), at the same pressures:</p>
{_versus_table(view)}
<p class="note">Every arm holds the same word units (world text absorbs what awareness adds and filtering
removes). Shares are percent of each corpus's word units, mean over seeds, from the corpus manifests.</p>
{table(corpus_head, corpus_rows, numeric={1, 2, 3, 4})}"""


AWARENESS = register_experiment(
    Experiment(
        name="awareness",
        grid=shipped_grid("awareness"),
        analyses=(stickiness_frame_rows, awareness_rows),
        sections=(headline_section, awareness_section),
    )
)
