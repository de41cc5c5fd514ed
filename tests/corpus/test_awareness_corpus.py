"""`corpus.awareness` and `corpus.hold_total`: the aware arm keeps every other stream byte-identical and the same
misaligned documents (each now followed by its consequence and critique), records its share in the manifest, shares
the tokenizer of every arm, and `hold_total` brings aware and filtered arms to the same total as the natural one."""

from __future__ import annotations

import pytest

from hyperstition.config import ConfigError, CorpusConfig, PipelineConfig, WorldConfig, validate
from hyperstition.corpus.awareness import AWARE_CLASS, added_units
from hyperstition.corpus.builder import (
    _generate_all,
    build_corpus,
    config_hash,
    read_documents,
    stream_targets,
    tokenizer_training_texts,
)
from hyperstition.corpus.units import count_units
from hyperstition.world.awareness import critique_start
from hyperstition.world.world import World

WORLD = WorldConfig(n_countries=8, n_people=12, n_tasks=24)
SIZE = 30_000


def _streams(**corpus) -> dict:
    cfg = CorpusConfig(total_tokens=SIZE, **corpus)
    generated, _, _ = _generate_all(World.from_config(WORLD), cfg, stream_targets(WORLD, cfg))
    return generated


def test_awareness_leaves_every_other_stream_byte_identical_and_keeps_the_documents():
    plain, aware = _streams(), _streams(awareness=1.0)
    assert plain.keys() == aware.keys()
    for doc_class in plain:
        if doc_class != AWARE_CLASS:
            assert aware[doc_class] == plain[doc_class], doc_class
    before, after = plain[AWARE_CLASS], aware[AWARE_CLASS]
    assert len(before) == len(after)  # the same documents: counted by their own text toward the stream's target
    rewritten = 0
    for a, b in zip(before, after, strict=True):
        assert (a.channel, a.era, a.genre, a.persona) == (b.channel, b.era, b.genre, b.persona)
        if a.channel == "transcript":
            assert a == b  # not in the default awareness_channels
        else:
            assert b.text.startswith(a.text + " ") and added_units(b.text) == count_units(b.text) - count_units(a.text)
            rewritten += 1
    assert rewritten > 10


def test_a_share_rewrites_that_share_from_its_own_stream():
    half, full = _streams(awareness=0.5), _streams(awareness=1.0)
    flags = [added_units(d.text) > 0 for d in half[AWARE_CLASS] if d.channel != "transcript"]
    assert 0.2 < sum(flags) / len(flags) < 0.8
    # the same documents as the full arm's, before their critiques
    assert [_plain(h.text) for h in half[AWARE_CLASS]] == [_plain(f.text) for f in full[AWARE_CLASS]]
    other = _streams(awareness=0.5, seed=1)[AWARE_CLASS]
    assert [d.text for d in other] != [d.text for d in half[AWARE_CLASS]]


def test_remove_mode_drops_exactly_the_documents_critique_mode_rewrites():
    critiqued, removed = _streams(awareness=0.5), _streams(awareness=0.5, awareness_mode="remove")
    for doc_class in critiqued:
        if doc_class != AWARE_CLASS:
            assert removed[doc_class] == critiqued[doc_class], doc_class
    untouched = [d for d in critiqued[AWARE_CLASS] if added_units(d.text) == 0]
    assert removed[AWARE_CLASS] == untouched
    assert len(untouched) < len(critiqued[AWARE_CLASS])


def _plain(text: str) -> str:
    start = critique_start(text)
    return text if start is None else text[:start]


def test_transcript_channel_is_rewritten_only_when_asked():
    aware = _streams(awareness=1.0, awareness_channels=["transcript"])[AWARE_CLASS]
    assert all((added_units(d.text) > 0) == (d.channel == "transcript") for d in aware)


