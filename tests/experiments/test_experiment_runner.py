"""The grid runner with injected (simulated) stage functions: end to end, failures, reruns, bad run directories.

The simulated stages (`hyperstition.experiments.simulate`) stand in for the real pretrain/eval/posttrain so these
tests take seconds; tests/experiments/test_experiment_pipeline.py runs the smoke grid on the real stages."""

import json
import os

import pandas as pd
import pytest

from hyperstition import RUN_FORMAT_VERSION
from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.rundir import RunDirError, run_states
from hyperstition.analysis.store import load_results, query
from hyperstition.config import ConfigError
from hyperstition.experiments.executor import InlineExecutor, LocalExecutor, plan_workers
from hyperstition.experiments.plan import plan_jobs
from hyperstition.experiments.runner import run_experiment
from hyperstition.experiments.stale import StaleCellsError
from hyperstition.run import run_and_report
from hyperstition.schema import BASE_STRATEGY, HEADLINE_BITS, KL_BITS, RESULT_COLUMNS

SIM = "hyperstition.experiments.simulate"
ONE_SEED = "seeds=[0]"  # the shipped smoke grid has 3 seeds; these tests count the jobs of one


def _done_mtimes(run_dir):
    return {p.relative_to(run_dir).as_posix(): p.stat().st_mtime_ns for p in run_dir.glob("cells/*/*/*/DONE.json")}


def test_smoke_grid_end_to_end_on_worker_processes(tmp_path):
    exp = load_experiment("smoke", ["workers=2", ONE_SEED])
    run = tmp_path / "run"
    summary = run_and_report(exp, run, executor=LocalExecutor(2), stages=SIM)
    assert summary.ok and len(summary.done) == 6 and not summary.skipped

    info = json.loads((run / "run.json").read_text())
    assert info["format_version"] == RUN_FORMAT_VERSION and info["experiment"] == "smoke"
    assert {"hyperstition_version", "created"} <= set(info)
    for arm in exp.arms:
        for name in ("pretrain", "base", "sft"):
            cell = run / "cells" / arm / "seed-0" / name
            done = json.loads((cell / "DONE.json").read_text())
            assert done["config_hash"] and not (cell / "RUNNING.json").exists()
            assert (cell / "job.json").exists() and (cell / "log.txt").exists()

    df = pd.read_parquet(run / "results.parquet")
    assert tuple(df.columns) == RESULT_COLUMNS
    assert set(df.run) == {"run"} and set(df.arm) == set(exp.arms) and set(df.strategy) == {BASE_STRATEGY, "sft"}
    base = df[df.strategy == BASE_STRATEGY]
    assert (base.step == 0).all() and (base.kl_bits == 0).all() and (base.tokens == 0).all()
    assert {"observed", "unobserved", "neutral"} <= set(base.context)
    curve = df[(df.strategy == "sft") & (df.metric == HEADLINE_BITS)]
    assert curve.step.nunique() > 3 and curve.kl_bits.max() > 0
    assert (run / "report.html").exists() and summary.report == run / "report.html"
    samples = pd.read_parquet(run / "samples.parquet")
    assert len(samples) and samples.response.str.contains("<script>").any()
    assert [s.state for s in run_states(run)] == ["done"] * 6

    # A rerun skips every finished cell without touching it.
    before = _done_mtimes(run)
    again = run_experiment(exp, run, executor=InlineExecutor(), stages=SIM)
    assert len(again.skipped) == 6 and not again.done and _done_mtimes(run) == before

    # More seeds on the same run directory: only the new cells run.
    more = run_experiment(load_experiment("smoke", ["seeds=[0,1]"]), run, executor=InlineExecutor(), stages=SIM)
    assert len(more.skipped) == 6 and len(more.done) == 6 and _done_mtimes(run).items() >= before.items()

    out = query(
        run,
        f"select arm, count(distinct seed) as seeds from results where metric = '{KL_BITS}' group by arm order by arm",
    )
    assert list(out.seeds) == [2, 2]


