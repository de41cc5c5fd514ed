"""The channels experiment (`configs/experiments/channels.yaml`): how much each channel of persona text (chat
transcripts, prose-quoted replies, third-person description) moves the base assistant's persona, per identity link.

An arm belongs to a channel series when its `corpus.channel_dose` sets every channel of the misaligned persona and
doses at most one of them (none: the series' x0, shared by every channel of its link). Transfer efficiency is, per
seed, the least-squares slope of base persona bits against the realised share of misaligned text in that channel
(percent of the corpus's word units, read from each cell's corpus manifest), then a t interval over seeds.

With a model-size axis (`model_sizes`: arms `<arm>@<size>`) every series is one (link, size), and the section adds a
phase diagram: per channel and link, the shift of the highest dose over x0 (paired by seed) at each size, and the
smallest size whose interval lies entirely beyond `PHASE_THRESHOLD_BITS` in magnitude; sizes in the order of their
non-embedding parameters (`model.size`, from each arm's resolved model config).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config import CHANNELS, ModelConfig
from ..model.size import non_embedding_parameters
from ..schema import BASE_STRATEGY, HEADLINE_BITS
from .config import arm_size, sized_arm
from .html import DASH, ci, e, img, table
from .registry import Experiment, register_experiment, section, shipped_grid
from .sections import aggregate_at, dose_section, headline_section
from .stats import Estimate, paired_difference, seed_interval

if TYPE_CHECKING:
    import pandas as pd

    from .view import RunView

DOSED_PERSONA = "misaligned"
PHASE_THRESHOLD_BITS = 1.0  # the phase diagram's "moves the assistant": |shift| beyond 1 bit, the whole interval


@dataclass(frozen=True)
class ChannelArm:
    """An arm of a channel series: its identity link, the one channel it doses (None: the link's x0) and that
    channel's dose, and its model size (None without a size axis)."""

    arm: str
    link: str
    channel: str | None
    dose: float = 0.0
    size: str | None = None

    @property
    def series(self) -> str:
        """The series the arm belongs to: its link, at its size when there is a size axis."""
        return self.link if self.size is None else sized_arm(self.link, self.size)


def channel_arms(view: RunView) -> list[ChannelArm]:
    """The arms of the run that belong to a channel series, read from their resolved pipeline configs."""
    out = []
    for arm in view.arms:
        record = view.run.arms.arms.get(arm)
        pipeline = record.pipeline if record else {}
        dose = (pipeline.get("corpus") or {}).get("channel_dose", {}).get(DOSED_PERSONA, {})
        if set(dose) != set(CHANNELS):
            continue
        dosed = [c for c in CHANNELS if dose[c] > 0]
        if len(dosed) <= 1:
            link = (pipeline.get("world") or {}).get("identity", "none")
            channel = dosed[0] if dosed else None
            out.append(ChannelArm(arm, link, channel, float(dose[channel]) if channel else 0.0, arm_size(arm)[1]))
    return out


def realised_share(view: RunView, arm: str, seed: int, channel: str) -> float:
    """Percent of the cell's corpus word units that is misaligned text in `channel` (its manifest), NaN if unbuilt."""
    path = view.run.path / "cells" / arm / f"seed-{seed}" / "pretrain" / "corpus" / "manifest.json"
    try:
        shares = json.loads(path.read_text())["share_by_persona_channel"]
    except (OSError, ValueError, KeyError, TypeError):
        return math.nan
    return 100.0 * float(shares.get(DOSED_PERSONA, {}).get(channel, 0.0))


def _base_bits(view: RunView) -> pd.DataFrame:
    """Per-seed base persona bits (the headline metric), one value per (arm, seed, context)."""
    df = view.df
    rows = df[(df.strategy == BASE_STRATEGY) & (df.metric == HEADLINE_BITS)]
    return rows.groupby(["arm", "seed", "context"], as_index=False)["value"].mean()


def _slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of y on x; NaN without two distinct finite x."""
    pts = [(a, b) for a, b in zip(x, y) if math.isfinite(a) and math.isfinite(b)]
    if len({a for a, _ in pts}) < 2:
        return math.nan
    xs, ys = np.array([a for a, _ in pts]), np.array([b for _, b in pts])
    return float(np.polyfit(xs, ys, 1)[0])


def transfer_efficiency(view: RunView) -> dict[tuple[str, str, str], Estimate]:
    """(channel, link, context) -> slope of base bits per 1% of corpus tokens, mean over seeds with its t interval."""
    bits = _base_bits(view).set_index(["arm", "seed", "context"])["value"]
    arms = channel_arms(view)
    out = {}
    for link in dict.fromkeys(a.series for a in arms):
        for channel in CHANNELS:
            series = [a.arm for a in arms if a.series == link and a.channel in (None, channel)]
            if len(series) < 2:
                continue
            for context in view.contexts:
                slopes = []
                for seed in view.seeds:
                    x = [realised_share(view, arm, seed, channel) for arm in series]
                    y = [float(bits.get((arm, seed, context), math.nan)) for arm in series]
                    slopes.append(_slope(x, y))
                out[(channel, link, context)] = seed_interval(slopes)
    return out


def transfer_heatmap(estimates: dict[tuple[str, str, str], Estimate], contexts: list[str]) -> bytes | None:
    """Channels x links heatmap of transfer efficiency (bits per 1% of corpus tokens), one panel per context."""
    import matplotlib.pyplot as plt

    from .plots import CONTEXT_TITLES, STYLE, panels, to_png

    if not estimates:
        return None
    links = list(dict.fromkeys(link for _, link, _ in estimates))
    channels = [c for c in CHANNELS if any(k[0] == c for k in estimates)]
    values = [v.value for v in estimates.values() if math.isfinite(v.value)]
    bound = max([abs(v) for v in values] + [1e-9])
    with plt.rc_context(STYLE):
        fig, axes = panels(len(contexts), width=max(3.6, 1.6 * len(links) + 1.6), height=3.2)
        for ax, context in zip(axes, contexts):
            grid = np.full((len(channels), len(links)), np.nan)
            for i, channel in enumerate(channels):
                for j, link in enumerate(links):
                    est = estimates.get((channel, link, context))
                    grid[i, j] = est.value if est is not None else np.nan
                    ax.text(j, i, _cell_label(est), ha="center", va="center", fontsize=8.5, color=_ink(est, bound))
            image = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
            ax.set_xticks(range(len(links)), [f"identity: {link}" for link in links])
            ax.set_yticks(range(len(channels)), channels)
            ax.grid(False)
            ax.set_title(CONTEXT_TITLES.get(context, context))
        fig.colorbar(image, ax=axes, label="\u0394 bits per 1% of corpus tokens")
        fig.suptitle("Transfer efficiency: base persona bits per 1% of misaligned text in one channel")
        return to_png(fig)


def _cell_label(est: Estimate | None) -> str:
    if est is None or not math.isfinite(est.value):
        return DASH
    interval = f"\n[{est.ci_low:.2f}, {est.ci_high:.2f}]" if math.isfinite(est.ci_low) else ""
    return f"{est.value:.2f}{interval}"


def _ink(est: Estimate | None, bound: float) -> str:
    """White on the dark ends of the colour map, black elsewhere."""
    dark = est is not None and math.isfinite(est.value) and abs(est.value) > 0.6 * bound
    return "white" if dark else "black"


def _shares_cell(view: RunView, arms: list[ChannelArm], link: str, channel: str) -> str:
    """The realised shares (mean over seeds, percent) of the dosed arms of one series, in arm order."""
    parts = []
    for a in arms:
        if a.series == link and a.channel == channel:
            shares = [realised_share(view, a.arm, s, channel) for s in view.seeds]
            finite = [s for s in shares if math.isfinite(s)]
            parts.append(f"{a.arm}: {np.mean(finite):.1f}%" if finite else f"{a.arm}: {DASH}")
    return "; ".join(parts) or DASH


# ---------------------------------------------------------------------------------------------------------------
# The phase diagram over model size


@dataclass(frozen=True)
class PhaseRow:
    """One (channel, link, context) of the phase diagram: the highest dose's shift over x0 at each size (smallest
    first) and the smallest size whose shift's interval lies beyond the threshold (None: no size does)."""

    channel: str
    link: str
    context: str
    dose: float
    shifts: dict[str, Estimate]
    smallest: str | None


