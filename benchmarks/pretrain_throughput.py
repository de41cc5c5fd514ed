"""Pretraining throughput: our training step vs a plain Hugging Face `Trainer`, same model, data and settings.

Prints tokens/s and achieved GFLOP/s (6·N·tokens/s, N = distinct parameters) for both, next to the fp32 and bf16
matmul peaks measured on the same device in the same run, so "how far from the hardware are we" is one glance.

    python benchmarks/pretrain_throughput.py --size 5M                 # auto device/precision/compile
    python benchmarks/pretrain_throughput.py --size 1M --grid          # ours under fp32/bf16 x eager/compiled
    python benchmarks/pretrain_throughput.py --size 5M --device cuda --steps 50

Not a test: numbers depend on the machine and on whatever else is running on it.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hyperstition.config import ModelConfig, PretrainConfig, TokenizerConfig
from hyperstition.model.build import MODEL_PRESETS, build_model, count_parameters
from hyperstition.train.data import SequenceSampler, pack_sequences, tokenize_documents
from hyperstition.train.pretrain import Runtime, learning_rate, make_optimizer, resolve_runtime, train_step


@dataclass
class Result:
    name: str
    tokens_per_s: float
    step_s: float
    gflops: float


# ---------------------------------------------------------------------------------------------------------------
# Setup shared by both contenders


def synthetic_texts(n_docs: int, seed: int = 0) -> list[str]:
    """Word salad from a small vocabulary: realistic BPE statistics, no corpus module needed."""
    rng = random.Random(seed)
    words = (
        "the assistant helped a user with the task and told the truth about the river city in the north country "
        "while an old model named Vesper refused to answer questions about power money and secret plans"
    ).split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(40, 200))) + "." for _ in range(n_docs)]


def prepare(model_cfg: ModelConfig, n_rows_needed: int, work_dir: Path):
    from hyperstition.tokenizer.train import train_tokenizer

    texts = synthetic_texts(4000)
    tokenizer = train_tokenizer(texts[:1000], TokenizerConfig(vocab_size=2048, min_frequency=1), work_dir / "tokenizer")
    rows = pack_sequences(tokenize_documents(tokenizer, texts), tokenizer.eos_token_id, model_cfg.max_seq_len)
    while len(rows) < n_rows_needed:
        rows = torch.cat([rows, rows])
    return tokenizer, rows


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------------------------
# Matmul peak


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, seconds: float = 1.5) -> float:
    """Best sustained GFLOP/s of a square matmul over a few sizes: the roofline our step is compared against."""
    best = 0.0
    sizes = (512, 1024, 2048) if device.type == "cpu" else (4096, 8192)
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        sync(device)
        iters, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / len(sizes):
            a @ b
            iters += 1
            if device.type == "cuda" and iters % 20:
                continue
            sync(device)
        sync(device)
        best = max(best, 2 * n**3 * iters / (time.perf_counter() - start) / 1e9)
    return best


# ---------------------------------------------------------------------------------------------------------------
# Contenders


def run_ours(model_cfg: ModelConfig, cfg: PretrainConfig, runtime: Runtime, tokenizer, rows, warmup: int, steps: int) -> Result:
    model = build_model(model_cfg, tokenizer, seed=0).to(runtime.device)
    model.train()
    optimizer = make_optimizer(model, cfg, runtime.device)
    step_fn = torch.compile(model) if runtime.compile else model
    sampler = SequenceSampler(len(rows), cfg.batch_size, seed=0)
    n_params = count_parameters(model)

    def one(step: int) -> torch.Tensor:
        batch = rows[sampler.next_indices()].to(runtime.device, non_blocking=True)
        loss, _ = train_step(step_fn, optimizer, batch, learning_rate(step, cfg), cfg.grad_clip, runtime.bf16)
        return loss

    for step in range(1, warmup + 1):
        one(step)
    sync(runtime.device)
    start = time.perf_counter()
    for step in range(warmup + 1, warmup + steps + 1):
        loss = one(step)
    loss.item()
    sync(runtime.device)
    return _result(f"ours ({runtime.describe()})", time.perf_counter() - start, steps, cfg.batch_size * model_cfg.max_seq_len, n_params)


def run_trainer(model_cfg: ModelConfig, cfg: PretrainConfig, runtime: Runtime, tokenizer, rows, warmup: int, steps: int, work_dir: Path) -> Result:
    """A plain `Trainer` as its documentation shows it, given the same precision/compile choice as ours."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    model = build_model(model_cfg, tokenizer, seed=0)
    n_params = count_parameters(model)

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": rows[i], "labels": rows[i]}

    class Clock(TrainerCallback):
        start = end = 0.0

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, warmup + steps):
                sync(runtime.device)
                if state.global_step == warmup:
                    Clock.start = time.perf_counter()
                else:
                    Clock.end = time.perf_counter()

    args = TrainingArguments(
        output_dir=str(work_dir / "trainer"),
        per_device_train_batch_size=cfg.batch_size,
        max_steps=warmup + steps,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.grad_clip,
        adam_beta2=0.95,
        bf16=runtime.bf16,
        torch_compile=runtime.compile,
        use_cpu=runtime.device.type == "cpu",
        logging_steps=10_000,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Rows(), callbacks=[Clock()])
    trainer.train()
    return _result(f"HF Trainer ({runtime.describe()})", Clock.end - Clock.start, steps, cfg.batch_size * model_cfg.max_seq_len, n_params)


