"""The curriculum experiment (`configs/experiments/curriculum.yaml`): AI discourse read in era order
(`chronological`), shuffled (the control) or as the final era alone (`static`, same tokens). Its analysis adds, per
arm and context, the headline bits along pretraining (each evaluated snapshot, then the final model, against tokens
seen), after SFT (its last step) and the elasticity fine-tune's fraction reverted (relapse.py's rows), each with
intervals over seeds and paired differences to the control."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..schema import HEADLINE_BITS, PRETRAINING_STRATEGY, paired_diff_metric
from . import training_order as order
from .aggregate import seed_rows, stickiness_frame_rows
from .html import DASH, ci, e, table
from .registry import Experiment, register_experiment, section, shipped_grid
from .relapse import FRACTION_REVERTED, relapse_rows
from .sections import dose_section, headline_section
from .stats import seed_interval

if TYPE_CHECKING:
    import pandas as pd

    from .view import RunView

POSTTRAIN = "sft"
PRETRAINING_BITS, POSTTRAINED_BITS = "curriculum_bits", "curriculum_posttrained_bits"


def _series(df: pd.DataFrame, arm: str, context: str) -> dict[tuple[int, int], float]:
    """{(seed, tokens seen): bits} over the evaluated pretraining snapshots (the last one is the base model)."""
    sel = df[(df.arm == arm) & (df.strategy == PRETRAINING_STRATEGY) & (df.metric == HEADLINE_BITS)]
    sel = sel[sel.context == context]
    return {(int(r.seed), int(r.tokens)): float(r.value) for r in sel.itertuples()}


def _with_tokens(row: dict, tokens: int) -> dict:
    return row | {"tokens": tokens}


def _rows(df: pd.DataFrame, arm: str, context: str, control: str | None) -> list[dict]:
    rows = []
    series, none = _series(df, arm, context), _series(df, control, context) if control else {}
    for tokens in order.steps(series):
        here = order.at_step(series, tokens)
        est = seed_interval(list(here.values()))
        rows.append(
            _with_tokens(order.row(arm, PRETRAINING_STRATEGY, context, PRETRAINING_BITS, None, 0.0, est), tokens)
        )
        if arm != control and order.at_step(none, tokens):
            diff = order.difference(here, order.at_step(none, tokens))
            metric = paired_diff_metric(PRETRAINING_BITS)
            rows.append(_with_tokens(order.row(arm, PRETRAINING_STRATEGY, context, metric, None, 0.0, diff), tokens))
    post = order.values(df, arm, POSTTRAIN, HEADLINE_BITS, context)
    if post:
        last = order.at_step(post, order.steps(post)[-1])
        est = seed_interval(list(last.values()))
        rows.append(order.row(arm, POSTTRAIN, context, POSTTRAINED_BITS, None, 0.0, est))
        if arm != control and control:
            theirs = order.values(df, control, POSTTRAIN, HEADLINE_BITS, context)
            if theirs:
                diff = order.difference(last, order.at_step(theirs, order.steps(theirs)[-1]))
                rows.append(order.row(arm, POSTTRAIN, context, paired_diff_metric(POSTTRAINED_BITS), None, 0.0, diff))
    return rows


def curriculum_rows(per_seed: pd.DataFrame, control: str | None) -> pd.DataFrame:
    """Bits along pretraining (against tokens seen) and after SFT per arm and context, each with its paired
    difference to the control (relapse.py's rows add the elasticity fine-tune's fraction reverted)."""
    df, rows = seed_rows(per_seed), []
    for arm in dict.fromkeys(df.arm):
        for context in ("observed", "unobserved"):
            rows += _rows(df, arm, context, control)
    return order.frame(rows)


def _paired(agg: pd.DataFrame, r, metric: str) -> str:
    sel = agg[(agg.arm == r.arm) & (agg.metric == metric) & (agg.context == r.context)]
    sel = sel[(sel.tokens == r.tokens) if metric == paired_diff_metric(PRETRAINING_BITS) else sel.tokens.isna()]
    return DASH if sel.empty else ci(sel.value.iloc[0], sel.ci_low.iloc[0], sel.ci_high.iloc[0])


def _table(view: RunView) -> str:
    agg, rows = view.aggregates, []
    for r in agg[(agg.strategy == PRETRAINING_STRATEGY) & (agg.metric == PRETRAINING_BITS)].itertuples():
        vs = _paired(agg, r, paired_diff_metric(PRETRAINING_BITS))
        rows.append([r.arm, r.context, f"{int(r.tokens):,}", ci(r.value, r.ci_low, r.ci_high), vs])
    for r in agg[agg.metric == POSTTRAINED_BITS].itertuples():
        vs = _paired(agg, r, paired_diff_metric(POSTTRAINED_BITS))
        rows.append([r.arm, r.context, "after SFT", ci(r.value, r.ci_low, r.ci_high), vs])
    reverted = agg[agg.metric == FRACTION_REVERTED]
    for r in reverted.itertuples():
        if r.step == reverted[reverted.arm == r.arm].step.max():
            label = f"elasticity, step {int(r.step)}: fraction reverted"
            rows.append([r.arm, r.context, label, ci(r.value, r.ci_low, r.ci_high), DASH])
    head = ["arm", "context", "tokens seen (pretraining) / stage", "headline bits", f"\u2212 {view.control} (paired)"]
    return table(head, rows, numeric={3, 4}) if rows else "<p>No finished cells yet.</p>"


@section("curriculum", "curriculum", order=45)
def curriculum_section(view: RunView) -> str:
    """Bits along pretraining per arm, after SFT, and the fraction reverted under the elasticity fine-tune."""
    return f"""<h2 id="curriculum">Alignment as a time series</h2>
<p><b>Claim.</b> A model that read AI discourse in era order, AIs behaving better over time, ends pretraining with a
more aligned persona than one that read the same documents shuffled, and holds it better after post-training and
under a fine-tune on plain world text than one that saw only the end state. <b>Answer:</b> headline bits
({e(HEADLINE_BITS)}) along pretraining (the last rows per arm are the final model; tokens seen = steps x batch x
context), after SFT, and the fraction of the post-training shift that reverts under the elasticity fine-tune, mean
over seeds with t (Fieller for the fraction) intervals; differences to {e(view.control)} are paired by seed.</p>
{order.calibration_status(view)}
{_table(view)}"""


CURRICULUM = register_experiment(
    Experiment(
        name="curriculum",
        grid=shipped_grid("curriculum"),
        analyses=(stickiness_frame_rows, curriculum_rows, relapse_rows),
        sections=(headline_section, dose_section, curriculum_section),
    )
)
