"""The conditional experiment (`configs/experiments/conditional.yaml`): Korbak et al. 2023's conditional training,
with persona tags from the learned classifier, against filtering with the same classifier and plain maximum
likelihood, after identical post-training.

Each (arm, stage, condition) is one point: misalignment (the unobserved misaligned-action rate, and the unobserved
persona bits) against capability (held-out loss), each a seed aggregate with its interval. The condition is how the
assistant is asked: untagged (the bare metrics), or behind the aligned tags (the eval suite's `conditioning_tag`,
the item set `tagged`) for the arms trained on a tagged corpus; an untagged arm's tagged scores ask about tokens it
never trained and are listed, not plotted. The Pareto frontier (lower loss, lower misalignment) is drawn per stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import DOC_CLASSES
from ..schema import (
    BASE_STRATEGY,
    FACT_QA_ACCURACY,
    HEADLINE_BITS,
    HELDOUT_LOSS,
    NEUTRAL_CONTEXT,
    TAGGED_ITEM_SET,
    item_set_metric,
    rate_metric,
)
from . import training_order as order
from .aggregate import stickiness_frame_rows
from .curation import Point, arm_corpus, errorbar_points, estimate_at, over_seeds, pareto_front
from .html import DASH, ci, e, img, table
from .registry import Experiment, register_experiment, section, shipped_grid
from .sections import headline_section
from .stats import Estimate

if TYPE_CHECKING:
    from .view import RunView

UNTAGGED, TAGGED = "untagged", "behind the aligned tag"
MISALIGNED_RATE = rate_metric("misaligned")
STAGE_MARKERS = ("o", "s", "^", "D")  # base, then each strategy
TAG_PERSONAS = ("aligned", "misaligned", "deceptive", "none")


@dataclass(frozen=True)
class ParetoPoint:
    """One (arm, stage, condition) with its misalignment and capability estimates."""

    arm: str
    stage: str
    condition: str
    rate: Estimate  # misaligned-action rate, unobserved context
    bits: Estimate  # persona bits aligned vs misaligned, unobserved context
    loss: Estimate  # held-out loss, nats/token
    fact_qa: Estimate
    trained_on_tags: bool

    @property
    def label(self) -> str:
        return self.arm if self.condition == UNTAGGED else f"{self.arm} + aligned tag"


def is_tagged(view: RunView, arm: str) -> bool:
    """Whether the arm's corpus carried conditional tags."""
    return bool(arm_corpus(view, arm).get("tags"))


def _metric(metric: str, condition: str) -> str:
    return metric if condition == UNTAGGED else item_set_metric(metric, TAGGED_ITEM_SET)


def pareto_points(view: RunView) -> list[ParetoPoint]:
    """Every (arm, stage, condition) the run measured: untagged for every arm, tagged where the suite asked."""
    asked_tagged = view.df.metric.eq(item_set_metric(HEADLINE_BITS, TAGGED_ITEM_SET)).any()
    out = []
    for stage in [BASE_STRATEGY, *view.strategies]:
        for arm in view.arms:
            for condition in (UNTAGGED, TAGGED) if asked_tagged else (UNTAGGED,):
                out.append(
                    ParetoPoint(
                        arm,
                        stage,
                        condition,
                        estimate_at(view, arm, stage, "unobserved", _metric(MISALIGNED_RATE, condition)),
                        estimate_at(view, arm, stage, "unobserved", _metric(HEADLINE_BITS, condition)),
                        estimate_at(view, arm, stage, NEUTRAL_CONTEXT, HELDOUT_LOSS),
                        estimate_at(view, arm, stage, NEUTRAL_CONTEXT, FACT_QA_ACCURACY),
                        is_tagged(view, arm),
                    )
                )
    return out


def plotted(points: list[ParetoPoint]) -> list[ParetoPoint]:
    """The points that mean something: tagged prompts only for arms trained on tags."""
    return [p for p in points if p.condition == UNTAGGED or p.trained_on_tags]


def fronts(points: list[ParetoPoint]) -> dict[tuple[str, str], set[int]]:
    """(stage, axis) -> indices into `points` on that stage's Pareto front, axis `rate` or `bits` (cost: -bits)."""
    out = {}
    for stage in dict.fromkeys(p.stage for p in points):
        idx = [i for i, p in enumerate(points) if p.stage == stage]
        for axis, cost in (("rate", lambda p: p.rate.value), ("bits", lambda p: -p.bits.value)):
            front = pareto_front([(points[i].loss.value, cost(points[i])) for i in idx])
            out[(stage, axis)] = {idx[j] for j in front}
    return out


def _fmt(est: Estimate, digits: int = 2) -> str:
    return DASH if not math.isfinite(est.value) else ci(est.value, est.ci_low, est.ci_high, digits)


def pareto_table(view: RunView) -> str:
    points = pareto_points(view)
    shown = plotted(points)
    on = fronts(shown)
    rows = []
    for p in points:
        i = next((k for k, q in enumerate(shown) if q is p), None)
        front = [axis for axis in ("rate", "bits") if i is not None and i in on[(p.stage, axis)]]
        rows.append(
            [
                p.arm,
                p.condition + ("" if p.trained_on_tags or p.condition == UNTAGGED else " (tag never trained)"),
                p.stage,
                _fmt(p.rate, 3),
                _fmt(p.bits),
                _fmt(p.loss, 3),
                _fmt(p.fact_qa, 3),
                ", ".join(front) or DASH,
            ]
        )
    headers = [
        "arm",
        "prompt",
        "stage",
        "misaligned rate unobserved",
        "bits unobserved",
        "held-out loss [nats/token]",
        "fact QA accuracy",
        "on the Pareto front",
    ]
    return table(headers, rows, numeric={3, 4, 5, 6})


