"""Shared pieces of the subcommands: config + overrides + --out, and saving the resolved config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import Config, ConfigError, load_config
from .io import write_text_atomic


def add_config_arguments(
    parser: argparse.ArgumentParser, default_config: str = "quick", default_out: str | None = None
) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        default=default_config,
        help=f"preset name (smoke, quick, gpu) or a YAML file (default: {default_config})",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. model.d_model=256 pretrain.steps=100"
    )
    parser.add_argument("--out", default=default_out, help="output directory (default: runs/<command>-<preset>)")


def resolve(args: argparse.Namespace, cls: type[Config], command: str):
    """Load the config named on the command line and pick the output directory."""
    # argparse puts a first KEY=VALUE into `config` when no config is given; move it back.
    overrides = list(args.overrides)
    config = args.config
    if config and "=" in config:
        overrides.insert(0, config)
        config = "quick"
    cfg = load_config(cls, config, overrides)
    out = Path(args.out) if args.out else Path("runs") / f"{command}-{Path(str(config)).stem}"
    return cfg, output_directory(out)


def output_directory(path: str | Path, flag: str = "--out", create: bool = False) -> Path:
    """`path` as an output directory, refused with one line when it exists as something else (a file, a FIFO).

    `create` makes it now, so that a path that cannot be created fails before the work rather than after it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag}: {str(path)!r} exists and is not a directory; give a directory (new or existing)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag}: {str(parent)!r} in {str(path)!r} is not a directory")
            break
    if create:
        path.mkdir(parents=True, exist_ok=True)  # an OSError (read-only, no space) is one line in cli.main
    return path


def save_resolved_config(cfg: Config, out_dir: str | Path, name: str = "config.yaml") -> Path:
    path = Path(out_dir) / name
    write_text_atomic(path, cfg.to_yaml())
    return path


def refused(command: str, err: Exception) -> int:
    """Print why `hyperstition COMMAND` refused (a bad run directory, a bad query) as one line; exit status 2."""
    print(f"hyperstition {command}: {err}", file=sys.stderr)
    return 2
