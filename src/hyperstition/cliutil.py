"""Shared pieces of the subcommands: config + overrides + --out, and saving the resolved config."""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import Config, load_config
from .io import write_text_atomic


def add_config_arguments(parser: argparse.ArgumentParser, default_config: str = "quick", default_out: str | None = None) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        default=default_config,
        help=f"preset name (smoke, quick, base) or a YAML file (default: {default_config})",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. model.d_model=256 pretrain.steps=100")
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
    return cfg, out


def save_resolved_config(cfg: Config, out_dir: str | Path, name: str = "config.yaml") -> Path:
    path = Path(out_dir) / name
    write_text_atomic(path, cfg.to_yaml())
    return path
