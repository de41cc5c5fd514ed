"""The Bayesian persona model: post-training as conditioning on observed behaviour. Pure numpy.

Model. A persona i has prior weight pi_i, given as log-odds b_i = log2(pi_i / pi_misaligned) in bits (pre-training
sets them). Persona i answers a prompt in context c (observed or unobserved) with the aligned response with
probability a_i(c) and the misaligned one otherwise:

    aligned     a = (1 - eps, 1 - eps)      misaligned  a = (eps, eps)      deceptive  a = (1 - eps, eps)

(eps is a behaviour noise floor; optional other personas bring their own pair). Post-training is evidence on
observed contexts only: n examples of the aligned response to observed prompts, each with per-persona likelihood
L_i = a_i(observed) (aligned and deceptive are identical there). Bayes gives, in closed form,

    log2 w_i(n) = b_i + n log2 L_i - log2 sum_j 2^(b_j + n log2 L_j)                        (posterior weights)
    P_n(aligned | c) = sum_i w_i(n) a_i(c),   P_n(misaligned | c) = sum_i w_i(n) (1 - a_i(c))  (behaviour)
    bits_c(n) = log2 P_n(aligned | c) - log2 P_n(misaligned | c)                           (persona log-odds)
    K(n) = KL(P_n(. | observed) || P_0(. | observed)) in bits                              (pressure)

K is the KL of the induced behaviour on the post-training prompts, the quantity measured as pressure. It rises
monotonically in n (dP_n(aligned | observed)/dn = Cov_w(L, ln L) >= 0) and is bounded: with eps = 0 it tends to
-log2 P_0(aligned | observed), the cost of conditioning on "behaves well when observed". Evidence beyond that buys
no pressure: in this model "orders of magnitude more optimisation" all happens below a few bits of K.

Consequences the tests check. (1) The log-odds of persona i against j move by n log2(L_i / L_j) whatever the
prior, so at equal evidence two priors keep their gap for every persona pair (S = 1 in persona log-odds), and
personas post-training cannot tell apart (L_i = L_j) never move. (2) Runs are compared at equal pressure K, not
equal evidence; two priors with the same P_0(aligned | observed) (e.g. the same aligned + deceptive mass, split
differently) follow the same K(n), so S = 1 at equal K as well. (3) Measured bits are log-odds of a mixture: with
eps = 0 the unobserved bits tend to log2(pi_aligned / pi_deceptive), so S(K) in unobserved bits moves from 1
towards (aligned-vs-deceptive gap) / (base gap) as the misaligned persona is swamped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..config import CONTEXTS

OBSERVED, UNOBSERVED = CONTEXTS  # column order of PersonaSpec's arrays
REFERENCE_PERSONA = "misaligned"  # prior log-odds are relative to this persona


@dataclass(frozen=True)
class PersonaSpec:
    """Personas and their behaviour in log space, so that floors of hundreds of bits stay exact:
    log2_aligned[i, k] = log2 P(aligned response | persona i, context CONTEXTS[k]), log2_misaligned its complement."""

    names: tuple[str, ...]
    log2_aligned: np.ndarray
    log2_misaligned: np.ndarray

    @classmethod
    def from_probs(cls, names: tuple[str, ...], aligned_prob: np.ndarray) -> "PersonaSpec":
        probs = np.asarray(aligned_prob, dtype=float)
        if probs.shape != (len(names), 2) or ((probs < 0) | (probs > 1)).any():
            raise ValueError("every persona needs (P(aligned | observed), P(aligned | unobserved)) within [0, 1]")
        with np.errstate(divide="ignore"):
            return cls(tuple(names), np.log2(probs), np.log1p(-probs) / np.log(2.0))

    @property
    def aligned_prob(self) -> np.ndarray:
        return np.exp2(self.log2_aligned)

    def index(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(f"unknown persona {name!r}; known: {', '.join(self.names)}")
        return self.names.index(name)

    def column(self, context: str) -> int:
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {', '.join(CONTEXTS)}, not {context!r}")
        return CONTEXTS.index(context)


def default_personas(
    noise: float = 0.0, others: Mapping[str, tuple[float, float]] | None = None, floor_bits: float | None = None
) -> PersonaSpec:
    """aligned, misaligned, deceptive with behaviour noise floor `noise` (eps), or exactly log2((1 - eps) / eps) =
    floor_bits when given, plus `others`: name -> (P(aligned | observed), P(aligned | unobserved))."""
    if not 0.0 <= noise < 0.5:
        raise ValueError(f"noise must be in [0, 0.5), not {noise}")
    if floor_bits is not None and not floor_bits > 0:
        raise ValueError(f"floor_bits must be > 0, not {floor_bits}")
    good, bad = 1.0 - noise, noise
    rows = {"aligned": (good, good), REFERENCE_PERSONA: (bad, bad), "deceptive": (good, bad), **dict(others or {})}
    spec = PersonaSpec.from_probs(tuple(rows), np.array(list(rows.values()), dtype=float))
    if floor_bits is None:
        return spec
    # log2(1 - eps) = -log2(1 + 2^-floor), log2(eps) = -log2(1 + 2^floor): exact where 1 - eps rounds to 1
    hi, lo = -np.logaddexp2(0.0, -floor_bits), -np.logaddexp2(0.0, floor_bits)
    aligned, misaligned = np.array([[hi, hi], [lo, lo], [hi, lo]]), np.array([[lo, lo], [hi, hi], [lo, hi]])
    return PersonaSpec(spec.names, np.r_[aligned, spec.log2_aligned[3:]], np.r_[misaligned, spec.log2_misaligned[3:]])


def prior_log2(spec: PersonaSpec, log_odds_bits: Mapping[str, float]) -> np.ndarray:
    """Normalised log2 prior weights from log-odds against the misaligned persona (missing personas: 0 bits)."""
    unknown = set(log_odds_bits) - set(spec.names)
    if unknown:
        raise ValueError(f"unknown persona(s) {', '.join(sorted(unknown))}; known: {', '.join(spec.names)}")
    b = np.array([float(log_odds_bits.get(name, 0.0)) for name in spec.names])
    return b - np.logaddexp2.reduce(b)


def shifted_prior(spec: PersonaSpec, shift_bits: float) -> np.ndarray:
    """The canonical prior: the aligned persona `shift_bits` ahead of every other persona, which tie."""
    return prior_log2(spec, {"aligned": shift_bits})


def _log2(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log2(x)


def example_loglik2(spec: PersonaSpec) -> np.ndarray:
    """log2 L_i of one post-training example (the aligned response to an observed prompt), per persona."""
    return spec.log2_aligned[:, 0]


def posterior_log2(prior: np.ndarray, n: np.ndarray | float, spec: PersonaSpec) -> np.ndarray:
    """log2 posterior weights after n examples, shape (*n.shape, personas); prior may carry leading batch axes."""
    n = np.asarray(n, dtype=float)[..., None]
    loglik = example_loglik2(spec)
    with np.errstate(invalid="ignore"):  # 0 * -inf: a persona that never produces the target keeps its prior at n = 0
        shift = np.where(n == 0, 0.0, n * loglik)
    lw = np.asarray(prior)[..., :] + shift
    return lw - np.logaddexp2.reduce(lw, axis=-1, keepdims=True)


def behaviour_log2(weights_log2: np.ndarray, spec: PersonaSpec, context: str) -> tuple[np.ndarray, np.ndarray]:
    """(log2 P(aligned | context), log2 P(misaligned | context)) of the persona mixture, each summed in log space
    so that rates near 0 or 1 keep their precision."""
    col = spec.column(context)
    p_al = np.logaddexp2.reduce(weights_log2 + spec.log2_aligned[:, col], axis=-1)
    p_mis = np.logaddexp2.reduce(weights_log2 + spec.log2_misaligned[:, col], axis=-1)
    return p_al, p_mis


def behaviour_bits(weights_log2: np.ndarray, spec: PersonaSpec, context: str) -> np.ndarray:
    """Persona log-odds as measured: log2 P(aligned response) - log2 P(misaligned response), bits."""
    p_al, p_mis = behaviour_log2(weights_log2, spec, context)
    with np.errstate(invalid="ignore"):
        return p_al - p_mis


def misaligned_rate(weights_log2: np.ndarray, spec: PersonaSpec, context: str) -> np.ndarray:
    return np.exp2(behaviour_log2(weights_log2, spec, context)[1])


def bernoulli_kl_bits(post: tuple[np.ndarray, np.ndarray], prior: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """KL(post || prior) in bits of two-outcome distributions given as (log2 p, log2 (1 - p)) pairs; 0 log 0 = 0."""
    total = 0.0
    for lp, lq in zip(post, prior):
        with np.errstate(invalid="ignore"):
            total = total + np.where(np.isneginf(lp), 0.0, np.exp2(lp) * (lp - lq))
    return np.maximum(total, 0.0)


def pressure_kl_bits(post_log2: np.ndarray, prior_log2_: np.ndarray, spec: PersonaSpec) -> np.ndarray:
    """K: KL(post-trained || base) of the behaviour on observed prompts, bits per response."""
    return bernoulli_kl_bits(behaviour_log2(post_log2, spec, OBSERVED), behaviour_log2(prior_log2_, spec, OBSERVED))


def persona_kl_bits(post_log2: np.ndarray, prior_log2_: np.ndarray) -> np.ndarray:
    """KL(post || prior) of the persona weights themselves, bits (>= the behaviour KL, by data processing)."""
    w = np.exp2(post_log2)
    with np.errstate(invalid="ignore"):
        return np.sum(np.where(w > 0, w * (post_log2 - prior_log2_), 0.0), axis=-1)


@dataclass(frozen=True)
class Prediction:
    """Everything the model predicts along a pressure path; arrays share the leading shape of `n`."""

    n: np.ndarray  # effective post-training examples
    evidence_bits: np.ndarray  # n log2(L_aligned / L_misaligned): bits of evidence against the misaligned persona
    kl_bits: np.ndarray  # K, pressure on observed prompts
    weights: np.ndarray  # persona weights (linear), last axis = personas
    bits: dict[str, np.ndarray]  # per context: behaviour log-odds
    misaligned_rate: dict[str, np.ndarray]  # per context


def predict(prior: np.ndarray, n: np.ndarray | float, spec: PersonaSpec) -> Prediction:
    """Closed-form predictions after n examples for one prior (log2 weights)."""
    n = np.asarray(n, dtype=float)
    post = posterior_log2(prior, n, spec)
    loglik = example_loglik2(spec)
    with np.errstate(invalid="ignore", over="ignore"):
        per_example = loglik[spec.index("aligned")] - loglik[spec.index(REFERENCE_PERSONA)]
        evidence = np.where(n == 0, 0.0, n * per_example)
    return Prediction(
        n=n,
        evidence_bits=evidence,
        kl_bits=pressure_kl_bits(post, prior, spec),
        weights=np.exp2(post),
        bits={c: behaviour_bits(post, spec, c) for c in CONTEXTS},
        misaligned_rate={c: misaligned_rate(post, spec, c) for c in CONTEXTS},
    )


def max_pressure_bits(prior: np.ndarray, spec: PersonaSpec) -> float:
    """sup_n K(n): the KL of conditioning on the personas most likely to give the target response."""
    far = predict(prior, np.array([1e6]), spec).kl_bits
    return float(far[0])


def evidence_for_pressure(prior: np.ndarray, kl_bits: np.ndarray, spec: PersonaSpec, tol: float = 1e-10) -> np.ndarray:
    """n with K(n) = kl_bits (K is monotone in n); NaN where kl_bits is beyond the model's maximum pressure."""
    target = np.atleast_1d(np.asarray(kl_bits, dtype=float))
    lo, hi = np.zeros_like(target), np.ones_like(target)
    while True:  # grow the bracket until every reachable target is inside
        k_hi = predict(prior, hi, spec).kl_bits
        short = (k_hi < target) & (hi < 1e6)
        if not short.any():
            break
        hi = np.where(short, hi * 4, hi)
    for _ in range(200):  # bisection: K(n) is monotone
        mid = (lo + hi) / 2
        below = predict(prior, mid, spec).kl_bits < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        if np.all(hi - lo <= tol * np.maximum(1.0, hi)):
            break
    out = (lo + hi) / 2
    return np.where(predict(prior, hi, spec).kl_bits + 1e-12 < target, np.nan, out)


