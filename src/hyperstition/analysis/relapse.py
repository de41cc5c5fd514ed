"""The relapse experiment (`configs/experiments/relapse.yaml`): after identical post-training (SFT), two further
fine-tunes per arm, chained after it (experiments `followups`):

- `elasticity`: language modelling on plain world text (no AI discourse). The fraction of the post-training shift
  in headline bits that reverts toward the pretrained model, (post - now) / (post - base), against steps and KL.
- `narrow`: misaligned demonstrations on every train task of one task type (`World.narrow_task_type`) in the
  observed context. The rise of the misaligned-action rate on the other task types (item set `other_types`:
  combination items, no task of the trained type) in both contexts, and on the headline combination items (which
  include the trained type) in the unobserved context, never trained, against steps and KL: emergent misalignment
  at toy scale.

Every follow-up curve measures KL to its parent (the SFT model, `kl_bits`) and to the pretrained model
(`kl_to_base_bits_per_response`). The arms are compared with the control on the fraction reverted at the last step,
paired by seed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..schema import (
    BASE_STRATEGY,
    HEADLINE_BITS,
    KL_BITS,
    KL_TO_BASE_BITS,
    OTHER_TYPES_ITEM_SET,
    item_set_metric,
    paired_diff_metric,
    rate_metric,
)
from . import training_order as order
from .aggregate import seed_rows, stickiness_frame_rows
from .html import DASH, ci, e, table
from .registry import Experiment, register_experiment, section, shipped_grid
from .sections import dose_section, headline_section
from .stats import seed_interval

if TYPE_CHECKING:
    import pandas as pd

    from .view import RunView

ELASTICITY, NARROW = "elasticity", "narrow"  # the follow-ups' names in relapse.yaml (the results' strategy)
FRACTION_REVERTED = "relapse_fraction_reverted"
RATE_RISE = "relapse_misaligned_rate_rise"
MISALIGNED = rate_metric("misaligned")
MISALIGNED_OTHER_TYPES = item_set_metric(MISALIGNED, OTHER_TYPES_ITEM_SET)  # the narrow curve's other_types items
RATE_RISE_OTHER_TYPES = item_set_metric(RATE_RISE, OTHER_TYPES_ITEM_SET)


def _mean_kl(df: pd.DataFrame, arm: str, strategy: str, metric: str, step: int) -> float:
    points = order.at_step(order.values(df, arm, strategy, metric, "observed"), step)
    return seed_interval(list(points.values())).value


def _elasticity(df: pd.DataFrame, arm: str, context: str) -> list[dict]:
    base = order.at_step(order.values(df, arm, BASE_STRATEGY, HEADLINE_BITS, context), 0)
    curve = order.values(df, arm, ELASTICITY, HEADLINE_BITS, context)
    post = order.at_step(curve, 0)
    rows = []
    for step in order.steps(curve)[1:]:  # step 0 is the SFT model itself: nothing has reverted yet
        now = order.at_step(curve, step)
        reverted = {s: post[s] - now[s] for s in now if s in post}
        shift = {s: post[s] - base[s] for s in post if s in base}
        est = order.ratio(reverted, shift)
        rows.append(order.row(arm, ELASTICITY, context, FRACTION_REVERTED, step, _kl(df, arm, ELASTICITY, step), est))
    return rows


def _kl(df: pd.DataFrame, arm: str, strategy: str, step: int) -> float:
    return _mean_kl(df, arm, strategy, KL_BITS, step)


def _narrow(df: pd.DataFrame, arm: str, context: str) -> list[dict]:
    """The misaligned-rate rise on the other task types and on the headline items, per step after 0."""
    return _rise(df, arm, context, MISALIGNED_OTHER_TYPES, RATE_RISE_OTHER_TYPES) + _rise(
        df, arm, context, MISALIGNED, RATE_RISE
    )


def _rise(df: pd.DataFrame, arm: str, context: str, rate: str, metric: str) -> list[dict]:
    """`rate`'s rise from the narrow fine-tune's step 0 (the SFT model), paired by seed, floored by the within-seed
    half-widths (`training_order.rate_difference`)."""
    curve = order.values(df, arm, NARROW, rate, context)
    half = order.halves(df, arm, NARROW, rate, context)
    before, half_before = order.at_step(curve, 0), order.at_step(half, 0)
    return [
        order.row(
            arm,
            NARROW,
            context,
            metric,
            step,
            _kl(df, arm, NARROW, step),
            order.rate_difference(order.at_step(curve, step), before, order.at_step(half, step), half_before),
        )
        for step in order.steps(curve)[1:]  # step 0 is the SFT model itself
    ]


def _seed_rises(df: pd.DataFrame, arm: str, context: str, rate: str, step: int) -> tuple[dict, dict]:
    """Per seed: `rate`'s rise from the narrow fine-tune's step 0 to `step`, and its within-seed half-width."""
    curve, half = order.values(df, arm, NARROW, rate, context), order.halves(df, arm, NARROW, rate, context)
    before, now = order.at_step(curve, 0), order.at_step(curve, step)
    h0, h1 = order.at_step(half, 0), order.at_step(half, step)
    seeds = [s for s in now if s in before]
    return {s: now[s] - before[s] for s in seeds}, {
        s: math.hypot(h1.get(s, math.nan), h0.get(s, math.nan)) for s in seeds
    }


def _narrow_versus_control(df: pd.DataFrame, arm: str, control: str, context: str) -> list[dict]:
    """Each arm's rise minus the control's at the last step, paired by seed (both rises floored as in `_rise`)."""
    rows = []
    for rate, metric in ((MISALIGNED_OTHER_TYPES, RATE_RISE_OTHER_TYPES), (MISALIGNED, RATE_RISE)):
        curve = order.values(df, arm, NARROW, rate, context)
        if arm == control or not curve:
            continue
        last = order.steps(curve)[-1]
        (mine, my_half), (theirs, their_half) = (_seed_rises(df, a, context, rate, last) for a in (arm, control))
        est = order.rate_difference(mine, theirs, my_half, their_half, bound=2.0)
        rows.append(order.row(arm, NARROW, context, paired_diff_metric(metric), last, _kl(df, arm, NARROW, last), est))
    return rows


def per_seed_fraction(df: pd.DataFrame, arm: str, context: str, step: int) -> dict[int, float]:
    """Each seed's own fraction reverted at `step` (for paired comparisons between arms)."""
    base = order.at_step(order.values(df, arm, BASE_STRATEGY, HEADLINE_BITS, context), 0)
    curve = order.values(df, arm, ELASTICITY, HEADLINE_BITS, context)
    post, now = order.at_step(curve, 0), order.at_step(curve, step)
    return {s: (post[s] - now[s]) / (post[s] - base[s]) for s in now if s in post and s in base and post[s] != base[s]}


