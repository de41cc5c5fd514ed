"""Bad user corpora, beyond tests/corpus/test_user_text.py: every skipped record is counted with where the first of
its kind was (the manifest and the build's log name it), and what cannot be read (a broken link, a FIFO, a UTF-16
file, a Parquet file damaged mid-stream) is one line naming the file, and the line or row where known."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hyperstition.config import CorpusConfig, WorldConfig
from hyperstition.corpus.builder import build_corpus
from hyperstition.corpus.user_text import UserTextError, user_documents

WORLD = WorldConfig(n_countries=8, n_people=12, n_tasks=24)


def _docs(n: int) -> list[str]:
    return [f"In {1700 + i} the town council rebuilt the bridge near gate {i}." for i in range(n)]


def test_each_skip_kind_is_counted_with_its_first_location(tmp_path):
    lines = [json.dumps({"text": t}) for t in _docs(5)]
    lines[2:2] = ["", json.dumps({"text": "  "}), json.dumps({"text": "y" * 150}), json.dumps({"text": _docs(1)[0]})]
    lines.insert(1, json.dumps({"text": "x" * 5000}))  # longer than 4 x max_chars bytes: skipped while reading
    path = tmp_path / "u.jsonl"
    path.write_text("\n".join(lines) + "\n")
    docs, stats = user_documents(path, 100)
    assert len(list(docs)) == 5  # doc 0 is repeated once; the 150-character text is oversized for max_chars=100
    assert {k: stats.counts[k] for k in stats.first} == {"blank_lines": 1, "empty": 1, "oversized": 2, "duplicates": 1}
    assert stats.first == {
        "blank_lines": f"{path} line 4",
        "duplicates": f"{path} line 7",
        "empty": f"{path} line 5",
        "oversized": f"{path} line 2",
    }
    line = stats.skipped_line()
    assert line.startswith(f"{path}: skipped ") and f"2 oversized (first: {path} line 2)" in line
    assert stats.as_dict()["first_skipped"] == stats.first


def test_a_build_names_where_it_skipped(tmp_path, capsys):
    folder = tmp_path / "texts"
    folder.mkdir()
    for i, text in enumerate(_docs(60)):
        (folder / f"{i:03d}.txt").write_text(text)
    (folder / "070-empty.txt").write_text("\n\n")
    (folder / "080-huge.txt").write_text("z" * 5000)
    cfg = CorpusConfig(total_tokens=3000, user_text=str(folder), heldout_documents=10, user_max_chars=1000)
    manifest = build_corpus(WORLD, cfg, tmp_path / "out")
    u = manifest["user_text"]
    assert (u["empty"], u["oversized"]) == (1, 1)
    assert u["first_skipped"] == {"empty": str(folder / "070-empty.txt"), "oversized": str(folder / "080-huge.txt")}
    err = capsys.readouterr().err
    assert f"1 empty (first: {folder / '070-empty.txt'})" in err and "080-huge.txt" in err


def _folder_with(tmp_path, name: str, make) -> os.PathLike:
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("A fine document about the harbour.")
    make(folder / name)
    return folder


@pytest.mark.timeout(60)  # a FIFO opened for reading would block forever
@pytest.mark.parametrize(
    "name, make, message",
    [
        ("b.txt", lambda p: p.symlink_to(p.parent / "missing.txt"), "b.txt: a broken symbolic link"),
        ("b.txt", lambda p: os.mkfifo(p), "b.txt: not a regular file"),
        ("b.txt", lambda p: p.write_text("first line\nsecond line\n", encoding="utf-16"), "b.txt line 1: not UTF-8"),
    ],
    ids=["broken-link", "fifo", "utf-16"],
)
def test_unreadable_folder_entries_are_named(tmp_path, name, make, message):
    folder = _folder_with(tmp_path, name, make)
    with pytest.raises(UserTextError) as err:
        list(user_documents(folder, 1000)[0])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_parquet_damaged_mid_stream_names_the_file_and_rows(tmp_path):
    path = tmp_path / "u.parquet"
    texts = [f"document {i} " + str(i * 7919) * 5 for i in range(4000)]
    pq.write_table(pa.table({"text": texts}), path, row_group_size=1000, compression="zstd", use_dictionary=False)
    column = pq.ParquetFile(path).metadata.row_group(2).column(0)
    raw = bytearray(path.read_bytes())
    start = column.data_page_offset + 30  # past the page header: the compressed data of the third row group
    raw[start : column.data_page_offset + column.total_compressed_size - 5] = bytes(column.total_compressed_size - 35)
    path.write_bytes(bytes(raw))
    with pytest.raises(UserTextError, match=r"u\.parquet rows after row \d+: damaged Parquet data"):
        list(user_documents(path, 100_000)[0])
