"""A cell's hash covers its resolved configs: editing a preset file in place marks exactly the cells that use it
stale, and run directories hashed the old way (the experiment's words) resume after a one-time migration."""

import json

import pytest

from hyperstition.analysis.catalog import load_experiment
from hyperstition.config import repo_configs_dir
from hyperstition.experiments.executor import InlineExecutor
from hyperstition.experiments.plan import plan_jobs
from hyperstition.experiments.runner import run_experiment
from hyperstition.experiments.stageset import SIMULATED_STAGES as SIM
from hyperstition.experiments.stale import StaleCellsError


def _run(exp, run, **kw):
    return run_experiment(exp, run, executor=InlineExecutor(), stages=SIM, **kw)


def _copy_preset(src, dst, replace=("", "")):
    dst.write_text(src.read_text().replace(*replace))
    return dst


def test_editing_an_eval_preset_in_place_marks_its_cells_stale(tmp_path):
    suite = _copy_preset(repo_configs_dir() / "eval" / "smoke.yaml", tmp_path / "suite.yaml")
    overrides = ["seeds=[0]", "arms={unfiltered: {}}", f"eval={suite}"]
    run = tmp_path / "run"
    assert _run(load_experiment("smoke", overrides), run).ok
    text = suite.read_text()
    assert "bootstrap_resamples:" in text
    suite.write_text(text.replace("bootstrap_resamples:", "bootstrap_resamples: 321 #", 1))
    edited = load_experiment("smoke", overrides)  # the same words, a different suite
    assert edited.eval_suite.bootstrap_resamples == 321
    with pytest.raises(StaleCellsError) as err:
        _run(edited, run)
    message = str(err.value)
    assert "2 finished cell(s)" in message and "unfiltered/seed-0/base" in message and "seed-0/sft" in message
    summary = _run(edited, run, redo_stale=True)
    assert sorted(summary.done) == ["unfiltered/seed-0/base", "unfiltered/seed-0/sft"]
    assert summary.skipped == ["unfiltered/seed-0/pretrain"]  # the pipeline preset did not change


def test_editing_the_pipeline_preset_marks_every_cell_stale(tmp_path):
    preset = _copy_preset(repo_configs_dir() / "smoke.yaml", tmp_path / "pipe.yaml")
    overrides = ["seeds=[0]", "arms={unfiltered: {}}", f"preset={preset}"]
    run = tmp_path / "run"
    assert _run(load_experiment("smoke", overrides), run).ok
    before = {j.id: j.config_hash for j in plan_jobs(load_experiment("smoke", overrides))}
    text = preset.read_text()
    preset.write_text(text + "\n# edited\n")
    assert {j.id: j.config_hash for j in plan_jobs(load_experiment("smoke", overrides))} == before  # a comment
    preset.write_text(text.replace("lr: 0.005", "lr: 0.004", 1))
    with pytest.raises(StaleCellsError, match="3 finished cell"):
        _run(load_experiment("smoke", overrides), run)


def test_a_run_hashed_the_old_way_is_migrated_once_and_resumes(tmp_path):
    exp = load_experiment("smoke", ["seeds=[0]"])
    run = tmp_path / "run"
    assert _run(exp, run).ok
    jobs = plan_jobs(exp)
    legacy = [j for j in jobs if j.legacy_hash != j.config_hash]
    assert {j.kind for j in legacy} == {"eval", "posttrain"}  # pretrain hashes always covered the resolved config
    for job in legacy:  # what an older hyperstition left: DONE.json with the hash of the experiment's words
        done = run / job.path / "DONE.json"
        done.write_text(json.dumps({**json.loads(done.read_text()), "config_hash": job.legacy_hash}))
    summary = _run(exp, run)
    assert summary.ok and summary.done == [] and len(summary.skipped) == len(jobs)
    for job in legacy:
        record = json.loads((run / job.path / "DONE.json").read_text())
        assert record["config_hash"] == job.config_hash and record["migrated_from"] == job.legacy_hash
    log = [json.loads(line) for line in (run / "runlog.jsonl").read_text().splitlines()]
    assert sorted(next(e for e in log if e["event"] == "migrated")["cells"]) == sorted(j.id for j in legacy)
