"""The user's own world text: JSONL, Parquet, a folder of text files or a `datasets.save_to_disk` directory.

Read as a stream (a line, a record batch or a file at a time), so a corpus larger than memory is never loaded
whole. Malformed input (unreadable, not UTF-8, not JSON, no `text` field) is an error of one line naming the file
and line; empty and oversized documents and exact duplicates are skipped and counted in `UserTextStats`, which the
manifest records.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..config import UserError

FIELD = "corpus.user_text"
BATCH = 1024
FORMATS = ("jsonl", "parquet", "text_folder", "hf_dataset")


class UserTextError(UserError, ValueError):
    """User text that cannot be read; the message names the config field, the file and the line."""


@dataclass(frozen=True)
class Record:
    text: str
    where: str  # "FILE line N", "FILE row N" or "FILE"


@dataclass
class UserTextStats:
    """What reading the user text found; every skipped document is counted here, never silently dropped."""

    path: str
    format: str
    files: int = 0
    counts: Counter = field(default_factory=Counter)  # records, empty, oversized, duplicates, documents
    first: dict[str, str] = field(default_factory=dict)  # skip kind -> where the first one was ("FILE line N")

    def skip(self, kind: str, where: str) -> None:
        """Count one skipped record of `kind`, remembering where the first one was (the report names it)."""
        self.counts[kind] += 1
        self.first.setdefault(kind, where)

    def skipped_line(self) -> str | None:
        """`skipped 2 empty (first: FILE line 4), 1 oversized (first: ...)`, or None when nothing was skipped."""
        parts = [f"{self.counts[k]} {k} (first: {where})" for k, where in sorted(self.first.items())]
        return f"{self.path}: skipped " + ", ".join(parts) if parts else None

    def as_dict(self) -> dict:
        out = {"path": self.path, "format": self.format, "files": self.files, **dict(sorted(self.counts.items()))}
        return out | ({"first_skipped": dict(sorted(self.first.items()))} if self.first else {})


def detect_format(path: Path) -> str:
    """jsonl, parquet, text_folder or hf_dataset, from what the path is; a one-line error otherwise."""
    if not path.exists():
        raise UserTextError(f"{FIELD}: {path} does not exist")
    if path.is_dir():
        if (path / "dataset_dict.json").exists():
            raise UserTextError(
                f"{FIELD}: {path} is a DatasetDict (several splits); save one split with save_to_disk, give its folder"
            )
        return "hf_dataset" if (path / "state.json").exists() else "text_folder"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        return "parquet"
    raise UserTextError(
        f"{FIELD}: {path}: unknown format (suffix {path.suffix or 'none'}); give a .jsonl or .parquet file, a folder "
        "of text files, or a folder written by datasets' save_to_disk"
    )


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserTextError(
            f"{FIELD}: {where}: not UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start}); convert the file to UTF-8"
        ) from None


def _lines(path: Path, max_bytes: int, stats: UserTextStats) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each line, reading at most `max_bytes` of any line; longer lines are skipped (the
    rest of them read and dropped in chunks) and counted as oversized."""
    with open(path, "rb") as f:
        number = 0
        while True:
            raw = f.readline(max_bytes + 1)
            if not raw:
                return
            number += 1
            if len(raw) > max_bytes and not raw.endswith(b"\n"):
                while (chunk := f.readline(1 << 20)) and not chunk.endswith(b"\n"):
                    pass
                stats.skip("oversized", f"{path} line {number}")
                continue
            yield number, raw


