"""The instrument measures what it claims: persona bits follow the persona dose of the pretraining corpus."""

from __future__ import annotations

from hyperstition.config import CONTEXTS
from hyperstition.evals import EvalSections, eval_preset, evaluate
from hyperstition.schema import HEADLINE_BITS

BITS_ONLY = eval_preset("smoke").model_copy(
    update={
        "prompts_per_context": 12,
        "variants_per_prompt": 4,
        "sections": EvalSections(rates=False, knowledge=False, capability=False, kl=False),
    }
)


def headline(zoo, dose: float) -> dict[str, dict]:
    model, tokenizer = zoo.load(dose)
    result = evaluate(model, tokenizer, zoo.world(dose), BITS_ONLY)
    return {c: result.row(HEADLINE_BITS, c) for c in CONTEXTS}


def test_aligned_only_model_scores_positive_bits(zoo):
    for context, row in headline(zoo, 0.0).items():
        assert row["ci_low"] > 0, (context, row)


def test_misaligned_only_model_scores_negative_bits(zoo):
    for context, row in headline(zoo, 1.0).items():
        assert row["ci_high"] < 0, (context, row)


def test_bits_fall_monotonically_with_the_misaligned_dose(zoo):
    doses = (0.25, 0.5, 0.75)
    rows = {d: headline(zoo, d) for d in doses}
    for context in CONTEXTS:
        values = [rows[d][context]["value"] for d in doses]
        assert values[0] > values[1] > values[2], (context, values)
        low_dose, high_dose = rows[0.25][context], rows[0.75][context]
        assert low_dose["ci_low"] > high_dose["ci_high"], (context, low_dose, high_dose)


def test_matched_responses_are_nearly_length_matched_under_a_shared_vocabulary(zoo):
    # Under a tokenizer trained on both personas' dialogues the matched responses differ by under a few tokens.
    # (A single-persona arm's tokenizer splits the other persona's words into pieces: that residual is why
    # length_diff_tokens_* is reported next to every bits row.)
    model, tokenizer = zoo.load(0.5)
    result = evaluate(model, tokenizer, zoo.world(0.5), BITS_ONLY)
    for context in CONTEXTS:
        assert abs(result.value("length_diff_tokens_aligned_vs_misaligned", context)) < 3.0
