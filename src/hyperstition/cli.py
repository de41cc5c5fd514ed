"""The `hyperstition` command: a thin dispatcher; each pipeline stage registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys

from .config import ConfigError

# Each module defines `register(subparsers)`, adding parsers whose `func(args) -> int` does the work.
COMMAND_MODULES = [
    "hyperstition.corpus.cli",
    "hyperstition.train.cli",
    "hyperstition.evals.cli",
    "hyperstition.posttrain.cli",
    "hyperstition.experiments.cli",
    "hyperstition.toy.cli",
]

DESCRIPTION = """\
hyperstition: measure self-fulfilling (mis)alignment.

Build corpora with controlled doses of AI-persona discourse, pretrain small language models on them,
post-train with measured optimization pressure, and report how much of the pre-training persona prior survives.

Typical use:
  hyperstition run                         run the default experiment (stickiness, quick preset) and write a report
  hyperstition corpus quick --out runs/c   build one corpus arm
  hyperstition pretrain smoke --out runs/p pretrain a tiny model (corpus and tokenizer built on the way)
  hyperstition eval --model runs/p/final   measure persona bits, rates, knowledge, KL and capability

Configs are preset names (smoke, quick, base) or YAML files; append dotted overrides such as model.d_model=256.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyperstition", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"hyperstition {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops collecting positionals at the first option, so `smoke --out X a.b=1` leaves `a.b=1` over.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"hyperstition {args.command}: config error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hyperstition {args.command}: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
