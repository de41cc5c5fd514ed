"""Where a pretraining step's time goes, and the fraction of the matmul peak it could reach at most.

Runs the exact step `train_lm` runs (`pretrain_throughput.Ours`) on a preset's model shape, batch and precision
(synthetic text, a tokenizer of the preset's vocabulary size), times the median step, then profiles some steps with
torch.profiler and splits their CPU time into GEMMs (`aten::mm`, `bmm`, `addmm`, `baddbmm`, whose FLOPs the profiler
counts) and everything else. From those it prints:

- the achieved fraction of the one-thread matmul peak (6·N·tokens/s over the peak, as the issue-25 goal reads it);
- the ceiling if every non-GEMM op cost nothing and the GEMMs kept the rate they run at inside the step;
- the ceiling if, besides, every GEMM ran at the peak (no model of this shape can do better on this device).

A goal above the second ceiling cannot be reached by a faster runtime, only by a different shape or recipe.

    python benchmarks/step_profile.py                        # the quick preset, eager, one thread
    python benchmarks/step_profile.py --compile on           # the same step compiled (warm Inductor cache: ~4 s)
    python benchmarks/step_profile.py --preset quick model.d_model=256 model.n_layers=2

Not a test: numbers depend on the machine and its load; quote them with the date, CPU and commit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from hyperstition.config import PipelineConfig, UserError, load_config

GEMM_OPS = frozenset({"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm"})


@dataclass(frozen=True)
class OpTime:
    """One profiler row: an op's name, its self CPU seconds over the profiled steps and the FLOPs it counted."""

    name: str
    self_s: float
    flop: float = 0.0


@dataclass(frozen=True)
class StepSplit:
    """A step's seconds split into GEMMs and the rest, and the GEMMs' FLOPs, per step."""

    step_s: float
    gemm_s: float
    gemm_flop: float

    @property
    def other_s(self) -> float:
        return max(self.step_s - self.gemm_s, 0.0)

    @property
    def gemm_gflops(self) -> float:
        """The rate the GEMMs run at inside the step (cache, layout and size effects included)."""
        return self.gemm_flop / self.gemm_s / 1e9 if self.gemm_s else float("nan")


def split_step(ops: Iterable[OpTime], profiled_steps: int, step_s: float) -> StepSplit:
    """Per-step GEMM seconds and FLOPs from profiler rows over `profiled_steps` steps. The step's time is the timed
    (unprofiled) median: the profiler adds a fixed cost to every op, which inflates the many small ops' share but
    hardly a GEMM's own time, so the GEMMs keep their profiled seconds and the rest of the step is "other"."""
    gemms = [op for op in ops if op.name in GEMM_OPS]
    gemm_s = min(sum(op.self_s for op in gemms) / profiled_steps, step_s)
    return StepSplit(step_s, gemm_s, sum(op.flop for op in gemms) / profiled_steps)


def peak_fractions(split: StepSplit, model_flop: float, peak_gflops: float) -> dict[str, float]:
    """Fractions of the peak that `model_flop` per step (6·N·tokens) reaches: now, with the non-GEMM ops free at the
    GEMMs' in-step rate, and with every GEMM FLOP at the peak as well."""
    peak, nan = peak_gflops * 1e9, float("nan")  # nan: no GEMM was seen (nothing to bound)
    return {
        "now": model_flop / split.step_s / peak,
        "non-GEMM free": model_flop / split.gemm_s / peak if split.gemm_s else nan,
        # every GEMM FLOP at the peak: the model's FLOPs over all the GEMMs' (attention's bmm are not in 6·N)
        "non-GEMM free, GEMMs at peak": model_flop / split.gemm_flop if split.gemm_flop else nan,
    }


