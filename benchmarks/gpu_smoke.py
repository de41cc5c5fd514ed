"""The Python half of benchmarks/gpu_smoke.sh: the GPU check, tokens/s and MFU of a pretraining run, and the
CPU-vs-GPU persona-bits comparison. Each subcommand prints one line per result and exits non-zero on failure.

    python benchmarks/gpu_smoke.py require-gpu
    python benchmarks/gpu_smoke.py throughput RUN_DIR            tokens/s and MFU from metrics.jsonl
    python benchmarks/gpu_smoke.py compare CPU_EVAL_DIR GPU_EVAL_DIR [--tolerance BITS]
    python benchmarks/gpu_smoke.py budget START_EPOCH_S LIMIT_S

MFU (model FLOPs utilisation) = 6·N·tokens/s over the card's dense bf16 peak, N = distinct parameters (tied
embeddings once). 6·N counts the matmuls of forward and backward and leaves out attention's own O(T^2) FLOPs, as
the usual estimate does, so it understates the work slightly at long sequences.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable

# Dense bf16 tensor-core peaks in TFLOP/s (vendor datasheets, without sparsity). Matched in order: the first
# fragment found in torch.cuda.get_device_name() wins, so the PCIe H100 is listed before the plain "H100" (SXM).
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
)

# CPU vs GPU persona bits, both fp32 (`hyperstition eval` never autocasts), may differ only by summation order.
# Measured on CPU: the same checkpoint scored with batch_size 64 and 5 (other padding, other GEMM shapes) gave bits
# within 1.2e-6 of each other (values up to 14 bits). The tolerance is ~1000x that, room for cuBLAS's and the
# fused attention kernels' orders on a sharper model; a bf16 or TF32 matmul (relative errors 4e-3 / 5e-4 per
# product against fp32's 6e-8) moves bits by 1e-2 and more, which this catches.
BITS_TOLERANCE = 1e-3


def bf16_peak_tflops(device_name: str) -> float | None:
    """The card's dense bf16 peak, or None for a card not in the table."""
    return next((peak for fragment, peak in BF16_PEAK_TFLOPS if fragment in device_name), None)


def steady_tokens_per_s(metrics: list[dict[str, Any]]) -> float:
    """Tokens per training second after the first metrics window (which holds torch.compile's warm-up)."""
    if len(metrics) < 2:
        raise ValueError("need at least two metrics lines (raise pretrain.steps or lower pretrain.log_every)")
    first, last = metrics[0], metrics[-1]
    return (last["tokens"] - first["tokens"]) / (last["elapsed_s"] - first["elapsed_s"])


def mfu(n_params: int, tokens_per_s: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: 6·N·tokens/s as a fraction of the peak."""
    return 6 * n_params * tokens_per_s / (peak_tflops * 1e12)


def bits_by_key(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """The persona log-odds rows of an eval.json (bits and bits per token, per persona pair and context)."""
    return {(r["context"], r["metric"]): float(r["value"]) for r in rows if r["metric"].startswith("bits_")}


def bits_differences(cpu_rows: list[dict], gpu_rows: list[dict]) -> dict[tuple[str, str], float]:
    """|cpu - gpu| per persona-bits row; both evaluations must hold the same rows."""
    cpu, gpu = bits_by_key(cpu_rows), bits_by_key(gpu_rows)
    if not cpu or cpu.keys() != gpu.keys():
        raise ValueError(f"the evaluations hold different persona-bits rows ({len(cpu)} vs {len(gpu)})")
    return {key: abs(cpu[key] - gpu[key]) for key in cpu}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _require_gpu(_: argparse.Namespace) -> int:
    import torch

    if not torch.cuda.is_available():
        print("gpu_smoke: FAIL: torch sees no CUDA device; this check needs one GPU", file=sys.stderr)
        return 2
    print(f"gpu_smoke: device {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    return 0


def _throughput(args: argparse.Namespace) -> int:
    import torch

    run = Path(args.run_dir)
    n_params = int(json.loads((run / "final" / "checkpoint.json").read_text())["n_params"])
    tokens_per_s = steady_tokens_per_s(_read_jsonl(run / "metrics.jsonl"))
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    peak = bf16_peak_tflops(name)
    achieved = 6 * n_params * tokens_per_s / 1e12
    line = f"pretrain: {n_params / 1e6:.1f}M params, {tokens_per_s:,.0f} tokens/s, {achieved:.1f} TFLOP/s (6N)"
    if peak is None:
        print(f"{line}, MFU n/a ({name!r} is not in BF16_PEAK_TFLOPS)")
    else:
        print(f"{line}, MFU {mfu(n_params, tokens_per_s, peak):.1%} of {name}'s {peak:.0f} TFLOP/s bf16 peak")
    return 0


def _compare(args: argparse.Namespace) -> int:
    rows = [json.loads((Path(d) / "eval.json").read_text())["rows"] for d in (args.cpu_eval, args.gpu_eval)]
    differences = bits_differences(*rows)
    (context, metric), worst = max(differences.items(), key=lambda item: item[1])
    verdict = "ok" if worst <= args.tolerance else "FAIL"
    print(
        f"cpu vs gpu persona bits: {verdict}: max |difference| {worst:.2e} bits ({metric}, {context}) over "
        f"{len(differences)} rows, tolerance {args.tolerance:g}"
    )
    return 0 if verdict == "ok" else 1


def _budget(args: argparse.Namespace) -> int:
    seconds = time.time() - args.start
    verdict = "ok" if seconds <= args.limit else "FAIL: over budget"
    print(f"gpu_smoke: total {seconds:.0f} s (budget {args.limit:.0f} s): {verdict}")
    return 0 if seconds <= args.limit else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("require-gpu").set_defaults(func=_require_gpu)
    throughput = sub.add_parser("throughput")
    throughput.add_argument("run_dir")
    throughput.set_defaults(func=_throughput)
    compare = sub.add_parser("compare")
    compare.add_argument("cpu_eval")
    compare.add_argument("gpu_eval")
    compare.add_argument("--tolerance", type=float, default=BITS_TOLERANCE, help="bits")
    compare.set_defaults(func=_compare)
    budget = sub.add_parser("budget")
    budget.add_argument("start", type=float, help="start time, seconds since the epoch")
    budget.add_argument("limit", type=float, help="seconds allowed")
    budget.set_defaults(func=_budget)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
