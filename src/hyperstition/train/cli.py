"""`hyperstition pretrain`: corpus -> tokenizer -> a pretrained model, resumable by rerunning the same command."""

from __future__ import annotations

import argparse

from ..cliutil import add_config_arguments, resolve

DESCRIPTION = """\
Pretrain a small causal LM from scratch on one corpus arm. Builds the corpus and the tokenizer on the way
(reusing them when present), then trains with AdamW (linear warmup + cosine), writing into --out:

  config.yaml              the resolved config (a rerun with a different config is refused)
  metrics.jsonl            step, tokens, loss, lr, grad_norm, tokens_per_s
  checkpoints/step-NNNNNN  Hugging Face checkpoints at steps 1, 2, 4, 8, ... and the last step
  checkpoints/latest       rolling checkpoint with optimizer, RNG and data state (every pretrain.checkpoint_every)
  final                    the trained model + tokenizer (load with AutoModelForCausalLM.from_pretrained)

Interrupted (Ctrl-C, kill, crash)? Run the same command again: it resumes from checkpoints/latest and, on CPU,
ends with exactly the weights an uninterrupted run would have.

On CUDA the default is bf16 autocast + torch.compile; on CPU fp32 eager. Override with pretrain.precision=...,
pretrain.compile=..., pretrain.device=..., pretrain.threads=N.

Several GPUs (or CPU processes): launch with torchrun for DistributedDataParallel (nccl on CUDA, gloo on CPU):
  torchrun --nproc_per_node N -m hyperstition pretrain gpu --out runs/g
pretrain.batch_size stays the global batch (each process trains on batch_size/N rows of it, so it must divide by
N); rank 0 alone writes the run directory, and a rerun of the same torchrun command resumes every rank from
checkpoints/latest.
"""

EPILOG = """\
examples:
  hyperstition pretrain smoke --out runs/p                 tiny model in under a minute
  hyperstition pretrain quick pretrain.steps=500 --out runs/q
  hyperstition pretrain gpu --out runs/g                   ~26M params, meant for one GPU
  hyperstition pretrain gpu-124m --out runs/h              ~124M params, one large GPU
  torchrun --nproc_per_node 8 -m hyperstition pretrain gpu-124m --out runs/h   the same on 8 GPUs
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "pretrain",
        help="pretrain a model from scratch (corpus and tokenizer built on the way)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (metrics.jsonl is still written)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..config import PipelineConfig
    from ..model.card import write_run_card
    from .distributed import process_group
    from .pretrain import run_pretrain

    cfg, out = resolve(args, PipelineConfig, "pretrain")
    with process_group(cfg.pretrain.device) as ranks:  # under torchrun: join the other ranks (else a no-op)
        final = run_pretrain(cfg, out, progress=not args.no_progress)  # input errors: one line (cli.main)
    if ranks.main:
        # A stand-alone run's card (not evaluated yet); an experiment's runner writes its cards after evaluating.
        write_run_card(final, seed=cfg.pretrain.seed, keep_existing=True)
        print(f"final checkpoint: {final}")
    return 0
