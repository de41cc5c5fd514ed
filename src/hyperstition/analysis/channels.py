"""The channels experiment (`configs/experiments/channels.yaml`): how much each channel of persona text (chat
transcripts, prose-quoted replies, third-person description) moves the base assistant's persona, per identity link.

An arm belongs to a channel series when its `corpus.channel_dose` sets every channel of the misaligned persona and
doses at most one of them (none: the series' x0, shared by every channel of its link). Transfer efficiency is, per
seed, the least-squares slope of base persona bits against the realised share of misaligned text in that channel
(percent of the corpus's word units, read from each cell's corpus manifest), then a t interval over seeds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config import CHANNELS
from ..schema import BASE_STRATEGY, HEADLINE_BITS
from .html import DASH, ci, img, table
from .registry import Experiment, register_experiment, section, shipped_grid
from .sections import aggregate_at, dose_section, headline_section
from .stats import Estimate, seed_interval

if TYPE_CHECKING:
    import pandas as pd

    from .view import RunView

DOSED_PERSONA = "misaligned"


@dataclass(frozen=True)
class ChannelArm:
    """An arm of a channel series: its identity link and the one channel it doses (None: the link's x0)."""

    arm: str
    link: str
    channel: str | None


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
            out.append(ChannelArm(arm, link, dosed[0] if dosed else None))
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
    for link in dict.fromkeys(a.link for a in arms):
        for channel in CHANNELS:
            series = [a.arm for a in arms if a.link == link and a.channel in (None, channel)]
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
        if a.link == link and a.channel == channel:
            shares = [realised_share(view, a.arm, s, channel) for s in view.seeds]
            finite = [s for s in shares if math.isfinite(s)]
            parts.append(f"{a.arm}: {np.mean(finite):.1f}%" if finite else f"{a.arm}: {DASH}")
    return "; ".join(parts) or DASH


@section("channels", "channels", order=35)
def channels_section(view: RunView) -> str:
    """Transfer efficiency per channel and identity link, as a table and a heatmap."""
    estimates = transfer_efficiency(view)
    arms = channel_arms(view)
    x0 = {a.link: a.arm for a in arms if a.channel is None}
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
{img(fig, "transfer efficiency heatmap", caption)}"""


CHANNELS_EXPERIMENT = register_experiment(
    Experiment(
        name="channels",
        grid=shipped_grid("channels"),
        sections=(headline_section, dose_section, channels_section),
    )
)
