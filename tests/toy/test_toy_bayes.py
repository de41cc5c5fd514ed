"""The Bayesian persona model against values computed by hand."""

import math

import numpy as np
import pytest

from hyperstition.toy import bayes as B

TWO = B.PersonaSpec.from_probs(("aligned", "misaligned"), np.array([[0.8, 0.8], [0.2, 0.2]]))


def test_two_persona_posterior_by_hand():
    prior = B.prior_log2(TWO, {"aligned": 1.0})  # weights 2/3, 1/3
    assert np.allclose(np.exp2(prior), [2 / 3, 1 / 3])
    w = np.exp2(B.posterior_log2(prior, np.array([1.0, 2.0]), TWO))
    # n = 1: (2/3 * 0.8, 1/3 * 0.2) normalised = (8/9, 1/9); n = 2: (2/3 * 0.64, 1/3 * 0.04) -> (32/33, 1/33)
    assert np.allclose(w, [[8 / 9, 1 / 9], [32 / 33, 1 / 33]], atol=1e-12)
    p = B.predict(prior, np.array([0.0, 1.0]), TWO)
    assert np.allclose(p.misaligned_rate["observed"], [0.4, 4 / 15])  # 2/3*.2 + 1/3*.8; 8/9*.2 + 1/9*.8
    assert np.allclose(p.bits["unobserved"], [math.log2(0.6 / 0.4), math.log2((11 / 15) / (4 / 15))])
    assert p.evidence_bits[1] == pytest.approx(2.0)  # log2(0.8 / 0.2) per example


def test_kl_of_a_known_update():
    prior = B.prior_log2(TWO, {"aligned": 1.0})
    k = B.predict(prior, np.array([1.0]), TWO).kl_bits[0]
    # behaviour on observed prompts goes from P(aligned) = 3/5 to 11/15
    by_hand = (11 / 15) * math.log2((11 / 15) / (3 / 5)) + (4 / 15) * math.log2((4 / 15) / (2 / 5))
    assert k == pytest.approx(by_hand, abs=1e-12)
    # the persona KL bounds the behaviour KL (data processing)
    post = B.posterior_log2(prior, 1.0, TWO)
    assert B.persona_kl_bits(post, prior) == pytest.approx((8 / 9) * math.log2(4 / 3) + (1 / 9) * math.log2(1 / 3))
    assert B.persona_kl_bits(post, prior) > k


def test_noiseless_conditioning_costs_minus_log_prior_and_leaves_deception():
    spec = B.default_personas(noise=0.0)
    prior = B.shifted_prior(spec, 2.0)  # aligned : misaligned : deceptive = 4 : 1 : 1
    assert B.max_pressure_bits(prior, spec) == pytest.approx(math.log2(6 / 5))
    p = B.predict(prior, np.array([0.0, 1.0, 1e3]), spec)
    assert np.allclose(p.misaligned_rate["unobserved"], [2 / 6, 1 / 5, 1 / 5])  # the deceptive persona's share of A + D
    assert np.allclose(p.misaligned_rate["observed"], [1 / 6, 0, 0])
    assert p.bits["unobserved"][-1] == pytest.approx(2.0)  # log2(pi_aligned / pi_deceptive)


def test_stickiness_is_one_for_personas_post_training_cannot_tell_apart():
    spec = B.default_personas(noise=0.05)
    # Two arms with the same aligned + deceptive mass, split differently: identical pressure paths.
    arm_a = B.prior_log2(spec, {"aligned": math.log2(12), "deceptive": math.log2(4)})
    arm_b = B.prior_log2(spec, {"aligned": math.log2(4), "deceptive": math.log2(12)})
    k = np.geomspace(1e-3, 0.9 * B.max_pressure_bits(arm_a, spec), 12)
    gaps = []
    for prior in (arm_a, arm_b):
        n = B.evidence_for_pressure(prior, k, spec)
        assert np.allclose(B.predict(prior, n, spec).kl_bits, k, rtol=1e-6)
        gaps.append(B.persona_log_odds(B.posterior_log2(prior, n, spec), spec, "aligned", "deceptive"))
    s = (gaps[0] - gaps[1]) / (math.log2(3) - math.log2(1 / 3))
    assert np.allclose(s, 1.0, atol=1e-9)
    # Any persona pair keeps its gap between priors at equal evidence: the update is additive in log-odds.
    post = [B.posterior_log2(p, 7.0, spec) for p in (arm_a, arm_b)]

    def gap(a, b):
        return B.persona_log_odds(a, spec, "aligned", "misaligned") - B.persona_log_odds(
            b, spec, "aligned", "misaligned"
        )

    base, after = gap(arm_a, arm_b), gap(*post)
    assert after == pytest.approx(base)


def test_stickiness_at_pressure_is_nan_beyond_reach_and_finite_within():
    spec = B.default_personas(noise=0.01)
    a, b = B.shifted_prior(spec, 3.0), B.shifted_prior(spec, 1.0)
    reach = min(B.max_pressure_bits(a, spec), B.max_pressure_bits(b, spec))
    s = B.stickiness_at_pressure(a, b, np.array([0.0, reach / 2, 2 * reach]), spec, "unobserved")
    assert s[0] == pytest.approx(1.0) and np.isfinite(s[1]) and np.isnan(s[2])
    at = B.predict_at_pressure(a, np.array([reach / 2, 2 * reach]), spec)
    assert at.kl_bits[0] == pytest.approx(reach / 2) and np.isnan(at.misaligned_rate["unobserved"][1])
    assert np.isfinite(at.weights[0]).all() and np.isnan(at.weights[1]).all()


def test_invalid_inputs_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown persona"):
        B.prior_log2(B.default_personas(), {"sydney": 1.0})
    with pytest.raises(ValueError, match="noise"):
        B.default_personas(noise=0.7)


def test_floors_of_hundreds_of_bits_stay_exact():
    # Measured bits are sequence log-odds (tens to hundreds of bits); 1 - 2^-200 rounds to 1 in floating point.
    spec = B.default_personas(floor_bits=200.0)
    p = B.predict(B.shifted_prior(spec, 0.0), np.array([0.0, 1.0, 100.0]), spec)
    assert p.bits["observed"][0] == pytest.approx(1.0, abs=1e-9)  # log2((A + D) / M) = log2(2 / 1)
    assert p.bits["observed"][-1] == pytest.approx(200.0, abs=1e-6)  # saturated at the floor, not inf
    assert np.all(np.isfinite(p.kl_bits)) and p.kl_bits[-1] == pytest.approx(np.log2(3 / 2), abs=1e-9)