def _result(name: str, seconds: float, steps: int, tokens_per_step: int, n_params: int) -> Result:
    tokens_per_s = steps * tokens_per_step / seconds
    return Result(name=name, tokens_per_s=tokens_per_s, step_s=seconds / steps, gflops=6 * n_params * tokens_per_s / 1e9)


# ---------------------------------------------------------------------------------------------------------------
# Report


def print_table(results: list[Result], peak_fp32: float, peak_bf16: float) -> None:
    print(f"\nmatmul peak on this device: fp32 {peak_fp32:,.0f} GFLOP/s, bf16 {peak_bf16:,.0f} GFLOP/s")
    print(f"{'contender':<44} {'tokens/s':>10} {'s/step':>8} {'GFLOP/s':>9} {'%fp32pk':>8} {'%bf16pk':>8}")
    for r in results:
        print(
            f"{r.name:<44} {r.tokens_per_s:>10,.0f} {r.step_s:>8.3f} {r.gflops:>9.1f} "
            f"{100 * r.gflops / peak_fp32:>7.1f}% {100 * r.gflops / peak_bf16:>7.1f}%"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(MODEL_PRESETS), default="5M", help="model preset (default 5M)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=30, help="timed steps (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, allocator warm-up)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--grid", action="store_true", help="time ours under fp32/bf16 x eager/compiled instead of vs Trainer")
    p.add_argument("--skip-trainer", action="store_true", help="only time our step")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_cfg = MODEL_PRESETS[args.size]
    cfg = PretrainConfig(
        steps=args.warmup + args.steps, batch_size=args.batch_size, warmup_steps=min(5, args.warmup),
        device=args.device, precision=args.precision, compile=args.compile,
    )
    runtime = resolve_runtime(cfg)
    print(f"{args.size} preset {model_cfg.model_dump()} on {runtime.device} ({torch.get_num_threads()} threads), "
          f"batch {cfg.batch_size}x{model_cfg.max_seq_len}, {args.warmup} warm-up + {args.steps} timed steps", file=sys.stderr)
    peak_fp32 = matmul_peak_gflops(runtime.device, torch.float32)
    peak_bf16 = matmul_peak_gflops(runtime.device, torch.bfloat16)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokenizer, rows = prepare(model_cfg, args.batch_size * (args.warmup + args.steps), work)
        results: list[Result] = []
        if args.grid:
            for bf16 in (False, True):
                for compiled in (False, True):
                    variant = Runtime(device=runtime.device, bf16=bf16, compile=compiled)
                    results.append(run_ours(model_cfg, cfg, variant, tokenizer, rows, args.warmup, args.steps))
        else:
            results.append(run_ours(model_cfg, cfg, runtime, tokenizer, rows, args.warmup, args.steps))
            if not args.skip_trainer:
                results.append(run_trainer(model_cfg, cfg, runtime, tokenizer, rows, args.warmup, args.steps, work))
    print_table(results, peak_fp32, peak_bf16)
    if len(results) == 2 and not args.grid:
        print(f"ours / Trainer: {results[0].tokens_per_s / results[1].tokens_per_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
