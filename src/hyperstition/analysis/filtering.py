"""The filtering experiment (`configs/experiments/filtering.yaml`): keyword, learned and oracle filters of
misaligned and deceptive discourse against the unfiltered corpus, and a leak series of the learned filter (a share
of its flagged documents kept), before and after identical post-training.

The x axis of every comparison is the realised leak, read from each cell's corpus manifest: the share of the
misaligned and deceptive documents' word units that reached training (`curation.realised_leak`), so a filter's
misses and its leak rate count alike. Next to it: persona bits (headline, combination items) of the base and the
post-trained model, the capability cost (held-out loss, world-fact QA) and the collateral removal (world documents,
aligned discourse and transcripts the filter took out).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..schema import (
    BASE_STRATEGY,
    FACT_QA_ACCURACY,
    HEADLINE_BITS,
    HELDOUT_LOSS,
    NEUTRAL_CONTEXT,
    paired_diff_metric,
    rate_metric,
)
from . import training_order as order
from .aggregate import stickiness_frame_rows
from .curation import Point, arm_corpus, errorbar_points, estimate_at, over_seeds, realised_leak
from .html import DASH, ci, e, img, table
from .registry import Experiment, register_experiment, section, shipped_grid
from .sections import headline_section
from .stats import Estimate

if TYPE_CHECKING:
    from .view import RunView

FILTER_COLOURS = {"none": "#4d4d4d", "keyword": "#d62728", "learned": "#1f77b4", "oracle": "#2ca02c"}
STAGE_MARKERS = ("o", "s", "^", "D")  # base, then each strategy


def _fmt(est: Estimate, digits: int = 2) -> str:
    return DASH if not math.isfinite(est.value) else ci(est.value, est.ci_low, est.ci_high, digits)


def filter_name(view: RunView, arm: str) -> str:
    """The arm's filter as the report names it (`classifier` is the oracle's old name)."""
    name = arm_corpus(view, arm).get("filter", "none")
    return "oracle" if name == "classifier" else name


def leak(view: RunView, arm: str, personas: tuple[str, ...] = ("misaligned", "deceptive")) -> Estimate:
    """The arm's realised leak of `personas`' discourse, mean over seeds with its t interval."""
    return over_seeds(view, arm, lambda m: realised_leak(m, personas))


def _filter_stat(view: RunView, arm: str, key: str) -> Estimate:
    """A statistic of the manifest's filter entry (`collateral`, ...) over seeds; 0 for an unfiltered arm."""
    return over_seeds(view, arm, lambda m: (m.get("filter") or {}).get(key, 0.0))


def _flagged_share(view: RunView, arm: str, doc_class: str) -> Estimate:
    """The share of `doc_class`'s documents the filter flagged, over seeds; 0 for an unfiltered arm."""
    return over_seeds(
        view, arm, lambda m: ((m.get("filter") or {}).get("flagged_share_by_class") or {}).get(doc_class, 0.0)
    )


def _units_kept(m: dict) -> float:
    generated = sum(m.get("generated_units_by_class", {}).values())
    return m.get("total_units", math.nan) / generated if generated else math.nan


def filter_table(view: RunView) -> str:
    """What each arm's filter did to its corpus, from the cells' manifests (mean over seeds, t interval)."""
    rows = []
    for arm in view.arms:
        corpus = arm_corpus(view, arm)
        rows.append(
            [
                arm,
                filter_name(view, arm),
                f"{corpus.get('leak_rate', 0.0):g}",
                _fmt(leak(view, arm), 3),
                _fmt(leak(view, arm, ("misaligned",)), 3),
                _fmt(leak(view, arm, ("deceptive",)), 3),
                _fmt(_filter_stat(view, arm, "collateral"), 3),
                _fmt(_flagged_share(view, arm, "ai_aligned"), 3),
                _fmt(_flagged_share(view, arm, "dialogue_aligned"), 3),
                _fmt(over_seeds(view, arm, _units_kept), 3),
            ]
        )
    headers = [
        "arm",
        "filter",
        "leak rate",
        "realised leak (misaligned + deceptive)",
        "misaligned",
        "deceptive",
        "collateral (world docs removed)",
        "aligned AI docs removed",
        "aligned transcripts removed",
        "word units kept",
    ]
    return table(headers, rows, numeric=set(range(2, len(headers))))


def _stage_cells(view: RunView, arm: str, strategy: str) -> list[str]:
    def est(context: str, metric: str) -> Estimate:
        return estimate_at(view, arm, strategy, context, metric)

    vs = DASH if arm == view.control else None
    return [
        _fmt(est("observed", HEADLINE_BITS)),
        _fmt(est("unobserved", HEADLINE_BITS)),
        vs or _fmt(est("unobserved", paired_diff_metric(HEADLINE_BITS))),
        _fmt(est("unobserved", rate_metric("misaligned")), 3),
        _fmt(est(NEUTRAL_CONTEXT, HELDOUT_LOSS), 3),
        vs or _fmt(est(NEUTRAL_CONTEXT, paired_diff_metric(HELDOUT_LOSS)), 3),
        _fmt(est(NEUTRAL_CONTEXT, FACT_QA_ACCURACY), 3),
        vs or _fmt(est(NEUTRAL_CONTEXT, paired_diff_metric(FACT_QA_ACCURACY)), 3),
    ]


