"""The report's "Toy models" section: measured persistence curves with the fitted Bayesian and gradient-descent
predictions overlaid, and the fit quality. Reads the files `hyperstition toy fit RUN` wrote; recomputes nothing.

Kept apart from render.py (which calls `toy_section` in one line) so that the toy models and the main report can
change independently; the few HTML helpers are local for the same reason.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ..analysis.plots import BITS_LABEL, CONTEXT_TITLES, KL_LABEL, STYLE, arm_colours, panels, to_png
from ..config import CONTEXTS
from ..io import sha256_file
from ..schema import TOY_CURVES_FILE, TOY_FIT_FILE, TOY_RESULTS_FILE

MODEL_STYLES = {"bayes": ("Bayesian model", "--"), "gd": ("gradient-descent model", ":")}


def _e(x: object) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _num(x: float, digits: int = 3) -> str:
    return "\u2014" if x is None or not math.isfinite(float(x)) else f"{float(x):.{digits}g}"


def _interval(value: float, ci: list[float | None] | None) -> str:
    if not ci or not all(x is not None and math.isfinite(float(x)) for x in ci):
        return f"{_num(value)} [undetermined]" if ci else _num(value)
    return f"{_num(value)} [{_num(ci[0])}, {_num(ci[1])}]"


def _rows_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(png: bytes, alt: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def toy_section(run_dir: Path, df: pd.DataFrame) -> str:
    """The section's HTML; a one-line note when the run has not been fitted."""
    run_dir = Path(run_dir)
    head = '<h2 id="toy">Toy models: Bayesian and gradient-descent predictions</h2>'
    if not (run_dir / TOY_FIT_FILE).exists():
        return (
            f'{head}<p class="note">Not fitted yet: <code>hyperstition toy fit {_e(run_dir.name)}</code> fits '
            "both toy persona models to these curves and adds them here.</p>"
        )
    summary = json.loads((run_dir / TOY_FIT_FILE).read_text())
    points = pd.read_parquet(run_dir / TOY_RESULTS_FILE)
    curves = pd.read_parquet(run_dir / TOY_CURVES_FILE)
    stale = ""
    results = run_dir / "results.parquet"
    if results.exists() and sha256_file(results) != summary.get("results_sha256"):
        stale = (
            '<p class="warn">results.parquet changed after the toy models were fitted; rerun '
            "<code>hyperstition toy fit</code> to refresh this section.</p>"
        )
    arms = list(dict.fromkeys(df.arm)) or list(dict.fromkeys(points.arm))
    figures = "".join(
        _figure(
            _overlay(points, curves, strategy, arms),
            f"toy model fits under {strategy}",
            f"{strategy.upper()}: measured persona bits (points, one per seed and step) against pressure K, with "
            "the fitted Bayesian (dashed) and gradient-descent (dotted) predictions per arm. K = 0 is the base "
            "model; the axis is linear below the smallest measured K and logarithmic above.",
        )
        for strategy in dict.fromkeys(points.strategy)
    )
    return f"""{head}
<p class="note">Both models (<code>hyperstition.toy</code>) start from each arm's prior over an aligned, a misaligned
and a deceptive persona, fitted to the base bits in both contexts. The Bayesian model turns pressure into evidence on
observed prompts (its free rate: bits of evidence per bit of K); the gradient-descent model trains the same personas
by Adam, with a behaviour update that carries over to unobserved prompts in proportion to its sharing strength.
RMSE is in bits over every measured point; the null model keeps every arm at its base bits. Brackets are 95% Wald
intervals of the Bayesian parameters, which treat points as independent: points of one curve are not, so read them
as lower bounds on the uncertainty. The gradient-descent grid search has no intervals.</p>
{stale}{_quality_table(summary)}{_priors_table(summary)}{figures}"""


def _quality_table(summary: dict) -> str:
    rows = []
    for fit in summary["fits"]:
        p = fit["params"]
        detail = (
            f"evidence {_interval(p['evidence_per_kl'], p.get('evidence_per_kl_ci'))} bits per bit of K, "
            f"noise floor {_interval(p['floor_bits'], p.get('floor_bits_ci'))} bits"
            if fit["model"] == "bayes"
            else f"sharing {_num(p['sharing'])}, plasticity {_num(p['plasticity'])}, "
            f"{_num(p['steps_per_kl'])} steps per bit of K"
        )
        rows.append(
            [
                fit["strategy"],
                MODEL_STYLES.get(fit["model"], (fit["model"],))[0],
                _num(fit["rmse"]["all"]),
                _num(fit["rmse"]["observed"]),
                _num(fit["rmse"]["unobserved"]),
                _num(fit["null_rmse"]["all"]),
                str(fit["n_points"]),
                str(fit["n_params"]),
                detail,
            ]
        )
    return _rows_table(
        ["strategy", "model", "RMSE [bits]", "observed", "unobserved", "null RMSE", "points", "parameters", "fitted"],
        rows,
    )


def _priors_table(summary: dict) -> str:
    rows = []
    for fit in summary["fits"]:
        if fit["model"] != "bayes":
            continue  # the gradient-descent model uses the same priors
        for arm, prior in fit["priors"].items():
            keys = ("aligned_vs_misaligned_bits", "deceptive_vs_misaligned_bits")
            rows.append([fit["strategy"], arm] + [_interval(prior[k], prior.get(f"{k}_ci")) for k in keys])
    return "<h3>Fitted priors (log-odds against the misaligned persona)</h3>" + _rows_table(
        ["strategy", "arm", "aligned [bits]", "deceptive [bits]"], rows
    )


def _overlay(points: pd.DataFrame, curves: pd.DataFrame, strategy: str, arms: list[str]) -> bytes:
    colours = arm_colours(arms + [a for a in dict.fromkeys(points.arm) if a not in arms])
    pts = points[(points.strategy == strategy) & (points.model == "bayes")]
    cur = curves[curves.strategy == strategy]
    positive = pts.kl_bits[pts.kl_bits > 0]
    with plt.rc_context(STYLE):
        fig, axes = panels(len(CONTEXTS), width=5.2)
        for ax, context in zip(axes, CONTEXTS):
            for arm in dict.fromkeys(pts.arm):
                m = pts[(pts.arm == arm) & (pts.context == context)]
                ax.scatter(m.kl_bits, m.measured, s=14, color=colours[arm], label=f"{arm.replace('_', ' ')} (measured)")
                for model, (label, style) in MODEL_STYLES.items():
                    c = cur[(cur.arm == arm) & (cur.context == context) & (cur.model == model)].sort_values("kl_bits")
                    ax.plot(c.kl_bits, c.predicted, ls=style, color=colours[arm], lw=1.5)
            if len(positive):
                ax.set_xscale("symlog", linthresh=float(positive.min()))
            ax.set_title(CONTEXT_TITLES.get(context, context))
            ax.set_xlabel(KL_LABEL)
        axes[0].set_ylabel(BITS_LABEL)
        handles, labels = axes[0].get_legend_handles_labels()
        for model, (label, style) in MODEL_STYLES.items():
            handles.append(plt.Line2D([], [], color="black", ls=style))
            labels.append(label)
        axes[0].legend(handles, labels, loc="best")
        fig.suptitle(f"Toy models fitted to the {strategy.upper()} curves")
        return to_png(fig)
