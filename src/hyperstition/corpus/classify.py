"""`hyperstition classify`: label which documents of a user corpus discuss AI systems, as Parquet columns.

A Parquet input keeps all its columns and rows, with `ai_discourse` (bool) and `ai_discourse_score` (probability)
appended; JSONL, text folders and saved datasets become `source`, `text` and the two label columns. Written a batch
at a time, so a corpus larger than memory streams through.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..io import atomic_path
from .discourse import THRESHOLD, discourse_classifier
from .user_text import BATCH, UserTextError, read_records

LABEL, SCORE = "ai_discourse", "ai_discourse_score"
MAX_CHARS = 1_000_000  # longer JSONL lines are skipped and counted, as in a corpus build


def default_out(path: Path) -> Path:
    return path.with_name(f"{path.stem if path.is_file() else path.name}.{LABEL}.parquet")


def _labelled(batch: pa.RecordBatch | pa.Table, texts: list) -> pa.Table:
    """The batch with its label columns; an empty document is labelled false with score 0 (and counted)."""
    scored = discourse_classifier().scores([t or "" for t in texts])
    scores = [s if (t or "").strip() else 0.0 for s, t in zip(scored, texts)]
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    return table.append_column(LABEL, pa.array([s >= THRESHOLD for s in scores])).append_column(
        SCORE, pa.array(scores, pa.float64())
    )


def _parquet_tables(path: Path):
    try:
        pf = pq.ParquetFile(path)
    except pa.ArrowException as err:
        raise UserTextError(f"{path}: not a readable Parquet file ({err})") from None
    if "text" not in pf.schema_arrow.names:
        raise UserTextError(f"{path}: no `text` column (columns: {', '.join(pf.schema_arrow.names)})")
    kind = pf.schema_arrow.field("text").type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise UserTextError(f"{path}: the `text` column holds {kind}, not strings")
    clash = {LABEL, SCORE} & set(pf.schema_arrow.names)
    if clash:
        raise UserTextError(f"{path}: already has column(s) {', '.join(sorted(clash))}; drop them first")
    for batch in pf.iter_batches(batch_size=BATCH):
        yield _labelled(batch, batch.column("text").to_pylist())


def _record_tables(records):
    while batch := list(islice(records, BATCH)):
        table = pa.table({"source": [r.where for r in batch], "text": [r.text for r in batch]})
        yield _labelled(table, [r.text for r in batch])


def classify_file(path: str | Path, out: str | Path | None = None) -> dict:
    """Write the labelled table to `out` (default: next to the input); returns counts for the summary."""
    path = Path(path)
    out = Path(out) if out else default_out(path)
    if path.suffix.lower() in (".parquet", ".pq") and path.is_file():
        tables, stats = _parquet_tables(path), None
    else:
        records, stats = read_records(path, MAX_CHARS)
        tables = _record_tables(records)
    rows = ai = empty = 0
    writer = None
    with atomic_path(out) as tmp:
        try:
            for table in tables:
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table)
                rows += table.num_rows
                ai += sum(table.column(LABEL).to_pylist())
                empty += sum(not (t or "").strip() for t in table.column("text").to_pylist())
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise UserTextError(f"{path}: no documents to classify")
    skipped = {k: v for k, v in (stats.counts if stats else {}).items() if k != "records"}
    return {"input": str(path), "out": str(out), "rows": rows, "ai_discourse": ai, "empty": empty, "skipped": skipped}