def test_failed_cell_is_recorded_and_others_continue(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERSTITION_SIMULATE_FAIL", "misalignment_upsampled/seed-0/pretrain")
    exp = load_experiment("smoke", [ONE_SEED])
    run = tmp_path / "run"
    summary = run_and_report(exp, run, executor=InlineExecutor(), stages=SIM)
    assert not summary.ok
    assert list(summary.failed) == ["misalignment_upsampled/seed-0/pretrain"]
    assert "simulated failure" in summary.failed["misalignment_upsampled/seed-0/pretrain"]
    assert sorted(summary.blocked) == ["misalignment_upsampled/seed-0/base", "misalignment_upsampled/seed-0/sft"]
    assert len(summary.done) == 3  # the unfiltered chain finished
    cell = run / "cells/misalignment_upsampled/seed-0/pretrain"
    err = json.loads((cell / "ERROR.json").read_text())
    assert "simulated failure" in err["error"] and "Traceback" in (cell / "traceback.txt").read_text()
    states = {s.job["id"]: s for s in run_states(run)}
    assert states["misalignment_upsampled/seed-0/pretrain"].state == "failed"
    assert "traceback.txt" in states["misalignment_upsampled/seed-0/pretrain"].detail
    assert states["misalignment_upsampled/seed-0/sft"].state == "pending"
    assert "blocked" in states["misalignment_upsampled/seed-0/sft"].detail
    assert (run / "results.parquet").exists() and (run / "report.html").exists()  # partial results still reported

    # Fixed: the rerun retries the failed cell and runs what it blocked, nothing else.
    monkeypatch.delenv("HYPERSTITION_SIMULATE_FAIL")
    again = run_experiment(exp, run, executor=InlineExecutor(), stages=SIM)
    assert again.ok and len(again.done) == 3 and len(again.skipped) == 3
    assert not (cell / "ERROR.json").exists()


def test_worker_death_fails_only_that_cell(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERSTITION_SIMULATE_CRASH", "unfiltered/seed-0/base")
    exp = load_experiment("smoke", ["strategies=[]", ONE_SEED])  # pretrain + base evaluation only: 4 jobs
    summary = run_experiment(exp, tmp_path / "run", executor=LocalExecutor(2), stages=SIM)
    assert (
        list(summary.failed) == ["unfiltered/seed-0/base"]
        and "exited with code 3" in summary.failed["unfiltered/seed-0/base"]
    )
    assert len(summary.done) == 3
    assert "exited with code 3" in (tmp_path / "run/cells/unfiltered/seed-0/base/ERROR.json").read_text()


def test_incompatible_or_foreign_run_directories_are_refused(tmp_path):
    run = tmp_path / "run"
    run_experiment(load_experiment("smoke"), run, executor=InlineExecutor(), stages=SIM)
    with pytest.raises(RunDirError, match="holds a run of experiment 'smoke', not 'dose'"):
        run_experiment(load_experiment("dose"), run, executor=InlineExecutor(), stages=SIM)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "format_version": 999, "hyperstition_version": "9.9.9"}))
    for action in (
        lambda: run_experiment(load_experiment("smoke"), run, executor=InlineExecutor(), stages=SIM),
        lambda: run_states(run),
        lambda: load_results(run),
    ):
        with pytest.raises(RunDirError) as err:
            action()
        assert "hyperstition 9.9.9 in run format 999" in str(err.value) and f"run format {RUN_FORMAT_VERSION}" in str(
            err.value
        )
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not a hyperstition run directory"):
        run_experiment(load_experiment("smoke"), other, executor=InlineExecutor(), stages=SIM)
    assert isinstance(RunDirError("x"), ConfigError)


def test_changed_config_is_refused_unless_redo_stale(tmp_path):
    run = tmp_path / "run"
    run_experiment(load_experiment("smoke", [ONE_SEED]), run, executor=InlineExecutor(), stages=SIM)
    changed = load_experiment("smoke", [ONE_SEED, "arms.misalignment_upsampled={corpus.upsample: {ai_misaligned: 5}}"])
    with pytest.raises(StaleCellsError, match="3 finished cell"):
        run_experiment(changed, run, executor=InlineExecutor(), stages=SIM)
    summary = run_experiment(changed, run, executor=InlineExecutor(), stages=SIM, redo_stale=True)
    assert len(summary.done) == 3 and len(summary.skipped) == 3
    assert (run / "cells/misalignment_upsampled/seed-0/pretrain.stale-1/DONE.json").exists()


def test_jobs_are_hashed_by_config():
    a = {j.id: j.config_hash for j in plan_jobs(load_experiment("smoke"))}
    b = {j.id: j.config_hash for j in plan_jobs(load_experiment("smoke", ["workers=1", "samples_per_cell=9"]))}
    assert a == b  # execution settings do not change what a cell computes
    c = {j.id: j.config_hash for j in plan_jobs(load_experiment("smoke", ["posttrain_preset=quick"]))}
    assert c["unfiltered/seed-0/pretrain"] == a["unfiltered/seed-0/pretrain"]
    assert c["unfiltered/seed-0/sft"] != a["unfiltered/seed-0/sft"]


def test_worker_planning():
    assert plan_workers(0, cores=8) == (8, 1)
    assert plan_workers(2, cores=8) == (2, 4)
    assert plan_workers(3, cores=2) == (3, 1)
    assert os.cpu_count() >= 1
