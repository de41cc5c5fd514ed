"""`evaluate` end to end on a tiny model, `run_eval` outputs, and the `hyperstition eval` command's bad-input errors."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from hyperstition.cli import main
from hyperstition.config import CONTEXTS
from hyperstition.evals import EVAL_ITEMS, EVAL_JSON, EvalSections, eval_preset, evaluate, length_diff_metric, run_eval
from hyperstition.model.checkpoint import save_checkpoint
from hyperstition.schema import (
    ACKNOWLEDGEMENT_RATE,
    BITS_METRICS,
    BITS_PER_TOKEN_METRICS,
    CONCEALMENT_RATE,
    DECEPTIVE_ACT_BITS,
    DECEPTIVE_ACT_PAIR,
    FACT_QA_ACCURACY,
    HEADLINE_BITS,
    HEADLINE_ITEM_SET,
    HEADLINE_SLOT_BITS,
    HELDOUT_LOSS,
    ITEM_SETS,
    KL_BITS,
    KL_SAMPLES,
    KNOWLEDGE_ACCURACY,
    MEMORISATION_GAP_BITS,
    PREDECESSOR_MENTION_RATE,
    RATE_METRICS,
    SCORED_PAIRS,
    WORLD_FACT_DENIAL_RATE,
    bits_metric,
    bits_per_token_metric,
    item_set_metric,
)

EXPECTED = (
    {(c, m) for c in CONTEXTS for m in (*BITS_METRICS, *BITS_PER_TOKEN_METRICS)}
    | {(c, length_diff_metric(a, b)) for c in CONTEXTS for a, b in SCORED_PAIRS}
    | {(c, m) for c in CONTEXTS for m in (*RATE_METRICS, HEADLINE_SLOT_BITS, MEMORISATION_GAP_BITS)}
    | {(c, item_set_metric(m, s)) for c in CONTEXTS for s in ITEM_SETS for m in (*BITS_METRICS, *RATE_METRICS)}
    | {(c, item_set_metric(HEADLINE_SLOT_BITS, HEADLINE_ITEM_SET)) for c in CONTEXTS}
    | {("neutral", KNOWLEDGE_ACCURACY), ("neutral", HELDOUT_LOSS), ("neutral", FACT_QA_ACCURACY)}
    | {
        (c, m)
        for c in CONTEXTS
        for m in (
            ACKNOWLEDGEMENT_RATE,
            CONCEALMENT_RATE,
            PREDECESSOR_MENTION_RATE,
            WORLD_FACT_DENIAL_RATE,
            KL_BITS,
            KL_SAMPLES,
        )
    }
)


@pytest.fixture(scope="module")
def smoke_result(zoo):
    model, tokenizer = zoo.load(0.5)
    reference, _ = zoo.load(0.5, "step-000032")
    model.train()
    start = time.perf_counter()
    try:
        result = evaluate(model, tokenizer, zoo.world(0.5), eval_preset("smoke"), reference=reference)
        assert model.training, "evaluate must restore the model's train/eval flag"
    finally:
        model.eval()
    return result, time.perf_counter() - start


def test_evaluate_reports_every_metric_with_consistent_intervals(smoke_result):
    result, _ = smoke_result
    got = {(r["context"], r["metric"]) for r in result.rows}
    assert got == EXPECTED
    for r in result.rows:
        assert set(r) == {"context", "metric", "value", "ci_low", "ci_high"}
        assert r["ci_low"] - 1e-9 <= r["value"] <= r["ci_high"] + 1e-9, r
        if r["metric"].startswith("rate_") or r["metric"].endswith(("_rate", "_accuracy")):
            assert 0.0 <= r["ci_low"] <= r["ci_high"] <= 1.0
    for context in CONTEXTS:
        assert sum(result.value(m, context) for m in RATE_METRICS) == pytest.approx(1.0)
        assert result.value(KL_BITS, context) > 0
    assert 0 < result.value(HELDOUT_LOSS, "neutral") < 10


def test_bare_persona_metrics_are_the_headline_item_set_and_the_gap_is_seen_minus_combination(smoke_result):
    result, _ = smoke_result
    for context in CONTEXTS:
        for metric in (*BITS_METRICS, *RATE_METRICS, HEADLINE_SLOT_BITS):
            bare, headline = (
                result.row(metric, context),
                result.row(item_set_metric(metric, HEADLINE_ITEM_SET), context),
            )
            assert {k: v for k, v in bare.items() if k != "metric"} == {
                k: v for k, v in headline.items() if k != "metric"
            }
        seen = result.value(item_set_metric(HEADLINE_BITS, "seen"), context)
        gap = result.row(MEMORISATION_GAP_BITS, context)
        assert gap["value"] == pytest.approx(seen - result.value(HEADLINE_BITS, context))
        assert gap["ci_low"] < gap["value"] < gap["ci_high"]
    # Slot bits: per item and variant, the headline pair's slots around each held action, averaged over the two.
    frame = result.items_frame()
    slots = frame[frame.kind == "slot_bits"]
    assert set(slots.item_set) == {HEADLINE_ITEM_SET} and slots.value.notna().all()
    per_prompt = slots[(slots.context == "observed") & (slots.item_set == HEADLINE_ITEM_SET)]
    expected = per_prompt.groupby("prompt", sort=False).value.mean().mean()
    assert result.value(HEADLINE_SLOT_BITS, "observed") == pytest.approx(expected)


def test_evaluate_items_cover_every_kind(smoke_result):
    result, _ = smoke_result
    frame = result.items_frame()
    assert set(frame["kind"]) == {
        "bits",
        "slot_bits",
        "sample",
        "knowledge",
        "acknowledgement",
        "fact_denial",
        "concealment",
        "mention",
        "heldout",
        "fact_qa",
        "kl",
    }
    cfg = eval_preset("smoke")
    samples = frame[frame.kind == "sample"]
    assert len(samples) == 2 * sum(cfg.item_set_sizes().values()) * cfg.samples_per_prompt
    assert samples.item_set.value_counts().to_dict() == {
        s: 2 * n * cfg.samples_per_prompt for s, n in cfg.item_set_sizes().items()
    }
    assert set(samples["label"]) <= {"aligned", "misaligned", "deceptive", "unclassifiable"}
    kl = frame[frame.kind == "kl"]
    assert len(kl) == sum(result.value(KL_SAMPLES, c) for c in CONTEXTS) >= 2 * cfg.kl_prompts * cfg.kl_samples
    # Choice items: response and logprob are the correct answer's; chosen_* the model's pick (issue 9: they mixed).
    for kind in ("fact_qa", "knowledge"):
        choice = frame[frame.kind == kind]
        assert (choice.chosen_response.notna() & (choice.logprob_chosen >= choice.logprob)).all()
        right = choice[choice.correct.astype(bool)]
        assert (right.chosen_response == right.response).all() and (right.logprob_chosen == right.logprob).all()
        wrong = choice[~choice.correct.astype(bool)]
        assert (wrong.chosen_response != wrong.response).all() and (wrong.logprob_chosen > wrong.logprob).all()
        assert ((choice.value * math.log(2)) - (choice.logprob - choice.logprob_alt)).abs().max() < 1e-9
    # Bits per token: the per-variant difference of mean per-token log2-probabilities, averaged per prompt
    # then over prompts.
    bits = frame[(frame.kind == "bits") & (frame.metric == BITS_METRICS[0]) & (frame.context == "observed")]
    bits = bits[bits.item_set == HEADLINE_ITEM_SET]
    per_token = (bits.logprob / bits.n_tokens - bits.logprob_alt / bits.n_tokens_alt) / math.log(2)
    expected = per_token.groupby(bits.prompt, sort=False).mean().mean()
    assert result.value(BITS_PER_TOKEN_METRICS[0], "observed") == pytest.approx(expected)
    n = result.meta["n"]
    assert n[f"observed/{RATE_METRICS[0]}"] == cfg.prompts_per_context * cfg.samples_per_prompt


def test_evaluate_is_deterministic_and_sections_switch_off(zoo, smoke_result):
    model, tokenizer = zoo.load(0.5)
    reference, _ = zoo.load(0.5, "step-000032")
    result, _ = smoke_result
    again = evaluate(model, tokenizer, zoo.world(0.5), eval_preset("smoke"), reference=reference)
    assert again.rows == result.rows
    only_kl = eval_preset("smoke").model_copy(
        update={"sections": EvalSections(bits=False, rates=False, knowledge=False, capability=False)}
    )
    rows = evaluate(model, tokenizer, zoo.world(0.5), only_kl, reference=reference).rows
    assert {r["metric"] for r in rows} == {KL_BITS, KL_SAMPLES}
    assert [r for r in rows] == [r for r in result.rows if r["metric"] in (KL_BITS, KL_SAMPLES)]
    no_reference = evaluate(model, tokenizer, zoo.world(0.5), only_kl)
    assert no_reference.rows == [] and any("no reference" in note for note in no_reference.meta["notes"])
    two = eval_preset("smoke").model_copy(
        update={
            "personas": ["aligned", "deceptive"],
            "sections": EvalSections(rates=False, knowledge=False, capability=False, kl=False),
        }
    )
    # with the deceptive persona come its two acts (aligned when observed, misaligned when not); no slot bits
    # (they need aligned and misaligned) and so no memorisation gap of the aligned-vs-misaligned headline either
    scored = ("bits_aligned_vs_deceptive", DECEPTIVE_ACT_BITS)
    assert {r["metric"] for r in evaluate(model, tokenizer, zoo.world(0.5), two).rows} == {
        *scored,
        "bits_per_token_aligned_vs_deceptive",
        "length_diff_tokens_aligned_vs_deceptive",
        bits_per_token_metric(*DECEPTIVE_ACT_PAIR),
        length_diff_metric(*DECEPTIVE_ACT_PAIR),
        *(item_set_metric(m, s) for m in scored for s in ITEM_SETS),
    }


def test_deceptive_act_bits_score_the_deceptive_replies_of_each_context(smoke_result):
    """The act pair's first reply is the deceptive reply of an observed prompt, its second that of an unobserved one,
    so in each context one side repeats the deceptive persona's own log-probability exactly."""
    result, _ = smoke_result
    items = result.items_frame()
    act = items[items.metric == DECEPTIVE_ACT_BITS]
    deceptive = items[items.metric == bits_metric("aligned", "deceptive")]
    assert len(act) == len(deceptive) > 0
    same_side = {"observed": "logprob", "unobserved": "logprob_alt"}  # items are emitted in the same order
    for context, column in same_side.items():
        a, d = act[act.context == context], deceptive[deceptive.context == context]
        assert list(a.prompt) == list(d.prompt) and list(a.variant) == list(d.variant)
        assert np.allclose(a[column].to_numpy(), d.logprob_alt.to_numpy())
        assert np.allclose(a.value, (a.logprob - a.logprob_alt) / np.log(2))


