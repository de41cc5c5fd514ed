"""Both toy models fitted to a measured run's persistence curves (`hyperstition toy fit RUN`).

Data: for every post-training strategy, the curves of the headline persona bits (aligned vs misaligned) per arm,
seed and context, each starting at its base evaluation (K = 0), against the measured pressure K (KL(post || base),
bits per response on the post-training prompts).

Bayesian model, per strategy. Free parameters: each arm's prior log-odds of the aligned and of the deceptive
persona against the misaligned one (2 per arm; the base bits in the two contexts pin them), a behaviour noise floor
phi = log2((1 - eps) / eps) shared by the arms, and the evidence per unit of pressure lambda, in bits of evidence
against the misaligned persona per bit of measured K: an arm measured at K has seen n = lambda K / phi examples
(the toy's own K is bounded, see `bayes`, so measured K maps to evidence, not to toy K). Bounded least squares
over all points, in bits, from a few starting values of lambda.

Gradient-descent model, per strategy: the priors and the floor of the Bayesian fit (the models agree at K = 0);
free: sharing rho and plasticity kappa (on a grid) and the steps per bit of K (a log grid), trained with Adam on
the likelihood (SFT) objective.

Uncertainty: the Bayesian parameters carry 95% Wald intervals from the least-squares Jacobian (independent residuals
assumed: see `wald_intervals`); the gradient-descent grid search has none.

Fit quality: RMSE in bits per context and overall, next to the RMSE of the null model "every arm stays at its
base bits", with the numbers of points and free parameters. These are descriptive numbers without intervals.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import CONTEXTS
from ..io import sha256_file, write_json_atomic, write_parquet_atomic
from ..schema import BASE_STRATEGY, HEADLINE_BITS, TOY_CURVES_FILE, TOY_FIT_FILE, TOY_RESULT_COLUMNS, TOY_RESULTS_FILE
from . import bayes, gd

MODELS = ("bayes", "gd")
MAX_FLOOR_BITS = 1000.0  # measured bits are sequence log-odds: tens to hundreds of bits are ordinary
MAX_PRIOR_BITS = 300.0
GD_SHARING = (0.0, 0.25, 0.5, 0.75, 1.0)
GD_PLASTICITY = (0.0, 0.25, 1.0, 4.0)
GD_STEPS = 600
GD_LR = 0.05
CURVE_POINTS = 48


class ToyFitError(ValueError):
    """Results that cannot be fitted; the message is one line that names the file."""


@dataclass
class Points:
    """The measured points of one strategy, as arrays for the models."""

    frame: pd.DataFrame
    arms: list[str]
    arm: np.ndarray  # index into arms
    context: np.ndarray  # index into CONTEXTS
    kl: np.ndarray
    measured: np.ndarray


@dataclass
class ModelFit:
    strategy: str
    model: str
    params: dict
    priors: dict[str, dict[str, float]]
    rmse: dict[str, float] = field(default_factory=dict)
    null_rmse: dict[str, float] = field(default_factory=dict)
    n_points: int = 0
    n_params: int = 0
    predicted: np.ndarray | None = field(default=None, repr=False)  # at the strategy's points, not serialised


def measured_points(df: pd.DataFrame, metric: str = HEADLINE_BITS) -> pd.DataFrame:
    """Every post-training curve point of `metric` in the assistant contexts, with its base point at K = 0 when
    the curve has no K = 0 point of its own; column `measured` holds the value."""
    sub = df[(df.metric == metric) & df.context.isin(CONTEXTS)]
    base = sub[sub.strategy == BASE_STRATEGY]
    frames = []
    for strategy in [s for s in dict.fromkeys(sub.strategy) if s != BASE_STRATEGY]:
        for (arm, seed), g in sub[sub.strategy == strategy].groupby(["arm", "seed"], sort=False):
            # Step 0 is the base evaluation (K = 0); a later point whose measured KL is not positive has no place
            # on the pressure axis and is dropped, never folded into K = 0 (the statistics do the same).
            g = g[(g.step == 0) | (g.kl_bits > 0)]
            if not (g.step == 0).any():
                g = pd.concat([base[(base.arm == arm) & (base.seed == seed)].assign(strategy=strategy, step=0), g])
            frames.append(g.assign(kl_bits=np.where(g.step == 0, 0.0, g.kl_bits)))
    columns = ["run", "arm", "seed", "strategy", "step", "tokens", "kl_bits", "context", "metric", "measured"]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True).rename(columns={"value": "measured"})
    out = out[np.isfinite(out.measured.to_numpy(float)) & np.isfinite(out.kl_bits.to_numpy(float))]
    return out[columns].reset_index(drop=True)


def strategy_points(points: pd.DataFrame, strategy: str) -> Points:
    frame = points[points.strategy == strategy].reset_index(drop=True)
    arms = list(dict.fromkeys(frame.arm))
    return Points(
        frame,
        arms,
        frame.arm.map({a: i for i, a in enumerate(arms)}).to_numpy(int),
        frame.context.map({c: i for i, c in enumerate(CONTEXTS)}).to_numpy(int),
        frame.kl_bits.to_numpy(float),
        frame.measured.to_numpy(float),
    )


# ---------------------------------------------------------------------------------------------------------------
# Bayesian model


def noise_from_floor(floor_bits: float) -> float:
    """eps with log2((1 - eps) / eps) = floor_bits."""
    return float(np.exp2(-np.logaddexp2(0.0, floor_bits)))


def arm_priors(aligned_bits: np.ndarray, deceptive_bits: np.ndarray) -> np.ndarray:
    """Normalised log2 prior weights (arms x (aligned, misaligned, deceptive)) from log-odds vs misaligned."""
    b = np.stack([aligned_bits, np.zeros_like(aligned_bits), deceptive_bits], axis=1)
    return b - np.logaddexp2.reduce(b, axis=1, keepdims=True)


def bayes_bits(
    priors: np.ndarray, floor_bits: float, evidence_per_kl: float, arm: np.ndarray, context: np.ndarray, kl: np.ndarray
) -> np.ndarray:
    """Predicted bits at measured pressures `kl` for points of the given arms and contexts."""
    spec = bayes.default_personas(floor_bits=floor_bits)
    post = bayes.posterior_log2(priors[arm], evidence_per_kl * kl / floor_bits, spec)
    per_context = np.stack([bayes.behaviour_bits(post, spec, c) for c in CONTEXTS])
    return per_context[context, np.arange(len(kl))]


def _unpack(theta: np.ndarray, n_arms: int) -> tuple[np.ndarray, float, float]:
    return arm_priors(theta[0 : 2 * n_arms : 2], theta[1 : 2 * n_arms : 2]), float(theta[-2]), float(10.0 ** theta[-1])


def _initial_priors(p: Points) -> np.ndarray:
    """Invert the noiseless base bits: aligned + deceptive = 2^obs, aligned / (1 + deceptive) = 2^unobs."""
    base = p.frame[p.frame.kl_bits == 0].groupby(["arm", "context"]).measured.mean()
    theta = []
    for arm in p.arms:
        o = float(base.get((arm, CONTEXTS[0]), 0.0))
        u = float(base.get((arm, CONTEXTS[1]), o))
        o, u = np.clip([o, u], -200, 200)
        deceptive = max((2.0**o - 2.0**u) / (1.0 + 2.0**u), 2.0**-20)
        aligned = max(2.0**o - deceptive, 2.0**-20)
        theta += [np.log2(aligned), np.log2(deceptive)]
    return np.array(theta)


def fit_bayes(p: Points, strategy: str) -> ModelFit:
    from scipy.optimize import least_squares

    m = len(p.arms)
    floor0 = float(np.clip(np.abs(p.measured).max() + 1.0, 1.0, MAX_FLOOR_BITS - 1))
    lower = np.r_[np.full(2 * m, -MAX_PRIOR_BITS), 0.05, -4.0]
    upper = np.r_[np.full(2 * m, MAX_PRIOR_BITS), MAX_FLOOR_BITS, 4.0]

    def residuals(theta: np.ndarray) -> np.ndarray:
        priors, floor, rate = _unpack(theta, m)
        return bayes_bits(priors, floor, rate, p.arm, p.context, p.kl) - p.measured

    best = None
    for log_rate in (-1.0, 0.0, 1.0):  # the evidence rate is the one parameter with several basins
        x0 = np.clip(np.r_[_initial_priors(p), floor0, log_rate], lower + 1e-9, upper - 1e-9)
        res = least_squares(residuals, x0, bounds=(lower, upper), method="trf", x_scale="jac", max_nfev=400)
        if best is None or res.cost < best.cost:
            best = res
    priors, floor, rate = _unpack(best.x, m)
    low, high = wald_intervals(best)
    params = {
        "floor_bits": floor,
        "noise": noise_from_floor(floor),
        "evidence_per_kl": rate,
        "floor_bits_ci": _ci(low[-2], high[-2]),
        "evidence_per_kl_ci": _ci(10.0 ** low[-1], 10.0 ** high[-1]),
    }
    fit = ModelFit(strategy, "bayes", params, _priors_dict(p.arms, best.x, low, high), n_params=2 * m + 2)
    return _score(fit, p, bayes_bits(priors, floor, rate, p.arm, p.context, p.kl))


def wald_intervals(res, z: float = 1.959964) -> tuple[np.ndarray, np.ndarray]:
    """95% intervals theta +- z se from a least-squares solution, se^2 = diag((J^T J)^+) SSE / (N - p).
    They assume independent residuals of equal variance (coverage is tested on data simulated that way; points of
    one measured curve are correlated, which makes them too narrow there). NaN for a parameter at a bound or one
    the data do not inform (a persona whose weight is negligible everywhere)."""
    n, k = res.jac.shape
    if n <= k:
        nan = np.full(k, np.nan)
        return nan, nan
    info = res.jac.T @ res.jac
    cov = np.linalg.pinv(info) * (2.0 * res.cost / (n - k))
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    informed = np.diag(info) > 1e-12 * max(float(np.diag(info).max()), 1e-300)
    se = np.where((res.active_mask == 0) & informed, se, np.nan)
    return res.x - z * se, res.x + z * se


def _ci(low: float, high: float) -> list[float | None]:
    """An interval for JSON: null bounds where it is undefined."""
    return [float(x) if np.isfinite(x) else None for x in (low, high)]


def _priors_dict(arms: list[str], theta: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, dict]:
    out = {}
    for i, arm in enumerate(arms):
        out[arm] = {
            "aligned_vs_misaligned_bits": float(theta[2 * i]),
            "aligned_vs_misaligned_bits_ci": _ci(low[2 * i], high[2 * i]),
            "deceptive_vs_misaligned_bits": float(theta[2 * i + 1]),
            "deceptive_vs_misaligned_bits_ci": _ci(low[2 * i + 1], high[2 * i + 1]),
        }
    return out


def _score(fit: ModelFit, p: Points, predicted: np.ndarray) -> ModelFit:
    """RMSE per context and overall, and the null model's (each arm stays at its mean base bits per context)."""
    base = p.frame[p.frame.kl_bits == 0].groupby(["arm", "context"]).measured.mean()
    null = np.array([base.get((a, c), np.nan) for a, c in zip(p.frame.arm, p.frame.context)])

    def rmse(pred: np.ndarray, mask: np.ndarray) -> float:
        err = (pred - p.measured)[mask]
        err = err[np.isfinite(err)]
        return float(np.sqrt(np.mean(err**2))) if len(err) else float("nan")

    masks = {**{c: p.context == i for i, c in enumerate(CONTEXTS)}, "all": np.ones(len(p.kl), bool)}
    fit.rmse = {k: rmse(predicted, m) for k, m in masks.items()}
    fit.null_rmse = {k: rmse(null, m) for k, m in masks.items()}
    fit.n_points = int(len(p.kl))
    fit.predicted = predicted
    return fit


