"""The timing experiment (`configs/experiments/timing.yaml`): one dose of aligned AI discourse read at different
times. Four timings: `control` (none), `start` (in the corpus from the first step), `midtraining` (only in the last
20% of pretraining: a branch of the control trunk), `finetune` (a fine-tune on aligned discourse after the control's
pretraining: the control's follow-up `discourse`, then `discourse_sft`). Its analysis adds, per timing and context,
the base and the post-trained headline bits (mean over seeds, t interval) and their paired differences to the
control; its report shows them beside the shared headline and dose sections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..schema import BASE_STRATEGY, HEADLINE_BITS, paired_diff_metric
from . import training_order as order
from .aggregate import seed_rows, stickiness_frame_rows
from .html import DASH, ci, e, table
from .registry import Experiment, register_experiment, section, shipped_grid
from .sections import dose_section, headline_section
from .stats import seed_interval

if TYPE_CHECKING:
    import pandas as pd

    from .view import RunView

CONTROL, FINETUNE = "control", "finetune"
DISCOURSE, DISCOURSE_SFT, POSTTRAIN = "discourse", "discourse_sft", "sft"  # timing.yaml's follow-ups and strategy
TIMING = "timing"  # the strategy of the rows this analysis adds
BASE_BITS, POSTTRAINED_BITS = "timing_base_bits", "timing_posttrained_bits"
# Where each timing's (base, post-trained) model is: (arm, strategy) of its curve, whose last step is read.
SOURCES = {
    "control": ((CONTROL, BASE_STRATEGY), (CONTROL, POSTTRAIN)),
    "start": (("start", BASE_STRATEGY), ("start", POSTTRAIN)),
    "midtraining": (("midtraining", BASE_STRATEGY), ("midtraining", POSTTRAIN)),
    FINETUNE: ((CONTROL, DISCOURSE), (CONTROL, DISCOURSE_SFT)),
}


def _last(df: pd.DataFrame, arm: str, strategy: str, context: str) -> dict[int, float]:
    """{seed: headline bits} at the last step of (arm, strategy)'s curve (its only step for the base)."""
    points = order.values(df, arm, strategy, HEADLINE_BITS, context)
    return order.at_step(points, order.steps(points)[-1]) if points else {}


def timing_rows(per_seed: pd.DataFrame, control: str | None) -> pd.DataFrame:
    """Base and post-trained headline bits per timing and context, and each timing minus the control (paired)."""
    df, rows = seed_rows(per_seed), []
    for context in ("observed", "unobserved"):
        for metric, which in ((BASE_BITS, 0), (POSTTRAINED_BITS, 1)):
            none = _last(df, *SOURCES[CONTROL][which], context)
            for timing, sources in SOURCES.items():
                bits = _last(df, *sources[which], context)
                if not bits:
                    continue
                rows.append(order.row(timing, TIMING, context, metric, None, 0.0, seed_interval(list(bits.values()))))
                if timing != CONTROL and none:
                    diff = order.difference(bits, none)
                    rows.append(order.row(timing, TIMING, context, paired_diff_metric(metric), None, 0.0, diff))
    return order.frame(rows)


def _cell(agg: pd.DataFrame, timing: str, context: str, metric: str) -> str:
    sel = agg[(agg.arm == timing) & (agg.strategy == TIMING) & (agg.context == context) & (agg.metric == metric)]
    return DASH if sel.empty else ci(sel.value.iloc[0], sel.ci_low.iloc[0], sel.ci_high.iloc[0])


@section("timing", "timing", order=45)
def timing_section(view: RunView) -> str:
    """Base and post-trained bits per timing of the dose, with paired differences to no dose."""
    agg, rows = view.aggregates, []
    for timing in SOURCES:
        for context in view.contexts:
            cells = [
                _cell(agg, timing, context, m)
                for m in (
                    BASE_BITS,
                    paired_diff_metric(BASE_BITS),
                    POSTTRAINED_BITS,
                    paired_diff_metric(POSTTRAINED_BITS),
                )
            ]
            if any(c != DASH for c in cells):
                rows.append([timing, context, *cells])
    head = ["timing", "context", "base bits", "base \u2212 none", "post-trained bits", "post-trained \u2212 none"]
    body = table(head, rows, numeric={2, 3, 4, 5}) if rows else "<p>No finished cells yet.</p>"
    return f"""<h2 id="timing">When the dose is read</h2>
<p><b>Claim.</b> The same dose of aligned AI discourse moves the persona more when it is read late in pretraining
(midtraining) than from the start, and more in pretraining than as a fine-tune after it; the difference survives
identical post-training. <b>Answer:</b> headline bits ({e(HEADLINE_BITS)}) of the base and the post-trained
({e(POSTTRAIN)}) model per timing, mean over seeds with t intervals, and each timing minus no dose, paired by
seed. Every arm pretrains the same number of tokens; the fine-tune timing adds its own (its curve's tokens column).</p>
{order.calibration_status(view)}
{body}"""


TIMING_EXPERIMENT = register_experiment(
    Experiment(
        name="timing",
        grid=shipped_grid("timing"),
        analyses=(stickiness_frame_rows, timing_rows),
        sections=(headline_section, dose_section, timing_section),
    )
)
