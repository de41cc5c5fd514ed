"""What makes a grid cell finished: its DONE.json, and every output that DONE.json promises, present and intact.

DONE.json lists each promised file (the cell's `rows.parquet`, every file of the model directory it hands on)
with its size and sha256. A cell whose DONE.json is unreadable, or whose outputs are missing, truncated or changed,
is not finished: the runner reruns it and says why, and `status` shows it as pending with the reason. Without this
a deleted `rows.parquet` would silently drop a cell's rows from `results.parquet`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..io import CHECKSUMS, BadFileError, check_regular_file, read_regular_bytes, sha256_file
from ..model.card import CARD

# Files of a model directory that later cells rewrite on purpose: the model card (filled in after each evaluation)
# and the checksum list that gains the card's entry. Every other file of the checkpoint is promised as written.
REWRITTEN_LATER = frozenset({CARD, CHECKSUMS})

DONE = "DONE.json"


@dataclass(frozen=True)
class DoneCheck:
    """The verdict on one cell: `record` is its DONE.json when it is finished with `config_hash`, else None and
    `reason` says why not ("" for a cell that never finished)."""

    record: dict | None
    reason: str = ""

    @property
    def finished(self) -> bool:
        return self.record is not None


def read_json_object(path: Path) -> dict | None:
    """A JSON object from `path`, or None when the file is missing, unreadable, not JSON or not an object;
    BadFileError when something other than a regular file is there."""
    try:
        data = json.loads(read_regular_bytes(path).decode("utf-8"))
    except BadFileError:  # a FIFO or device in a run: reading it would hang; name it instead
        raise
    except (OSError, ValueError):  # ValueError covers JSONDecodeError and UnicodeDecodeError
        return None
    return data if isinstance(data, dict) else None


def promised_files(run_dir: Path, cell: Path, outputs: dict) -> dict[str, dict]:
    """Size and sha256 of every file a finished cell hands on, keyed by path relative to the run directory."""
    paths: list[Path] = []
    if outputs.get("rows"):
        paths.append(cell / outputs["rows"])
    if outputs.get("documents"):  # model-written documents a later generation's corpus reads (generate jobs)
        paths.append(_resolve(run_dir, outputs["documents"]))
    if outputs.get("model_dir"):
        model_dir = _resolve(run_dir, outputs["model_dir"])
        paths += sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name not in REWRITTEN_LATER)
    return {_relative(p, run_dir): {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in paths}


def check_done(run_dir: Path, cell: Path, config_hash: str, checksums: bool = True) -> DoneCheck:
    """Whether `cell` is finished with `config_hash`: DONE.json readable, same hash, every promised file intact.

    `checksums=False` checks sizes only (cheap enough for `status` on a large run)."""
    path = cell / DONE
    if not path.exists():
        return DoneCheck(None)
    done = read_json_object(path)
    if done is None:
        return DoneCheck(None, f"{DONE} is unreadable")
    if done.get("config_hash") != config_hash:
        return DoneCheck(None, "stale: finished with a different config")
    files = done.get("files")
    if not isinstance(files, dict):  # written before DONE.json listed its files: check the rows at least
        rows = (done.get("outputs") or {}).get("rows")
        if rows and not (cell / rows).is_file():
            return DoneCheck(None, f"{rows} is missing")
        return DoneCheck(done)
    for rel, want in files.items():
        problem = _file_problem(run_dir / rel, want, checksums)
        if problem:
            return DoneCheck(None, f"{rel} {problem}")
    return DoneCheck(done)


def _file_problem(path: Path, want: dict, checksums: bool) -> str:
    try:
        check_regular_file(path)  # BadFileError: a FIFO or device in a run is named, never read or rerun over
        size = path.stat().st_size
    except BadFileError:
        raise
    except OSError:
        return "is missing"
    if not isinstance(want, dict) or size != want.get("bytes"):
        return f"has {size} bytes, not the {want.get('bytes') if isinstance(want, dict) else '?'} it was written with"
    if checksums and sha256_file(path) != want.get("sha256"):
        return "has changed since it was written (sha256 differs)"
    return ""


def _resolve(run_dir: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else run_dir / p


def _relative(path: Path, run_dir: Path) -> str:
    try:
        return Path(os.path.relpath(path, run_dir)).as_posix()
    except ValueError:
        return str(path)
