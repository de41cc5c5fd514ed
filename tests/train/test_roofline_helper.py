"""benchmarks/roofline.py: the matmul-peak probe measures only the sizes that fit its time budget."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
spec = importlib.util.spec_from_file_location("roofline", BENCHMARKS / "roofline.py")
roofline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(roofline)


def test_a_matmul_is_two_n_cubed_flops():
    assert roofline.matmul_gflop(1000) == 2.0


def test_only_sizes_whose_warmup_and_burst_fit_an_equal_share_of_the_budget_are_measured():
    sizes = (256, 512, 1024, 2048)
    # 7 calls (3 warm-up + 4 timed) of a 2048^3 matmul are 120.3 GFLOP; of 1024^3, 15.0; of 512^3, 1.9
    assert roofline.affordable_sizes(sizes, gflops=100.0, budget_s=4.0) == [256, 512, 1024]  # share 1 s: 100 GFLOP
    assert roofline.affordable_sizes(sizes, gflops=1000.0, budget_s=4.0) == [256, 512, 1024, 2048]
    # a CPU without bf16 units (~1 GFLOP/s): 2048^3 would take 2 minutes, only the small sizes fit a 4 s budget
    assert roofline.affordable_sizes(sizes, gflops=1.0, budget_s=4.0) == [256]
    assert roofline.affordable_sizes(sizes, gflops=0.01, budget_s=4.0) == [256]  # nothing fits: the smallest


def test_the_probe_measures_a_positive_rate_on_this_machine():
    assert roofline.matmul_peak_gflops(torch.device("cpu"), torch.float32, seconds=0.2) > 0
