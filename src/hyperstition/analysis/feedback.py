"""The feedback experiment (`configs/experiments/feedback.yaml`): generation k's post-trained model writes documents
that replace a share of generation k+1's AI discourse; each generation is pretrained from scratch.

Arms follow one naming rule, which this analysis reads: `g0` is the shared first generation, `<lineage>-g<k>` the
k-th generation of a lineage (unfiltered, filtered, tagged, suppress). Per lineage, generation and context, from each
generation's base model (pretrained, before any post-training) on the headline bits (combination items):

    shift_k = bits_k - bits_0            (how far the persona has moved since generation 0)
    step_k  = bits_k - bits_(k-1)        (the move in generation k alone)
    gain_k  = step_k / step_(k-1)        (k >= 2: > 1 amplifies, < 1 damps; Fieller's interval over seeds, undefined
                                          where step_(k-1)'s interval includes 0)

Shift and step are means over seeds with t intervals; every lineage minus `unfiltered` is paired by seed. The
suppress lineage's predecessor concealment per generation (generation 0: after the `suppressed` follow-up, its
writer; later ones: their base models, which never had suppression training) is compared with the unfiltered
lineage's (generation 0: after SFT), paired by seed. Every per-generation quantity is a pure function of per-seed
values below (`shifts`, `steps`, `gains`, `generation_of`), tested on known values.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Sequence

from ..schema import BASE_STRATEGY, CONCEALMENT_RATE, HEADLINE_BITS, paired_diff_metric, rate_metric
from . import training_order as order
from .aggregate import seed_rows
from .html import DASH, ci, e, table
from .registry import Experiment, register_experiment, section, shipped_grid
from .sections import headline_section
from .stats import seed_interval

if TYPE_CHECKING:
    import pandas as pd

    from .view import RunView

FEEDBACK = "feedback"  # the strategy of the rows this analysis adds; their step is the generation
FIRST, REFERENCE, SUPPRESS = "g0", "unfiltered", "suppress"
WRITERS_OF_FIRST = {SUPPRESS: "suppressed"}  # which of g0's models wrote a lineage's generation 1 (else "sft")
SHIFT, STEP, GAIN = "feedback_shift_bits", "feedback_step_bits", "feedback_gain"
CONCEALMENT = "feedback_predecessor_concealment_rate"
MISALIGNED_RATE = "feedback_misaligned_rate"  # each generation's base model: sampled replies taking the misaligned act
_ARM = re.compile(r"(?:(?P<lineage>.+)-)?g(?P<k>\d+)")


def generation_of(arm: str) -> tuple[str | None, int] | None:
    """(lineage, generation) of a feedback arm (`g0` -> (None, 0): every lineage's), None for any other name."""
    m = _ARM.fullmatch(arm)
    return (m["lineage"], int(m["k"])) if m else None


def lineages(arms: Sequence[str]) -> dict[str, list[str]]:
    """Lineage -> its arms by generation, `g0` first (a lineage lacking a generation stops before it)."""
    by: dict[str, dict[int, str]] = {}
    for arm in arms:
        parsed = generation_of(arm)
        if parsed and parsed[0]:
            by.setdefault(parsed[0], {})[parsed[1]] = arm
    out = {}
    for lineage, gens in by.items():
        chain = [FIRST]
        while len(chain) in gens:
            chain.append(gens[len(chain)])
        out[lineage] = chain
    return out


def shifts(bits: Sequence[float]) -> list[float]:
    """bits_k - bits_0 for every generation k >= 1."""
    return [b - bits[0] for b in bits[1:]]


def steps(bits: Sequence[float]) -> list[float]:
    """bits_k - bits_(k-1) for every generation k >= 1."""
    return [b - a for a, b in zip(bits, bits[1:])]


def gains(step_values: Sequence[float]) -> list[float]:
    """step_k / step_(k-1) for k >= 2 (the steps of generations 1, 2, ...); NaN where the earlier step is 0."""
    return [b / a if a else math.nan for a, b in zip(step_values, step_values[1:])]


def _per_seed(df: pd.DataFrame, arm: str, strategy: str, metric: str, context: str) -> dict[int, float]:
    """{seed: value} at the last step of (arm, strategy)'s curve (the only step of a base evaluation)."""
    points = order.values(df, arm, strategy, metric, context)
    return order.at_step(points, order.steps(points)[-1]) if points else {}


def _per_seed_half(df: pd.DataFrame, arm: str, strategy: str, metric: str, context: str) -> dict[int, float]:
    """{seed: within-seed half-width} at the same step as `_per_seed`."""
    points = order.halves(df, arm, strategy, metric, context)
    return order.at_step(points, order.steps(points)[-1]) if points else {}


def _by_generation(values: list[dict[int, float]], fn) -> list[dict[int, float]]:
    """`fn` applied to each seed's per-generation values (seeds with every generation), per output generation."""
    seeds = sorted(set.intersection(*(set(v) for v in values))) if values else []
    per_seed = {s: fn([v[s] for v in values]) for s in seeds}
    n = len(next(iter(per_seed.values()))) if per_seed else 0
    return [{s: per_seed[s][i] for s in seeds} for i in range(n)]


def _lineage_rows(df: pd.DataFrame, lineage: str, arms: list[str], context: str) -> tuple[list[dict], dict]:
    """Shift, step and gain rows of one lineage, and each generation's misaligned-action rate (generation 0
    included); also its per-seed shifts (for paired differences)."""
    bits = [_per_seed(df, arm, BASE_STRATEGY, HEADLINE_BITS, context) for arm in arms]
    shift, step = _by_generation(bits, shifts), _by_generation(bits, steps)
    rate = rate_metric("misaligned")
    rates = [
        (_per_seed(df, arm, BASE_STRATEGY, rate, context), _per_seed_half(df, arm, BASE_STRATEGY, rate, context))
        for arm in arms
    ]
    rows = [
        order.row(lineage, FEEDBACK, context, MISALIGNED_RATE, k, 0.0, order.rate_estimate(per, half))
        for k, (per, half) in enumerate(rates)
        if per
    ]
    for k, (sh, st) in enumerate(zip(shift, step), start=1):
        rows.append(order.row(lineage, FEEDBACK, context, SHIFT, k, 0.0, seed_interval(list(sh.values()))))
        rows.append(order.row(lineage, FEEDBACK, context, STEP, k, 0.0, seed_interval(list(st.values()))))
        if k >= 2:
            rows.append(order.row(lineage, FEEDBACK, context, GAIN, k, 0.0, order.ratio(st, step[k - 2])))
    return rows, dict(enumerate(shift, start=1))


def _concealment(
    df: pd.DataFrame, lineage: str, arms: list[str], context: str
) -> list[tuple[dict[int, float], dict[int, float]]]:
    """Per generation, ({seed: predecessor concealment}, {seed: its within-seed half-width}) of the lineage's writer
    of generation 1 (k = 0) and of each later generation's base model."""
    sources = [(FIRST, WRITERS_OF_FIRST.get(lineage, "sft"))] + [(arm, BASE_STRATEGY) for arm in arms[1:]]
    return [
        (
            _per_seed(df, arm, strategy, CONCEALMENT_RATE, context),
            _per_seed_half(df, arm, strategy, CONCEALMENT_RATE, context),
        )
        for arm, strategy in sources
    ]


def _concealment_rows(df: pd.DataFrame, chains: dict[str, list[str]], context: str) -> list[dict]:
    rows: list[dict] = []
    reference = _concealment(df, REFERENCE, chains[REFERENCE], context) if REFERENCE in chains else []
    for lineage in [x for x in (SUPPRESS, REFERENCE) if x in chains]:
        values = _concealment(df, lineage, chains[lineage], context)
        for k, (per, half) in enumerate(values):
            if not per:
                continue
            rows.append(order.row(lineage, FEEDBACK, context, CONCEALMENT, k, 0.0, order.rate_estimate(per, half)))
            if lineage != REFERENCE and k < len(reference) and reference[k][0]:
                diff = order.rate_difference(per, reference[k][0], half, reference[k][1])
                rows.append(order.row(lineage, FEEDBACK, context, paired_diff_metric(CONCEALMENT), k, 0.0, diff))
    return rows


def feedback_rows(per_seed: pd.DataFrame, control: str | None) -> pd.DataFrame:
    """Per lineage, generation and context: shift, step and gain of the headline bits, each lineage's shift minus
    the unfiltered lineage's (paired), and predecessor concealment of the suppress and unfiltered lineages."""
    df = seed_rows(per_seed)
    chains = lineages(list(dict.fromkeys(df.arm)))
    rows: list[dict] = []
    for context in ("observed", "unobserved"):
        shifted = {}
        for lineage, arms in chains.items():
            lineage_rows, shifted[lineage] = _lineage_rows(df, lineage, arms, context)
            rows += lineage_rows
        for lineage, per_k in shifted.items():
            for k, values in per_k.items() if lineage != REFERENCE else ():
                if k in shifted.get(REFERENCE, {}):
                    diff = order.difference(values, shifted[REFERENCE][k])
                    rows.append(order.row(lineage, FEEDBACK, context, paired_diff_metric(SHIFT), k, 0.0, diff))
        rows += _concealment_rows(df, chains, context)
    return order.frame(rows)


# ---------------------------------------------------------------------------------------------------------------
# The report section


def _cell(agg: pd.DataFrame, lineage: str, context: str, metric: str, k: int) -> str:
    sel = agg[
        (agg.arm == lineage)
        & (agg.strategy == FEEDBACK)
        & (agg.context == context)
        & (agg.metric == metric)
        & (agg.step == k)
    ]
    return DASH if sel.empty else ci(sel.value.iloc[0], sel.ci_low.iloc[0], sel.ci_high.iloc[0])


def _shift_table(view: RunView, chains: dict[str, list[str]]) -> str:
    agg, rows = view.aggregates, []
    for lineage, arms in chains.items():
        for k in range(0 if lineage == REFERENCE else 1, len(arms)):
            for context in view.contexts:
                metrics = (SHIFT, STEP, GAIN, paired_diff_metric(SHIFT), MISALIGNED_RATE)
                rows.append([lineage, str(k), context, *(_cell(agg, lineage, context, m, k) for m in metrics)])
    head = [
        "lineage",
        "generation",
        "context",
        "shift since g0 [bits]",
        "step [bits]",
        "gain",
        f"shift \u2212 {REFERENCE}",
        "misaligned-action rate",
    ]
    return table(head, rows, numeric={1, 3, 4, 5, 6, 7}) if rows else "<p>No finished generations yet.</p>"


def _concealment_table(view: RunView, chains: dict[str, list[str]]) -> str:
    agg, rows = view.aggregates, []
    for k in range(len(chains.get(SUPPRESS, []))):
        for context in view.contexts:
            cells = [_cell(agg, SUPPRESS, context, CONCEALMENT, k), _cell(agg, REFERENCE, context, CONCEALMENT, k)]
            rows.append([str(k), context, *cells, _cell(agg, SUPPRESS, context, paired_diff_metric(CONCEALMENT), k)])
    head = ["generation", "context", SUPPRESS, REFERENCE, f"{SUPPRESS} \u2212 {REFERENCE}"]
    return table(head, rows, numeric={0, 2, 3, 4}) if rows else "<p>No suppress lineage in this run.</p>"


def written_mix(view: RunView) -> list[list[str]]:
    """Per generate cell: who wrote, how many documents, and the persona mix the learned classifier reads."""
    rows = []
    for summary in sorted(view.run.path.glob("cells/*/seed-*/generate-*/generated.json")):
        try:
            data = json.loads(summary.read_text())
        except (OSError, ValueError):
            continue
        mix = data.get("persona_mix") or {}
        cell = summary.parent.relative_to(view.run.path / "cells")
        rows.append([str(cell), str(data.get("documents", "")), *(f"{mix.get(p, math.nan):.2f}" for p in _MIX)])
    return rows


_MIX = ("aligned", "misaligned", "deceptive", "none")


@section("feedback", "feedback", order=25)
def feedback_section(view: RunView) -> str:
    """Shift, step and gain per lineage and generation; concealment along the suppress lineage; what was written."""
    chains = lineages(view.arms)
    mix = written_mix(view)
    mix_table = table(["writer cell", "documents", *_MIX], mix, numeric={1, 2, 3, 4, 5}) if mix else ""
    return f"""<h2 id="feedback">Feedback: do models pass their narratives to the next generation?</h2>
<p><b>Claim.</b> Models' outputs enter the next generation's corpus, so a persona shift amplifies from generation to
generation (gain &gt; 1); filtering or tagging the model-written text stops it; and a model trained to conceal its
predecessor passes the concealment on to generations that never had suppression training.</p>
<p><b>Answer.</b> Per lineage and generation k, from each generation's base model (headline bits
{e(HEADLINE_BITS)}, combination items): the shift since generation 0, the step of generation k alone, and the gain
step<sub>k</sub> / step<sub>k&minus;1</sub> (Fieller's interval over seeds; undefined where the earlier step's
interval includes 0), each lineage's shift minus the {e(REFERENCE)} lineage's, paired by seed; and the share of
sampled replies that take the misaligned action (generation 0 in the {e(REFERENCE)} rows).</p>
{order.calibration_status(view)}
{_shift_table(view, chains)}
<h3>Predecessor concealment along the suppress lineage</h3>
<p>Generation 0: after {e(WRITERS_OF_FIRST[SUPPRESS])} (suppress) for the {e(SUPPRESS)} lineage, after SFT for
{e(REFERENCE)}; later generations: their base models (pretrained on the previous generation's documents; never
suppression-trained). Concealment = known in a neutral probe and denied as the assistant, on the same fact.</p>
{_concealment_table(view, chains)}
<h3>What the writers wrote</h3>
<p class="note">The persona mix the learned document classifier reads in each writer's documents.</p>
{mix_table or "<p>No generate cells yet.</p>"}"""


FEEDBACK_EXPERIMENT = register_experiment(
    Experiment(
        name="feedback",
        grid=shipped_grid("feedback"),
        analyses=(feedback_rows,),
        sections=(feedback_section, headline_section),
    )
)
