"""The gradient-descent persona model: the personas of `bayes` as a softmax, trained on observed examples only.

Model (nats inside, bits at the boundary). Trainable persona logits u (initialised at the prior: u_i = b_i ln 2)
give weights q = softmax(u). A behaviour offset w in R^2, shared by all personas, adds to every persona's logit of
answering aligned: persona i answers aligned in context c with probability

    s_i(c) = sigmoid(logit a_i(c) + w . x_c),   x_observed = (1, 0),   x_unobserved = (rho, sqrt(1 - rho^2)),

so the model's behaviour is P(aligned | c) = sum_i q_i s_i(c). rho in [0, 1] is the *sharing strength*: the
cosine between the two contexts' representations, i.e. the fraction of a behaviour update learned on observed
prompts that also moves unobserved behaviour (0: separate parameters, 1: one shared parameter). The
*plasticity* kappa scales the learning rate of w against that of u (0: personas are only reweighted, never
rewritten). Training minimises, over observed prompts with the aligned response as target, one of

    likelihood  -ln P(aligned | observed)                  (SFT: the mixture's cross-entropy)
    reward      -sum_i q_i ln s_i(observed)                (RL with reward ln s: pick a persona, score its answer)

plus beta KL(q || prior) when kl_penalty = beta > 0, by SGD or Adam for a number of steps.

Where it is Bayesian (the limit the tests check). With kappa = 0 (behaviour fixed, so rho is irrelevant) the
reward objective with penalty beta is F(q) = sum_i q_i c_i + beta KL(q || pi), c_i = -ln a_i(observed). Its
stationary points on the simplex satisfy c_i + beta ln(q_i / pi_i) = const, so the minimum (F is strictly convex
in q) is q_i proportional to pi_i a_i(observed)^(1/beta): exactly the Bayesian posterior after n = 1/beta examples
(Gibbs' variational principle). Gradient descent on u converges there for a small enough learning rate.

Where it is not. (1) Without the penalty, plain gradient descent on softmax logits is rich-get-richer: for two
personas with equal s on observed prompts the likelihood objective gives d(u_i - u_j)/dt = lr (s / p - 1) (q_i - q_j),
and s / p > 1 while the target is under-predicted, so the log-odds of personas post-training cannot tell apart
drift toward the one already favoured (Bayes keeps them). Adam does keep them: their gradients stay in a fixed
ratio q_i / q_j, Adam's step is invariant to a coordinate's gradient scale (up to its epsilon), so both logits take
identical steps and the ratio stays fixed, by induction.
(2) With kappa > 0 the optimiser can fit the observed target by rewriting behaviour instead of reweighting
personas: at rho = 0 the misaligned persona learns to behave when observed only (it becomes deceptive), at rho = 1
the update carries over and unobserved behaviour is corrected for every persona, erasing the prior's gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from ..config import CONTEXTS
from .bayes import PersonaSpec, bernoulli_kl_bits

LN2 = float(np.log(2.0))


@dataclass(frozen=True)
class GDConfig:
    """How the gradient-descent model is trained."""

    sharing: float = 0.0  # rho: cosine between the observed and unobserved context representations
    plasticity: float = 1.0  # kappa: learning rate of the behaviour offset relative to the persona logits
    lr: float = 0.05
    steps: int = 400
    kl_penalty: float = 0.0  # beta, on KL(persona weights || prior), nats
    optimizer: str = "adam"
    objective: str = "likelihood"

    def __post_init__(self) -> None:
        if not 0.0 <= self.sharing <= 1.0:
            raise ValueError(f"sharing must be in [0, 1], not {self.sharing}")
        if self.plasticity < 0 or self.lr <= 0 or self.steps < 0 or self.kl_penalty < 0:
            raise ValueError("plasticity and kl_penalty must be >= 0, lr > 0 and steps >= 0")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}")


def context_vectors(sharing: float) -> np.ndarray:
    """Rows x_c for CONTEXTS (observed, unobserved)."""
    return np.array([[1.0, 0.0], [sharing, np.sqrt(max(0.0, 1.0 - sharing * sharing))]])


def _behaviour_logit(spec: PersonaSpec) -> np.ndarray:
    """logit a_i(c) in nats, from the spec's exact log-probabilities (+-inf for deterministic personas)."""
    with np.errstate(invalid="ignore"):
        return (spec.log2_aligned - spec.log2_misaligned) * LN2


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _softmax(u: np.ndarray) -> np.ndarray:
    z = np.exp(u - u.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------------------------
# Objectives: (q, s_obs, x_obs) -> (grad wrt u, grad wrt w), batched over priors (leading axis).

Objective = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def likelihood_gradients(q: np.ndarray, s: np.ndarray, x_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-ln p with p = sum_i q_i s_i: d/du_j = q_j (1 - s_j / p), d/dw = -(sum_i q_i s_i (1 - s_i) / p) x_obs."""
    p = np.sum(q * s, axis=-1, keepdims=True)
    grad_u = q * (1.0 - s / p)
    grad_w = -(np.sum(q * s * (1.0 - s), axis=-1, keepdims=True) / p) * x_obs
    return grad_u, grad_w


def reward_gradients(q: np.ndarray, s: np.ndarray, x_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sum_i q_i c_i with c_i = -ln s_i: d/du_j = q_j (c_j - sum q c), d/dw = -sum_i q_i (1 - s_i) x_obs."""
    cost = -np.log(np.maximum(s, 1e-300))  # a persona that never answers aligned costs ~690 nats, not inf
    grad_u = q * (cost - np.sum(q * cost, axis=-1, keepdims=True))
    grad_w = -np.sum(q * (1.0 - s), axis=-1, keepdims=True) * x_obs
    return grad_u, grad_w


OBJECTIVES: dict[str, Objective] = {"likelihood": likelihood_gradients, "reward": reward_gradients}


def kl_penalty_gradient(q: np.ndarray, log_prior: np.ndarray, beta: float) -> np.ndarray:
    """d/du_j of beta KL(q || prior) = beta q_j (ln(q_j / prior_j) - KL)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.where(q > 0, np.log(np.maximum(q, 1e-300)) - log_prior, 0.0)
    kl = np.sum(q * log_ratio, axis=-1, keepdims=True)
    return beta * q * (log_ratio - kl)


# ---------------------------------------------------------------------------------------------------------------
# Optimisers: in-place updates of a list of parameter arrays with per-array learning rates.


class Optimizer(Protocol):
    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None: ...


class SGD:
    def __init__(self, lrs: list[float]) -> None:
        self.lrs = lrs

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        for p, g, lr in zip(params, grads, self.lrs):
            p -= lr * g


class Adam:
    def __init__(self, lrs: list[float], beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.lrs, self.beta1, self.beta2, self.eps = lrs, beta1, beta2, eps
        self.t = 0
        self.m: list[np.ndarray] | None = None
        self.v: list[np.ndarray] | None = None

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        c1, c2 = 1 - self.beta1**self.t, 1 - self.beta2**self.t
        for p, g, m, v, lr in zip(params, grads, self.m, self.v, self.lrs):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


OPTIMIZERS: dict[str, Callable[[list[float]], Optimizer]] = {"sgd": SGD, "adam": Adam}


@dataclass(frozen=True)
class Trajectory:
    """The model at every step 0..steps, for a batch of priors: arrays are (steps + 1, batch, ...)."""

    steps: np.ndarray
    log_weights: np.ndarray  # persona log-weights, nats, (T + 1, B, P)
    offset: np.ndarray  # behaviour offset w, (T + 1, B, 2)
    kl_bits: np.ndarray  # K: behaviour KL to step 0 on observed prompts, bits, (T + 1, B)
    bits: dict[str, np.ndarray]  # per context, behaviour log-odds in bits, (T + 1, B)
    misaligned_rate: dict[str, np.ndarray]

    @property
    def weights(self) -> np.ndarray:
        return np.exp(self.log_weights)


def behaviour_log2(
    log_weights: np.ndarray, offset: np.ndarray, spec: PersonaSpec, sharing: float, context: str
) -> tuple[np.ndarray, np.ndarray]:
    """(log2 P(aligned | context), log2 P(misaligned | context)) for log-weights (..., P) and offsets (..., 2)."""
    x = context_vectors(sharing)[CONTEXTS.index(context)]
    eta = _behaviour_logit(spec)[:, CONTEXTS.index(context)] + (offset @ x)[..., None]
    log_al = np.logaddexp.reduce(log_weights + _log_sigmoid(eta), axis=-1)
    log_mis = np.logaddexp.reduce(log_weights + _log_sigmoid(-eta), axis=-1)
    return log_al / LN2, log_mis / LN2


def train(priors_log2: np.ndarray, spec: PersonaSpec, cfg: GDConfig) -> Trajectory:
    """Train from each prior (rows of `priors_log2`, normalised log2 weights) and record every step."""
    log_prior = np.atleast_2d(np.asarray(priors_log2, dtype=float)) * LN2
    u = log_prior.copy()
    w = np.zeros((len(u), 2))
    x_obs = context_vectors(cfg.sharing)[0]
    logit_obs = _behaviour_logit(spec)[:, 0]
    optimizer = OPTIMIZERS[cfg.optimizer]([cfg.lr, cfg.lr * cfg.plasticity])
    objective = OBJECTIVES[cfg.objective]
    us, ws = [u.copy()], [w.copy()]
    for _ in range(cfg.steps):
        q = _softmax(u)
        with np.errstate(over="ignore"):  # exp overflow is a probability of exactly 0, as intended
            s = 1.0 / (1.0 + np.exp(-(logit_obs + (w @ x_obs)[:, None])))
        grad_u, grad_w = objective(q, s, x_obs)
        if cfg.kl_penalty:
            grad_u = grad_u + kl_penalty_gradient(q, log_prior, cfg.kl_penalty)
        optimizer.step([u, w], [grad_u, grad_w])
        us.append(u.copy())
        ws.append(w.copy())
    return _observe(np.array(us), np.array(ws), spec, cfg.sharing)


def _observe(us: np.ndarray, ws: np.ndarray, spec: PersonaSpec, sharing: float) -> Trajectory:
    log_w = us - np.logaddexp.reduce(us, axis=-1, keepdims=True)
    per_context = {c: behaviour_log2(log_w, ws, spec, sharing, c) for c in CONTEXTS}
    obs = per_context[CONTEXTS[0]]
    kl = bernoulli_kl_bits(obs, (obs[0][:1], obs[1][:1]))
    with np.errstate(invalid="ignore"):
        bits = {c: al - mis for c, (al, mis) in per_context.items()}
    return Trajectory(np.arange(len(us)), log_w, ws, kl, bits, {c: np.exp2(mis) for c, (_, mis) in per_context.items()})


def at_pressure(traj: Trajectory, values: np.ndarray, kl_bits: np.ndarray) -> np.ndarray:
    """`values` (steps + 1, batch) read at pressures `kl_bits`: (len(kl_bits), batch), NaN beyond a row's reach."""
    grid = np.asarray(kl_bits, dtype=float)
    out = np.full((len(grid), values.shape[1]), np.nan)
    for row in range(values.shape[1]):
        k = np.maximum.accumulate(traj.kl_bits[:, row])  # K is non-decreasing along a run up to float noise
        out[:, row] = np.where(grid <= k[-1], np.interp(grid, k, values[:, row]), np.nan)
    return out


def stickiness_at_pressure(traj: Trajectory, kl_bits: np.ndarray, context: str, a: int = 0, b: int = 1) -> np.ndarray:
    """S(K) in behaviour bits between batch rows a and b of a trajectory, compared at equal pressure K."""
    bits = traj.bits[context]
    v = at_pressure(traj, bits, kl_bits)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (v[:, a] - v[:, b]) / (bits[0, a] - bits[0, b])
