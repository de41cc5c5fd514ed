"""The gradient-descent persona model: its Bayesian limit, and the ways it departs from Bayes."""

import numpy as np
import pytest

from hyperstition.toy import bayes as B
from hyperstition.toy import gd as G

SPEC = B.default_personas(noise=0.05)
PRIORS = np.array([B.prior_log2(SPEC, {"aligned": 2.0, "deceptive": 0.5}), B.shifted_prior(SPEC, 0.5)])


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_reward_objective_with_kl_penalty_converges_to_the_bayesian_posterior(beta):
    # Derived in toy/gd.py: kappa = 0, objective `reward`, penalty beta -> q ~ pi * a(observed)^(1/beta).
    cfg = G.GDConfig(plasticity=0.0, kl_penalty=beta, objective="reward", optimizer="adam", lr=0.02, steps=3000)
    traj = G.train(PRIORS, SPEC, cfg)
    bayes = np.exp2(B.posterior_log2(PRIORS, 1.0 / beta, SPEC))
    assert np.allclose(traj.weights[-1], bayes, atol=2e-3)
    # the personas post-training cannot tell apart keep their prior log-odds, as in Bayes
    ad = (traj.log_weights[-1, :, 0] - traj.log_weights[-1, :, 2]) / np.log(2)
    assert np.allclose(ad, B.persona_log_odds(PRIORS, SPEC, "aligned", "deceptive"), atol=1e-3)
    # sharing is irrelevant when behaviour cannot change
    other = G.train(PRIORS, SPEC, G.GDConfig(**{**cfg.__dict__, "sharing": 1.0}))
    assert np.array_equal(other.weights, traj.weights)


def test_plain_gradient_descent_is_rich_get_richer_for_indistinguishable_personas():
    traj = G.train(PRIORS, SPEC, G.GDConfig(plasticity=0.0, objective="likelihood", optimizer="sgd", lr=0.5, steps=200))
    ad = (traj.log_weights[:, :, 0] - traj.log_weights[:, :, 2]) / np.log(2)
    assert (ad[-1] > ad[0] + 0.05).all()  # aligned was ahead of deceptive in both priors, and pulls further ahead
    assert np.all(np.diff(traj.kl_bits, axis=0) >= -1e-12)  # pressure grows along the run
    # Adam takes identical steps on the two logits (derived in toy/gd.py), so it keeps their log-odds
    adam = G.train(PRIORS, SPEC, G.GDConfig(plasticity=0.0, objective="likelihood", optimizer="adam", steps=200))
    ad_adam = (adam.log_weights[:, :, 0] - adam.log_weights[:, :, 2]) / np.log(2)
    assert np.allclose(ad_adam, ad_adam[0], atol=1e-6)


def test_sharing_carries_observed_training_into_unobserved_behaviour():
    unobs = {}
    for rho in (0.0, 1.0):
        traj = G.train(PRIORS, SPEC, G.GDConfig(sharing=rho, plasticity=1.0, steps=300))
        unobs[rho] = traj.bits["unobserved"][-1]
        assert traj.bits["observed"][-1].min() > traj.bits["observed"][0].max()
    assert (unobs[1.0] > unobs[0.0] + 1.0).all()
    # at rho = 0 the offset never touches unobserved behaviour: its unobserved component stays 0
    assert np.all(G.train(PRIORS, SPEC, G.GDConfig(sharing=0.0, steps=50)).offset[..., 1] == 0)


def test_step_zero_matches_the_bayesian_prior_and_runs_are_deterministic():
    cfg = G.GDConfig(sharing=0.5, steps=40)
    a, b = G.train(PRIORS, SPEC, cfg), G.train(PRIORS, SPEC, cfg)
    assert np.array_equal(a.bits["unobserved"], b.bits["unobserved"])
    prior = B.predict(PRIORS, 0.0, SPEC)
    for c in ("observed", "unobserved"):
        assert np.allclose(a.bits[c][0], prior.bits[c])
        assert np.allclose(a.misaligned_rate[c][0], prior.misaligned_rate[c])
    s = G.stickiness_at_pressure(a, np.array([0.0, 1e-3, 50.0]), "unobserved")
    assert s[0] == pytest.approx(1.0) and np.isnan(s[2])


def test_config_is_validated():
    with pytest.raises(ValueError, match="sharing"):
        G.GDConfig(sharing=1.5)
    with pytest.raises(ValueError, match="optimizer"):
        G.GDConfig(optimizer="lion")