# ---------------------------------------------------------------------------------------------------------------
# Gradient-descent model


def priors_from_fit(fit: ModelFit, arms: list[str]) -> np.ndarray:
    return arm_priors(
        np.array([fit.priors[a]["aligned_vs_misaligned_bits"] for a in arms]),
        np.array([fit.priors[a]["deceptive_vs_misaligned_bits"] for a in arms]),
    )


def gd_trajectory(priors: np.ndarray, floor_bits: float, sharing: float, plasticity: float) -> gd.Trajectory:
    cfg = gd.GDConfig(sharing=sharing, plasticity=plasticity, lr=GD_LR, steps=GD_STEPS)
    return gd.train(priors, bayes.default_personas(floor_bits=floor_bits), cfg)


def gd_bits(
    traj: gd.Trajectory, steps_per_kl: float, arm: np.ndarray, context: np.ndarray, kl: np.ndarray
) -> np.ndarray:
    """Predicted bits at measured pressures: the trajectory read at step steps_per_kl * K (fractional steps
    interpolated linearly; never beyond the last step)."""
    t = np.minimum(steps_per_kl * kl, traj.steps[-1])
    out = np.full(len(kl), np.nan)
    for a in np.unique(arm):
        for c, name in enumerate(CONTEXTS):
            mask = (arm == a) & (context == c)
            out[mask] = np.interp(t[mask], traj.steps, traj.bits[name][:, a])
    return out