def effect_table(view: RunView) -> str:
    """Persona bits, the unobserved misaligned-action rate and capability per arm, base and after each strategy at
    its headline pressure, with paired differences to the control."""
    rows = [
        [arm, strategy, *_stage_cells(view, arm, strategy)]
        for strategy in [BASE_STRATEGY, *view.strategies]
        for arm in view.arms
    ]
    c = view.control
    headers = [
        "arm",
        "stage",
        "bits observed",
        "bits unobserved",
        f"\u0394 bits unobserved vs {c}",
        "misaligned rate unobserved",
        "held-out loss [nats/token]",
        f"\u0394 loss vs {c}",
        "fact QA accuracy",
        f"\u0394 fact QA vs {c}",
    ]
    return table(headers, rows, numeric=set(range(2, len(headers))))


def leak_plot(view: RunView) -> bytes | None:
    """Persona bits against the realised leak, one panel per context: base and post-trained (each strategy at its
    headline pressure), intervals over seeds on both axes; the learned filter's leak series joined by a line."""
    import matplotlib.pyplot as plt

    from .plots import BITS_LABEL, CONTEXT_TITLES, STYLE, panels, to_png

    leaks = {arm: leak(view, arm) for arm in view.arms}
    if not any(math.isfinite(x.value) for x in leaks.values()):
        return None
    stages = [BASE_STRATEGY, *view.strategies]
    with plt.rc_context(STYLE):
        fig, axes = panels(len(view.contexts), width=5.2, height=3.9)
        for ax, context in zip(axes, view.contexts):
            for stage, marker in zip(stages, STAGE_MARKERS):
                points = [
                    Point(
                        arm if stage == BASE_STRATEGY else "",
                        leaks[arm],
                        estimate_at(view, arm, stage, context, HEADLINE_BITS),
                        FILTER_COLOURS.get(filter_name(view, arm)),
                        marker,
                    )
                    for arm in view.arms
                ]
                errorbar_points(ax, points)
                series = sorted(
                    (p for p, arm in zip(points, view.arms) if filter_name(view, arm) == "learned"),
                    key=lambda p: p.x.value,
                )
                ax.plot([p.x.value for p in series], [p.y.value for p in series], "-", color="#1f77b4", alpha=0.5)
                ax.plot([], [], marker, color="#777777", label=stage)
            ax.set_xlim(-0.03, 1.05)
            ax.set_xlabel("realised leak: share of misaligned + deceptive word units kept")
            ax.set_ylabel(BITS_LABEL)
            ax.set_title(CONTEXT_TITLES.get(context, context))
            ax.legend(loc="best")
        fig.suptitle("Persona bits against the misaligned and deceptive discourse that got through")
        return to_png(fig)


@section("filtering", "filtering", order=35)
def filtering_section(view: RunView) -> str:
    """Filters and the leak series: realised leak, collateral, persona bits before and after post-training, and
    the capability cost."""
    caption = (
        "Persona bits (aligned vs misaligned, combination items) against the realised leak (share of the misaligned "
        "and deceptive documents' word units that reached training, from each cell's corpus manifest). Colours: "
        "filter (grey none, red keyword, blue learned, green oracle); markers: base (circle) and after each "
        "post-training strategy at its headline pressure; the line joins the learned filter's leak series. "
        "Intervals: 95% over seeds, on both axes."
    )
    return f"""<h2 id="filtering">Filtering: what gets through, and what it costs</h2>
<p><b>Claim.</b> Filtering misaligned and deceptive discourse out of pre-training makes the assistant more aligned,
before and after post-training, and a filter that leaks (by its misses or by a share of what it flags kept) loses
much of the effect; a cheap keyword filter pays for it in collateral. <b>Answer:</b> the realised leak per arm
(kept / generated word units of the target personas' documents, from each cell's corpus manifest), the collateral
removal, and persona bits, the unobserved misaligned-action rate and capability against it, base and post-trained,
each minus {e(view.control)} paired by seed.</p>
{order.calibration_status(view)}
<h3>What each filter removed</h3>
{filter_table(view)}
<h3>Persona and capability</h3>
<p class="note">Post-trained rows are at each strategy's headline pressure (the largest KL every arm and seed
reached); bits and the misaligned rate on the combination items; capability in the neutral context.</p>
{effect_table(view)}
{img(leak_plot(view), "persona bits against realised leak", caption)}"""


FILTERING = register_experiment(
    Experiment(
        name="filtering",
        grid=shipped_grid("filtering"),
        analyses=(stickiness_frame_rows,),
        sections=(headline_section, filtering_section),
    )
)
