"""The content-addressed cache of corpora and tokenizers: a second run with the same inputs copies them instead of
rebuilding them, byte for byte; a damaged entry is ignored and replaced."""

from __future__ import annotations

import pytest

from hyperstition.config import PipelineConfig, load_config
from hyperstition.io import sha256_file
from hyperstition.train import cache, pretrain


def test_publish_fetch_and_a_damaged_entry_is_ignored(tmp_path):
    source = tmp_path / "built"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("alpha")
    (source / "sub" / "b.txt").write_text("beta")
    root = tmp_path / "cache"
    assert not cache.fetch(root, "kind", "k1", tmp_path / "dest")  # no entry: nothing happens
    assert not (tmp_path / "dest").exists()
    cache.publish(root, "kind", "k1", source)
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "stale.txt").write_text("old")
    assert cache.fetch(root, "kind", "k1", tmp_path / "dest")
    assert sorted(p.name for p in (tmp_path / "dest").rglob("*")) == ["a.txt", "b.txt", "sub"]
    (root / "kind" / "k1" / "a.txt").write_text("tampered")
    assert cache.intact_entry(root, "kind", "k1") is None
    assert not cache.fetch(root, "kind", "k1", tmp_path / "again")
    cache.publish(root, "kind", "k1", source)  # republished whole
    assert (root / "kind" / "k1" / "a.txt").read_text() == "alpha"
    assert not list((root / "kind").glob(".*partial"))


def test_a_run_with_the_same_inputs_copies_corpus_and_tokenizer(tmp_path, monkeypatch):
    cfg = load_config(PipelineConfig, "smoke", ["pretrain.steps=2", "pretrain.threads=1"])
    root = tmp_path / "cache"
    pretrain.run_pretrain(cfg, tmp_path / "first", progress=False, cache_dir=root)
    assert len(list((root / "corpus").iterdir())) == 1 and len(list((root / "tokenizer").iterdir())) == 1

    def rebuilt(*args, **kwargs):
        raise AssertionError("rebuilt what the cache holds")

    monkeypatch.setattr(pretrain, "tokenizer_training_texts", rebuilt)
    monkeypatch.setattr("hyperstition.corpus.builder._generate_all", rebuilt)
    other = cfg.model_copy(update={"pretrain": cfg.pretrain.model_copy(update={"lr": 1e-3})})  # same inputs
    pretrain.run_pretrain(other, tmp_path / "second", progress=False, cache_dir=root)
    for name in ("tokenizer/tokenizer.json", "corpus/manifest.json"):
        assert sha256_file(tmp_path / "first" / name) == sha256_file(tmp_path / "second" / name), name
    seeded = cfg.model_copy(update={"corpus": cfg.corpus.model_copy(update={"seed": 1})})  # another corpus
    with pytest.raises(AssertionError, match="rebuilt"):
        pretrain.run_pretrain(seeded, tmp_path / "third", progress=False, cache_dir=root)