def profile_ops(step: Any, steps: int) -> list[OpTime]:
    """Self CPU seconds per op over `steps` of `step` (a `pretrain_throughput.Ours`), and each op's FLOPs over those
    steps. FLOPs come from a separate, shape-recording profile of one step (recording shapes slows every op)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as timed:
        step.run(steps)
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as counted:
        step.run(1)
    flop = {e.key: float(e.flops or 0) * steps for e in counted.key_averages()}
    return [OpTime(e.key, e.self_cpu_time_total / 1e6, flop.get(e.key, 0.0)) for e in timed.key_averages()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick", help="pipeline preset whose model, batch and precision to profile")
    p.add_argument("overrides", nargs="*", help="dotted overrides of the preset, e.g. model.d_model=256")
    p.add_argument("--compile", choices=("auto", "on", "off"), default=None, help="override pretrain.compile")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10; compiling happens here)")
    p.add_argument("--steps", type=int, default=40, help="timed steps for the median (default 40)")
    p.add_argument("--profiled", type=int, default=10, help="profiled steps (default 10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one core, as a grid job)")
    p.add_argument("--top", type=int, default=12, help="ops listed by self time (default 12)")
    return p.parse_args(argv)


def print_report(split: StepSplit, fractions: dict[str, float], ops: list[OpTime], tokens: int, top: int) -> None:
    print(f"median step {split.step_s * 1e3:.1f} ms ({tokens / split.step_s:,.0f} tok/s)")
    print(
        f"GEMMs {split.gemm_s * 1e3:.1f} ms a step ({100 * split.gemm_s / split.step_s:.0f}%) at "
        f"{split.gemm_gflops:.0f} GFLOP/s; other ops {split.other_s * 1e3:.1f} ms"
    )
    for name, value in fractions.items():
        print(f"6·N·tok/s as a fraction of the peak, {name}: {100 * value:.0f}%")
    total = sum(op.self_s for op in ops) or 1.0
    print(f"\n{'op':<60} {'self %':>7}")
    for op in sorted(ops, key=lambda op: -op.self_s)[:top]:
        print(f"{op.name[:60]:<60} {100 * op.self_s / total:>6.1f}%")


def main(argv: list[str] | None = None) -> int:
    # torch and the step's modules load here, so the pure parts above import without them (their tests)
    import torch
    from pretrain_throughput import Ours, prepare
    from roofline import matmul_peak_gflops

    from hyperstition.model.build import build_model, count_parameters
    from hyperstition.train.pretrain import runtime_for

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = list(args.overrides) + ([f"pretrain.compile={args.compile}"] if args.compile else [])
    cfg = load_config(PipelineConfig, args.preset, overrides)
    runtime = runtime_for(cfg.pretrain)
    peak = matmul_peak_gflops(runtime.device, torch.bfloat16 if runtime.bf16 else torch.float32)
    tokens = cfg.pretrain.batch_size * cfg.model.max_seq_len
    with tempfile.TemporaryDirectory() as tmp:
        rows_needed = cfg.pretrain.batch_size * (args.warmup + args.steps + args.profiled + 10)
        tokenizer, rows = prepare(cfg.model, rows_needed, Path(tmp), cfg.tokenizer.vocab_size)
        n_params = count_parameters(build_model(cfg.model, tokenizer))
        step = Ours(cfg.model, cfg.pretrain, runtime, tokenizer, rows, args.warmup)
        step_s = statistics.median(step.run(args.steps))
        ops = profile_ops(step, args.profiled)
    split = split_step(ops, args.profiled, step_s)
    print(
        f"{args.preset} {' '.join(overrides)}: {n_params / 1e6:.2f}M params, {runtime.describe()}, "
        f"{torch.get_num_threads()} thread(s), batch {cfg.pretrain.batch_size}x{cfg.model.max_seq_len}; "
        f"matmul peak {peak:.0f} GFLOP/s ({'bf16' if runtime.bf16 else 'fp32'}, measured now)"
    )
    print_report(split, peak_fractions(split, 6 * n_params * tokens, peak), ops, tokens, args.top)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as error:  # an invalid preset or override: one line, as the CLI gives it
        sys.exit(f"step_profile: {error}")
