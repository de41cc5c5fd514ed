"""The roofline the throughput benchmarks divide by: this machine's best sustained matmul GFLOP/s in one dtype.

Shared by pretrain_throughput.py and time_to_calibration.py. The probe first times one small matmul and measures
only the sizes whose warm-up and one timed burst fit in the time budget: on a CPU without bf16 units a bf16 matmul
runs at ~1 GFLOP/s, so a 2048^3 one takes ~17 s, and a fixed list of sizes made the bf16 probe alone run for more
than 5 minutes (session 9, AMD EPYC Zen 3). The figure is a best of short bursts, robust to other load.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch

CPU_SIZES = (256, 512, 1024, 2048)
CUDA_SIZES = (4096, 8192)
WARMUP_CALLS = 3  # matmuls before timing a size (kernel choice, caches)
BURST_CALLS = 4  # matmuls per timed burst


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflop(n: int) -> float:
    """Floating-point work of one n x n by n x n matmul, in GFLOP."""
    return 2 * n**3 / 1e9


def affordable_sizes(sizes: Sequence[int], gflops: float, budget_s: float) -> list[int]:
    """The sizes whose warm-up and one timed burst take at most an equal share of the budget at `gflops` GFLOP/s,
    in the given order; the smallest size when none does (the probe always measures something)."""
    share = budget_s / len(sizes)
    fit = [n for n in sizes if (WARMUP_CALLS + BURST_CALLS) * matmul_gflop(n) / gflops <= share]
    return fit or [min(sizes)]


def _timed(calls: int, a: torch.Tensor, b: torch.Tensor) -> float:
    sync(a.device)
    start = time.perf_counter()
    for _ in range(calls):
        torch.matmul(a, b)
    sync(a.device)
    return time.perf_counter() - start


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """Best sustained GFLOP/s of a square matmul over the sizes that fit in about `seconds` (plus one small probe)."""
    sizes = CPU_SIZES if device.type == "cpu" else CUDA_SIZES
    small = min(sizes)
    a, b = (torch.randn(small, small, device=device, dtype=dtype) for _ in range(2))
    _timed(1, a, b)  # first call: library initialisation
    best = matmul_gflop(small) / max(_timed(1, a, b), 1e-9)
    chosen = affordable_sizes(sizes, best, seconds)
    for n in chosen:
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        _timed(WARMUP_CALLS, a, b)
        deadline = time.perf_counter() + seconds / len(chosen)
        while True:  # at least one burst per size, then bursts until its share of the budget is spent
            best = max(best, BURST_CALLS * matmul_gflop(n) / _timed(BURST_CALLS, a, b))
            if time.perf_counter() >= deadline:
                break
    return best