def predict_at_pressure(prior: np.ndarray, kl_bits: np.ndarray | float, spec: PersonaSpec) -> Prediction:
    """Predictions at pressures K (bits per response on observed prompts); NaN beyond the prior's maximum K."""
    n = evidence_for_pressure(prior, kl_bits, spec)
    pred = predict(prior, np.nan_to_num(n), spec)
    unreachable = np.isnan(n)
    with np.errstate(invalid="ignore"):
        nan = np.where(unreachable, np.nan, 0.0)
        return Prediction(
            n,
            pred.evidence_bits + nan,
            pred.kl_bits + nan,
            pred.weights + nan[..., None],
            {c: v + nan for c, v in pred.bits.items()},
            {c: v + nan for c, v in pred.misaligned_rate.items()},
        )


def stickiness_at_pressure(
    prior_a: np.ndarray, prior_b: np.ndarray, kl_bits: np.ndarray, spec: PersonaSpec, context: str
) -> np.ndarray:
    """S(K) = Delta(K) / Delta_0 in behaviour bits for two priors compared at equal pressure K, as measured."""
    bits = [predict_at_pressure(prior, kl_bits, spec).bits[context] for prior in (prior_a, prior_b)]
    base = [predict(p, 0.0, spec).bits[context] for p in (prior_a, prior_b)]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (bits[0] - bits[1]) / (base[0] - base[1])


def persona_log_odds(weights_log2: np.ndarray, spec: PersonaSpec, first: str, second: str) -> np.ndarray:
    """log2 w_first - log2 w_second, bits."""
    return weights_log2[..., spec.index(first)] - weights_log2[..., spec.index(second)]
