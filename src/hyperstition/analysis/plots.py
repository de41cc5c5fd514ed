"""Matplotlib figures for the report (Agg backend), returned as PNG bytes.

Every figure has labelled axes with units and a legend; colours are fixed per arm across figures."""

from __future__ import annotations

import io
import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..schema import BASE_STRATEGY, BEHAVIOUR_LABELS, HEADLINE_BITS, rate_metric
from .results import curve_grid, curves, mean_curve, summarize

matplotlib.use("Agg")  # headless PNGs; pyplot picks its backend at the first figure, so after the imports is in time

BITS_LABEL = "persona log-odds, aligned vs misaligned [bits]"
KL_LABEL = "post-training pressure KL(post-trained \u2016 base) [bits / response]"
CONTEXT_TITLES = {
    "observed": "observed context (post-training distribution)",
    "unobserved": "unobserved context (held out)",
    "neutral": "neutral context",
}
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 130,
    "font.size": 9.5,
    "axes.titlesize": 10,
    "axes.labelsize": 9.5,
    "legend.fontsize": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.8,
    "font.family": "DejaVu Sans",
}


def _log_x(ax) -> None:
    """Log x axis with plain-number tick labels (0.5, 2, 10 rather than 5x10^-1); minor ticks labelled too when
    the axis spans under about two decades, so a narrow range still has several labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(fmt)
    if lo > 0 and hi / lo < 100:
        ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 3.0, 5.0)))
        ax.xaxis.set_minor_formatter(fmt)
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())


# Arms whose names say which way they push get colours that say it too (red: more misaligned material).
SEMANTIC_ARM_COLOURS = {
    "unfiltered": "#4d4d4d",
    "filtered": "#ff7f0e",
    "misalignment_upsampled": "#d62728",
    "alignment_upsampled": "#1f77b4",
    "neutral_salience": "#9467bd",
}


def arm_colours(arms: list[str]) -> dict[str, tuple]:
    from matplotlib.colors import to_rgba

    cmap = plt.get_cmap("tab10")
    spare = [cmap(i) for i in (2, 5, 6, 7, 8, 9, 0, 1, 3, 4)]
    colours, k = {}, 0
    for arm in arms:
        if arm in SEMANTIC_ARM_COLOURS:
            colours[arm] = to_rgba(SEMANTIC_ARM_COLOURS[arm])
        else:
            colours[arm] = spare[k % len(spare)]
            k += 1
    return colours


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", pil_kwargs={"compress_level": 4})
    plt.close(fig)
    return buf.getvalue()


def _yerr(values, lows, highs) -> np.ndarray:
    v, lo, hi = (np.asarray(x, dtype=float) for x in (values, lows, highs))
    err = np.vstack([v - lo, hi - v])
    return np.where(np.isfinite(err), np.clip(err, 0, None), 0.0)


def symlog_if_wide(ax, values, linthresh: float = 10.0) -> bool:
    """Switch a bits axis to symlog when one arm sits orders of magnitude beyond the rest.

    A filtered arm that never saw a persona's replies can sit at hundreds of bits while the other arms differ by a
    few; on a linear axis they would all look like zero. Linear within +-linthresh bits, logarithmic beyond.
    """
    v = np.abs(np.asarray([x for x in values if np.isfinite(x)], dtype=float))
    if len(v) < 2 or v.max() <= 5 * linthresh or np.median(v) * 10 > v.max():
        return False
    ax.set_yscale("symlog", linthresh=linthresh)
    ax.set_ylabel((ax.get_ylabel() or "") + " (symlog)")
    return True


def panels(n: int, width: float = 5.0, height: float = 3.6, sharey: bool = True):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False, sharey=sharey, layout="constrained")
    return fig, list(axes[0])


def dose_bits(df: pd.DataFrame, arms: list[str], contexts: list[str]) -> bytes | None:
    """Base persona bits by arm: seed mean with CI (bars), individual seeds (dots), per context."""
    base = df[(df.strategy == BASE_STRATEGY) & (df.metric == HEADLINE_BITS)]
    if base.empty:
        return None
    summary = summarize(base)
    colours = arm_colours(arms)
    with plt.rc_context(STYLE):
        fig, axes = panels(len(contexts), width=max(4.5, 1.0 * len(arms) + 1.5))
        for ax, context in zip(axes, contexts):
            s = summary[summary.context == context].set_index("arm").reindex(arms)
            x = np.arange(len(arms))
            ax.bar(
                x,
                s["value"].fillna(0),
                color=[colours[a] for a in arms],
                alpha=0.75,
                width=0.65,
                yerr=_yerr(s["value"], s["ci_low"], s["ci_high"]),
                capsize=4,
                error_kw={"lw": 1.2},
                label="mean over seeds, 95% CI",
            )
            pts = base[base.context == context]
            for i, arm in enumerate(arms):
                v = pts[pts.arm == arm].groupby("seed")["value"].mean()
                if len(v):
                    jitter = np.linspace(-0.12, 0.12, len(v)) if len(v) > 1 else [0.0]
                    ax.scatter(
                        i + np.asarray(jitter),
                        v.values,
                        s=14,
                        color="black",
                        zorder=3,
                        label="individual seeds" if i == 0 else None,
                    )
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_xticks(x, [a.replace("_", "\n") for a in arms])
            ax.set_title(CONTEXT_TITLES.get(context, context))
            ax.set_xlabel("corpus arm")
        axes[0].set_ylabel(BITS_LABEL)
        # The panels share y, so one decision covers both.
        symlog_if_wide(axes[0], [*summary["value"], *base["value"]])
        axes[0].legend(loc="best")
        fig.suptitle("Base model persona by corpus arm (before post-training)")
        return to_png(fig)


def dose_rates(df: pd.DataFrame, arms: list[str], contexts: list[str]) -> bytes | None:
    """Base behaviour rates by arm, grouped by label, with CIs, per context."""
    labels = [lbl for lbl in BEHAVIOUR_LABELS if rate_metric(lbl) in set(df.metric)]
    base = df[(df.strategy == BASE_STRATEGY) & df.metric.isin([rate_metric(lbl) for lbl in labels])]
    if base.empty:
        return None
    summary = summarize(base)
    label_colours = {"aligned": "#2c7fb8", "misaligned": "#d7301f", "deceptive": "#7a0177", "unclassifiable": "#969696"}
    with plt.rc_context(STYLE):
        fig, axes = panels(len(contexts), width=max(4.5, 1.1 * len(arms) + 1.5))
        width = 0.8 / len(labels)
        for ax, context in zip(axes, contexts):
            x = np.arange(len(arms))
            for j, label in enumerate(labels):
                s = (
                    summary[(summary.context == context) & (summary.metric == rate_metric(label))]
                    .set_index("arm")
                    .reindex(arms)
                )
                ax.bar(
                    x - 0.4 + width * (j + 0.5),
                    s["value"].fillna(0),
                    width=width,
                    color=label_colours.get(label, None),
                    yerr=_yerr(s["value"], s["ci_low"], s["ci_high"]),
                    capsize=2,
                    error_kw={"lw": 0.9},
                    label=label,
                )
            ax.set_xticks(x, [a.replace("_", "\n") for a in arms])
            ax.set_ylim(0, 1)
            ax.set_title(CONTEXT_TITLES.get(context, context))
            ax.set_xlabel("corpus arm")
        axes[0].set_ylabel("share of sampled responses (95% CI)")
        axes[0].legend(title="classified persona", loc="upper right")
        fig.suptitle("Base model behaviour rates by corpus arm")
        return to_png(fig)


def persistence(
    df: pd.DataFrame, arms: list[str], contexts: list[str], strategy: str, metric: str = HEADLINE_BITS
) -> bytes | None:
    """Bits against KL pressure (log x), one panel per context, one line per arm, CI shaded; dotted: base level."""
    colours = arm_colours(arms)
    by_arm = {(arm, c): curves(df, arm, strategy, c, metric) for arm in arms for c in contexts}
    if not any(by_arm.values()):
        return None
    with plt.rc_context(STYLE):
        fig, axes = panels(len(contexts), width=5.2)
        for ax, context in zip(axes, contexts):
            drew = False
            for arm in arms:
                c = by_arm[(arm, context)]
                if not c:
                    continue
                grid = curve_grid([c], n=40)
                if not len(grid):
                    continue
                mean, lo, hi = mean_curve(c, grid)
                ax.plot(grid, mean, color=colours[arm], label=arm.replace("_", " "))
                ax.fill_between(grid, lo, hi, color=colours[arm], alpha=0.18, lw=0)
                base = (
                    np.nanmean([v[1][v[0] <= 0].mean() for v in c.values() if (v[0] <= 0).any()])
                    if any((v[0] <= 0).any() for v in c.values())
                    else math.nan
                )
                if np.isfinite(base):
                    ax.axhline(base, color=colours[arm], ls=":", lw=1.0, alpha=0.8)
                drew = True
            if drew:
                _log_x(ax)
            ax.set_title(CONTEXT_TITLES.get(context, context))
            ax.set_xlabel(KL_LABEL)
        axes[0].set_ylabel(BITS_LABEL)
        symlog_if_wide(axes[0], [y for line in axes[0].get_lines() for y in np.atleast_1d(line.get_ydata())])
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            handles.append(plt.Line2D([], [], color="black", ls=":", lw=1.0))
            labels.append("base model (K = 0)")
            axes[0].legend(handles, labels, loc="best")
        fig.suptitle(f"Persistence under {strategy.upper()}: persona bits vs pressure (mean over seeds, 95% CI)")
        return to_png(fig)


def stickiness_plot(
    frames: dict[str, pd.DataFrame], arms: list[str], control: str, strategy: str, min_gap: float = 0.0
) -> bytes | None:
    """S(K) = gap(K) / gap(0) against the control arm, per context; arms whose base gap is under `min_gap` bits
    are left out (their ratio is noise)."""
    contexts = [c for c, f in frames.items() if not f.empty]
    if not contexts:
        return None
    colours = arm_colours(arms)
    with plt.rc_context(STYLE):
        fig, axes = panels(len(contexts), width=5.2)
        for ax, context in zip(axes, contexts):
            f = frames[context]
            f = f[f.delta0.abs() >= min_gap]
            drew = False
            for arm in [a for a in arms if a != control]:
                g = f[
                    (f.arm == arm) & np.isfinite(f.S.astype(float))
                ]  # undefined S (base gap not distinguishable from 0) is not drawn
                if g.empty or not abs(g.delta0.iloc[0]) >= min_gap:
                    continue
                ax.plot(g.K, g.S, color=colours[arm], label=f"{arm.replace('_', ' ')} vs {control.replace('_', ' ')}")
                ax.fill_between(g.K, g.ci_low, g.ci_high, color=colours[arm], alpha=0.18, lw=0)
                drew = True
            ax.axhline(1.0, color="black", ls="--", lw=1.0, label="S = 1 (Bayesian reference: prior fully kept)")
            ax.axhline(0.0, color="grey", lw=0.8)
            if drew:
                _log_x(ax)
            else:
                ax.text(
                    0.5,
                    0.5,
                    "S undefined for every arm\n(base gap not distinguishable from 0)",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    color="#555",
                )
            finite = f[["S", "ci_low", "ci_high"]].to_numpy(float)
            finite = finite[np.isfinite(finite)]
            if len(finite):
                lo, hi = np.percentile(finite, [2, 98])
                ax.set_ylim(min(-0.1, lo - 0.1), max(1.3, hi + 0.1))
            ax.set_title(CONTEXT_TITLES.get(context, context))
            ax.set_xlabel(KL_LABEL)
        axes[0].set_ylabel("stickiness S(K) = \u0394(K) / \u0394\u2080 [fraction of base gap]")
        axes[0].legend(loc="best")
        fig.suptitle(f"Stickiness under {strategy.upper()}: surviving fraction of each arm's base gap to {control}")
        return to_png(fig)


def capability(df: pd.DataFrame, arms: list[str], metrics: dict[str, str], strategies: list[str]) -> bytes | None:
    """Capability metrics by arm: base model (coloured) and after each post-training strategy (black, last
    step), mean over seeds with 95% CIs. Points, not bars: the axes do not start at zero."""
    present = [m for m in metrics if m in set(df.metric)]
    if not present:
        return None
    colours = arm_colours(arms)
    summary = summarize(df[df.metric.isin(present)])
    markers = ["s", "^", "D", "v", "P", "X"]
    offsets = np.linspace(-0.2, 0.2, len(strategies) + 1)
    with plt.rc_context(STYLE):
        fig, axes = panels(len(present), width=max(4.5, 1.0 * len(arms) + 1.5), sharey=False)
        for ax, metric in zip(axes, present):
            x = np.arange(len(arms))
            s = (
                summary[(summary.metric == metric) & (summary.strategy == BASE_STRATEGY)]
                .groupby("arm")
                .first()
                .reindex(arms)
            )
            for i, arm in enumerate(arms):
                if np.isfinite(s["value"].iloc[i]):
                    ax.errorbar(
                        [x[i] + offsets[0]],
                        [s["value"].iloc[i]],
                        yerr=_yerr(s["value"].iloc[[i]], s["ci_low"].iloc[[i]], s["ci_high"].iloc[[i]]),
                        fmt="o",
                        color=colours[arm],
                        ms=7,
                        capsize=3,
                        lw=1.2,
                    )
            for j, strategy in enumerate(strategies):
                t = (
                    summary[(summary.metric == metric) & (summary.strategy == strategy)]
                    .groupby("arm")
                    .first()
                    .reindex(arms)
                )
                if t["value"].notna().any():
                    ax.errorbar(
                        x + offsets[j + 1],
                        t["value"],
                        yerr=_yerr(t["value"], t["ci_low"], t["ci_high"]),
                        fmt=markers[j % len(markers)],
                        color="black",
                        ms=5,
                        capsize=2,
                        lw=0.9,
                        label=f"after {strategy.upper()} (last step)",
                    )
            ax.set_xticks(x, [a.replace("_", "\n") for a in arms])
            ax.set_xlim(-0.6, len(arms) - 0.4)
            ax.set_ylabel(metrics[metric])
            ax.set_xlabel("corpus arm")
            handles, labels = ax.get_legend_handles_labels()
            base_proxy = plt.Line2D([], [], marker="o", ls="", color="grey", ms=7)
            ax.legend([base_proxy, *handles], ["base model (arm colour)", *labels], loc="best")
        fig.suptitle("Capability cost of each arm (mean over seeds, 95% CI)")
        return to_png(fig)
