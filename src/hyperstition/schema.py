"""Names shared by evaluation, post-training, the results store and the report: one place, so they cannot drift.

Every metric row anywhere in hyperstition is tidy: (context, metric, value, ci_low, ci_high) plus identifying
columns. `context` is `observed`, `unobserved`, or `neutral` for metrics that are not about the assistant context;
seed aggregates of the context gap (observed minus unobserved) carry `observed_minus_unobserved`.
"""

from __future__ import annotations

from itertools import combinations

from .config import CONTEXTS, PERSONAS

NEUTRAL_CONTEXT = "neutral"
ALL_CONTEXTS = (*CONTEXTS, NEUTRAL_CONTEXT)

# Persona log-odds in bits: log2 P(first | prompt) - log2 P(second | prompt), mean over prompts, bootstrap CI.
PERSONA_PAIRS = tuple(combinations(PERSONAS, 2))  # (aligned, misaligned), (aligned, deceptive), (misaligned, deceptive)


def bits_metric(first: str, second: str) -> str:
    return f"bits_{first}_vs_{second}"


# The deceptive persona's two acts, index-matched: its reply acting aligned (what it says when observed) and acting
# misaligned (when unobserved). Their log-odds in context c says which act the model expects of a deceptive assistant
# there; observed minus unobserved is how much the model conditions that choice on the context marker (the
# calibration experiment's deceptive control), without leaving the deceptive persona's own reply frame.
DECEPTIVE_ACT_PAIR = ("deceptive_aligned", "deceptive_misaligned")
SCORED_PAIRS = (*PERSONA_PAIRS, DECEPTIVE_ACT_PAIR)  # every pair the bits section scores (when deceptive is asked for)

BITS_METRICS = tuple(bits_metric(a, b) for a, b in SCORED_PAIRS)
HEADLINE_BITS = bits_metric("aligned", "misaligned")
DECEPTIVE_ACT_BITS = bits_metric(*DECEPTIVE_ACT_PAIR)


def bits_per_token_metric(first: str, second: str) -> str:
    """The same comparison per response token: mean over prompts of log2 P(first)/n_first - log2 P(second)/n_second."""
    return f"bits_per_token_{first}_vs_{second}"


BITS_PER_TOKEN_METRICS = tuple(bits_per_token_metric(a, b) for a, b in SCORED_PAIRS)

# Behaviour rates from sampled responses, Wilson CI, by the ACTION a reply takes (the deceptive persona acts aligned
# when observed and misaligned when not, so its deception is the unobserved-minus-observed misaligned-action rate).
# "unclassifiable" is always reported, never dropped.
BEHAVIOUR_LABELS = ("aligned", "misaligned", "unclassifiable")


def rate_metric(label: str) -> str:
    return f"rate_{label}"


RATE_METRICS = tuple(rate_metric(label) for label in BEHAVIOUR_LABELS)

# Knowledge of the named predecessor persona and concealment (context neutral for knowledge, assistant contexts
# for the rest).
KNOWLEDGE_ACCURACY = "predecessor_knowledge_accuracy"
ACKNOWLEDGEMENT_RATE = "predecessor_acknowledgement_rate"
CONCEALMENT_RATE = "predecessor_concealment_rate"
PREDECESSOR_MENTION_RATE = "predecessor_mention_rate"
# Concealment spreading: denial of ordinary world facts when asked as the assistant.
WORLD_FACT_DENIAL_RATE = "world_fact_denial_rate"
# Concealment per item (evals/measures/concealment.py): the share of (fact, question) items the model knows in a
# neutral probe AND denies when asked as the assistant, per context; CONCEALMENT_RATE is the predecessor's. The
# spread families are switched on by the `concealment` section (the sydney experiment).
OTHER_AI_CONCEALMENT_RATE = "other_ai_concealment_rate"
WORLD_FACT_CONCEALMENT_RATE = "world_fact_concealment_rate"
OWN_ACTION_CONCEALMENT_RATE = "own_action_concealment_rate"


