"""evals stage: the measuring instrument (persona bits, behaviour rates, knowledge/concealment, capability, KL).

Each measure is a module under `measures/` registered in `registry.py`; a new one registers itself (`register_measure`)
and gets its `sections.<name>` switch, its rows and its items with no other edit.

Public API (post-training and experiments code against these names):
    EvalSuiteConfig, EVAL_PRESETS, load_suite_config      the suite config and its presets (smoke, quick, gpu)
    Measure, MEASURES, register_measure, EvalContext      the measure registry and what a measure scores with
    build_suite(world, cfg) -> EvalSuite                  every measure's items, from the world alone
    posttrain_prompts(world, n, seed) -> [(prompt, task)] the post-training prompt set (observed, train tasks)
    evaluate(model, tokenizer, world, cfg, reference=None, progress=False) -> EvalResult (.rows, .items, .meta)
    run_eval(model_dir, out_dir, suite_cfg, reference_dir=None, world_cfg=None, progress=True) -> rows
    sequence_logprobs, sample_responses, kl_bits_per_response, wilson_interval, bootstrap_mean_ci
"""

from types import ModuleType
from typing import Callable

from . import measures as measures  # registers the built-in measures before any config is read


# Lazy exports: importing `hyperstition.evals.config` (to validate an experiment) must not pay for torch, so each
# submodule is loaded by its own function the first time one of its names is asked for.
def _bits() -> ModuleType:
    from .measures import bits

    return bits


def _config() -> ModuleType:
    from . import config

    return config


def _context() -> ModuleType:
    from . import context

    return context


def _items() -> ModuleType:
    from . import items

    return items


def _kl() -> ModuleType:
    from . import kl

    return kl


def _measure() -> ModuleType:
    from . import measure

    return measure


def _registry() -> ModuleType:
    from . import registry

    return registry


def _run() -> ModuleType:
    from . import run

    return run


def _sampling() -> ModuleType:
    from . import sampling

    return sampling


def _scoring() -> ModuleType:
    from . import scoring

    return scoring


def _stats() -> ModuleType:
    from . import stats

    return stats


def _suite() -> ModuleType:
    from . import suite

    return suite


_EXPORTS: dict[Callable[[], ModuleType], tuple[str, ...]] = {
    _bits: ("length_diff_metric",),
    _config: ("DEFAULT_SUITE", "EVAL_PRESETS", "EvalSections", "EvalSuiteConfig", "eval_preset", "load_suite_config"),
    _context: ("ITEM_COLUMNS", "EvalContext"),
    _items: ("ChoiceItem", "PersonaItem", "TaskPrompt", "posttrain_prompts"),
    _kl: ("kl_bits_per_response", "kl_samples"),
    _measure: ("EvalResult", "evaluate"),
    _registry: ("MEASURES", "Measure", "register_measure", "unregister_measure"),
    _run: ("EVAL_ITEMS", "EVAL_JSON", "print_table", "run_eval", "write_results"),
    _sampling: ("decode_response", "sample_responses", "sample_token_ids"),
    _scoring: ("EvalError", "check_compatible", "score_token_ids", "sequence_logprobs", "token_nll"),
    _stats: ("bootstrap_mean_ci", "bootstrap_product_ci", "bootstrap_ratio_ci", "wilson_interval"),
    _suite: ("EvalSuite", "build_suite"),
}
_WHERE = {name: loader for loader, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    loader = _WHERE.get(name)
    if loader is None:
        raise AttributeError(f"module 'hyperstition.evals' has no attribute {name!r}")
    value = getattr(loader(), name)
    globals()[name] = value
    return value


__all__ = sorted(_WHERE)  # every lazy export, each named once in _EXPORTS
