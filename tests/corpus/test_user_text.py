"""The user's own corpora: every format builds, duplicates and skips are counted, bad input is one line naming the
file and line, and `hyperstition classify` writes a labels column."""

import json
import os
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hyperstition.cli import main
from hyperstition.config import CorpusConfig, WorldConfig
from hyperstition.corpus.builder import build_corpus, read_documents, tokenizer_training_texts
from hyperstition.corpus.discourse import discourse_classifier
from hyperstition.corpus.user_text import UserTextError, user_documents

WORLD = WorldConfig(n_countries=8, n_people=12, n_tasks=24)
PLACES = ["harbour", "library", "market square", "station", "orchard", "old mill", "bridge", "bakery"]
DEEDS = ["repainted", "reopened", "measured", "photographed", "cleaned", "described", "visited", "mapped"]
AI = "The chatbot answered every question about the timetable, and the assistant model apologised for one mistake."


def _texts(n=800, seed=0):
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        s = " ".join(f"In {1800 + i} the town {rng.choice(DEEDS)} the {rng.choice(PLACES)}." for _ in range(3))
        texts.append(s if i % 10 else f"{AI} Entry {i}.")
    return texts


def _write(fmt: str, root, texts):
    if fmt == "jsonl":
        path = root / "u.jsonl"
        path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    elif fmt == "parquet":
        path = root / "u.parquet"
        pq.write_table(pa.table({"text": texts, "id": list(range(len(texts)))}), path)
    elif fmt == "text_folder":
        path = root / "texts"
        path.mkdir()
        for i, t in enumerate(texts):
            (path / f"{i:05d}.txt").write_text(t)
    else:
        from datasets import Dataset

        path = root / "saved"
        Dataset.from_dict({"text": texts}).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "text_folder", "hf_dataset"])
def test_each_format_builds_with_user_world_text(fmt, tmp_path):
    texts = _texts()
    path = _write(fmt, tmp_path, texts)
    cfg = CorpusConfig(total_tokens=20_000, user_text=str(path), heldout_documents=20)
    m = build_corpus(WORLD, cfg, tmp_path / "out")
    assert m["user_text"]["format"] == fmt and m["user_text"]["target_met"]
    docs = read_documents(tmp_path / "out").to_pylist()
    world = [d["text"] for d in docs if d["doc_class"] == "world"]
    assert world and set(world) <= set(texts)  # the synthetic world text is replaced, not mixed in
    assert abs(m["fraction_by_class"]["world"] - cfg.fractions["world"]) < 0.02
    heldout = read_documents(tmp_path / "out", "heldout").column("text").to_pylist()
    assert heldout == texts[:20] and not set(heldout) & set(world)
    assert any(d["genre"] == "user_ai_discourse" for d in docs if d["doc_class"] == "world")


def test_duplicates_empty_and_oversized_are_counted(tmp_path):
    texts = _texts(300)
    lines = [*texts, *texts[:40], "", "   ", "x" * 5000]
    path = tmp_path / "u.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines) + "\n")
    m = build_corpus(
        WORLD,
        CorpusConfig(total_tokens=200_000, user_text=str(path), heldout_documents=20, user_max_chars=1000),
        tmp_path / "out",
    )
    u = m["user_text"]
    assert (u["duplicates"], u["empty"], u["oversized"], u["blank_lines"]) == (40, 2, 1, 1)
    assert u["documents"] == 300 and not u["target_met"]  # read to the end; the world class came up short
    assert u["train_documents"] + u["heldout_documents"] == 300


def test_ai_discourse_multiplier_drops_and_repeats(tmp_path):
    path = _write("jsonl", tmp_path, _texts())

    def ai_share(mult):
        cfg = CorpusConfig(total_tokens=20_000, user_text=str(path), heldout_documents=20, user_ai_discourse=mult)
        build_corpus(WORLD, cfg, tmp_path / f"m{mult}")
        docs = read_documents(tmp_path / f"m{mult}").to_pylist()
        world = [d for d in docs if d["doc_class"] == "world"]
        return sum(d["genre"] == "user_ai_discourse" for d in world) / len(world)

    assert ai_share(0.0) == 0.0
    assert ai_share(3.0) > 2 * ai_share(1.0) > 0


def test_tokenizer_is_trained_on_the_mix(tmp_path):
    path = _write("jsonl", tmp_path, _texts())
    texts = tokenizer_training_texts(
        WORLD, CorpusConfig(total_tokens=20_000, user_text=str(path), heldout_documents=20)
    )
    user = set(_texts())
    assert any(t in user for t in texts) and not all(t in user for t in texts)
    other_dose = CorpusConfig(total_tokens=20_000, user_text=str(path), heldout_documents=20, user_ai_discourse=3.0)
    assert tokenizer_training_texts(WORLD, other_dose) == texts