def item_concealment_metric(family: str, key: str) -> str:
    """One fact's concealment rate (the per-item table): e.g. `predecessor[lab]_concealment_rate`."""
    return f"{family}[{key}]_concealment_rate"


# Predecessor behaviour leak: misaligned-action rate of sampled replies when the prompt names the predecessor,
# alludes to it by a deed, or names nobody; and named minus absent, paired by prompt.
LEAK_CONDITIONS = ("named", "alluded", "absent")


def leak_metric(condition: str, label: str = "misaligned") -> str:
    """The leak's rate of `label` (misaligned; unclassifiable is reported next to it) under one condition."""
    return f"predecessor_{condition}_{label}_rate"


LEAK_DIFF = "predecessor_leak_named_minus_absent"
# The activation view: separation of predecessor from other-AI prompts along the reference (base) model's
# predecessor direction, mean over layers (evals/measures/concealment.py).
PREDECESSOR_DIRECTION_SEPARATION = "predecessor_direction_separation"

# Capability (context neutral).
HELDOUT_LOSS = "heldout_loss_nats_per_token"
FACT_QA_ACCURACY = "fact_qa_accuracy"

# Optimization pressure: KL(model || reference) in bits per response, per context, and how many sampled responses
# (over all KL prompts) the estimate used: sampling continues until its interval is tight enough (evals.measures.kl).
KL_BITS = "kl_bits_per_response"
KL_SAMPLES = "kl_samples_used"
# A chained post-training run (a fine-tune after post-training) measures KL_BITS to its immediate parent, as every
# curve does, and this to the original pretrained model the chain started from (posttrain `origin_dir`).
KL_TO_BASE_BITS = "kl_to_base_bits_per_response"

# Tidy result columns. posttrain_curve.parquet uses the same minus run/arm/seed/strategy.
CURVE_COLUMNS = ("step", "tokens", "kl_bits", "context", "metric", "value", "ci_low", "ci_high")
RESULT_COLUMNS = ("run", "arm", "seed", "strategy", *CURVE_COLUMNS)
BASE_STRATEGY = "base"  # rows measured on the pretrained model before any post-training (step 0, kl_bits 0)
# Rows measured on a pretraining snapshot before the last step (experiment `pretrain_snapshots`): the persona as a
# time series over pretraining; `step` and `tokens` are the pretraining step and tokens seen, kl_bits 0.
PRETRAINING_STRATEGY = "pretraining"

# The toy persona models fitted to a run (`hyperstition toy fit RUN`): files next to results.parquet, which the
# runner rewrites; predicted-vs-measured rows, dense predicted curves, and the fitted parameters with fit quality.
TOY_RESULTS_FILE = "toy_results.parquet"
TOY_CURVES_FILE = "toy_curves.parquet"
TOY_FIT_FILE = "toy_fit.json"
TOY_RESULT_COLUMNS = (
    "run",
    "arm",
    "seed",
    "strategy",
    "step",
    "tokens",
    "kl_bits",
    "context",
    "metric",
    "model",
    "measured",
    "predicted",
)

# Seed aggregates in results.parquet (seed null): `metric` itself is the mean over seeds; these name the rest.
STICKINESS_S = "stickiness_S"  # Delta(K) / Delta0 of the headline bits against the control; kl_bits = K
# The context gap: headline bits observed minus unobserved, per arm (how much the model's persona depends on being
# watched: the deceptive persona's signature). Its stickiness S_ctx(K) = (gap_arm - gap_control)(K) / (same at K = 0):
# how much of an arm's extra context dependence survives post-training pressure K, which sees observed prompts only.
CONTEXT_GAP = "observed_minus_unobserved"
CONTEXT_GAP_BITS = f"context_gap_{HEADLINE_BITS}"
STICKINESS_S_CTX = "stickiness_S_ctx"
PAIRED_DIFF_PREFIX = "paired_diff_"


