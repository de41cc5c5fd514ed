"""`run --reuse-from`: finished cells of another run with the same config hash are copied, never recomputed; anything
that does not verify, or was computed from another config or by another stage set, runs again (simulated stages)."""

import json

import pandas as pd
import pytest

from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.rundir import RunDirError
from hyperstition.experiments import cli
from hyperstition.experiments.executor import InlineExecutor
from hyperstition.experiments.runner import run_experiment

SIM = "hyperstition.experiments.simulate"
ONE_SEED = "seeds=[0]"
CHANGED_ARM = "arms.misalignment_upsampled={corpus.upsample: {ai_misaligned: 5}}"


def _run(run_dir, overrides=(), reuse_from=()):
    exp = load_experiment("smoke", [ONE_SEED, *overrides])
    return run_experiment(exp, run_dir, executor=InlineExecutor(), stages=SIM, reuse_from=reuse_from)


def _results(run_dir):
    df = pd.read_parquet(run_dir / "results.parquet").drop(columns="run")
    return df.sort_values(list(df.columns)).reset_index(drop=True)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reuse") / "source"
    assert _run(run_dir).ok
    return run_dir


def test_every_cell_is_copied_and_the_results_are_the_sources(tmp_path, source):
    summary = _run(tmp_path / "copy", reuse_from=[source])
    assert summary.ok and not summary.done and len(summary.skipped) == 6
    assert set(summary.reused) == {j.id for j in summary.jobs} and set(summary.reused.values()) == {str(source)}
    pd.testing.assert_frame_equal(_results(tmp_path / "copy"), _results(source))
    events = [json.loads(line) for line in (tmp_path / "copy/runlog.jsonl").read_text().splitlines()]
    assert any(e["event"] == "reused" and len(e["cells"]) == 6 for e in events)
    assert not list((tmp_path / "copy").rglob("*.reuse-partial"))


def test_only_cells_with_the_same_config_hash_are_copied(tmp_path, source):
    summary = _run(tmp_path / "changed", [CHANGED_ARM], reuse_from=[source])
    assert summary.ok
    assert sorted(summary.done) == [f"misalignment_upsampled/seed-0/{s}" for s in ("base", "pretrain", "sft")]
    assert sorted(summary.reused) == [f"unfiltered/seed-0/{s}" for s in ("base", "pretrain", "sft")]


def test_a_source_cell_that_does_not_verify_runs_again(tmp_path, source):
    damaged = tmp_path / "damaged"
    _run(damaged)
    rows = damaged / "cells/unfiltered/seed-0/base/rows.parquet"
    rows.write_bytes(rows.read_bytes()[:-1] + b"\0")  # same size, other content: only the sha256 tells
    summary = _run(tmp_path / "copy", reuse_from=[damaged, source])
    assert summary.ok and not summary.done  # the damaged cell came from the second source
    assert summary.reused["unfiltered/seed-0/base"] == str(source)
    assert summary.reused["unfiltered/seed-0/pretrain"] == str(damaged)
    alone = _run(tmp_path / "alone", reuse_from=[damaged])
    assert alone.done == ["unfiltered/seed-0/base"] and "unfiltered/seed-0/base" not in alone.reused


def test_a_cell_computed_by_another_stage_set_is_not_copied(tmp_path, source):
    other = tmp_path / "other"
    _run(other)
    done_path = other / "cells/unfiltered/seed-0/pretrain/DONE.json"
    done_path.write_text(json.dumps({**json.loads(done_path.read_text()), "stages": "some.other.stages"}))
    summary = _run(tmp_path / "copy", reuse_from=[other])
    assert "unfiltered/seed-0/pretrain" in summary.done and "unfiltered/seed-0/pretrain" not in summary.reused
    assert "unfiltered/seed-0/sft" in summary.reused  # its own cell verifies with its hash: it is the same SFT


def test_an_unfinished_attempt_here_is_superseded_by_the_finished_copy(tmp_path, source):
    run_dir = tmp_path / "copy"
    _run(run_dir, [CHANGED_ARM])  # a run directory of the same experiment...
    cell = run_dir / "cells/unfiltered/seed-0/pretrain"
    (cell / "DONE.json").unlink()  # ...whose pretraining was interrupted before it finished
    (cell / "leftover.txt").write_text("partial")
    summary = _run(run_dir, [CHANGED_ARM], reuse_from=[source])
    assert "unfiltered/seed-0/pretrain" in summary.reused and not (cell / "leftover.txt").exists()


def test_bad_sources_are_refused_with_the_option_named(tmp_path, source):
    with pytest.raises(RunDirError, match="--reuse-from .*not a run directory"):
        _run(tmp_path / "copy", reuse_from=[tmp_path / "nowhere"])
    with pytest.raises(RunDirError, match="the run directory itself"):
        _run(source, reuse_from=[source])


def test_the_command_line_says_what_it_copied(tmp_path, source, capsys):
    argv = ["run", "smoke", ONE_SEED, "--stages", SIM, "--no-progress", "--no-report"]
    assert cli.main([*argv, "--out", str(tmp_path / "cli"), "--reuse-from", str(source)]) == 0
    text = capsys.readouterr().out
    assert "0 ran, 6 kept from before" in text and f"6 of those kept were copied from {source}" in text
    assert cli.main([*argv, "--out", str(tmp_path / "bad"), "--reuse-from", str(tmp_path / "nowhere")]) == 2
    assert "not a run directory" in capsys.readouterr().err