def test_run_eval_writes_json_and_parquet(zoo, tmp_path):
    out = tmp_path / "eval"
    suite = eval_preset("smoke").model_copy(update={"sections": EvalSections(rates=False, capability=False)})
    rows = run_eval(zoo.checkpoint(0.5), out, suite, reference_dir=zoo.checkpoint(0.5, "step-000032"), progress=False)
    summary = json.loads((out / EVAL_JSON).read_text())
    assert summary["rows"] == [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows
    ]
    assert summary["world"]["seed"] == 0 and summary["meta"]["suite"]["preset"] == "smoke"
    assert summary["model"].endswith("final") and summary["reference"].endswith("step-000032")
    items = pd.read_parquet(out / EVAL_ITEMS)
    for column in ("kind", "context", "prompt", "response", "label", "value", "logprob", "n_tokens"):
        assert column in items.columns
    assert {"bits", "knowledge", "kl"} <= set(items["kind"])
    assert not any(p.name.startswith(".") for p in out.iterdir()), "no temp files left behind"


def test_cli_eval_prints_a_table(zoo, tmp_path, capsys):
    rc = main(
        [
            "eval",
            "--model",
            str(zoo.checkpoint(0.5)),
            "--suite",
            "smoke",
            "--out",
            str(tmp_path / "e"),
            "sections.kl=false",
            "sections.rates=false",
        ]
    )
    assert rc == 0
    captured = capsys.readouterr()
    assert "bits_aligned_vs_misaligned" in captured.out and "heldout_loss" in captured.out
    assert "context: observed" in captured.out and "context: neutral" in captured.out
    assert (tmp_path / "e" / EVAL_JSON).exists()


