"""benchmarks/default_run_stages.py: a pretraining job's wall time split into corpus, tokenizer and training from the
cell's file times, where a tokenizer reused from an earlier cell keeps that cell's (older) file times."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
spec = importlib.util.spec_from_file_location("default_run_stages", BENCHMARKS / "default_run_stages.py")
default_run_stages = importlib.util.module_from_spec(spec)
spec.loader.exec_module(default_run_stages)


def _cell(run: Path, name: str, kind: str, wall_s: float, end: float, **file_times: float) -> None:
    cell = run / "cells" / name / "seed-0" / kind
    for rel, when in file_times.items():
        path = cell / rel.replace("__", "/").replace("_json", ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        os.utime(path, (when, when))
    cell.mkdir(parents=True, exist_ok=True)
    job = {"kind": kind} | ({} if kind in ("pretrain", "eval") else {"strategy": kind})
    (cell / "job.json").write_text(json.dumps(job))
    (cell / "DONE.json").write_text(json.dumps({"wall_s": wall_s}))
    os.utime(cell / "DONE.json", (end, end))


def test_a_reused_tokenizer_counts_as_no_time_and_the_stages_sum_to_the_job_times(tmp_path):
    t = 1_000_000.0
    # built here: corpus 10 s, tokenizer 5 s, training 85 s of a 100 s job
    _cell(tmp_path, "a", "pretrain", 100.0, t + 100, corpus__manifest_json=t + 10, tokenizer__tokenizer_json=t + 15)
    # tokenizer copied from cell a's cache (its file time 485 s before this job began), corpus 20 s, training 130 s
    _cell(tmp_path, "b", "pretrain", 150.0, t + 650, corpus__manifest_json=t + 520, tokenizer__tokenizer_json=t + 15)
    # corpus copied from a cache (an older file time), tokenizer built in 4 s, training 96 s
    _cell(tmp_path, "c", "pretrain", 100.0, t + 900, corpus__manifest_json=t + 10, tokenizer__tokenizer_json=t + 804)
    _cell(tmp_path, "a", "sft", 12.5, t + 950)
    stages = default_run_stages.stage_seconds(tmp_path)
    assert stages == {"corpus": 30.0, "tokenizer": 9.0, "pretrain": 311.0, "sft": 12.5}
    assert sum(stages.values()) == 100.0 + 150.0 + 100.0 + 12.5
