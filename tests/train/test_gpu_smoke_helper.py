"""benchmarks/gpu_smoke.py, the Python half of the GPU smoke script, checked on CPU: the peak table, MFU, the
steady tokens/s, the CPU-vs-GPU bits comparison, and the one-line failure without a GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
spec = importlib.util.spec_from_file_location("gpu_smoke", BENCHMARKS / "gpu_smoke.py")
gpu_smoke = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_smoke)


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("Tesla T4", None),
    ],
)
def test_bf16_peak_by_card_name(name, peak):
    assert gpu_smoke.bf16_peak_tflops(name) == peak


def test_mfu_is_six_n_tokens_over_peak():
    # 124M params at 1M tokens/s = 744 TFLOP/s of model FLOPs: 75.2% of an H100's 989.
    assert gpu_smoke.mfu(124_000_000, 1_000_000.0, 989.0) == pytest.approx(0.7522750, rel=1e-6)


def test_steady_tokens_per_s_leaves_out_the_first_window():
    metrics = [
        {"step": 25, "tokens": 25_000, "elapsed_s": 60.0},  # includes torch.compile
        {"step": 50, "tokens": 50_000, "elapsed_s": 61.0},
        {"step": 75, "tokens": 75_000, "elapsed_s": 62.0},
    ]
    assert gpu_smoke.steady_tokens_per_s(metrics) == 25_000.0
    with pytest.raises(ValueError, match="at least two"):
        gpu_smoke.steady_tokens_per_s(metrics[:1])


def _rows(shift: float = 0.0) -> list[dict]:
    return [
        {"context": "observed", "metric": "bits_aligned_vs_misaligned", "value": 3.0 + shift},
        {"context": "unobserved", "metric": "bits_per_token_aligned_vs_misaligned", "value": 0.1},
        {"context": "observed", "metric": "rate_aligned", "value": 0.5 + 10 * shift},  # sampled: not compared
    ]


def _eval_dir(tmp_path: Path, name: str, rows: list[dict]) -> str:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "eval.json").write_text(json.dumps({"rows": rows}))
    return str(directory)


def test_bits_comparison_passes_within_and_fails_beyond_the_tolerance(tmp_path, capsys):
    cpu = _eval_dir(tmp_path, "cpu", _rows())
    close = _eval_dir(tmp_path, "close", _rows(shift=gpu_smoke.BITS_TOLERANCE / 2))
    far = _eval_dir(tmp_path, "far", _rows(shift=gpu_smoke.BITS_TOLERANCE * 2))
    assert gpu_smoke.main(["compare", cpu, close]) == 0
    assert (
        "ok: max |difference| 5.00e-04 bits (bits_aligned_vs_misaligned, observed) over 2 rows"
        in capsys.readouterr().out
    )
    assert gpu_smoke.main(["compare", cpu, far]) == 1
    assert "FAIL" in capsys.readouterr().out
    with pytest.raises(ValueError, match="different persona-bits rows"):
        gpu_smoke.bits_differences(_rows(), _rows()[1:])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure without a GPU")
def test_script_fails_with_one_line_without_a_gpu():
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_smoke.sh")], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.strip().count("\n") == 0
    assert "no CUDA device" in done.stderr