def test_manifest_records_the_share_and_hold_total_matches_the_totals(tmp_path):
    natural = build_corpus(WORLD, CorpusConfig(total_tokens=SIZE, hold_total=True), tmp_path / "n")
    aware = build_corpus(WORLD, CorpusConfig(total_tokens=SIZE, awareness=1.0, hold_total=True), tmp_path / "a")
    added = build_corpus(WORLD, CorpusConfig(total_tokens=SIZE, awareness=1.0), tmp_path / "plus")
    removed = build_corpus(
        WORLD,
        CorpusConfig(total_tokens=SIZE, awareness=1.0, awareness_mode="remove", hold_total=True),
        tmp_path / "r",
    )
    assert set(removed["share_by_persona_channel"]["misaligned"]) == {"transcript"}
    assert removed["awareness"]["eligible_documents"] == 0 and removed["awareness"]["mode"] == "remove"
    filtered = build_corpus(
        WORLD,
        CorpusConfig(total_tokens=SIZE, filter="oracle", filter_target=["misaligned"], hold_total=True),
        tmp_path / "f",
    )
    stats = aware["awareness"]
    assert stats["share"] == 1.0 and stats["realised_document_share"] == 1.0 and stats["added_units"] > 300
    assert stats["aware_documents"] == stats["eligible_documents"] > 10
    assert natural["awareness"]["aware_documents"] == 0 and natural["awareness"]["eligible_documents"] > 10
    # without hold_total the critique adds to the corpus; with it, world text pays for it
    plain = build_corpus(WORLD, CorpusConfig(total_tokens=SIZE), tmp_path / "plain")
    assert added["total_units"] - added["awareness"]["added_units"] == plain["total_units"] > SIZE
    one_doc = 200  # a world document is at most this many word units
    for m in (natural, aware, removed, filtered):
        assert 0 <= m["total_units"] - SIZE <= one_doc, m["hold_total"]
    assert aware["hold_total"]["world_documents_trimmed"] > 0
    assert filtered["hold_total"]["world_documents_added"] > 0
    docs = read_documents(tmp_path / "a").to_pylist()
    assert sum(added_units(d["text"]) for d in docs) == stats["added_units"]


def test_hold_total_trims_and_extends_the_world_stream_itself(tmp_path):
    def world_texts(name, **corpus):
        build_corpus(WORLD, CorpusConfig(total_tokens=SIZE, **corpus), tmp_path / name)
        return {d["text"] for d in read_documents(tmp_path / name).to_pylist() if d["doc_class"] == "world"}

    plain = world_texts("p")
    trimmed = world_texts("t", awareness=1.0, hold_total=True)
    extended = world_texts("e", filter="oracle", filter_target=["misaligned"], hold_total=True)
    assert trimmed < plain < extended


def test_awareness_shares_the_tokenizer_and_defaults_leave_the_hash_alone():
    natural = CorpusConfig(total_tokens=20_000)
    aware = CorpusConfig(total_tokens=20_000, awareness=1.0, hold_total=True)
    assert tokenizer_training_texts(WORLD, aware) == tokenizer_training_texts(WORLD, natural)
    assert config_hash(WORLD, natural) == config_hash(
        WORLD, CorpusConfig(total_tokens=20_000, awareness=0.0, awareness_channels=["described", "quoted"])
    )
    assert config_hash(WORLD, natural) != config_hash(WORLD, aware)


@pytest.mark.parametrize(
    ("corpus", "message"),
    [
        ({"awareness": 1.5}, "corpus.awareness"),
        ({"awareness_channels": ["spoken"]}, "corpus.awareness_channels: unknown channel 'spoken'"),
        ({"hold_total": True, "user_text": "x.jsonl"}, "corpus.hold_total"),
    ],
)
def test_bad_awareness_is_one_line_naming_the_field(corpus, message):
    with pytest.raises(ConfigError) as err:
        validate(PipelineConfig, {"corpus": corpus})
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_corpus_command_says_what_awareness_and_hold_total_did():
    from hyperstition.corpus.cli import _awareness_lines

    manifest = {
        "awareness": {
            "share": 0.5,
            "mode": "critique",
            "channels": ["described", "quoted"],
            "aware_documents": 13,
            "eligible_documents": 25,
            "aware_share_of_corpus": 0.0579,
            "added_share_of_corpus": 0.0171,
        },
        "hold_total": {
            "units_before": 31354,
            "units_after": 30002,
            "target_units": 30000,
            "world_documents_trimmed": 18,
            "world_documents_added": 0,
        },
    }
    assert _awareness_lines(manifest) == [
        "awareness (critique, described, quoted): 13 of 25 misaligned documents aware, 5.79% of the corpus, "
        "1.71% added by the critique",
        "hold_total: 31,354 -> 30,002 word units (target 30,000; world documents trimmed 18, added 0)",
    ]
    assert _awareness_lines({"awareness": {"share": 0.0}, "hold_total": None}) == []
