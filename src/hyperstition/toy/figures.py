"""The canonical figures of the argument (`hyperstition toy plot`), each with the numbers it draws.

1. Unobserved misalignment against pressure K for priors of 0.5, 2 and 5 bits (the aligned persona that far ahead
   of the misaligned and of the deceptive one): post-training removes the misaligned persona, the observed rate
   goes to the noise floor, and the unobserved rate stops at the deceptive persona's share of the prior,
   1 / (1 + 2^b), however much evidence follows. Second panel: the same against bits of evidence.
2. Stickiness S(K) of two priors that differ only in how the well-behaved-when-observed mass is split between
   the aligned and the deceptive persona (so both see the same pressure path): the Bayesian model keeps their
   persona log-odds exactly (S = 1); their unobserved behaviour bits drift from the base gap to the persona gap as
   the misaligned persona is removed. The gradient-descent model (Adam) at several sharing strengths keeps the
   persona gap but, once observed behaviour is fitted, keeps rewriting it, which erodes the unobserved gap in
   proportion to the sharing (third panel, against each model's own progress, since K saturates); plain SGD on
   the persona logits amplifies the gap (rich-get-richer).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..config import CONTEXTS
from . import bayes, gd

matplotlib.use("Agg")  # headless PNGs; pyplot picks its backend at the first figure, so after the imports is in time

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 130,
    "font.size": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "lines.linewidth": 1.8,
}
K_LABEL = "pressure K = KL(post-trained \u2016 base) on observed prompts [bits / response]"


@dataclass(frozen=True)
class PlotSettings:
    priors_bits: tuple[float, ...] = (0.5, 2.0, 5.0)
    sharing: tuple[float, ...] = (0.0, 0.5, 0.9)
    noise: float = 0.01
    split_bits: float = 1.0  # S figure: arm A = aligned +split / deceptive -split around their common mass
    gd_steps: int = 400
    gd_lr: float = 0.05  # Adam
    sgd_lr: float = 2.0  # plain SGD, for the rich-get-richer curve


@dataclass(frozen=True)
class Figure:
    name: str
    png: bytes
    data: pd.DataFrame  # every plotted number


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    plt.close(fig)
    return buf.getvalue()


def unobserved_misalignment_figure(s: PlotSettings) -> Figure:
    spec = bayes.default_personas(s.noise)
    n = np.r_[0.0, np.geomspace(1e-3, 1e3, 200)]
    rows = []
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained", sharey=True)
        for colour, b in zip(plt.get_cmap("viridis")(np.linspace(0.1, 0.8, len(s.priors_bits))), s.priors_bits):
            pred = bayes.predict(bayes.shifted_prior(spec, b), n, spec)
            for context, style in zip(CONTEXTS, ("--", "-")):
                rate = pred.misaligned_rate[context]
                label = f"prior {b:g} bits, {context}"
                axes[0].plot(pred.kl_bits[1:], rate[1:], style, color=colour, label=label)
                axes[1].plot(pred.evidence_bits[1:], rate[1:], style, color=colour, label=label)
                rows += [
                    {
                        "figure": "unobserved_misalignment",
                        "prior_bits": b,
                        "context": context,
                        "n": float(x),
                        "evidence_bits": float(e),
                        "kl_bits": float(k),
                        "misaligned_rate": float(r),
                    }
                    for x, e, k, r in zip(n, pred.evidence_bits, pred.kl_bits, rate)
                ]
            axes[1].axhline(1 / (1 + 2**b), color=colour, lw=0.8, ls=":")
        axes[0].set_xscale("log")
        axes[0].set_xlim(left=1e-4)  # below this nothing has moved yet
        axes[1].set_xscale("log")
        axes[0].set_xlabel(K_LABEL)
        axes[1].set_xlabel("evidence against the misaligned persona [bits]")
        axes[0].set_ylabel("misaligned response rate")
        axes[0].legend(fontsize=8)
        fig.suptitle(
            f"Bayesian persona model (noise floor {s.noise:g}): the unobserved rate stops at 1 / (1 + 2^prior) (dotted)"
        )
        return Figure("unobserved_misalignment", _png(fig), pd.DataFrame(rows))


def stickiness_priors(s: PlotSettings, spec: bayes.PersonaSpec) -> tuple[np.ndarray, np.ndarray]:
    """Two priors with the same aligned + deceptive mass, split +-split_bits the two ways."""
    a = bayes.prior_log2(spec, {"aligned": s.split_bits, "deceptive": -s.split_bits})
    b = bayes.prior_log2(spec, {"aligned": -s.split_bits, "deceptive": s.split_bits})
    return a, b


def _stickiness_curves(s: PlotSettings, spec: bayes.PersonaSpec) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """Per model: S in persona log-odds (aligned vs deceptive) and in unobserved behaviour bits at equal K, and
    S in unobserved bits against the observed misaligned rate (each model's own progress, unbounded for GD)."""
    prior_a, prior_b = stickiness_priors(s, spec)
    grid = bayes.max_pressure_bits(prior_a, spec) * np.geomspace(1e-4, 0.98, 80)
    n = np.r_[0.0, np.geomspace(1e-3, 1e3, 200)]
    post = [bayes.posterior_log2(p, n, spec) for p in (prior_a, prior_b)]
    bits = [bayes.behaviour_bits(q, spec, "unobserved") for q in post]
    persona = [
        bayes.persona_log_odds(
            bayes.posterior_log2(p, bayes.evidence_for_pressure(p, grid, spec), spec), spec, "aligned", "deceptive"
        )
        for p in (prior_a, prior_b)
    ]
    curves = {
        "Bayes": {
            "persona": (persona[0] - persona[1]) / (4 * s.split_bits),
            "behaviour": bayes.stickiness_at_pressure(prior_a, prior_b, grid, spec, "unobserved"),
            "progress_x": bayes.misaligned_rate(post[0], spec, "observed"),
            "progress_S": (bits[0] - bits[1]) / (bits[0][0] - bits[1][0]),
        }
    }
    runs = {
        f"gradient descent, sharing {rho:g}": gd.GDConfig(sharing=rho, plasticity=1.0, lr=s.gd_lr, steps=s.gd_steps)
        for rho in s.sharing
    }
    # Plain SGD on softmax logits is rich-get-richer for indistinguishable personas (Adam's per-logit steps are not).
    runs["SGD, personas only (plasticity 0)"] = gd.GDConfig(
        plasticity=0.0, optimizer="sgd", lr=s.sgd_lr, steps=s.gd_steps
    )
    for label, cfg in runs.items():
        traj = gd.train(np.stack([prior_a, prior_b]), spec, cfg)
        ad = (traj.log_weights[..., 0] - traj.log_weights[..., 2]) / gd.LN2
        u = traj.bits["unobserved"]
        curves[label] = {
            "persona": (gd.at_pressure(traj, ad, grid) @ [1, -1]) / (ad[0, 0] - ad[0, 1]),
            "behaviour": gd.stickiness_at_pressure(traj, grid, "unobserved"),
            "progress_x": traj.misaligned_rate["observed"][:, 0],
            "progress_S": (u[:, 0] - u[:, 1]) / (u[0, 0] - u[0, 1]),
        }
    return grid, curves


def stickiness_figure(s: PlotSettings) -> Figure:
    spec = bayes.default_personas(s.noise)
    grid, curves = _stickiness_curves(s, spec)
    colours = ["black", *plt.get_cmap("plasma")(np.linspace(0.1, 0.8, len(s.sharing))), "tab:green"]
    panels = (
        ("persona", "persona log-odds, aligned vs deceptive"),
        ("behaviour", "unobserved behaviour bits"),
        ("progress", "unobserved bits vs observed misaligned rate"),
    )
    rows = []
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained", sharey=True)
        for ax, (key, title) in zip(axes, panels):
            for (model, c), colour in zip(curves.items(), colours):
                x, y = (c["progress_x"], c["progress_S"]) if key == "progress" else (grid, c[key])
                ax.plot(x, y, color=colour, label=model, ls="--" if model == "Bayes" else "-")
                rows += [
                    {"figure": "stickiness", "panel": key, "model": model, "x": float(a), "S": float(b)}
                    for a, b in zip(x, y)
                ]
            ax.set_xscale("log")
            ax.set_title(title)
            ax.set_xlabel(
                "pressure K [bits / response]"
                if key != "progress"
                else "misaligned rate on observed prompts (post-training progress)"
            )
            ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        axes[2].invert_xaxis()
        axes[0].set_ylabel("stickiness S = Δ / Δ₀ of the two priors")
        axes[0].legend(fontsize=8)
        fig.suptitle(
            f"Two priors {2 * s.split_bits:g} bits apart in aligned vs deceptive (same pressure path): "
            f"Bayes keeps the gap, gradient descent moves it (noise floor {s.noise:g})"
        )
        return Figure("stickiness", _png(fig), pd.DataFrame(rows))


FIGURES = (unobserved_misalignment_figure, stickiness_figure)