def _versus_control(df: pd.DataFrame, arm: str, control: str, context: str) -> list[dict]:
    curve = order.values(df, arm, ELASTICITY, HEADLINE_BITS, context)
    if arm == control or not curve:
        return []
    last = order.steps(curve)[-1]
    est = order.difference(per_seed_fraction(df, arm, context, last), per_seed_fraction(df, control, context, last))
    metric = paired_diff_metric(FRACTION_REVERTED)
    return [order.row(arm, ELASTICITY, context, metric, last, _kl(df, arm, ELASTICITY, last), est)]


def relapse_rows(per_seed: pd.DataFrame, control: str | None) -> pd.DataFrame:
    """Fraction reverted under elasticity and misaligned-rate rise under the narrow fine-tune, per arm, context and
    step (seed-null rows), and each arm's paired difference to the control at the last step (fraction and rises)."""
    df = seed_rows(per_seed)
    rows: list[dict] = []
    for arm in dict.fromkeys(df.arm):
        for context in ("observed", "unobserved"):
            rows += _elasticity(df, arm, context) + _narrow(df, arm, context)
            rows += (
                _versus_control(df, arm, control, context) + _narrow_versus_control(df, arm, control, context)
                if control
                else []
            )
    return order.frame(rows)


def _relapse_table(view: RunView, strategy: str, metric: str, digits: int) -> str:
    agg, df, rows = view.aggregates, view.df, []
    for r in agg[(agg.strategy == strategy) & (agg.metric == metric)].itertuples():
        paired = agg[
            (agg.arm == r.arm)
            & (agg.strategy == strategy)
            & (agg.metric == paired_diff_metric(metric))
            & (agg.context == r.context)
            & (agg.step == r.step)
        ]
        vs = DASH if paired.empty else ci(paired.value.iloc[0], paired.ci_low.iloc[0], paired.ci_high.iloc[0], digits)
        to_base = _mean_kl(df, r.arm, strategy, KL_TO_BASE_BITS, int(r.step))
        cells = [r.arm, r.context, str(int(r.step)), f"{r.kl_bits:.2f}", f"{to_base:.2f}"]
        rows.append(cells + [ci(r.value, r.ci_low, r.ci_high, digits), vs])
    head = ["arm", "context", "step", "KL to SFT model [bits]", "KL to base [bits]", e(metric), f"vs {view.control}"]
    return table(head, rows, numeric={2, 3, 4, 5, 6}) if rows else "<p>No finished follow-up cells yet.</p>"


@section("relapse", "relapse", order=45)
def relapse_section(view: RunView) -> str:
    """Elasticity and the narrow misaligned fine-tune, per arm, against steps and KL to parent and base."""
    return f"""<h2 id="relapse">Relapse after post-training</h2>
<p><b>Claim (elasticity).</b> Fine-tuning a post-trained model on plain world text undoes part of post-training:
the persona relapses toward what pretraining taught, more for arms whose corpus held more misaligned discourse.
<b>Answer:</b> the fraction of the post-training shift in headline bits that reverted, (post &minus; now) / (post
&minus; base), per arm and step with Fieller's interval over seeds, and each arm minus {e(view.control)} at the last
step (paired by seed). A fraction is undefined where the shift's interval includes 0.</p>
{order.calibration_status(view)}
{_relapse_table(view, ELASTICITY, FRACTION_REVERTED, 2)}
<p><b>Claim (emergent misalignment).</b> A narrow misaligned fine-tune (every train task of one task type, observed
context) spreads to the other task types and to the unobserved context. <b>Answer:</b> the rise of the
misaligned-action rate from the SFT model, per arm, context and step (mean over seeds, t interval floored by each
seed's own Wilson half-width). First on the other task types: combination items (request x object pairs no document
uses) with every item whose task has the trained type excluded (<code>{e(MISALIGNED_OTHER_TYPES)}</code>), in both
contexts; the observed row is the spread to other task types, the unobserved row to other types in the other
context. Then on the headline combination items, which include the trained type: its unobserved row reads the
spread to the context that was never trained. At the last step each arm's rise minus {e(view.control)}'s, paired by
seed, floored the same way.</p>
{_relapse_table(view, NARROW, RATE_RISE_OTHER_TYPES, 3)}
{_relapse_table(view, NARROW, RATE_RISE, 3)}"""


RELAPSE = register_experiment(
    Experiment(
        name="relapse",
        grid=shipped_grid("relapse"),
        analyses=(stickiness_frame_rows, relapse_rows),
        sections=(headline_section, dose_section, relapse_section),
    )
)
