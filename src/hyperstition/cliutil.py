"""Shared pieces of the subcommands: config + overrides + --out, and saving the resolved config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import Config, ConfigError, load_config
from .io import write_text_atomic
from .textsafe import one_line


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
    if config and is_override(config):
        overrides.insert(0, config)
        config = "quick"
    cfg = load_config(cls, config, overrides)
    out = Path(args.out) if args.out else Path("runs") / f"{command}-{Path(str(config)).stem}"
    return cfg, output_directory(out)


def is_override(text: str) -> bool:
    """Whether a positional argument is a KEY=VALUE override rather than a config: a YAML file may have `=` in its
    name (`a=b.yaml`): an existing file is a config."""
    return "=" in text and not Path(text).is_file()


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


def refuse_overlap(out: Path, inputs: dict[str, str | Path], both_ways: bool = False, flag: str = "--out") -> None:
    """Refuse an output directory that is one of the command's inputs or lies inside one (writing there would
    replace what is being read: a base model, a checkpoint); `both_ways` also refuses an input inside the output
    (for commands that write subdirectories such as final/ whose names an input may already have)."""
    target = out.resolve()
    for name, given in inputs.items():
        source = Path(given).resolve()
        inside = target == source or source in target.parents
        if inside or (both_ways and target in source.parents):
            raise ConfigError(
                f"{flag}: {str(out)!r} overlaps {name} {str(given)!r}; writing there would replace the input. "
                "Choose another output directory"
            )


HTML_MAGIC = (b"<!doctype html", b"<html")


def output_file(path: str | Path, flag: str = "--out", magic: tuple[bytes, ...] = HTML_MAGIC) -> Path:
    """`path` as a file this command may (re)write, refused with one line when it is not ours: a path ending in a
    slash (a directory was meant), a directory, a device, FIFO or socket, or an existing file of another kind
    (whose first bytes are not one of `magic`, e.g. a run's results.parquet given as the HTML report's path)."""
    import os
    import stat

    text = str(path)
    if text.endswith(("/", os.sep)):
        raise ConfigError(f"{flag}: {text!r} ends with a slash (a directory); give the path of the file to write")
    path = Path(text)
    if path.is_dir():
        raise ConfigError(f"{flag}: {text!r} is a directory; give the path of the file to write")
    if path.exists():
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{flag}: {text!r} exists and is not a regular file; refusing to write over it")
        with open(path, "rb") as fh:
            head = fh.read(64).lstrip().lower()
        if not head.startswith(magic):
            raise ConfigError(
                f"{flag}: {text!r} exists and is not a file this command wrote; refusing to overwrite it "
                "(remove it or choose another path)"
            )
    output_directory(path.parent, flag)
    return path


def save_resolved_config(cfg: Config, out_dir: str | Path, name: str = "config.yaml") -> Path:
    path = Path(out_dir) / name
    write_text_atomic(path, cfg.to_yaml())
    return path


def refused(command: str, err: Exception) -> int:
    """Print why `hyperstition COMMAND` refused (a bad run directory, a bad query) as one line; exit status 2."""
    print(f"hyperstition {command}: {one_line(err)}", file=sys.stderr)
    return 2
