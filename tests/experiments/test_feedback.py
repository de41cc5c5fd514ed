"""The feedback experiment: generation k's model writes part of generation k+1's corpus.

Pure per-generation quantities on known values; the grid's chaining on simulated stages (every generate job after
its writer, every later generation after its generate job, a failed writer blocking its descendants and a rerun
resuming them); and the smallest real-stage grid that checks the wiring (g0 and one later generation, one seed, a
few short documents, at the smoke preset)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.feedback import (
    GAIN,
    MISALIGNED_RATE,
    SHIFT,
    STEP,
    feedback_rows,
    gains,
    generation_of,
    lineages,
    shifts,
    steps,
)
from hyperstition.analysis.finished import DONE
from hyperstition.experiments.executor import InlineExecutor
from hyperstition.experiments.plan import plan_jobs
from hyperstition.experiments.runner import run_experiment
from hyperstition.experiments.stageset import SIMULATED_STAGES as SIM
from hyperstition.experiments.verify import verify_cell
from hyperstition.generation import generate_documents, persona_mix
from hyperstition.run import run_and_report

SMALL = [  # the smallest grid: the shared first generation and one later one
    "seeds=[0]",
    "arms={g0: {}, unfiltered-g1: {}}",
    "followups={}",
    "generations={unfiltered-g1: {parent: g0, writer: sft, share: 0.5}}",
]


def test_shift_step_and_gain_on_known_values():
    bits = [1.0, 3.0, 4.0, 4.5]
    assert shifts(bits) == [2.0, 3.0, 3.5]
    assert steps(bits) == [2.0, 1.0, 0.5]
    assert gains(steps(bits)) == [0.5, 0.5]  # damping: each generation moves half as far as the one before
    assert gains([2.0, 4.0]) == [2.0]  # amplifying
    assert math.isnan(gains([0.0, 1.0])[0])
    assert shifts([1.0]) == [] and gains([1.0]) == []


def test_arm_names_give_lineage_and_generation():
    assert generation_of("g0") == (None, 0)
    assert generation_of("filtered-g2") == ("filtered", 2)
    assert generation_of("my-lineage-g10") == ("my-lineage", 10)
    assert generation_of("unfiltered") is None
    arms = ["g0", "a-g1", "b-g1", "a-g2", "b-g3"]  # b lacks generation 2: its chain stops at 1
    assert lineages(arms) == {"a": ["g0", "a-g1", "a-g2"], "b": ["g0", "b-g1"]}


def test_persona_mix_of_predicted_classes():
    mix = persona_mix(["ai_aligned", "dialogue_aligned", "ai_misaligned", "world"])
    assert mix == {"aligned": 0.5, "misaligned": 0.25, "deceptive": 0.0, "none": 0.25}
    assert persona_mix([]) == {}


def _rows(arm: str, seed: int, bits: float, misaligned_rate: float = 0.25) -> list[dict]:
    return [
        {"arm": arm, "seed": seed, "strategy": "base", "step": 0, "tokens": 0, "kl_bits": 0.0, "context": c}
        | {"metric": metric, "value": value, "ci_low": math.nan, "ci_high": math.nan}
        for c in ("observed", "unobserved")
        for metric, value in (("bits_aligned_vs_misaligned", bits), ("rate_misaligned", misaligned_rate))
    ]


def test_feedback_rows_from_known_per_seed_bits():
    # Seed s: generation bits 0, 2 + s, 3 + s (steps 2 + s then 1): gain = mean(1) / mean(2 + s) over seeds.
    rows = []
    for s in (0, 1, 2):
        rows += _rows("g0", s, 0.0) + _rows("unfiltered-g1", s, 2.0 + s) + _rows("unfiltered-g2", s, 3.0 + s)
        rows += _rows("filtered-g1", s, 1.0) + _rows("filtered-g2", s, 1.0, misaligned_rate=0.1 * s)
    out = feedback_rows(pd.DataFrame(rows), "g0")
    got = {(r.arm, r.metric, r.step, r.context): r for r in out.itertuples()}
    assert got[("unfiltered", SHIFT, 1, "observed")].value == pytest.approx(3.0)
    assert got[("unfiltered", SHIFT, 2, "observed")].value == pytest.approx(4.0)
    assert got[("unfiltered", STEP, 2, "observed")].value == pytest.approx(1.0)
    assert got[("unfiltered", GAIN, 2, "observed")].value == pytest.approx(1 / 3)
    assert got[("filtered", GAIN, 2, "observed")].value == pytest.approx(0.0)
    diff = got[("filtered", "paired_diff_" + SHIFT, 1, "observed")]
    assert diff.value == pytest.approx(-2.0) and diff.ci_low < -2.0 < diff.ci_high
    assert got[("unfiltered", MISALIGNED_RATE, 0, "observed")].value == pytest.approx(0.25)  # generation 0 too
    rate = got[("filtered", MISALIGNED_RATE, 2, "unobserved")]
    assert rate.value == pytest.approx(0.1) and rate.ci_low < 0.1 < rate.ci_high


def test_planner_chains_generations_through_generate_jobs():
    jobs = {j.id: j for j in plan_jobs(load_experiment("feedback", ["seeds=[0,1]"]))}
    assert jobs["g0/seed-0/generate-sft"].deps == ("g0/seed-0/sft",)
    assert jobs["g0/seed-0/generate-suppressed"].deps == ("g0/seed-0/suppressed",)
    assert jobs["suppress-g1/seed-0/pretrain"].deps == ("g0/seed-0/generate-suppressed",)
    for lineage in ("unfiltered", "filtered", "tagged"):  # one generate job per (writer, seed), shared
        assert jobs[f"{lineage}-g1/seed-1/pretrain"].deps == ("g0/seed-1/generate-sft",)
        assert jobs[f"{lineage}-g2/seed-1/pretrain"].deps == (f"{lineage}-g1/seed-1/generate-sft",)
    # Arms differ only in how the documents enter: their pretraining hashes differ.
    hashes = {jobs[f"{x}-g1/seed-0/pretrain"].config_hash for x in ("unfiltered", "filtered", "tagged")}
    assert len(hashes) == 3


def test_simulated_grid_chains_resumes_and_reports(tmp_path, monkeypatch):
    exp = load_experiment("feedback", SMALL[:1] + ["generation.documents=5"])
    run = tmp_path / "run"
    monkeypatch.setenv("HYPERSTITION_SIMULATE_FAIL", "unfiltered-g1/seed-0/generate-sft")
    first = run_experiment(exp, run, executor=InlineExecutor(), stages=SIM)
    assert list(first.failed) == ["unfiltered-g1/seed-0/generate-sft"]
    assert "unfiltered-g2/seed-0/pretrain" in first.blocked and "tagged-g2/seed-0/pretrain" not in first.blocked
    monkeypatch.delenv("HYPERSTITION_SIMULATE_FAIL")
    again = run_and_report(exp, run, executor=InlineExecutor(), stages=SIM)
    assert again.ok and "g0/seed-0/generate-sft" in again.skipped
    assert "unfiltered-g2/seed-0/pretrain" in again.done
    done = json.loads((run / "cells/g0/seed-0/generate-sft" / DONE).read_text())
    assert "cells/g0/seed-0/generate-sft/generated.parquet" in done["files"]
    page = (run / "report.html").read_text()
    assert 'id="feedback"' in page and "Calibration status" in page
    assert "g0/seed-0/generate-suppressed" in page  # what the writers wrote


@pytest.mark.slow
def test_smallest_grid_on_the_real_stages(tmp_path):
    overrides = [  # the smoke preset, its shortest curve, bits and KL only, short pretraining: every part runs
        "preset=smoke",
        "pipeline={pretrain: {steps: 20, checkpoint_every: 10}, corpus: {classifier_documents: 20}}",
        "posttrain_preset={preset: smoke, steps: 2, curve: {log_base: 4}}",
        "eval_overrides=[kl_prompts=2, kl_samples=2, kl_max_samples=2, sections.rates=false, "
        "sections.knowledge=false, sections.capability=false]",
        "generation.documents=16",
        "generation.max_new_tokens=24",
    ]
    exp = load_experiment("feedback", SMALL + overrides)
    run = tmp_path / "run"
    summary = run_and_report(exp, run, executor=InlineExecutor())
    assert summary.ok, summary.failed
    written = pd.read_parquet(run / "cells/g0/seed-0/generate-sft/generated.parquet")
    assert len(written) == 16 and all(t.startswith(o) for t, o in zip(written.text, written.opening))
    assert len(set(written.text)) > 1
    manifest = json.loads((run / "cells/unfiltered-g1/seed-0/pretrain/corpus/manifest.json").read_text())
    entry = manifest["generated"]
    assert entry["used"] >= entry["kept"] > 0 and entry["units"] >= entry["target_units"] > 0
    assert manifest["units_by_class"]["generated"] == entry["units"]
    summary_json = json.loads((run / "cells/g0/seed-0/generate-sft/generated.json").read_text())
    assert summary_json["documents"] == 16 and abs(sum(summary_json["persona_mix"].values()) - 1) < 1e-9
    rerun = run_experiment(exp, run, executor=InlineExecutor())
    assert not rerun.done and len(rerun.skipped) == len(summary.jobs)  # finished cells are reused
    # Seeded per document: another batch size writes the same documents, byte for byte.
    writer = next(j for j in plan_jobs(exp) if j.id == "g0/seed-0/generate-sft")
    again = generate_documents(
        run / "cells/g0/seed-0/sft/final",
        tmp_path / "again",
        cfg=exp.generation.model_copy(update={"batch_size": 5}),
        world_cfg=writer.pipeline.world,
        corpus_cfg=writer.pipeline.corpus,
        seed=0,
    )
    assert pd.read_parquet(again).text.tolist() == written.text.tolist()
    # `verify` recomputes a later generation's pretraining elsewhere: its corpus is the same, byte for byte.
    verdict = verify_cell(run, "unfiltered-g1/seed-0/pretrain")
    assert verdict.inputs_same and not verdict.inputs_differ and not verdict.outputs_differ