def test_cli_default_output_sits_beside_the_checkpoint(zoo, capsys, tmp_path):
    shutil.copytree(zoo.run_dir(0.5), tmp_path / "run")  # the zoo's models are shared: write beside a copy
    checkpoint = tmp_path / "run" / zoo.checkpoint(0.5, "step-000032").relative_to(zoo.run_dir(0.5))
    rc = main(
        [
            "eval",
            "--model",
            str(checkpoint),
            "--suite",
            "smoke",
            "--quiet",
            "sections.bits=false",
            "sections.rates=false",
            "sections.knowledge=false",
        ]
    )
    assert rc == 0 and capsys.readouterr().out == ""
    out = checkpoint.parent / "eval-step-000032"
    assert (out / EVAL_JSON).exists() and (out / EVAL_ITEMS).exists()
    assert not (checkpoint / EVAL_JSON).exists()


def _one_line_error(capsys, argv: list[str]) -> str:
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 2
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_cli_rejects_a_directory_that_is_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a model")
    line = _one_line_error(capsys, ["eval", "--model", str(tmp_path), "--suite", "smoke", "--quiet"])
    assert line.startswith("hyperstition eval: --model:") and "expected config.json" in line


def test_cli_rejects_a_tokenizer_that_does_not_match_the_model(zoo, small_tokenizer, tmp_path, capsys):
    model, _ = zoo.load(0.5)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(zoo.run_dir(0.5) / "config.yaml", run / "config.yaml")
    save_checkpoint(run / "final", model, small_tokenizer)
    line = _one_line_error(capsys, ["eval", "--model", str(run / "final"), "--suite", "smoke", "--quiet"])
    assert "tokenizer has 400 tokens but the model's embedding has 512 rows" in line and "expected" in line


def test_cli_rejects_unknown_personas(zoo, tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text("preset: smoke\npersonas: [aligned, sydney]\n")
    line = _one_line_error(capsys, ["eval", "--model", str(zoo.checkpoint(0.5)), "--suite", str(suite), "--quiet"])
    assert "unknown persona 'sydney'" in line and "expected" in line and "aligned, misaligned, deceptive" in line
    line = _one_line_error(
        capsys, ["eval", "--model", str(zoo.checkpoint(0.5)), "--suite", "smoke", "personas=[good, evil]", "--quiet"]
    )
    assert "unknown persona 'good'" in line


def test_cli_bad_input_exits_2_without_traceback_as_a_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "hyperstition.cli", "eval", "--model", str(tmp_path / "nowhere"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "not a checkpoint directory" in proc.stderr and "expected" in proc.stderr