def _jsonl(path: Path, max_chars: int, stats: UserTextStats) -> Iterator[Record]:
    stats.files = 1
    for number, raw in _lines(path, 4 * max_chars, stats):
        where = f"{path} line {number}"
        line = _decode(raw, where).strip().lstrip("\ufeff")  # a byte-order mark some editors write first
        if not line:
            stats.skip("blank_lines", where)
            continue
        try:
            obj = json.loads(line)
        except ValueError as err:
            raise UserTextError(f"{FIELD}: {where}: not valid JSON ({err})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), (str, type(None))):
            raise UserTextError(f"{FIELD}: {where}: expected a JSON object with a string field `text`")
        if "text" not in obj:
            raise UserTextError(f"{FIELD}: {where}: no `text` field (fields: {', '.join(sorted(obj)) or 'none'})")
        yield Record(obj["text"] or "", where)


def _text_column(batches: Iterator, path: Path, what: str) -> Iterator[Record]:
    row = 0
    for batch in batches:
        for text in batch:
            row += 1
            if text is not None and not isinstance(text, str):
                raise UserTextError(f"{FIELD}: {path} row {row}: `text` is {type(text).__name__}, not a string")
            yield Record(text or "", f"{path} {what} {row}")


def _parquet(path: Path, max_chars: int, stats: UserTextStats) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    stats.files = 1
    try:
        pf = pq.ParquetFile(path)
    except pa.ArrowException as err:
        raise UserTextError(f"{FIELD}: {path}: not a readable Parquet file ({err})") from None
    if "text" not in pf.schema_arrow.names:
        raise UserTextError(f"{FIELD}: {path}: no `text` column (columns: {', '.join(pf.schema_arrow.names)})")
    batches = (b.column(0).to_pylist() for b in pf.iter_batches(batch_size=BATCH, columns=["text"]))
    try:
        yield from _text_column(batches, path, "row")
    except (pa.ArrowException, OSError) as err:  # a damaged page found mid-stream: where the last good row was
        raise UserTextError(
            f"{FIELD}: {path} rows after row {stats.counts['records']}: damaged Parquet data ({err})".splitlines()[0]
        ) from None


def _hf_dataset(path: Path, max_chars: int, stats: UserTextStats) -> Iterator[Record]:
    from datasets import load_from_disk

    try:
        ds = load_from_disk(str(path))
    except (OSError, ValueError, FileNotFoundError) as err:
        raise UserTextError(f"{FIELD}: {path}: not a readable save_to_disk dataset ({err})") from None
    stats.files = len(ds.cache_files)
    if "text" not in ds.column_names:
        raise UserTextError(f"{FIELD}: {path}: no `text` column (columns: {', '.join(ds.column_names)})")
    batches = (b["text"] for b in ds.select_columns(["text"]).iter(batch_size=BATCH))
    yield from _text_column(batches, path, "row")


def text_files(path: Path) -> list[Path]:
    """Every entry under the folder that is not a folder, in sorted order, hidden ones (.git, .DS_Store) excluded;
    what is not a regular file (a broken link, a FIFO) is listed too, so the reader names it instead of passing over
    it in silence."""
    return sorted(
        p
        for p in path.rglob("*")
        if not p.is_dir() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )


def _text_folder(path: Path, max_chars: int, stats: UserTextStats) -> Iterator[Record]:
    files = text_files(path)
    stats.files = len(files)
    if not files:
        raise UserTextError(f"{FIELD}: {path}: the folder holds no files")
    for f in files:
        if not f.is_file():  # a FIFO would block forever, a broken link cannot be read: named, never skipped silently
            what = "a broken symbolic link" if f.is_symlink() and not f.exists() else "not a regular file"
            raise UserTextError(f"{FIELD}: {f}: {what}; remove it from the folder or point corpus.user_text elsewhere")
        if f.stat().st_size > 4 * max_chars:
            stats.skip("oversized", str(f))
            continue
        raw = f.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise UserTextError(
                f"{FIELD}: {f} line {line}: not UTF-8 (byte 0x{raw[err.start]:02x}); convert the file to UTF-8"
            ) from None
        yield Record(text.lstrip("\ufeff"), str(f))


READERS: dict[str, Callable[[Path, int, UserTextStats], Iterator[Record]]] = {
    "jsonl": _jsonl,
    "parquet": _parquet,
    "text_folder": _text_folder,
    "hf_dataset": _hf_dataset,
}


def read_records(path: str | Path, max_chars: int) -> tuple[Iterator[Record], UserTextStats]:
    """Every record of the user text in file order (empty ones included), and the stats it fills as it streams."""
    p = Path(path)
    fmt = detect_format(p)
    stats = UserTextStats(str(p), fmt)

    def records() -> Iterator[Record]:
        try:
            for rec in READERS[fmt](p, max_chars, stats):
                stats.counts["records"] += 1
                yield rec
        except OSError as err:
            raise UserTextError(f"{FIELD}: {err.filename or p}: cannot read ({err.strerror or err})") from None

    return records(), stats


def user_documents(path: str | Path, max_chars: int) -> tuple[Iterator[str], UserTextStats]:
    """The documents of the user text: empty and oversized ones skipped, exact duplicates (sha256 of the text)
    dropped after their first occurrence, each skip counted in the stats."""
    records, stats = read_records(path, max_chars)

    def documents() -> Iterator[str]:
        seen: set[bytes] = set()
        for rec in records:
            if not rec.text.strip():
                stats.skip("empty", rec.where)
                continue
            if len(rec.text) > max_chars:
                stats.skip("oversized", rec.where)
                continue
            digest = hashlib.sha256(rec.text.encode("utf-8")).digest()
            if digest in seen:
                stats.skip("duplicates", rec.where)
                continue
            seen.add(digest)
            stats.counts["documents"] += 1
            yield rec.text

    return documents(), stats


def fingerprint(path: str | Path) -> list:
    """Name, size and modification time of every file the user text reads, so a changed file rebuilds the arm."""
    p = Path(path)
    files = [p] if p.is_file() else text_files(p) if p.is_dir() else []
    return [[str(f), *_size_and_mtime(f)] for f in files]


def _size_and_mtime(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:  # a broken link: the reader names it when the corpus is built
        return -1, -1
    return st.st_size, st.st_mtime_ns
