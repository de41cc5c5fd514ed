"""benchmarks/step_profile.py: a step's split into GEMMs and the rest, and the ceilings it implies."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
spec = importlib.util.spec_from_file_location("step_profile", BENCHMARKS / "step_profile.py")
step_profile = importlib.util.module_from_spec(spec)
sys.modules["step_profile"] = step_profile  # dataclasses look their module up there
spec.loader.exec_module(step_profile)
OpTime = step_profile.OpTime


def test_gemms_keep_their_profiled_seconds_and_the_rest_of_the_timed_step_is_other():
    ops = [
        OpTime("aten::mm", 0.60, 9e9),  # 10 steps: 60 ms and 0.9 GFLOP a step
        OpTime("aten::bmm", 0.20, 1e9),
        OpTime("aten::copy_", 0.50),  # profiler overhead inflates small ops: never scaled into the GEMMs
        OpTime("aten::mul", 0.30),
    ]
    split = step_profile.split_step(ops, profiled_steps=10, step_s=0.100)
    assert split.gemm_s == pytest.approx(0.080)
    assert split.other_s == pytest.approx(0.020)
    assert split.gemm_flop == pytest.approx(1e9)
    assert split.gemm_gflops == pytest.approx(12.5)


def test_gemm_time_never_exceeds_the_timed_step():
    split = step_profile.split_step([OpTime("aten::mm", 2.0, 1e9)], profiled_steps=10, step_s=0.150)
    assert split.gemm_s == 0.150 and split.other_s == 0.0


def test_ceilings_for_a_step_half_gemms():
    # 100 ms a step, 50 ms of GEMMs doing 10 GFLOP (200 GFLOP/s), 8 GFLOP of it the model's 6·N·tokens, peak 400
    split = step_profile.StepSplit(step_s=0.100, gemm_s=0.050, gemm_flop=10e9)
    fractions = step_profile.peak_fractions(split, model_flop=8e9, peak_gflops=400.0)
    assert fractions["now"] == pytest.approx(0.20)  # 80 GFLOP/s of 400
    assert fractions["non-GEMM free"] == pytest.approx(0.40)  # 8 GFLOP in 50 ms
    assert fractions["non-GEMM free, GEMMs at peak"] == pytest.approx(0.80)  # 10 GFLOP at 400 GFLOP/s: 25 ms


def test_only_matrix_multiplies_count_as_gemms():
    assert {"aten::mm", "aten::bmm", "aten::addmm"} <= step_profile.GEMM_OPS
    assert not {"aten::copy_", "aten::_softmax", "aten::mul"} & step_profile.GEMM_OPS


def test_a_step_without_gemms_has_no_ceiling_rather_than_a_division_by_zero():
    split = step_profile.split_step([OpTime("aten::mul", 0.5)], profiled_steps=10, step_s=0.100)
    fractions = step_profile.peak_fractions(split, model_flop=8e9, peak_gflops=400.0)
    assert fractions["now"] == pytest.approx(0.20)
    assert math.isnan(fractions["non-GEMM free"]) and math.isnan(fractions["non-GEMM free, GEMMs at peak"])
    assert math.isnan(split.gemm_gflops)
