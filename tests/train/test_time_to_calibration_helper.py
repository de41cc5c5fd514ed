"""benchmarks/time_to_calibration.py's pure parts: the snapshot grid, "passes and stays passed" walking back from
the last checkpoint, and the search space (skipped without optuna, the `bench` extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from hyperstition.analysis.calibration import ControlResult

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
spec = importlib.util.spec_from_file_location("time_to_calibration", BENCHMARKS / "time_to_calibration.py")
ttc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ttc)


def test_snapshots_are_half_octaves_from_32_and_the_last_step():
    assert ttc.snapshot_steps(1000) == [32, 45, 64, 91, 128, 181, 256, 362, 512, 724, 1000]
    assert ttc.snapshot_steps(60) == [32, 45, 60]
    assert ttc.snapshot_steps(20) == [20]


def test_a_control_counts_from_the_first_step_after_which_it_never_fails():
    passing = {"a": {45, 128, 181, 256}, "b": {64, 256}, "c": set()}  # a failed at 91; b at 181; c never passed
    asked: list[tuple[int, list[str]]] = []

    def check(name):
        def run(df):
            return ControlResult(name, df in passing[name], "why")

        return run

    def rows_at(step, arms):
        asked.append((step, arms))
        return step

    checks = [check("a"), check("b"), check("c")]
    out = ttc.stable_pass_steps([45, 64, 91, 128, 181, 256], checks, rows_at, ["x"])
    assert out["a"]["first_step"] == 128 and out["b"]["first_step"] == 256 and out["c"]["first_step"] is None
    assert out["c"]["final"] is False and out["a"]["final"] is True
    assert [s for s, _ in asked] == [256, 181, 128, 91]  # stops once every control has failed


def test_the_search_space_gives_valid_quick_overrides():
    optuna = pytest.importorskip("optuna")
    from hyperstition.analysis.catalog import load_experiment

    for params in ttc.FIRST_TRIALS:
        overrides = ttc.trial_overrides(optuna.trial.FixedTrial(params))
        exp = load_experiment("calibration", [f"pipeline={ttc.json.dumps(overrides)}"])
        assert exp.pipeline == {k: v for k, v in overrides.items()}
    assert ttc.objective_seconds({"time_to_calibration_s": None, "train_s": 10.0, "arms": ["a"]}) > ttc.PENALTY_S


def test_training_seconds_at_a_snapshot_interpolate_the_metrics_lines(tmp_path):
    lines = [{"step": 10, "elapsed_s": 1.0}, {"step": 20, "elapsed_s": 2.0}, {"step": 25, "elapsed_s": 3.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(ttc.json.dumps(r) + "\n" for r in lines))
    assert ttc.elapsed_at(tmp_path, 5) == pytest.approx(0.5)
    assert ttc.elapsed_at(tmp_path, 15) == pytest.approx(1.5)
    assert ttc.elapsed_at(tmp_path, 25) == pytest.approx(3.0)


def test_the_joint_walk_stops_at_the_first_failure_and_marks_bounds():
    passing = {"a": {128, 181, 256}, "b": {45, 64, 91, 128, 181, 256}}

    def check(name):
        return lambda df: ControlResult(name, df in passing[name], "why")

    asked = []
    out = ttc.stable_pass_steps(
        [45, 64, 91, 128, 181, 256], [check("a"), check("b")], lambda s, a: asked.append(s) or s, ["x"], joint=True
    )
    assert asked == [256, 181, 128, 91]
    assert out["a"] == {"first_step": 128, "final": True, "reason": "why"}
    assert out["b"]["first_step"] == 91 and out["b"]["bound"]


def test_the_table_names_the_peak_s_dtype_and_divides_6_n_tokens_per_s_by_it():
    """1M parameters at 10k tokens/s is 60 GFLOP/s: 60% of a 100 GFLOP/s peak, labelled with the GEMMs' dtype."""
    result = {
        "name": "c",
        "overrides": {},
        "arms": ["a"],
        "all_arms": ["a", "b"],
        "steps": 10,
        "n_params": 1_000_000,
        "tokens_per_s": 10_000.0,
        "controls": {},
        "time_to_calibration_s": None,
        "eval_s": 1.0,
    }
    lines = ttc.table_rows([result], 100.0, "H", "fp32")
    header, row = lines[3], lines[-1]
    assert "| % fp32 peak |" in header
    assert "| 10,000 | 60% |" in row and row.startswith("| c | `{}` | 1/2 | 10 | 1.00M |")


def test_the_peak_is_measured_in_the_dtype_pretraining_s_gemms_run_in(monkeypatch):
    """bf16 where the CPU has bf16 units; fp32 where it has none (pretraining's bf16 GEMMs run in fp32 there)."""
    import torch

    from hyperstition.train import runtime

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import roofline

    # The script pins one thread; the test process keeps its own.
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    seen = []
    monkeypatch.setattr(roofline, "matmul_peak_gflops", lambda device, dtype, seconds: seen.append(dtype) or 1.0)
    for native, name in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda native=native: native)
        assert ttc.one_thread_gemm_peak()[0] == name
    assert seen == [torch.bfloat16, torch.float32]