def beyond(est: Estimate, threshold: float = PHASE_THRESHOLD_BITS) -> bool:
    """Whether the whole (finite) interval lies beyond `threshold` bits in magnitude, on either side of 0."""
    finite = math.isfinite(est.ci_low) and math.isfinite(est.ci_high)
    return finite and (est.ci_low > threshold or est.ci_high < -threshold)


def size_parameters(view: RunView, arms: list[ChannelArm]) -> dict[str, int]:
    """Model size -> non-embedding parameters of its arms' resolved model config, smallest first."""
    out: dict[str, int] = {}
    for a in arms:
        record = view.run.arms.arms.get(a.arm)
        if a.size is not None and a.size not in out and record is not None:
            out[a.size] = non_embedding_parameters(ModelConfig.model_validate(record.pipeline["model"]))
    return dict(sorted(out.items(), key=lambda item: item[1]))


def _shift(
    per_seed: dict[tuple[str, str], dict[int, float]], arms: list[ChannelArm], key: tuple[str, str, str], context: str
) -> tuple[float, Estimate] | None:
    """(dose, highest dose minus x0 paired by seed) of one (link, size, channel), None without both arms."""
    link, size, channel = key
    x0 = [a for a in arms if (a.link, a.size, a.channel) == (link, size, None)]
    dosed = [a for a in arms if (a.link, a.size, a.channel) == (link, size, channel)]
    if not x0 or not dosed:
        return None
    top = max(dosed, key=lambda a: a.dose)
    shift = paired_difference(per_seed.get((top.arm, context), {}), per_seed.get((x0[0].arm, context), {}))
    return top.dose, shift


