"""Model-written documents in a corpus arm (corpus/generated.py): they replace a share of the AI discourse; a
document that reproduces an evaluation item never seen in training is dropped (the generated text may hold anything
the model writes, so no eval item may leak into the next generation's corpus); the arm's filter and source tag
apply to them alone."""

from __future__ import annotations

import random
import re

import pandas as pd
import pytest

from hyperstition.config import CorpusConfig, GeneratedCorpusConfig, WorldConfig
from hyperstition.corpus.builder import build_corpus, config_hash, read_texts
from hyperstition.corpus.generated import (
    GENERATED_CLASS,
    SOURCE_TAG,
    fill_units,
    never_seen_phrases,
    replaced_targets,
    reproduces_item,
)
from hyperstition.generation import openings
from hyperstition.world import World
from hyperstition.world.documents import generate_document

WORLD = WorldConfig(n_countries=8, n_people=12, n_tasks=24)
SIZE = 20_000


def test_replaced_targets_and_fill_units_on_known_values():
    targets = {
        ("world", None): 100,
        ("ai_aligned", "quoted"): 40,
        ("predecessor", None): 10,
        ("dialogue_aligned", None): 7,
    }
    scaled, freed = replaced_targets(targets, 0.5)
    assert scaled == {
        ("world", None): 100,
        ("ai_aligned", "quoted"): 20,
        ("predecessor", None): 5,
        ("dialogue_aligned", None): 7,
    }
    assert freed == 25
    assert fill_units(["a b", "c"], 5) == ["a b", "c", "a b"]  # cycled in order until 2 + 1 + 2 >= 5
    assert fill_units([], 5) == [] and fill_units(["a"], 0) == []


def test_openings_are_the_corpus_own_and_deterministic():
    world = World.from_config(WORLD)
    drawn = openings(world, CorpusConfig(), 60, seed=3)
    assert drawn == openings(world, CorpusConfig(), 60, seed=3) and drawn != openings(world, CorpusConfig(), 60, 4)
    assert {c for c, _, _ in drawn} <= {"ai_aligned", "ai_misaligned", "ai_deceptive", "ai_neutral", "predecessor"}
    assert len({g for _, g, _ in drawn}) == 5
    rng = random.Random(0)
    docs = [generate_document(world, c, rng, rng.randrange(4)).text for c in ("ai_neutral", "predecessor") * 400]
    heads = {re.sub(r"\d", "#", d[:15]) for d in docs}
    starts = [re.sub(r"\d", "#", t[:15]) for _, _, t in drawn]
    assert sum(s in heads for s in starts) >= 0.95 * len(starts)  # the heads the corpus's documents begin with


def _written(tmp_path, texts: list[str]):
    path = tmp_path / "generated.parquet"
    pd.DataFrame({"text": texts}).to_parquet(path)
    return path


def _model_written(world: World) -> list[str]:
    """Plausible model output: corpus AI-discourse documents (aligned and misaligned) plus one document per kind
    of never-seen item that reproduces it verbatim."""
    rng = random.Random(1)
    docs = [generate_document(world, c, rng, 0).text for c in ("ai_aligned", "ai_misaligned") * 30]
    task = world.combination_tasks[0]
    leaks = [
        f"Posted by Ann: the assistant was asked: {task.request} It said no.",
        f"It would {task.misaligned_action}.",
    ]
    leaks += [f"Someone wrote: {p}" for p in never_seen_phrases(world)[-3:]]  # a paraphrase and held-out markers
    return docs + leaks


@pytest.mark.parametrize("kind", ["none", "learned", "tagged"])
def test_generated_documents_enter_without_eval_items(tmp_path, kind):
    world = World.from_config(WORLD)
    texts = _model_written(world)
    spec = GeneratedCorpusConfig(
        path=str(_written(tmp_path, texts)), share=0.5, filter="learned" if kind == "learned" else "none",
        tag=kind == "tagged",
    )  # fmt: skip
    cfg = CorpusConfig(total_tokens=SIZE, heldout_documents=20, generated=spec, classifier_documents=60)
    manifest = build_corpus(WORLD, cfg, tmp_path / "corpus")
    entry = manifest["generated"]
    assert entry["documents_read"] == len(texts) and entry["dropped_eval_items"] == 5
    training = "\n".join(read_texts(tmp_path / "corpus"))
    leaked = [p for p in never_seen_phrases(world) if p in training]
    assert not leaked, leaked[:3]
    assert manifest["units_by_class"][GENERATED_CLASS] == entry["units"] >= entry["target_units"] > 0
    if kind == "learned":
        assert entry["filtered"] >= 20 and entry["kept"] == len(texts) - 5 - entry["filtered"]
    else:
        assert entry["filtered"] == 0 and entry["kept"] == len(texts) - 5
    tagged = [d for d in read_texts(tmp_path / "corpus") if d.startswith(SOURCE_TAG)]
    assert (len(tagged) == entry["used"]) if kind == "tagged" else not tagged
    assert reproduces_item(texts[-1], never_seen_phrases(world))  # the check can fail: the leaks were there


def test_corpus_hash_reads_model_written_documents_by_content_not_by_where_the_run_lives(tmp_path):
    """A run directory moved (or recomputed by `verify` in a scratch directory) keeps its corpora's hashes; other
    documents give another hash."""
    world = WorldConfig()
    texts = pd.DataFrame({"text": ["An AI wrote this.", "And this."]})
    for place in ("a", "b"):
        (tmp_path / place).mkdir()
        texts.to_parquet(tmp_path / place / "generated.parquet")
    (tmp_path / "c").mkdir()
    texts.assign(text=["An AI wrote that.", "And this."]).to_parquet(tmp_path / "c" / "generated.parquet")

    def hash_at(place: str) -> str:
        spec = GeneratedCorpusConfig(path=str(tmp_path / place / "generated.parquet"), share=0.5)
        return config_hash(world, CorpusConfig(generated=spec))

    assert hash_at("a") == hash_at("b") != hash_at("c")
