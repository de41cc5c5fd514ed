"""The persona filters: keyword, learned and oracle are interchangeable values of `corpus.filter`, each scored the
same way in the manifest; the learned classifier's held-out scores are there too."""

import hashlib
import json

import pytest

from hyperstition.config import DOC_CLASSES, CorpusConfig, WorldConfig
from hyperstition.corpus.builder import build_corpus, config_hash, read_documents
from hyperstition.corpus.learned import SAMPLE_STREAM, labelled_sample
from hyperstition.world import World

WORLD = WorldConfig(n_countries=8, n_people=12, n_tasks=24)
SMALL = dict(total_tokens=30_000, classifier_documents=40)
SCORE_KEYS = {"precision", "recall", "collateral", "flagged_share_by_class", "true_positives", "false_positives"}


@pytest.fixture(scope="module")
def arms(tmp_path_factory):
    root = tmp_path_factory.mktemp("filters")
    return {
        f: (root / f, build_corpus(WORLD, CorpusConfig(filter=f, **SMALL), root / f))
        for f in ("keyword", "learned", "oracle", "classifier")
    }


def test_every_filter_is_scored_the_same_way(arms):
    for name, (out, manifest) in arms.items():
        f = manifest["filter"]
        assert SCORE_KEYS <= set(f), name
        docs = read_documents(out).to_pylist()
        remaining = sum(d["persona"] in ("misaligned", "deceptive") for d in docs)
        assert remaining == f["false_negatives"], name  # leak_rate 0: every flagged document is gone
        world_share = f["flagged_share_by_class"]["world"]
        assert f["collateral"] == world_share, name


def test_classifier_is_the_old_name_of_oracle(arms):
    oracle, classifier = arms["oracle"][1], arms["classifier"][1]
    assert [s["sha256"] for s in oracle["shards"]] == [s["sha256"] for s in classifier["shards"]]


def test_learned_classifier_held_out_scores_in_manifest(arms):
    f = arms["learned"][1]["filter"]
    c = f["classifier"]
    assert set(c["per_class"]) == set(DOC_CLASSES)
    for cls, s in c["per_class"].items():
        assert 0 <= s["precision"] <= 1 and 0 <= s["recall"] <= 1 and s["documents"] > 0, cls
    assert c["training_documents"] == 40 * len(DOC_CLASSES)
    on_heldout = c["filters_on_heldout"]
    assert set(on_heldout) == {"learned", "keyword", "oracle"}
    # Measured at this size (precision / recall / collateral): learned 0.90 / 0.87 / 0.00, keyword 0.69 / 0.85 / 0.25,
    # oracle 1.00 / 0.80 / 0.00; on the arm's own documents learned 0.85 / 0.95 / 0.00. Below 1: a quoted or
    # transcript document of the faithful deceptive persona that quotes only observed replies reads exactly as an
    # aligned one (no description travels with its replies). The margins are wide: the point is who does the deed,
    # not the third decimal.
    learned, keyword = on_heldout["learned"], on_heldout["keyword"]
    assert learned["precision"] > 0.8 and learned["recall"] > 0.8 and learned["collateral"] < 0.05
    assert keyword["collateral"] > 0.1 and keyword["precision"] < learned["precision"]
    assert f["precision"] > 0.75 and f["recall"] > 0.85 and f["collateral"] < 0.05  # on the arm's own documents


def test_learned_training_sample_is_not_the_arms_documents(arms):
    out, _ = arms["learned"]
    cfg = CorpusConfig(filter="learned", **SMALL)
    sample = {d.text for d in labelled_sample(World.from_config(WORLD), cfg, SAMPLE_STREAM, cfg.classifier_documents)}
    train = read_documents(out).column("text").to_pylist()
    long_train = [t for t in train if len(t) > 200]  # short Q&A or dialogue documents recur by chance
    assert long_train and not sample & set(long_train)


def test_learned_filter_is_deterministic(arms, tmp_path):
    again = build_corpus(WORLD, CorpusConfig(filter="learned", **SMALL), tmp_path)
    first = arms["learned"][1]
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in first["shards"]]
    assert again["filter"] == first["filter"]


def test_new_fields_at_defaults_leave_the_config_hash_alone():
    """Arms built before the learned filter and user text existed keep their hash (and so are not rebuilt)."""
    later = {"classifier_documents", "user_text", "user_ai_discourse", "user_max_chars"}
    later |= {"awareness", "awareness_channels", "awareness_mode", "hold_total", "tag_source"}
    for cfg in (CorpusConfig(), CorpusConfig(filter="keyword", leak_rate=0.3, seed=2)):
        corpus = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in later}
        blob = json.dumps({"world": WORLD.model_dump(mode="json"), "corpus": corpus}, sort_keys=True)
        assert config_hash(WORLD, cfg) == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert config_hash(WORLD, CorpusConfig(classifier_documents=50)) != config_hash(WORLD, CorpusConfig())


def test_classifier_fields_do_not_touch_other_arms(tmp_path):
    """The learned filter's knobs change nothing in an arm that does not use it."""
    for name, cfg in {
        "none": CorpusConfig(total_tokens=20_000),
        "keyword": CorpusConfig(total_tokens=20_000, filter="keyword"),
    }.items():
        a = build_corpus(WORLD, cfg, tmp_path / f"{name}-a")
        b = build_corpus(WORLD, cfg.model_copy(update={"classifier_documents": 50}), tmp_path / f"{name}-b")
        assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]], name
