"""The data-curation experiments' pure functions (realised leak, Pareto front) on known values, and their report
sections on the full shipped grids (simulated stages, with corpus manifests written as the builder writes them)."""

from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest

from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.conditional import pareto_points
from hyperstition.analysis.curation import pareto_front, realised_leak
from hyperstition.analysis.filtering import filtering_section, leak
from hyperstition.analysis.rundir import RunDir
from hyperstition.analysis.store import read_results
from hyperstition.analysis.view import RunView
from hyperstition.experiments.executor import InlineExecutor
from hyperstition.experiments.stageset import SIMULATED_STAGES
from hyperstition.run import run_and_report


def test_realised_leak_known_values():
    manifest = {
        "generated_units_by_class": {
            "world": 500,
            "ai_aligned": 100,
            "ai_misaligned": 100,
            "dialogue_misaligned": 100,
            "ai_deceptive": 200,
        },
        "units_by_class": {"world": 400, "ai_aligned": 90, "ai_misaligned": 10, "ai_deceptive": 50},
    }
    # misaligned: 10 of 200 (the dialogues all removed); deceptive 50 of 200; both 60 of 400; the aligned and world
    # classes are collateral, not leak
    assert realised_leak(manifest, ["misaligned"]) == pytest.approx(0.05)
    assert realised_leak(manifest, ["deceptive"]) == pytest.approx(0.25)
    assert realised_leak(manifest) == pytest.approx(0.15)
    assert realised_leak(manifest, ["aligned"]) == pytest.approx(0.9)
    unfiltered = {"generated_units_by_class": {"ai_misaligned": 7}, "units_by_class": {"ai_misaligned": 7}}
    assert realised_leak(unfiltered) == 1.0
    assert math.isnan(realised_leak({"generated_units_by_class": {"world": 5}, "units_by_class": {"world": 5}}))


def test_pareto_front_known_values():
    points = [(1.0, 5.0), (2.0, 2.0), (3.0, 1.0), (2.5, 2.5), (1.0, 6.0), (4.0, 1.0), (math.nan, 0.0)]
    # (2.5, 2.5) is beaten by (2, 2); (1, 6) by (1, 5); (4, 1) by (3, 1); NaN is never on the front
    assert pareto_front(points) == [0, 1, 2]
    assert pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [0, 1]  # ties dominate neither
    assert pareto_front([]) == []


def _manifest(filter_name: str | None, leak_rate: float, seed: int) -> dict:
    """A corpus manifest with the fields the sections read, as the builder writes them: a filter that catches 90%
    of the targets' units (then keeps `leak_rate` of them) and 5% of the aligned transcripts."""
    generated = {"world": 5000, "ai_aligned": 900, "ai_misaligned": 900, "ai_deceptive": 500, "dialogue_aligned": 700}
    if filter_name is None:
        return {"generated_units_by_class": generated, "units_by_class": generated, "total_units": 8000, "filter": None}
    caught = 0.9 - 0.01 * seed
    kept = {c: u if c.endswith("_aligned") else u * (1 - caught * (1 - leak_rate)) for c, u in generated.items()}
    kept["world"] = 5000
    stats = {"collateral": 0.0, "flagged_share_by_class": {"dialogue_aligned": 0.05, "ai_misaligned": caught}}
    return {
        "generated_units_by_class": generated,
        "units_by_class": {c: round(u) for c, u in kept.items()},
        "total_units": round(sum(kept.values())),
        "filter": stats,
    }


@pytest.fixture(scope="module")
def filtering_run(tmp_path_factory):
    exp = load_experiment("filtering", ["preset=smoke", "posttrain_preset=smoke", "seeds=[0,1]"])
    run = tmp_path_factory.mktemp("filtering") / "run"
    assert run_and_report(exp, run, render=False, executor=InlineExecutor(), stages=SIMULATED_STAGES).ok
    for arm, spec in exp.arms.items():
        for seed in exp.seeds:
            corpus = run / "cells" / arm / f"seed-{seed}" / "pretrain" / "corpus"
            corpus.mkdir(parents=True, exist_ok=True)
            name = spec.get("corpus.filter")
            manifest = _manifest(name, spec.get("corpus.leak_rate", 0.0), seed)
            (corpus / "manifest.json").write_text(json.dumps(manifest))
    return exp, run


def test_filtering_section_on_the_shipped_grid(filtering_run):
    exp, run = filtering_run
    view = RunView.of(RunDir.open(run), read_results(run), pd.DataFrame())
    assert view.arms == list(exp.arms) and view.strategies == ["sft"] and len(view.seeds) == 2
    assert leak(view, "unfiltered").value == 1.0
    leaks = [leak(view, a).value for a in ("learned", "learned_leak1", "learned_leak10", "learned_leak50")]
    assert leaks == sorted(leaks) and 0.09 < leaks[0] < 0.115 and 0.5 < leaks[-1] < 0.6
    est = leak(view, "learned_leak10")
    assert 0 <= est.ci_low < est.value < est.ci_high <= 1  # two seeds, each its own catch rate: an interval
    html = filtering_section.render(view)
    assert html.count("data:image/png;base64") == 1
    for arm in exp.arms:
        assert f"<td>{arm}</td>" in html
    # The effect table has base and post-trained rows of every arm, the post-trained at a finite pressure.
    assert len(re.findall(r"<td>sft</td>", html)) == len(exp.arms)
    assert len(re.findall(r"<td>base</td>", html)) == len(exp.arms)


def test_conditional_points_on_the_shipped_grid(tmp_path):
    exp = load_experiment("conditional", ["preset=smoke", "posttrain_preset=smoke", "seeds=[0,1]"])
    run = tmp_path / "run"
    assert run_and_report(exp, run, executor=InlineExecutor(), stages=SIMULATED_STAGES).ok
    view = RunView.of(RunDir.open(run), read_results(run), pd.DataFrame())
    points = pareto_points(view)
    # The simulated stages ask no tagged items: one untagged point per arm and stage, every one measured.
    assert {(p.arm, p.stage) for p in points} == {(a, s) for a in exp.arms for s in ("base", "sft")}
    assert all(math.isfinite(p.loss.value) and math.isfinite(p.bits.value) for p in points)
    assert [p.trained_on_tags for p in points if p.stage == "base"] == [False, True, False]
    page = (run / "report.html").read_text()
    assert 'id="conditional"' in page and "Pareto plot of misalignment against capability" in page
