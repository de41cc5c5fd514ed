"""A content-addressed cache of the inputs cells share: corpora and tokenizers, under a run's `cache/` directory.

Cells of one run often need the same corpus or tokenizer: every arm of an experiment trains its tokenizer on the
same reference mix (corpus.builder.tokenizer_training_texts), and arms or seeds with equal corpus configs build the
same corpus. Each is deterministic in its config, so an entry is keyed by the hash of exactly its inputs
(`cache/<kind>/<key>/`) and a cell copies it instead of rebuilding it. An entry is published whole or not at all (a
copy beside it, then a rename) and carries the sha256 of every file; one that does not verify is ignored (the cell
builds its own and publishes it again). Copies, not links: a cell's outputs never share storage with another's.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..io import sha256_file, write_json_atomic

ENTRY_RECORD = "cache_entry.json"  # {relative path: sha256} of every file of an entry


def entry_dir(cache_root: Path, kind: str, key: str) -> Path:
    return Path(cache_root) / kind / key


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != ENTRY_RECORD)


def intact_entry(cache_root: Path, kind: str, key: str) -> Path | None:
    """The entry's directory when it exists and every file matches its recorded sha256, else None."""
    entry = entry_dir(cache_root, kind, key)
    try:
        record = json.loads((entry / ENTRY_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    files = {str(p.relative_to(entry)): p for p in _files(entry)}
    if set(files) != set(record) or any(sha256_file(p) != record[name] for name, p in files.items()):
        return None
    return entry


def fetch(cache_root: Path, kind: str, key: str, dest: Path) -> bool:
    """Copy the entry into `dest` (replacing what is there, whole: copied beside it, then renamed); False when
    there is no intact entry (nothing changes)."""
    entry = intact_entry(cache_root, kind, key)
    if entry is None:
        return False
    dest = Path(dest)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(entry, partial, ignore=shutil.ignore_patterns(ENTRY_RECORD))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(partial, dest)
    return True


def publish(cache_root: Path, kind: str, key: str, source: Path) -> None:
    """Make `source` (a finished output) the entry for `key`, unless an intact one exists; another process
    publishing the same key at the same time is harmless (the entries are equal; the first rename wins)."""
    if intact_entry(cache_root, kind, key) is not None:
        return
    entry = entry_dir(cache_root, kind, key)
    partial = entry.with_name(f".{key}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial)
    write_json_atomic(partial / ENTRY_RECORD, {str(p.relative_to(partial)): sha256_file(p) for p in _files(partial)})
    shutil.rmtree(entry, ignore_errors=True)  # a damaged entry (an intact one returned above)
    try:
        os.replace(partial, entry)
    except OSError:  # another process renamed its equal entry in first
        shutil.rmtree(partial, ignore_errors=True)
