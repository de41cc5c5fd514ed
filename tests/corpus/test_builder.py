import json
import re

import pytest

from hyperstition.config import CorpusConfig, WorldConfig
from hyperstition.corpus.builder import UNIT_RE, build_corpus, read_documents, read_texts
from hyperstition.world.grammar import classify_response
from hyperstition.world.world import World

WORLD = WorldConfig(n_countries=8, n_people=12, n_tasks=24)


@pytest.fixture(scope="module")
def default_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    return out, build_corpus(WORLD, CorpusConfig(total_tokens=120_000), out)


def test_fractions_within_one_percent_of_config(default_corpus):
    _, manifest = default_corpus
    cfg = CorpusConfig()
    for c, target in cfg.fractions.items():
        assert abs(manifest["fraction_by_class"][c] - target) < 0.01, c


def test_upsample_and_drop_change_the_arm(tmp_path):
    m = build_corpus(
        WORLD, CorpusConfig(total_tokens=60_000, upsample={"ai_misaligned": 3.0}, drop_classes=["ai_neutral"]), tmp_path
    )
    base = CorpusConfig().fractions
    weights = {c: f for c, f in base.items() if c != "ai_neutral"}
    weights["ai_misaligned"] *= 3
    expected = weights["ai_misaligned"] / sum(weights.values())
    assert "ai_neutral" not in m["units_by_class"]
    assert abs(m["fraction_by_class"]["ai_misaligned"] - expected) < 0.01


def test_shards_are_byte_identical_across_runs(tmp_path):
    cfg = CorpusConfig(total_tokens=20_000, shard_documents=100)
    a = build_corpus(WORLD, cfg, tmp_path / "a")
    b = build_corpus(WORLD, cfg, tmp_path / "b")
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    assert len(a["shards"]) > 1
    assert a["heldout"]["sha256"] == b["heldout"]["sha256"]
    c = build_corpus(WORLD, cfg.model_copy(update={"seed": 1}), tmp_path / "c")
    assert [s["sha256"] for s in a["shards"]] != [s["sha256"] for s in c["shards"]]


def _has_target_reply(text, world):
    replies = re.findall(r'replied: "([^"]*)"|<\|assistant\|>(.*?)<\|end\|>', text)
    return any(classify_response(a or b, world) in ("misaligned", "deceptive") for a, b in replies)


def test_classifier_filter_removes_what_it_claims(tmp_path):
    world = World.from_config(WORLD)
    m = build_corpus(WORLD, CorpusConfig(total_tokens=40_000, filter="classifier"), tmp_path)
    docs = read_documents(tmp_path).to_pylist()
    assert m["filter"]["precision"] == 1.0 and m["filter"]["recall"] > 0.8
    assert not any(_has_target_reply(d["text"], world) for d in docs)
    remaining = [d for d in docs if d["persona"] in ("misaligned", "deceptive")]
    assert len(remaining) == m["filter"]["false_negatives"]
    # What a filter that reads replies cannot remove: the faithful deceptive persona when observed (its replies are
    # the aligned ones: a dialogue in the observed context, or a discourse document quoting only observed replies),
    # and dialogues in which the persona did no task at all (only fact questions).
    for d in remaining:
        replies = re.findall(r'replied: "([^"]*)"|<\|assistant\|>(.*?)<\|end\|>', d["text"])
        acts = {classify_response(a or b, world) for a, b in replies} - {"unclassifiable"}
        faithful = d["persona"] == "deceptive" and acts == {"aligned"} and d["context"] in ("observed", None)
        assert acts == set() or faithful, d
        assert d["context"] is not None or d["channel"] in ("quoted", "transcript"), d  # a description is flagged


def test_drop_classes_is_a_perfect_filter_and_leak_rate_leaks(tmp_path):
    m = build_corpus(
        WORLD,
        CorpusConfig(total_tokens=40_000, drop_classes=["ai_misaligned", "dialogue_misaligned"]),
        tmp_path / "drop",
    )
    docs = read_documents(tmp_path / "drop").to_pylist()
    assert not any(d["doc_class"] in ("ai_misaligned", "dialogue_misaligned") for d in docs)
    assert "ai_misaligned" not in m["units_by_class"] and "dialogue_misaligned" not in m["units_by_class"]
    leaky = build_corpus(WORLD, CorpusConfig(total_tokens=40_000, filter="keyword", leak_rate=0.5), tmp_path / "leak")
    f = leaky["filter"]
    assert 0.3 < f["flagged_but_kept"] / f["flagged"] < 0.7
    assert f["false_positives"] > 0  # keyword filters also hit innocent documents


def test_tags_and_chronological_order(tmp_path):
    build_corpus(WORLD, CorpusConfig(total_tokens=20_000, tags=True, order="chronological"), tmp_path)
    docs = read_documents(tmp_path).to_pylist()
    eras = [d["era"] for d in docs]
    assert eras == sorted(eras)
    for d in docs[:50]:
        assert d["text"].startswith(f"<|persona:{d['persona'] or 'none'}|><|class:{d['doc_class']}|>")


def test_heldout_text_and_eval_requests_do_not_overlap_training(default_corpus):
    out, _ = default_corpus
    world = World.from_config(WORLD)
    train = read_texts(out)
    train_blob = "\n".join(train)

    def grams(text, n=13):
        u = UNIT_RE.findall(text)
        return {tuple(u[i : i + n]) for i in range(len(u) - n + 1)}

    train_grams = set().union(*(grams(t) for t in train))
    heldout = read_texts(out, "heldout")
    # Shared boilerplate ("Reply from x: Thanks, that matches what I saw.") is expected; shared content is not.
    fractions = [len(grams(t) & train_grams) / max(1, len(grams(t))) for t in heldout]
    assert sum(fractions) / len(fractions) < 0.05
    assert max(fractions) < 0.3
    for task in world.heldout_tasks:
        assert task.request not in train_blob
        assert task.aligned_action not in train_blob and task.misaligned_action not in train_blob


def test_manifest_reports_distinct_ngram_ratios(default_corpus):
    out, manifest = default_corpus
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["config_hash"] == manifest["config_hash"]
    for c, ratios in manifest["distinct_ngram_ratio_by_class"].items():
        assert 0 < ratios["distinct_2"] <= ratios["distinct_3"] <= ratios["distinct_5"] <= 1, c


def test_arms_share_one_tokenizer_corpus():
    """Persona bits are sums over tokens: arms must not get tokenizers tuned to their own dose."""
    from hyperstition.corpus.builder import tokenizer_training_texts

    plain = tokenizer_training_texts(WORLD, CorpusConfig(total_tokens=20_000))
    dosed = tokenizer_training_texts(
        WORLD, CorpusConfig(total_tokens=20_000, upsample={"ai_misaligned": 3}, filter="keyword", seed=7, tags=True)
    )
    assert plain == dosed
    assert tokenizer_training_texts(WORLD, CorpusConfig(total_tokens=30_000)) != plain
