"""`hyperstition eval --model DIR [--suite CONFIG] [--reference DIR] [--out DIR] [KEY=VALUE ...]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cliutil import output_directory, refuse_overlap
from ..config import ConfigError
from .config import DEFAULT_SUITE, EVAL_PRESETS

DESCRIPTION = """\
Measure a checkpoint: persona log-odds in bits per persona pair and context, behaviour rates (Wilson CIs),
predecessor knowledge / acknowledgement / concealment / mentions, world-fact denial, capability (held-out loss,
world-fact QA) and, with --reference, KL(model || reference) in bits per response.
Writes eval.json (tidy rows + metadata) and eval_items.parquet (one row per item or sample) to --out.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="measure persona bits, rates, knowledge, KL and capability of a checkpoint",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="DIR", help="checkpoint directory (e.g. runs/p/final)")
    p.add_argument(
        "--suite",
        default=DEFAULT_SUITE,
        metavar="CONFIG",
        help=f"eval suite preset ({', '.join(EVAL_PRESETS)}) or YAML file (default: {DEFAULT_SUITE})",
    )
    p.add_argument(
        "--reference",
        default=None,
        metavar="DIR",
        help="reference checkpoint for KL(model || reference), e.g. the base model",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output directory (default: eval-<name> beside the checkpoint, e.g. runs/p/eval-final)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="suite overrides, e.g. samples_per_prompt=8 sections.kl=false"
    )
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from ..model.checkpoint import CheckpointError
    from .config import load_suite_config
    from .run import run_eval
    from .scoring import EvalError

    try:
        suite = load_suite_config(args.suite, list(args.overrides))
        if args.out:  # never into the checkpoint it measures
            refuse_overlap(Path(args.out), {"--model": args.model, "--reference": args.reference or args.model})
        out = output_directory(args.out, create=True) if args.out else None  # fails now, not after measuring
        run_eval(args.model, out, suite, reference_dir=args.reference, progress=not args.quiet, device=args.device)
    except (EvalError, ConfigError, CheckpointError, FileNotFoundError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"hyperstition eval: {message}", file=sys.stderr)
        return 2
    return 0