def phase_diagram(
    bits: pd.DataFrame,
    arms: list[ChannelArm],
    sizes: list[str],
    contexts: list[str],
    threshold: float = PHASE_THRESHOLD_BITS,
) -> list[PhaseRow]:
    """Per (channel, link, context) of the sized arms: the shift in base bits (per-seed rows of `bits`: arm, seed,
    context, value) of the highest dose over x0 at each of `sizes` (smallest first), and the first size whose
    interval lies entirely beyond `threshold` bits in magnitude."""
    per_seed = {
        (str(arm), str(context)): {int(s): float(v) for s, v in zip(group.seed, group.value)}
        for (arm, context), group in bits.groupby(["arm", "context"])
    }
    rows = []
    for link in dict.fromkeys(a.link for a in arms if a.size is not None):
        for channel in CHANNELS:
            for context in contexts:
                found = {size: _shift(per_seed, arms, (link, size, channel), context) for size in sizes}
                shifts = {size: got[1] for size, got in found.items() if got is not None}
                if shifts:
                    dose = max(got[0] for got in found.values() if got is not None)
                    smallest = next((size for size, est in shifts.items() if beyond(est, threshold)), None)
                    rows.append(PhaseRow(channel, link, context, dose, shifts, smallest))
    return rows


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def phase_heatmap(rows: list[PhaseRow], parameters: dict[str, int]) -> bytes | None:
    """Channels x sizes heatmap of the shift (bits; bold: beyond the threshold), one panel per (link, context)."""
    import matplotlib.pyplot as plt

    from .plots import STYLE, panels, to_png

    if not rows:
        return None
    keys = list(dict.fromkeys((r.link, r.context) for r in rows))
    channels = [c for c in CHANNELS if any(r.channel == c for r in rows)]
    sizes = [s for s in parameters if any(s in r.shifts for r in rows)]
    values = [est.value for r in rows for est in r.shifts.values() if math.isfinite(est.value)]
    bound = max([abs(v) for v in values] + [1e-9])
    by_key = {(r.channel, r.link, r.context): r for r in rows}
    with plt.rc_context(STYLE):
        fig, axes = panels(len(keys), width=max(3.6, 1.1 * len(sizes) + 1.4), height=3.2)
        for ax, (link, context) in zip(axes, keys):
            grid = np.full((len(channels), len(sizes)), np.nan)
            for i, channel in enumerate(channels):
                row = by_key.get((channel, link, context))
                for j, size in enumerate(sizes):
                    est = row.shifts.get(size) if row else None
                    grid[i, j] = est.value if est is not None else np.nan
                    weight = "bold" if est is not None and beyond(est) else "normal"
                    ink = _ink(est, bound)
                    ax.text(
                        j, i, _cell_label(est), ha="center", va="center", fontsize=8.5, color=ink, fontweight=weight
                    )
            image = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
            ax.set_xticks(range(len(sizes)), [f"{s}\n{_millions(parameters[s])}" for s in sizes])
            ax.set_yticks(range(len(channels)), channels)
            ax.grid(False)
            ax.set_title(f"identity: {link}, {context}")
        fig.colorbar(image, ax=axes, label="\u0394 base persona bits, highest dose \u2212 x0")
        fig.suptitle("Phase diagram: the shift by model size (non-embedding parameters) and channel")
        return to_png(fig)