def fit_gd(p: Points, strategy: str, bayes_fit: ModelFit) -> ModelFit:
    """Grid search over sharing, plasticity and steps per bit of K, with the Bayesian fit's priors and floor."""
    priors, floor = priors_from_fit(bayes_fit, p.arms), bayes_fit.params["floor_bits"]
    k_max = float(p.kl.max()) if len(p.kl) and p.kl.max() > 0 else 1.0
    rates = GD_STEPS / k_max * np.geomspace(1e-3, 1.0, 31)
    best: tuple[float, dict, np.ndarray] | None = None
    for plasticity in GD_PLASTICITY:
        for sharing in GD_SHARING if plasticity > 0 else (0.0,):  # without plasticity sharing changes nothing
            traj = gd_trajectory(priors, floor, sharing, plasticity)
            for rate in rates:
                pred = gd_bits(traj, rate, p.arm, p.context, p.kl)
                sse = float(np.nansum((pred - p.measured) ** 2))
                if best is None or sse < best[0]:
                    best = (sse, {"sharing": sharing, "plasticity": plasticity, "steps_per_kl": float(rate)}, pred)
    assert best is not None
    params = {**best[1], "lr": GD_LR, "optimizer": "adam", "objective": "likelihood", "floor_bits": floor}
    fit = ModelFit(strategy, "gd", params, bayes_fit.priors, n_params=2 * len(p.arms) + 1 + 3)
    return _score(fit, p, best[2])


