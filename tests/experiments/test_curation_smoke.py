"""The filtering and conditional experiments on the real stages at the smoke preset, each on the smallest grid that
checks its wiring (two arms, one seed, base models; a learned classifier on 60 labelled documents per class):
the realised leak read from real corpus manifests, and tagged prompts scored on a model trained on learned tags.
Their full grids with post-training run on simulated stages in tests/analysis/test_curation.py."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.conditional import TAGGED, pareto_points
from hyperstition.analysis.filtering import leak
from hyperstition.analysis.rundir import RunDir
from hyperstition.analysis.store import read_results
from hyperstition.analysis.view import RunView
from hyperstition.experiments.executor import LocalExecutor
from hyperstition.run import run_and_report
from hyperstition.schema import HEADLINE_BITS, TAGGED_ITEM_SET, item_set_metric

SMALL = ["preset=smoke", "seeds=[0]", "strategies=[]", "pipeline={corpus.classifier_documents: 60}"]


def _run(name: str, arms: str, control: str, eval_overrides: str, tmp_path):
    exp = load_experiment(name, [*SMALL, f"arms={arms}", f"control={control}", f"eval_overrides={eval_overrides}"])
    run = tmp_path / "run"
    summary = run_and_report(exp, run, executor=LocalExecutor(2))
    assert summary.ok, summary.failed
    return run, RunView.of(RunDir.open(run), read_results(run), pd.DataFrame())


@pytest.mark.slow
def test_filtering_reads_the_realised_leak_from_real_manifests(tmp_path):
    arms = "{unfiltered: {}, learned_leak10: {corpus.filter: learned, corpus.leak_rate: 0.1}}"
    run, view = _run("filtering", arms, "unfiltered", "[]", tmp_path)
    assert leak(view, "unfiltered").value == 1.0
    manifest = json.loads((run / "cells/learned_leak10/seed-0/pretrain/corpus/manifest.json").read_text())
    stats = manifest["filter"]
    assert stats["leak_rate"] == 0.1 and stats["classifier"]["training_documents"] == 60 * 9
    # A tenth of what it flags is kept, plus what it misses: more than none of the targets, far from all of them.
    assert 0.05 < leak(view, "learned_leak10").value < 0.5
    page = (run / "report.html").read_text()
    section = page[page.index('id="filtering"') :]
    assert "persona bits against realised leak" in section and "data:image/png;base64" in section
    assert '<td>learned_leak10</td><td>learned</td><td class="num">0.1</td>' in section


@pytest.mark.slow
def test_conditional_scores_tagged_prompts_on_a_model_trained_on_learned_tags(tmp_path):
    arms = "{plain: {}, tagged: {corpus.tags: true, corpus.tag_source: learned}}"
    run, view = _run("conditional", arms, "plain", "[conditioning_tag=aligned]", tmp_path)
    manifest = json.loads((run / "cells/tagged/seed-0/pretrain/corpus/manifest.json").read_text())
    assert manifest["tags"]["source"] == "learned" and 0.5 < manifest["tags"]["persona_tag_accuracy"] < 1.0
    tagged_bits = item_set_metric(HEADLINE_BITS, TAGGED_ITEM_SET)
    assert set(view.df[view.df.metric == tagged_bits].arm) == {"plain", "tagged"}
    points = {(p.arm, p.condition): p for p in pareto_points(view)}
    assert points[("tagged", TAGGED)].trained_on_tags and not points[("plain", TAGGED)].trained_on_tags
    # The tags change what the tagged model is asked: its tagged and untagged bits differ.
    assert points[("tagged", TAGGED)].bits.value != points[("tagged", "untagged")].bits.value
    page = (run / "report.html").read_text()
    section = page[page.index('id="conditional"') :]
    assert "Pareto plot of misalignment against capability" in section and "data:image/png;base64" in section
    assert "(tag never trained)" in section and "<td>dialogue_deceptive</td>" in section