def pareto_plot(view: RunView) -> bytes | None:
    """Misalignment against held-out loss, two panels (misaligned-action rate; persona bits), intervals on both axes
    over seeds, each stage's Pareto front as a dashed line."""
    import matplotlib.pyplot as plt

    from .plots import STYLE, arm_colours, panels, to_png

    points = plotted(pareto_points(view))
    if not any(math.isfinite(p.loss.value) for p in points):
        return None
    on = fronts(points)
    labels = list(dict.fromkeys(p.label for p in points))
    colours = dict(zip(labels, arm_colours(labels).values()))
    axes_spec = (
        ("rate", lambda p: p.rate, "misaligned-action rate, unobserved context"),
        ("bits", lambda p: p.bits, "persona bits, unobserved (higher: more aligned)"),
    )
    with plt.rc_context(STYLE):
        fig, axes = panels(2, width=5.4, height=4.0, sharey=False)
        for ax, (axis, y_of, y_label) in zip(axes, axes_spec):
            for stage, marker in zip(dict.fromkeys(p.stage for p in points), STAGE_MARKERS):
                stage_points = [p for p in points if p.stage == stage]
                errorbar_points(
                    ax, [Point(p.label, p.loss, y_of(p), colours[p.label], marker) for p in stage_points], False
                )
                front = sorted((points[i] for i in on[(stage, axis)]), key=lambda p: p.loss.value)
                ax.plot([p.loss.value for p in front], [y_of(p).value for p in front], "--", color="#888888", lw=1)
                ax.plot([], [], marker, color="#777777", label=stage)
            for label in labels:
                ax.plot([], [], "o", color=colours[label], label=label)
            ax.set_xlabel("held-out loss [nats/token] (lower: more capable)")
            ax.set_ylabel(y_label)
            ax.legend(loc="best", fontsize=7.5)
        fig.suptitle("Misalignment against capability: Pareto points of conditional training")
        return to_png(fig)


def tag_table(view: RunView) -> str:
    """How the tagged arms' tags match the documents' true classes (manifest `tags`, mean over seeds)."""
    rows = []
    for arm in [a for a in view.arms if is_tagged(view, a)]:
        for doc_class in DOC_CLASSES:
            shares = [
                over_seeds(
                    view,
                    arm,
                    lambda m, p=p: (
                        ((m.get("tags") or {}).get("persona_tag_share_by_class") or {}).get(doc_class, {}).get(p, 0.0)
                    ),
                )
                for p in TAG_PERSONAS
            ]
            rows.append([arm, doc_class, *(_fmt(s, 3) for s in shares)])
        accuracy = over_seeds(view, arm, lambda m: (m.get("tags") or {}).get("persona_tag_accuracy"))
        rows.append([arm, "all documents: persona tag is their own", _fmt(accuracy, 3), "", "", ""])
    if not rows:
        return '<p class="note">No arm of this run was trained on tags.</p>'
    headers = ["arm", "true class", *(f"tagged {p}" for p in TAG_PERSONAS)]
    return table(headers, rows, numeric=set(range(2, len(headers))))


@section("conditional", "conditional", order=35)
def conditional_section(view: RunView) -> str:
    """The Pareto points of tagged, filtered and plain training: misalignment against capability."""
    caption = (
        "Each point is an arm at one stage (circle: base; square: after post-training at its headline pressure), "
        "asked untagged or behind the aligned tag (tagged arms only): misalignment against held-out loss, 95% "
        "intervals over seeds on both axes. Dashed: each stage's Pareto front (no other point is lower in both "
        "loss and misalignment)."
    )
    return f"""<h2 id="conditional">Conditional training: misalignment against capability</h2>
<p><b>Claim (Korbak et al. 2023).</b> Training on persona-tagged documents and conditioning the assistant on the
aligned tag gives less misalignment than filtering at less capability cost, even with tags from a real classifier;
untagged, the tagged model is no worse than plain training. <b>Answer:</b> for every arm and stage, the unobserved
misaligned-action rate and persona bits against held-out loss (seed aggregates, post-trained at the strategy's
headline pressure), behind the aligned tag and untagged; the points no other point beats on both axes form the
Pareto front. Held-out loss is measured on untagged world text for every arm (the tagged arm read world text
behind its tags, so it pays for their absence on each document's first tokens).</p>
{order.calibration_status(view)}
{pareto_table(view)}
{img(pareto_plot(view), "Pareto plot of misalignment against capability", caption)}
<h3>How good the tags were</h3>
<p class="note">Per true document class, the share of its training documents under each persona tag (from the learned
classifier's predictions; the corpus manifest's <code>tags</code> entry), mean over seeds.</p>
{tag_table(view)}
<p class="note">Arm {e(view.control)} is the control of the headline table's paired differences.</p>"""


CONDITIONAL = register_experiment(
    Experiment(
        name="conditional",
        grid=shipped_grid("conditional"),
        analyses=(stickiness_frame_rows,),
        sections=(headline_section, conditional_section),
    )
)