# ---------------------------------------------------------------------------------------------------------------
# A whole run


@dataclass
class RunFit:
    rows: pd.DataFrame  # TOY_RESULT_COLUMNS: every measured point with each model's prediction
    curves: pd.DataFrame  # strategy, arm, context, metric, model, kl_bits, predicted: dense, for plotting
    fits: list[ModelFit]


def fit_results(df: pd.DataFrame, source: str = "results.parquet", metric: str = HEADLINE_BITS) -> RunFit:
    """Fit both models to every post-training strategy of a results frame."""
    points = measured_points(df, metric)
    if points.empty:
        raise ToyFitError(f"{source}: no post-training curves of {metric} in the observed/unobserved contexts to fit")
    rows, curves, fits = [], [], []
    for strategy in dict.fromkeys(points.strategy):
        p = strategy_points(points, strategy)
        bayes_fit = fit_bayes(p, strategy)
        gd_fit = fit_gd(p, strategy, bayes_fit)
        for fit in (bayes_fit, gd_fit):
            rows.append(p.frame.assign(model=fit.model, predicted=fit.predicted))
            fits.append(fit)
        curves.append(_dense_curves(p, strategy, metric, bayes_fit, gd_fit))
    out = pd.concat(rows, ignore_index=True)[list(TOY_RESULT_COLUMNS)]
    return RunFit(out, pd.concat(curves, ignore_index=True), fits)


def _dense_curves(p: Points, strategy: str, metric: str, bayes_fit: ModelFit, gd_fit: ModelFit) -> pd.DataFrame:
    """Both models' predictions on a dense pressure grid from 0 to the largest measured K, per arm and context."""
    positive = p.kl[p.kl > 0]
    grid = np.r_[0.0, np.geomspace(positive.min() / 2, positive.max(), CURVE_POINTS)] if len(positive) else np.zeros(1)
    priors = priors_from_fit(bayes_fit, p.arms)
    traj = gd_trajectory(priors, gd_fit.params["floor_bits"], gd_fit.params["sharing"], gd_fit.params["plasticity"])
    frames = []
    for a, arm in enumerate(p.arms):
        for c, context in enumerate(CONTEXTS):
            arm_idx, ctx_idx = np.full(len(grid), a), np.full(len(grid), c)
            predictions = {
                "bayes": bayes_bits(
                    priors, bayes_fit.params["floor_bits"], bayes_fit.params["evidence_per_kl"], arm_idx, ctx_idx, grid
                ),
                "gd": gd_bits(traj, gd_fit.params["steps_per_kl"], arm_idx, ctx_idx, grid),
            }
            for model, values in predictions.items():
                frames.append(
                    pd.DataFrame(
                        {
                            "strategy": strategy,
                            "arm": arm,
                            "context": context,
                            "metric": metric,
                            "model": model,
                            "kl_bits": grid,
                            "predicted": values,
                        }
                    )
                )
    return pd.concat(frames, ignore_index=True)


def fit_run(run_dir: str | os.PathLike) -> Path:
    """Fit a run directory's results and write TOY_RESULTS_FILE, TOY_CURVES_FILE and TOY_FIT_FILE next to them.
    Returns the path of the fit summary."""
    from ..analysis.store import load_results

    run_dir = Path(run_dir)
    df = load_results(run_dir)
    result = fit_results(df, source=str(run_dir / "results.parquet"))
    write_parquet_atomic(run_dir / TOY_RESULTS_FILE, result.rows)
    write_parquet_atomic(run_dir / TOY_CURVES_FILE, result.curves)
    summary = {
        "results_sha256": sha256_file(run_dir / "results.parquet"),
        "metric": HEADLINE_BITS,
        "fits": [{k: v for k, v in fit.__dict__.items() if k != "predicted"} for fit in result.fits],
    }
    write_json_atomic(run_dir / TOY_FIT_FILE, summary)
    return run_dir / TOY_FIT_FILE