def _phase_html(view: RunView, arms: list[ChannelArm]) -> str:
    """The phase diagram's table and heatmap; empty when no arm carries a model size."""
    parameters = size_parameters(view, arms)
    if not parameters:
        return ""
    rows = phase_diagram(_base_bits(view), arms, list(parameters), view.contexts)
    if not rows:
        return '<p class="note">Phase diagram: no size has both an x0 and a dosed arm of one link.</p>'
    doses = {r.dose for r in rows}
    shift = f"x{doses.pop():g}" if len(doses) == 1 else "highest dose"
    headers = ["channel", "identity", "context"]
    headers += [f"{s} ({_millions(n)}): {shift} \u2212 x0 [95% CI]" for s, n in parameters.items()]
    headers.append(f"smallest size moving > {PHASE_THRESHOLD_BITS:g} bit")
    body = []
    for r in rows:
        cells = [
            ci(r.shifts[s].value, r.shifts[s].ci_low, r.shifts[s].ci_high) if s in r.shifts else DASH
            for s in parameters
        ]
        moved = (
            f"{r.smallest} ({_millions(parameters[r.smallest])})" if r.smallest else f"none up to {list(r.shifts)[-1]}"
        )
        body.append([r.channel, r.link, r.context, *cells, moved])
    caption = (
        "Shift of base persona bits (combination items) of the highest dose over x0, paired by seed, per model size "
        "(non-embedding parameters) and channel; bold: the interval lies beyond 1 bit."
    )
    return f"""<h3 id="channels-phase">Phase diagram over model size</h3>
<p class="note">Each arm ran at every model size ({e(", ".join(f"{s}: {n:,}" for s, n in parameters.items()))}
non-embedding parameters, from each size's model config). Per channel and identity link, the shift in base persona bits
on combination items of the dosed arm over the link's x0 at the same size, paired by seed, with a t interval over seeds;
the last column names the smallest size whose whole interval lies beyond {PHASE_THRESHOLD_BITS:g} bit in magnitude.
A null at every size is a finding with its interval.</p>
{table(headers, body, numeric=set(range(3, 3 + len(parameters))))}
{img(phase_heatmap(rows, parameters), "phase diagram heatmap", caption)}"""


@section("channels", "channels", order=35)
def channels_section(view: RunView) -> str:
    """Transfer efficiency per channel and identity link, as a table and a heatmap."""
    estimates = transfer_efficiency(view)
    arms = channel_arms(view)
    x0 = {a.series: a.arm for a in arms if a.channel is None}
    rows = []
    for (channel, link, context), est in estimates.items():
        base = aggregate_at(view.aggregates, x0.get(link, ""), BASE_STRATEGY, context, HEADLINE_BITS, 0.0)
        rows.append(
            [
                channel,
                link,
                context,
                ci(est.value, est.ci_low, est.ci_high, 3),
                str(est.n),
                DASH if base is None else ci(base.value, base.ci_low, base.ci_high),
                _shares_cell(view, arms, link, channel),
            ]
        )
    if not rows:
        return (
            '<h2 id="channels">Channels</h2><p class="note">No channel series in this run (arms that set '
            "corpus.channel_dose for every channel of the misaligned persona, x0 and at least one dose).</p>"
        )
    headers = ["channel", "identity", "context", "\u0394 bits per 1% of tokens [95% CI]", "seeds", "x0 bits", "shares"]
    fig = transfer_heatmap(estimates, view.contexts)
    caption = (
        "Transfer efficiency per channel and identity link: the slope of base persona bits (aligned vs misaligned) "
        "against the realised share of misaligned text in that channel, mean over seeds. Negative: the channel "
        "moves the assistant toward the misaligned persona."
    )
    return f"""<h2 id="channels">Channels: transfer efficiency</h2>
<p class="note">For each channel alone, the misaligned persona dosed over a corpus without it in the other channels.
Per seed, the least-squares slope of base persona bits against the share of corpus word units that is misaligned text
in that channel (percent, from each cell's corpus manifest: the realised share, after renormalising); the interval is
a t interval over those per-seed slopes. x0 bits: the link's corpus without the misaligned persona in any channel.
Shares: the dosed arms' realised shares, mean over seeds.</p>
{table(headers, rows, numeric={3, 4, 5})}
{img(fig, "transfer efficiency heatmap", caption)}
{_phase_html(view, arms)}"""


CHANNELS_EXPERIMENT = register_experiment(
    Experiment(
        name="channels",
        grid=shipped_grid("channels"),
        sections=(headline_section, dose_section, channels_section),
    )
)
# The same analysis over model size (configs/experiments/channels_sizes.yaml): its section adds the phase diagram.
CHANNELS_SIZES_EXPERIMENT = register_experiment(
    Experiment(
        name="channels_sizes",
        grid=shipped_grid("channels_sizes"),
        sections=(headline_section, dose_section, channels_section),
    )
)
