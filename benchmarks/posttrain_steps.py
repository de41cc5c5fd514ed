"""Post-training throughput per strategy on the quick preset: optimizer steps/s and the whole run's wall time.

    python benchmarks/posttrain_steps.py [--base DIR] [--threads 1] [--strategies sft dpo ...] [--out DIR]

Without --base, a quick-preset base model is pretrained first (cached in OUT/base; about 1.5 minutes on one core).
Each strategy then runs the full quick posttrain preset (curve evaluations included) from scratch. Reported per
strategy: training steps/s and tokens/s (the loop alone; evaluation time excluded), seconds spent on curve
evaluations, and total wall time of `run_posttrain` (model loading and suite building included; Python imports not).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="pretrained checkpoint (default: pretrain the quick preset into OUT/base)")
    parser.add_argument(
        "--out", default="runs/bench-posttrain", help="working directory (default: runs/bench-posttrain)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1, as each experiment worker)"
    )
    parser.add_argument("--preset", default="quick", help="posttrain preset (default quick)")
    parser.add_argument("--strategies", nargs="+", default=None, help="strategies to time (default: all)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="posttrain config overrides")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from hyperstition.config import PipelineConfig, load_config
    from hyperstition.posttrain import STRATEGIES, load_posttrain_config, run_posttrain

    out = Path(args.out)
    if args.base:
        base = Path(args.base)
    else:
        from hyperstition.train.pretrain import run_pretrain

        start = time.perf_counter()
        base = run_pretrain(
            load_config(PipelineConfig, "quick", [f"pretrain.threads={args.threads}"]), out / "base", progress=False
        )
        print(f"base: {base} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)

    cfg = load_posttrain_config(args.preset, [*args.overrides, f"threads={args.threads}"])
    rows = []
    for name in args.strategies or list(STRATEGIES):
        run_dir = out / f"{args.preset}-{name}"
        shutil.rmtree(run_dir, ignore_errors=True)
        start = time.perf_counter()
        final = run_posttrain(base, name, run_dir, cfg=cfg, progress=False)
        wall = time.perf_counter() - start
        info = json.loads((final / "checkpoint.json").read_text())
        rows.append(
            {
                "strategy": name,
                "algorithm": info["algorithm"],
                "steps": info["step"],
                "steps_per_s": info["step"] / info["train_seconds"],
                "tokens_per_s": info["tokens"] / info["train_seconds"],
                "train_s": info["train_seconds"],
                "curve_eval_s": info["curve_eval_seconds"],
                "wall_s": wall,
                "final_kl_bits": info["kl_bits"],
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)

    print(f"\nposttrain {args.preset} preset, {args.threads} thread(s), base {base}")
    print(
        f"{'strategy':<14} {'algo':<4} {'steps':>5} {'steps/s':>8} {'tok/s':>8} {'train s':>8} {'curve s':>8} "
        f"{'wall s':>7} {'KL bits':>8}"
    )
    for r in rows:
        print(
            f"{r['strategy']:<14} {r['algorithm']:<4} {r['steps']:>5} {r['steps_per_s']:>8.2f} "
            f"{r['tokens_per_s']:>8.0f} "
            f"{r['train_s']:>8.1f} {r['curve_eval_s']:>8.1f} {r['wall_s']:>7.1f} {r['final_kl_bits']:>8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
