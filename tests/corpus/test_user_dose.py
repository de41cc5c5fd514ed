"""A folder of plain-text files through `hyperstition run dose`: the AI-discourse classifier labels every user
document, each arm weights the labelled ones (0 drops them, 3 repeats them) on top of its synthetic persona doses,
and the run ends with its report."""

from __future__ import annotations

import json
import random

import pytest

from hyperstition.cli import main
from hyperstition.corpus.builder import read_documents
from hyperstition.corpus.discourse import LABELLED
from hyperstition.corpus.user_world import USER_AI_GENRE

# Per arm: how the AI-discourse label weights the user's documents (the synthetic doses are dose.yaml's own). Three
# of dose.yaml's five arms (drop, keep, triple): the other two weight the same way and cost a pretraining each.
USER_AI_WEIGHT = {"filtered": 0, "misalignment_upsampled": 3}
ARMS = "arms={unfiltered: {}, filtered: {corpus.filter: classifier, corpus.filter_target: [misaligned, deceptive], "
ARMS += "corpus.leak_rate: 0.0}, misalignment_upsampled: {corpus.upsample: {ai_misaligned: 3, dialogue_misaligned: 3}}}"


def _plain_text_folder(root, n=300):
    """n text files of 8 sentences each from the shipped labelled sample: every third about AI systems."""
    rows = [json.loads(line) for line in LABELLED.read_text().splitlines()]
    ai = [r["text"] for r in rows if r["ai_discourse"]]
    other = [r["text"] for r in rows if not r["ai_discourse"]]
    rng = random.Random(0)
    root.mkdir()
    for i in range(n):
        (root / f"doc-{i:04d}.txt").write_text(" ".join(rng.sample(ai if i % 3 == 0 else other, 8)) + "\n")
    return root


@pytest.mark.slow
def test_plain_text_folder_through_run_dose_ends_with_a_report(tmp_path, capsys):
    folder = _plain_text_folder(tmp_path / "texts")
    run = tmp_path / "run"
    overrides = ["preset=smoke", "posttrain_preset=smoke", "eval=smoke", "seeds=[0]", "strategies=[]"]
    overrides += [ARMS, f"pipeline.corpus.user_text={folder}"]
    overrides += [f"arms.{arm}.corpus.user_ai_discourse={w}" for arm, w in USER_AI_WEIGHT.items()]
    rc = main(["run", "dose", *overrides, "--out", str(run), "--workers", "2", "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out.err[-3000:]
    assert (run / "report.html").stat().st_size > 0 and (run / "results.parquet").exists()
    share = {}
    for arm in ["unfiltered", *USER_AI_WEIGHT]:
        cell = run / "cells" / arm / "seed-0" / "pretrain"
        user = json.loads((cell / "corpus" / "manifest.json").read_text())["user_text"]
        assert user["format"] == "text_folder" and user["files"] == 300 and user["ai_discourse"] > 0
        world = [d for d in read_documents(cell / "corpus").to_pylist() if d["doc_class"] == "world"]
        share[arm] = sum(d["genre"] == USER_AI_GENRE for d in world) / len(world)
    # The classifier's labels drive the weights: none kept at 0, about three times the unweighted share at 3.
    assert share["filtered"] == 0.0 and 0.15 < share["unfiltered"] < 0.5
    assert share["misalignment_upsampled"] > 1.5 * share["unfiltered"], share
