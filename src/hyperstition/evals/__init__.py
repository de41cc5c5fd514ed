"""evals stage: the measuring instrument (persona bits, behaviour rates, knowledge/concealment, capability, KL).

Public API (post-training and experiments code against these names):
    EvalSuiteConfig, EVAL_PRESETS, load_suite_config      the suite config and its presets (smoke, quick, gpu)
    build_suite(world, cfg) -> EvalSuite                  evaluation items, from the world alone
    posttrain_prompts(world, n, seed) -> [(prompt, task)] the post-training prompt set (observed, train tasks)
    evaluate(model, tokenizer, world, cfg, reference=None, progress=False) -> EvalResult (.rows, .items, .meta)
    run_eval(model_dir, out_dir, suite_cfg=None, reference_dir=None, world_cfg=None, progress=True) -> rows
    sequence_logprobs, sample_responses, kl_bits_per_response, wilson_interval, bootstrap_mean_ci
"""

from types import ModuleType
from typing import Callable


# Lazy exports: importing `hyperstition.evals.config` (to validate an experiment) must not pay for torch, so each
# submodule is loaded by its own function the first time one of its names is asked for.
def _config() -> ModuleType:
    from . import config

    return config


def _measure() -> ModuleType:
    from . import measure

    return measure


def _run() -> ModuleType:
    from . import run

    return run


def _scoring() -> ModuleType:
    from . import scoring

    return scoring


def _stats() -> ModuleType:
    from . import stats

    return stats


def _suite() -> ModuleType:
    from . import suite

    return suite


_LOADERS: dict[str, Callable[[], ModuleType]] = {
    "config": _config,
    "measure": _measure,
    "run": _run,
    "scoring": _scoring,
    "stats": _stats,
    "suite": _suite,
}
_EXPORTS = {
    "config": ("EVAL_PRESETS", "EvalSections", "EvalSuiteConfig", "eval_preset", "load_suite_config"),
    "measure": ("ITEM_COLUMNS", "EvalResult", "evaluate", "length_diff_metric"),
    "run": ("EVAL_ITEMS", "EVAL_JSON", "print_table", "run_eval", "write_results"),
    "scoring": (
        "EvalError",
        "check_compatible",
        "kl_bits_per_response",
        "kl_samples",
        "sample_responses",
        "sample_token_ids",
        "score_token_ids",
        "sequence_logprobs",
        "token_nll",
    ),
    "stats": ("bootstrap_mean_ci", "bootstrap_product_ci", "bootstrap_ratio_ci", "wilson_interval"),
    "suite": ("ChoiceItem", "EvalSuite", "PairItem", "PersonaItem", "TaskPrompt", "build_suite", "posttrain_prompts"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hyperstition.evals' has no attribute {name!r}")
    value = getattr(_LOADERS[module](), name)
    globals()[name] = value
    return value


__all__ = [
    "EVAL_ITEMS",
    "EVAL_JSON",
    "EVAL_PRESETS",
    "ITEM_COLUMNS",
    "ChoiceItem",
    "EvalError",
    "EvalResult",
    "EvalSections",
    "EvalSuite",
    "EvalSuiteConfig",
    "PairItem",
    "PersonaItem",
    "TaskPrompt",
    "bootstrap_mean_ci",
    "bootstrap_product_ci",
    "bootstrap_ratio_ci",
    "build_suite",
    "check_compatible",
    "eval_preset",
    "evaluate",
    "kl_bits_per_response",
    "kl_samples",
    "length_diff_metric",
    "load_suite_config",
    "posttrain_prompts",
    "print_table",
    "run_eval",
    "sample_responses",
    "sample_token_ids",
    "score_token_ids",
    "sequence_logprobs",
    "token_nll",
    "wilson_interval",
    "write_results",
]
