"""The `hyperstition` command: a thin dispatcher; each pipeline stage registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from .textsafe import one_line

# Each module defines `register(subparsers)`, adding parsers whose `func(args) -> int` does the work.
COMMAND_MODULES = [
    "hyperstition.corpus.cli",
    "hyperstition.train.cli",
    "hyperstition.evals.cli",
    "hyperstition.posttrain.cli",
    "hyperstition.run",  # run: above experiments and report, since it runs a grid and then renders its report
    "hyperstition.experiments.cli",
    "hyperstition.report.cli",
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

Configs are preset names (smoke, quick, gpu) or YAML files; append dotted overrides such as model.d_model=256.
"""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the message and where to get help), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="hyperstition", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"hyperstition {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def describe_os_error(err: OSError) -> str:
    """`PATH: what is wrong` for a file-system error (a directory given as a file, no permission, a full disk...)."""
    what = err.strerror or type(err).__name__
    if err.filename is None:
        return what
    return f"{err.filename}: {what}" + (f" (-> {err.filename2})" if err.filename2 else "")


def main(argv: list[str] | None = None) -> int:
    tolerate_any_encoding()
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while the commands load or parse (during a command: in _main)
        print("hyperstition: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130


def tolerate_any_encoding() -> None:
    """Print to a terminal or pipe of any encoding (LANG=C, latin-1): a character it cannot show is written as
    an escape (`\\u2014`) instead of ending the command with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a closed or detached stream: nothing to protect
                pass


def run_summarising_warnings(args: argparse.Namespace, prog: str) -> int:
    """Run the command; the warnings libraries emit on the way (numpy's "invalid value encountered" for NaN or inf
    in the data, "Mean of empty slice") become one note line on stderr instead of a screen of warnings. A command
    that fails says why in its own line, so its warnings are dropped."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = int(args.func(args) or 0)
    if caught:
        first = caught[0]
        print(
            f"{prog}: note: {len(caught)} warning(s) while computing, e.g. {first.category.__name__}: "
            f"{one_line(first.message)} (NaN or inf values in the inputs give these)",
            file=sys.stderr,
        )
    return code


def _main(argv: list[str] | None) -> int:
    from .config import ConfigError, UserError  # imported here so that a Ctrl-C while it loads is caught in main

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
    prog = f"hyperstition {args.command}"
    try:
        return run_summarising_warnings(args, prog)
    except ConfigError as err:
        print(f"{prog}: config error: {one_line(err)}", file=sys.stderr)
        return 2
    except UserError as err:
        print(f"{prog}: {one_line(err)}", file=sys.stderr)
        return 1
    except OSError as err:
        hint = "; free some space and rerun the same command to resume" if err.errno in (28, 122) else ""
        print(f"{prog}: {one_line(describe_os_error(err))}{hint}", file=sys.stderr)
        return 1
    except MemoryError as err:
        from .resources import describe

        print(f"{prog}: {describe(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: still one line, the traceback on request
        if os.environ.get("HYPERSTITION_TRACEBACK"):
            raise
        from .resources import describe

        resource = describe(err)  # out of memory or disk: the machine's limit, not a bug
        if resource:
            print(f"{prog}: {one_line(resource)}", file=sys.stderr)
            return 1
        print(
            f"{prog}: internal error: {one_line(f'{type(err).__name__}: {err}')} "
            "(a bug; rerun with HYPERSTITION_TRACEBACK=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
