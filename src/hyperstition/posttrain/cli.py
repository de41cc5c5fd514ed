"""`hyperstition posttrain --base DIR --strategy NAME [CONFIG] [KEY=VALUE ...] [--out DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cliutil import is_override, output_directory, refuse_overlap
from ..config import ConfigError
from .strategies import STRATEGIES

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


def register(subparsers) -> None:
    lines = "\n".join(f"  {name:<14} {s.description}" for name, s in STRATEGIES.items())
    parser = subparsers.add_parser(
        "posttrain",
        help="post-train a pretrained checkpoint (SFT / DPO / RL; suppress / integrate) and record the "
        "persistence curve",
        description=(
            "Post-train the checkpoint in --model with one strategy, evaluating at log-spaced steps: persona "
            "bits and rates "
            "per context, KL(post || base) in bits per response, capability. Writes posttrain_curve.parquet and final/ "
            "into --out; an interrupted run resumes when rerun.\n\nstrategies:\n" + lines
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        "--from",
        "--base",
        dest="model",
        required=True,
        metavar="DIR",
        help="pretrained checkpoint directory to start from (e.g. runs/pretrain-quick/final); "
        "--from and the older --base are the same flag",
    )
    parser.add_argument("--strategy", required=True, help=f"one of: {', '.join(STRATEGIES)}")
    parser.add_argument(
        "config",
        nargs="?",
        default="quick",
        help="posttrain preset (smoke, quick, gpu) or a YAML file (default: quick)",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. steps=100 dpo.beta=0.2"
    )
    parser.add_argument("--out", default=None, help="output directory (default: runs/posttrain-<strategy>-<preset>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from ..evals.scoring import EvalError
    from ..model.checkpoint import CheckpointError
    from .config import load_posttrain_config
    from .errors import PosttrainDiverged, PosttrainError
    from .run import run_posttrain
    from .strategies import get_strategy

    prog = "hyperstition posttrain"
    overrides = list(args.overrides)
    config = args.config
    if config and is_override(config):  # a first KEY=VALUE lands in `config` when no preset is given
        overrides.insert(0, config)
        config = "quick"
    try:
        get_strategy(args.strategy)
        cfg = load_posttrain_config(config, overrides)
        default_out = Path("runs") / f"posttrain-{args.strategy}-{Path(str(config)).stem}"
        out = output_directory(Path(args.out) if args.out else default_out)
        refuse_overlap(out, {"--model": args.model}, both_ways=True)
        final = run_posttrain(args.model, args.strategy, out, cfg=cfg, progress=not args.quiet)
    except PosttrainDiverged as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    except (PosttrainError, ConfigError, CheckpointError) as err:
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except EvalError as err:
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{prog}: wrote {final} and {out / 'posttrain_curve.parquet'}")
    return 0


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
