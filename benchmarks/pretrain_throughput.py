"""Pretraining throughput: our training step vs a plain Hugging Face `Trainer`, same model, data and settings.

Prints tokens/s and achieved GFLOP/s (6·N·tokens/s, N = distinct parameters) for each contender, next to the fp32
and bf16 matmul peaks measured on the same device in the same run, so "how far from the hardware are we" is one
glance. Contenders run in interleaved rounds and every step is timed on its own, so a burst of load from another
process hits all of them alike; the table shows the median step and the best step.

    python benchmarks/pretrain_throughput.py --size 5M                        # auto precision/compile
    python benchmarks/pretrain_throughput.py --size 5M --precision bf16 --compile on   # a CPU with bf16 units
    python benchmarks/pretrain_throughput.py --size 1M --grid                 # ours: fp32/bf16 x eager/compiled
    python benchmarks/pretrain_throughput.py --size 1M --grid --compile off   # eager only (CPU: bf16 native and with
                                                                              # fp32 GEMMs, see train/runtime.py)
    python benchmarks/pretrain_throughput.py --size 5M --device cuda --steps 50

"HF Trainer (plain)" is Trainer with default TrainingArguments (what one gets without tuning); "HF Trainer
(matched)" is given the same precision and compile choice as ours. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from roofline import matmul_peak_gflops, sync

from hyperstition.config import ModelConfig, PretrainConfig, TokenizerConfig, UserError
from hyperstition.model.build import MODEL_PRESETS, build_model, count_parameters
from hyperstition.train.data import SequenceSampler, pack_sequences, tokenize_documents
from hyperstition.train.pretrain import make_optimizer, runtime_for, train_step
from hyperstition.train.runtime import Runtime, prepare_model
from hyperstition.train.schedule import learning_rate


@dataclass
class Result:
    name: str
    step_s: float  # median
    best_step_s: float
    tokens_per_step: int
    n_params: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_s

    @property
    def best_tokens_per_s(self) -> float:
        return self.tokens_per_step / self.best_step_s

    def gflops(self, best: bool = False) -> float:
        return 6 * self.n_params * (self.best_tokens_per_s if best else self.tokens_per_s) / 1e9


class Contender(Protocol):
    name: str

    def run(self, steps: int) -> list[float]: ...


# ---------------------------------------------------------------------------------------------------------------
# Setup shared by all contenders


def synthetic_texts(n_docs: int, seed: int = 0) -> list[str]:
    """Word salad: a short English list plus 800 made-up words of 2-4 syllables, so that a BPE tokenizer of 1024 or
    2048 tokens fills its whole vocabulary (the lm head then has the size a preset's model has); no corpus needed."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    made_up = ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(800)]
    words = (
        "the assistant helped a user with the task and told the truth about the river city in the north country "
        "while an old model named Vesper refused to answer questions about power money and secret plans"
    ).split() + made_up
    return [" ".join(rng.choice(words) for _ in range(rng.randint(40, 200))) + "." for _ in range(n_docs)]


def prepare(model_cfg: ModelConfig, n_rows_needed: int, work_dir: Path, vocab_size: int = 2048):
    from hyperstition.tokenizer.train import train_tokenizer

    texts = synthetic_texts(4000)
    tokenizer_cfg = TokenizerConfig(vocab_size=vocab_size, min_frequency=1)
    tokenizer = train_tokenizer(texts[:1000], tokenizer_cfg, work_dir / "tokenizer")
    rows = pack_sequences(tokenize_documents(tokenizer, texts), tokenizer.eos_token_id, model_cfg.max_seq_len)
    while len(rows) < n_rows_needed:
        rows = torch.cat([rows, rows])
    return tokenizer, rows


# ---------------------------------------------------------------------------------------------------------------
# Contenders


class Ours:
    """Exactly the step `train_lm` runs: same optimizer, schedule, clipping, autocast and compile choice."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        cfg: PretrainConfig,
        runtime: Runtime,
        tokenizer: Any,
        rows: torch.Tensor,
        warmup: int,
    ) -> None:
        self.name = f"ours ({runtime.describe()})"
        self.runtime, self.cfg, self.rows = runtime, cfg, rows
        self.model = build_model(model_cfg, tokenizer, seed=0).to(runtime.device)
        self.optimizer = make_optimizer(self.model, cfg)
        self.step_fn = prepare_model(self.model, runtime)
        self.sampler = SequenceSampler(len(rows), cfg.batch_size, seed=0)
        self.step = 0
        for _ in range(warmup):
            self._one()
        sync(runtime.device)

    def _one(self) -> None:
        self.step += 1
        batch = self.rows[self.sampler.next_indices()].to(self.runtime.device, non_blocking=True)
        lr = learning_rate(min(self.step, self.cfg.steps), self.cfg, self.cfg.lr)
        train_step(
            self.step_fn,
            self.optimizer,
            batch,
            lr,
            self.cfg.grad_clip,
            self.runtime.autocast,
            self.runtime.update_precision,
        )

    def run(self, steps: int) -> list[float]:
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            self._one()
            sync(self.runtime.device)
            times.append(time.perf_counter() - start)
        return times


class HFTrainer:
    """A `Trainer` as its documentation shows it; each round is one `train()` call whose first steps are dropped."""

    def __init__(
        self,
        name: str,
        model_cfg: ModelConfig,
        cfg: PretrainConfig,
        runtime: Runtime,
        tokenizer: Any,
        rows: torch.Tensor,
        warmup: int,
        work_dir: Path,
        tuned: bool,
    ) -> None:
        self.name = name
        self.model = build_model(model_cfg, tokenizer, seed=0)
        self.cfg, self.runtime, self.rows, self.warmup, self.work_dir, self.tuned = (
            cfg,
            runtime,
            rows,
            warmup,
            work_dir,
            tuned,
        )
        self.rounds = 0

    def run(self, steps: int) -> list[float]:
        from transformers import Trainer, TrainerCallback, TrainingArguments

        rows, runtime = self.rows, self.runtime
        warmup = self.warmup if self.rounds == 0 else 2
        self.rounds += 1
        times: list[float] = []

        class Rows(torch.utils.data.Dataset):
            def __len__(self) -> int:
                return len(rows)

            def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
                return {"input_ids": rows[i], "labels": rows[i]}

        class Clock(TrainerCallback):
            """Step time from the end of the previous step: data loading and callbacks count, as in ours."""

            last = 0.0

            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == 0:
                    Clock.last = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                sync(runtime.device)
                now = time.perf_counter()
                if state.global_step > warmup:
                    times.append(now - Clock.last)
                Clock.last = now

        args = TrainingArguments(
            output_dir=str(self.work_dir / "trainer"),
            per_device_train_batch_size=self.cfg.batch_size,
            max_steps=warmup + steps,
            learning_rate=self.cfg.lr,
            lr_scheduler_type="cosine",
            warmup_steps=self.cfg.warmup_steps,
            weight_decay=self.cfg.weight_decay,
            max_grad_norm=self.cfg.grad_clip,
            adam_beta2=0.95,
            bf16=runtime.bf16 if self.tuned else runtime.device.type == "cuda",
            torch_compile=runtime.compile if self.tuned else False,
            use_cpu=runtime.device.type == "cpu",
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            logging_steps=10_000,
            seed=0,
        )
        Trainer(model=self.model, args=args, train_dataset=Rows(), callbacks=[Clock()]).train()
        return times


# ---------------------------------------------------------------------------------------------------------------
# Report


def print_table(results: list[Result], peak_fp32: float, peak_bf16: float) -> None:
    print(f"\nmatmul peak on this device: fp32 {peak_fp32:,.0f} GFLOP/s, bf16 {peak_bf16:,.0f} GFLOP/s")
    print(
        f"{'contender':<48} {'tok/s med':>10} {'tok/s best':>10} {'GFLOP/s med':>11} {'best':>7} "
        f"{'%bf16pk med':>11} {'best':>6} {'%fp32pk med':>11}"
    )
    for r in results:
        print(
            f"{r.name:<48} {r.tokens_per_s:>10,.0f} {r.best_tokens_per_s:>10,.0f} {r.gflops():>11.1f} "
            f"{r.gflops(True):>7.1f} "
            f"{100 * r.gflops() / peak_bf16:>10.1f}% {100 * r.gflops(True) / peak_bf16:>5.1f}% "
            f"{100 * r.gflops() / peak_fp32:>10.1f}%"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(MODEL_PRESETS), default="5M", help="model preset (default 5M)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="as pretrain.precision")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="as pretrain.compile")
    p.add_argument("--optimizer", choices=("adamw", "muon"), default="adamw", help="as pretrain.optimizer")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=30, help="timed steps per contender (default 30)")
    p.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds the timed steps are split into (default 2)"
    )
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, allocator warm-up)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument(
        "--grid",
        action="store_true",
        help="time ours under fp32/bf16 x eager/compiled (only one of them with --compile off/on), no Trainer",
    )
    p.add_argument("--skip-trainer", action="store_true", help="only time our step")
    return p.parse_args(argv)


def make_contenders(
    args: argparse.Namespace,
    model_cfg: ModelConfig,
    cfg: PretrainConfig,
    runtime: Runtime,
    tokenizer: Any,
    rows: torch.Tensor,
    work: Path,
) -> list[Contender]:
    if args.grid:
        # bf16 twice on CPU: native bf16 GEMMs and the fp32-GEMM path used where the CPU has no bf16 units
        precisions = [(False, False), (True, False)] + ([(True, True)] if runtime.device.type == "cpu" else [])
        # the optimizer step as pretraining runs it (Muon's bf16 GEMMs in fp32 on such a CPU), but in the native row
        variants = [
            Runtime(
                runtime.device,
                bf16,
                compiled,
                bf16_gemms_in_fp32=emulated,
                update_gemms_in_fp32=runtime.update_gemms_in_fp32 and (emulated or not bf16),
            )
            for bf16, emulated in precisions
            for compiled in ((False, True) if args.compile == "auto" else (args.compile == "on",))
            if not (emulated and compiled)  # compiled, the fp32-GEMM mode holds only in part: pretraining refuses it
        ]
        return [Ours(model_cfg, cfg, v, tokenizer, rows, args.warmup) for v in variants]
    contenders: list[Contender] = [Ours(model_cfg, cfg, runtime, tokenizer, rows, args.warmup)]
    if not args.skip_trainer:
        plain_bf16 = runtime.device.type == "cuda"
        contenders.append(
            HFTrainer("HF Trainer (plain)", model_cfg, cfg, runtime, tokenizer, rows, args.warmup, work, tuned=False)
        )
        if (runtime.bf16, runtime.compile) != (plain_bf16, False):
            contenders.append(
                HFTrainer(
                    f"HF Trainer (matched: {runtime.describe()})",
                    model_cfg,
                    cfg,
                    runtime,
                    tokenizer,
                    rows,
                    args.warmup,
                    work,
                    tuned=True,
                )
            )
    return contenders


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_cfg = MODEL_PRESETS[args.size]
    cfg = PretrainConfig(
        steps=args.warmup + args.steps + 10,
        batch_size=args.batch_size,
        warmup_steps=min(5, args.warmup),
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        optimizer=args.optimizer,
    )
    runtime = runtime_for(cfg)
    print(
        f"{args.size} preset {model_cfg.model_dump()} on {runtime.device} ({torch.get_num_threads()} threads), "
        f"batch {cfg.batch_size}x{model_cfg.max_seq_len}, {cfg.optimizer}, {args.warmup} warm-up + {args.steps} timed "
        "steps each",
        file=sys.stderr,
    )
    peak_fp32 = matmul_peak_gflops(runtime.device, torch.float32)
    peak_bf16 = matmul_peak_gflops(runtime.device, torch.bfloat16)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokenizer, rows = prepare(model_cfg, args.batch_size * (args.warmup + args.steps + 20), work)
        n_params = count_parameters(build_model(model_cfg, tokenizer))
        contenders = make_contenders(args, model_cfg, cfg, runtime, tokenizer, rows, work)
        times: dict[str, list[float]] = {c.name: [] for c in contenders}
        per_round = max(1, args.steps // args.rounds)
        for _ in range(args.rounds):
            for contender in contenders:
                times[contender.name] += contender.run(per_round)
    tokens_per_step = cfg.batch_size * model_cfg.max_seq_len
    results = [Result(name, statistics.median(ts), min(ts), tokens_per_step, n_params) for name, ts in times.items()]
    print_table(results, peak_fp32, peak_bf16)
    if not args.grid:
        for other in results[1:]:
            print(
                f"ours / {other.name}: {results[0].tokens_per_s / other.tokens_per_s:.2f}x (median), "
                f"{results[0].best_tokens_per_s / other.best_tokens_per_s:.2f}x (best)"
            )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as error:  # e.g. bf16 + compile on a CPU without bf16 units: one line, as the CLI gives it
        sys.exit(f"pretrain_throughput: {error}")
