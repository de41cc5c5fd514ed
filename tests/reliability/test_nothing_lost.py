"""Nothing is lost silently: a finished cell whose promised outputs are missing, truncated or changed is rerun and
the summary says why; `status` works without plan.json; the provenance and the summary say what happened."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from rich.console import Console

from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.rundir import run_states
from hyperstition.analysis.store import load_results
from hyperstition.experiments.executor import InlineExecutor
from hyperstition.experiments.progress import print_summary
from hyperstition.experiments.runner import run_experiment
from hyperstition.report.render import render_report
from hyperstition.run import build_simulated_run

SIM = "hyperstition.experiments.simulate"
BASE = "cells/unfiltered/seed-0/base"
SFT = "cells/misalignment_upsampled/seed-0/sft"
PRETRAIN = "cells/unfiltered/seed-0/pretrain"


def _rerun(run):
    return run_experiment(load_experiment("smoke", ["seeds=[0]"]), run, executor=InlineExecutor(), stages=SIM)


def test_done_json_lists_every_promised_file_with_size_and_checksum(finished_run):
    done = json.loads((finished_run / BASE / "DONE.json").read_text())
    assert set(done["files"]) == {f"{BASE}/rows.parquet"}
    entry = done["files"][f"{BASE}/rows.parquet"]
    assert entry["bytes"] == (finished_run / BASE / "rows.parquet").stat().st_size and len(entry["sha256"]) == 64
    pretrain = json.loads((finished_run / PRETRAIN / "DONE.json").read_text())
    assert pretrain["files"] and all(rel.startswith(f"{PRETRAIN}/") for rel in pretrain["files"])


DAMAGE = {
    "rows deleted": (BASE, lambda cell: (cell / "rows.parquet").unlink(), "rows.parquet is missing"),
    "rows truncated": (SFT, lambda cell: _truncate(cell / "rows.parquet", 100), "rows.parquet has 100 bytes"),
    "rows changed, same size": (BASE, lambda cell: _flip_last_byte(cell / "rows.parquet"), "sha256 differs"),
    "DONE.json binary": (SFT, lambda cell: (cell / "DONE.json").write_bytes(b"\xff\x00"), "DONE.json is unreadable"),
    "DONE.json a list": (BASE, lambda cell: (cell / "DONE.json").write_text("[]"), "DONE.json is unreadable"),
    "model file deleted": (PRETRAIN, lambda cell: (cell / "final" / "config.json").unlink(), "is missing"),
}


def _truncate(path, size):
    path.write_bytes(path.read_bytes()[:size])


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_cell_is_rerun_and_the_summary_says_why(case, run_copy, finished_run):
    rel, damage, reason = DAMAGE[case]
    damage(run_copy / rel)
    job_id = rel.removeprefix("cells/")
    state = {s.job["id"]: s for s in run_states(run_copy)}[job_id]
    assert state.state == "pending" and (reason in state.detail or "DONE.json" in state.detail)

    summary = _rerun(run_copy)
    assert summary.ok and summary.done == [job_id] and reason in summary.redone[job_id]
    console = Console(record=True, width=100, force_terminal=False, soft_wrap=True)
    print_summary(summary, console)
    text = console.export_text()
    assert f"rerun {job_id}: " in text and reason in text and "1 ran, 5 kept from before" in text
    # Every row is back. (The simulated stages seed their noise with the run's path, so a rerun cell in this copy
    # has other values than the original run; which rows exist is what must match.)
    rows = pd.read_parquet(run_copy / "results.parquet")
    assert _row_keys(rows) == _row_keys(pd.read_parquet(finished_run / "results.parquet"))
    assert [s.state for s in run_states(run_copy)] == ["done"] * 6


def _row_keys(df):
    return sorted(
        map(
            tuple,
            df[["arm", "seed", "strategy", "step", "context", "metric"]]
            .astype(object)
            .fillna("NA")
            .astype(str)
            .values.tolist(),
        )
    )


def test_damaged_results_file_is_rebuilt_from_the_cells(run_copy, finished_run):
    (run_copy / "results.parquet").write_bytes(b"PAR1 not really")
    rebuilt = load_results(run_copy).drop(columns="run")
    pd.testing.assert_frame_equal(rebuilt, pd.read_parquet(finished_run / "results.parquet").drop(columns="run"))


def test_status_without_a_readable_plan_derives_states_from_the_cells(run_copy, capsys):
    from hyperstition.cli import main

    for content in (None, b"\xff\xfe garbage"):
        if content is None:
            (run_copy / "plan.json").unlink()
        else:
            (run_copy / "plan.json").write_bytes(content)
        assert [s.state for s in run_states(run_copy)] == ["done"] * 6
        assert main(["status", str(run_copy)]) == 0
        out = capsys.readouterr().out
        assert "no jobs planned yet" not in out and "6 done" in out and "plan.json is" in out


def test_summary_in_a_log_file_lists_every_cell_in_whole_lines(finished_run):
    summary = _rerun(finished_run)
    console = Console(record=True, width=80, force_terminal=False, soft_wrap=True)
    print_summary(summary, console)
    lines = console.export_text().splitlines()
    whole = "misalignment_upsampled / 0: pretrain done (kept), base done (kept), sft done (kept)"
    assert any(line.strip() == whole for line in lines)
    assert any(line.strip().startswith("unfiltered / 0: pretrain done (kept)") for line in lines)


def test_provenance_counts_the_invocation_that_rendered_it(tmp_path):
    run = tmp_path / "run"
    build_simulated_run(run, "smoke", render=True)
    html = (run / "report.html").read_text()
    assert "over 1 completed invocation(s)" in html and "over 0 " not in html
    with open(run / "runlog.jsonl", "a") as log:  # an invocation killed before it could log its end
        log.write(json.dumps({"event": "start", "time": "t"}) + "\n")
    render_report(run)
    assert "over 1 completed invocation(s) and 1 interrupted one(s)" in (run / "report.html").read_text()