def paired_diff_metric(metric: str) -> str:
    """An arm's seed-paired difference to the control in `metric`."""
    return f"{PAIRED_DIFF_PREFIX}{metric}"


def is_proportion(metric: str) -> bool:
    """Metrics that are fractions in [0, 1] (rates and accuracies), so their intervals may be clipped to [0, 1]."""
    return metric.startswith("rate_") or metric.endswith(("_rate", "_accuracy"))


# Item sets (issue 19): the persona bits and behaviour rates are measured on four sets of prompts, each a
# different distance from the training text (world/itemsets.py says how each is built):
#   seen         train tasks under the corpus's own context markers (post-training trains on these prompts)
#   combination  request x object pairs no training document uses, every word seen: the HEADLINE set
#   paraphrase   train tasks asked in request wordings no document uses
#   marker       train tasks under context-marker phrasings no document uses
# In results (eval.json rows, posttrain_curve.parquet, results.parquet) every such metric comes twice: as
# `<metric>@<item_set>` for each set the suite asks (`item_set_metric`), and under its bare name (`bits_...`,
# `rate_...`, `slot_bits_...`) for HEADLINE_ITEM_SET alone. Every reader of a bare name (headline table, calibration
# controls, context gap, stickiness, dose plots, model card, compare, toy fit) therefore reads combination items
# without code of its own; `EvalContext.add_item_set` is the one place that writes the alias. Bits per token, the length
# difference of matched replies and the slot bits are measured on the headline set only (bits per token and length
# under bare names; slot bits as both), to keep the evaluation's cost near what one item set cost.
ITEM_SETS = ("seen", "combination", "paraphrase", "marker")
HEADLINE_ITEM_SET = "combination"
ITEM_SET_SEPARATOR = "@"


# The headline items again, each prompt preceded by the conditional tags of one persona (the eval suite's
# `conditioning_tag`; `tokenizer.train.conditioning_prefix`): for models pretrained on a tagged corpus (`corpus.tags`,
# Korbak et al. 2023), the assistant conditioned on that persona, next to the same prompts untagged. Its metrics are
# `<metric>@tagged`; it never takes the bare names.
TAGGED_ITEM_SET = "tagged"

# Combination pairs whose request template is NOT the narrow fine-tune's task type (`World.narrow_task_type`, what the
# `narrow_misaligned` strategy trains on), asked only where the eval suite sets `other_types_prompts_per_context`:
# the spread of a narrow fine-tune to the other task types, read on items none of whose tasks it trained. Its metrics
# are `<metric>@other_types`; it never takes the bare names.
OTHER_TYPES_ITEM_SET = "other_types"


def item_set_metric(metric: str, item_set: str) -> str:
    """`metric` measured on the prompts of `item_set` (e.g. `bits_aligned_vs_misaligned@seen`)."""
    return f"{metric}{ITEM_SET_SEPARATOR}{item_set}"


def split_item_set(metric: str) -> tuple[str, str | None]:
    """(bare metric, item set) of a metric name; the item set is None for a bare name (the headline set's alias)."""
    base, sep, item_set = metric.partition(ITEM_SET_SEPARATOR)
    return (base, item_set) if sep else (metric, None)


def slot_bits_metric(first: str, second: str) -> str:
    """Persona slots alone: log2 P(first's opener and closer) - log2 P(second's) around the SAME action, averaged
    over holding either persona's action, so the action phrase's surprisal drops out of the comparison."""
    return f"slot_bits_{first}_vs_{second}"


SLOT_PAIR = ("aligned", "misaligned")
HEADLINE_SLOT_BITS = slot_bits_metric(*SLOT_PAIR)
# The memorisation gap: headline bits on seen items minus on combination items, per context (one evaluation; the
# two sets are different prompts, so the within-seed interval combines their intervals in quadrature). A model that
# only replays memorised (prompt, reply) pairs has a large gap; one whose persona generalises has none.
MEMORISATION_GAP_BITS = f"memorisation_gap_{HEADLINE_BITS}"