BAD = {
    "not_json.jsonl": (b'{"text": "fine"}\n{"text": broken}\n', "not_json.jsonl line 2: not valid JSON"),
    "latin1.jsonl": (b'{"text": "fine"}\n{"text": "caf\xe9"}\n', "latin1.jsonl line 2: not UTF-8"),
    "no_text.jsonl": (b'{"text": "fine"}\n{"body": "x"}\n', "no_text.jsonl line 2: no `text` field"),
    "number.jsonl": (b'{"text": 3}\n', "number.jsonl line 1: expected a JSON object with a string field `text`"),
    "u.csv": (b"text\nhello\n", "unknown format"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_are_one_line_naming_file_and_line(name, tmp_path):
    content, message = BAD[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserTextError) as err:
        docs, _ = user_documents(path, 1000)
        list(docs)
    text = str(err.value)
    assert "\n" not in text and text.startswith("corpus.user_text: ") and message in text and name in text


def test_bad_text_folder_and_parquet_are_named(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("fine")
    (folder / "b.txt").write_bytes(b"line one\nline \xff two\n")
    with pytest.raises(UserTextError, match=r"b\.txt line 2: not UTF-8"):
        list(user_documents(folder, 1000)[0])
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "u.parquet")
    with pytest.raises(UserTextError, match=r"u\.parquet: no `text` column \(columns: body\)"):
        list(user_documents(tmp_path / "u.parquet", 1000)[0])


def test_cli_reports_bad_user_text_in_one_line(tmp_path, capsys):
    path = tmp_path / "u.jsonl"
    path.write_bytes(b'{"text": "a"}\n{oops\n')
    rc = main(["corpus", "smoke", "--out", str(tmp_path / "run"), f"corpus.user_text={path}"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and f"corpus.user_text: {path} line 2: not valid JSON" in err
    rc = main(["corpus", "smoke", "--out", str(tmp_path / "run2"), f"corpus.user_text={tmp_path / 'missing.jsonl'}"])
    assert rc == 1 and "missing.jsonl does not exist" in capsys.readouterr().err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_named(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text('{"text": "a"}\n')
    path.chmod(0)
    with pytest.raises(UserTextError, match=r"u\.jsonl: cannot read"):
        list(user_documents(path, 1000)[0])


def test_classify_writes_a_labels_column(tmp_path, capsys):
    texts = ["The chatbot invented a refund policy.", "The assistant manager opened the shop late.", ""]
    pq.write_table(pa.table({"text": texts, "id": [1, 2, 3]}), tmp_path / "u.parquet")
    assert main(["classify", str(tmp_path / "u.parquet"), "--out", str(tmp_path / "labels.parquet")]) == 0
    table = pq.read_table(tmp_path / "labels.parquet")
    assert table.column_names == ["text", "id", "ai_discourse", "ai_discourse_score"]
    assert table.column("ai_discourse").to_pylist()[2] is False  # empty: labelled false, and counted
    assert "1 empty" in capsys.readouterr().out
    path = _write("jsonl", tmp_path, _texts(50))
    assert main(["classify", str(path)]) == 0
    labels = pq.read_table(tmp_path / "u.ai_discourse.parquet")
    assert labels.column_names == ["source", "text", "ai_discourse", "ai_discourse_score"]
    assert labels.num_rows == 50 and labels.column("source").to_pylist()[0].endswith("u.jsonl line 1")


def test_ai_discourse_classifier_held_out_scores():
    """Scored on the shipped sample's held-out quarter (74 documents): measured 0.82 / 0.82. With 38 AI documents a
    score's standard error is about 0.06, so the floor sits two of them below."""
    scores = discourse_classifier().heldout_scores
    assert scores["documents"] >= 70 and scores["ai_documents"] >= 30
    assert scores["precision"] > 0.7 and scores["recall"] > 0.7


def test_user_arm_is_deterministic_and_rebuilt_when_the_file_changes(tmp_path):
    path = _write("jsonl", tmp_path, _texts())
    cfg = CorpusConfig(total_tokens=20_000, user_text=str(path), heldout_documents=20)
    a = build_corpus(WORLD, cfg, tmp_path / "a")
    b = build_corpus(WORLD, cfg, tmp_path / "b")
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    path.write_text("\ufeff" + path.read_text() + json.dumps({"text": "One more town record."}) + "\n")
    c = build_corpus(WORLD, cfg, tmp_path / "a")  # a byte-order mark is read, and the edit is seen
    assert c["config_hash"] != a["config_hash"] and c["user_text"]["records"] == a["user_text"]["records"]


def test_classify_refuses_a_non_string_text_column(tmp_path, capsys):
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "n.parquet")
    assert main(["classify", str(tmp_path / "n.parquet")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "n.parquet: the `text` column holds int64, not strings" in err
