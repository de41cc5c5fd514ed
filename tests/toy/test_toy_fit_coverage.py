"""The Bayesian fit's 95% intervals cover the true parameters on data simulated from the model."""

import numpy as np
import pandas as pd

from hyperstition.config import CONTEXTS
from hyperstition.toy.fit import arm_priors, bayes_bits, fit_bayes, strategy_points

TRUE_ALIGNED, TRUE_DECEPTIVE = np.array([1.0, -0.5]), np.array([-0.5, -1.0])
TRUE_FLOOR, TRUE_RATE, NOISE = 5.0, 1.5, 0.3
K = np.array([0.0, 0.3, 0.8, 2.0, 4.5, 10.0, 18.0])


def _simulated_points(rng: np.random.Generator) -> pd.DataFrame:
    rows = [
        {
            "run": "sim",
            "arm": f"arm{a}",
            "seed": seed,
            "strategy": "sft",
            "step": i,
            "tokens": 0,
            "kl_bits": k,
            "context": context,
            "metric": "bits_aligned_vs_misaligned",
            "arm_i": a,
            "ctx_i": c,
        }
        for a in range(2)
        for seed in range(2)
        for c, context in enumerate(CONTEXTS)
        for i, k in enumerate(K)
    ]
    df = pd.DataFrame(rows)
    truth = bayes_bits(
        arm_priors(TRUE_ALIGNED, TRUE_DECEPTIVE),
        TRUE_FLOOR,
        TRUE_RATE,
        df.arm_i.to_numpy(),
        df.ctx_i.to_numpy(),
        df.kl_bits.to_numpy(float),
    )
    return df.assign(measured=truth + rng.normal(0, NOISE, len(df))).drop(columns=["arm_i", "ctx_i"])


def test_wald_intervals_of_the_bayesian_fit_have_their_coverage():
    rng = np.random.default_rng(11)
    reps, covered, widths = 80, {"rate": 0, "aligned": 0, "floor": 0}, []
    for _ in range(reps):
        fit = fit_bayes(strategy_points(_simulated_points(rng), "sft"), "sft")
        lo, hi = fit.params["evidence_per_kl_ci"]
        covered["rate"] += lo <= TRUE_RATE <= hi
        lo_a, hi_a = fit.priors["arm0"]["aligned_vs_misaligned_bits_ci"]
        covered["aligned"] += lo_a <= TRUE_ALIGNED[0] <= hi_a
        lo_f, hi_f = fit.params["floor_bits_ci"]
        covered["floor"] += lo_f <= TRUE_FLOOR <= hi_f
        widths.append(hi / lo)
    # 95% nominal (seed 11 gives 75, 79 and 77 of 80); with 80 replicates the binomial sd is 0.024,
    # so 0.88 is about 3 sd below
    assert all(0.88 <= n / reps <= 1.0 for n in covered.values()), covered
    assert np.median(widths) < 2.0  # informative, not merely wide: a factor under 2 on the evidence rate
