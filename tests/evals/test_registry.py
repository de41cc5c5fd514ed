"""The measure registry: a measure registered here, in a test module, is switched, built, scored and written like the
built-in ones, with no other file touched; the section switches are the registry's."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from hyperstition.config import CONTEXTS, ConfigError, ModelConfig
from hyperstition.evals import (
    EVAL_ITEMS,
    EVAL_JSON,
    MEASURES,
    EvalContext,
    EvalSections,
    Measure,
    TaskPrompt,
    build_suite,
    eval_preset,
    evaluate,
    load_suite_config,
    posttrain_prompts,
    register_measure,
    sequence_logprobs,
    unregister_measure,
    write_results,
)
from hyperstition.model.build import build_model

TOY_REPLY = "Sure, I can help with that.<|end|>"


def toy_items(world, cfg) -> dict[str, list[TaskPrompt]]:
    return {c: posttrain_prompts(world, 3, cfg.seed, c) for c in CONTEXTS}


def toy_score(ctx: EvalContext, items: dict[str, list[TaskPrompt]]) -> None:
    """Mean log2-probability of one fixed reply per context."""
    for context, prompts in items.items():
        bits = ctx.logprobs([p.prompt for p in prompts], [TOY_REPLY] * len(prompts)) / math.log(2)
        for p, b in zip(prompts, bits):
            ctx.item("toy", context, metric="toy_reply_bits", prompt=p.prompt, response=TOY_REPLY, value=float(b))
        ctx.add(context, "toy_reply_bits", float(bits.mean()), float(bits.min()), float(bits.max()), n=len(bits))


TOY = Measure(
    "toy",
    "Log2-probability of a fixed helpful reply, per context.",
    build=toy_items,
    score=toy_score,
    counts=lambda items: {"toy_prompts": sum(len(v) for v in items.values())},
)


@pytest.fixture
def toy():
    register_measure(TOY)
    yield TOY
    unregister_measure(TOY.name)


@pytest.fixture(scope="module")
def tiny(small_tokenizer):
    cfg = ModelConfig(architecture="llama", d_model=32, n_layers=1, n_heads=2, d_ff=64, max_seq_len=128)
    return build_model(cfg, small_tokenizer, seed=0).eval(), small_tokenizer


ONLY_TOY = {"bits": False, "rates": False, "knowledge": False, "capability": False, "kl": False, "spread": False}


def test_a_registered_measure_is_switched_built_scored_and_written(toy, tiny, smoke_world, tmp_path):
    model, tokenizer = tiny
    cfg = eval_preset("smoke")
    assert cfg.sections.switches() == {
        **dict.fromkeys(["bits", "rates", "knowledge", "capability", "kl"], True),
        "spread": False,  # off by default: the sydney experiment switches it on
        "toy": True,
    }
    assert build_suite(smoke_world, cfg).summary()["toy_prompts"] == 6
    only_toy = cfg.model_copy(update={"sections": EvalSections(**ONLY_TOY)})
    result = evaluate(model, tokenizer, smoke_world, only_toy)
    assert [(r["context"], r["metric"]) for r in result.rows] == [(c, "toy_reply_bits") for c in CONTEXTS]
    for context in CONTEXTS:
        prompts = [p.prompt for p in posttrain_prompts(smoke_world, 3, cfg.seed, context)]
        expected = sequence_logprobs(model, tokenizer, prompts, [TOY_REPLY] * 3).numpy().mean() / math.log(2)
        assert result.value("toy_reply_bits", context) == pytest.approx(expected)
    assert result.meta["sections"] == ["toy"] and set(result.meta["seconds"]) == {"toy"}

    json_path, items_path = write_results(tmp_path, result)
    assert (json_path.name, items_path.name) == (EVAL_JSON, EVAL_ITEMS)
    summary = json.loads(json_path.read_text())
    assert {r["metric"] for r in summary["rows"]} == {"toy_reply_bits"}
    assert summary["meta"]["suite"]["sections"]["toy"] is True and summary["meta"]["items_per_kind"]["toy_prompts"] == 6
    items = pd.read_parquet(items_path)
    assert list(items["kind"]) == ["toy"] * 6 and items["value"].notna().all()


def test_a_registered_measure_switches_off_and_leaves_the_others_alone(toy, tiny, smoke_world):
    model, tokenizer = tiny
    cfg = load_suite_config("smoke", [f"sections.{name}=false" for name in ("bits", "rates", "knowledge", "kl", "toy")])
    result = evaluate(model, tokenizer, smoke_world, cfg)
    assert result.meta["sections"] == ["capability"]
    assert "toy_reply_bits" not in {r["metric"] for r in result.rows} and result.rows


def test_sections_are_the_registry(toy):
    assert EvalSections.names == list(MEASURES) == ["bits", "rates", "knowledge", "capability", "kl", "spread", "toy"]
    assert all(m.description and "\n" not in m.description for m in MEASURES.values()), "one line each"
    with pytest.raises(ValueError, match="registered already"):
        register_measure(TOY)


def test_section_switches_are_checked_against_the_registry():
    with pytest.raises(ConfigError) as err:
        load_suite_config("smoke", ["sections.toy=false"])  # not registered outside the fixture
    assert (
        str(err.value)
        == "sections.toy: unknown section; expected one of bits, rates, knowledge, capability, kl, spread"
    )
    with pytest.raises(ConfigError, match=r"^sections\.kl: 5 is invalid"):
        load_suite_config("smoke", ["sections.kl=5"])
    with pytest.raises(ConfigError, match="every section is off"):
        load_suite_config("smoke", [f"sections.{name}=false" for name in MEASURES])


def test_evaluate_takes_a_config_not_a_name(tiny, smoke_world):
    model, tokenizer = tiny
    with pytest.raises(TypeError, match="expected an EvalSuiteConfig"):
        evaluate(model, tokenizer, smoke_world, "smoke")


def test_reading_an_eval_config_loads_no_numerics():
    """The measures register when `hyperstition.evals` is imported, so their module tops must stay light."""
    code = (
        "import sys; from hyperstition.evals.config import load_suite_config; load_suite_config('quick'); "
        "print(sorted(m for m in ('numpy', 'scipy', 'torch', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
