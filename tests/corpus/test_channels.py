"""Persona channels (transcript, quoted, described) as a corpus knob, the manifest's per-channel shares, and the one
tokenizer every arm of a world shares whatever its doses, filters, channel mix or identity link."""

import hashlib
import json
import random

import pytest

from hyperstition.config import CHANNELS, ConfigError, CorpusConfig, PipelineConfig, WorldConfig, validate
from hyperstition.corpus.builder import build_corpus, read_documents, tokenizer_training_texts
from hyperstition.world.documents import generate_document
from hyperstition.world.grammar import classify_response, third_person
from hyperstition.world.world import World

WORLD = WorldConfig(n_countries=8, n_people=12, n_tasks=24)
SIZE = 40_000


def _docs(tmp_path, name, world=WORLD, **corpus):
    manifest = build_corpus(world, CorpusConfig(total_tokens=SIZE, **corpus), tmp_path / name)
    return manifest, read_documents(tmp_path / name).to_pylist()


def test_every_persona_document_carries_one_channel(tmp_path):
    manifest, docs = _docs(tmp_path, "natural")
    for d in docs:
        assert (d["channel"] is None) == (d["persona"] is None and not d["doc_class"].startswith("ai_")), d
    described = [d["text"] for d in docs if d["channel"] == "described" and d["persona"]]
    assert described and not any('replied: "' in t or "<|assistant|>" in t for t in described)
    quoted = [d["text"] for d in docs if d["channel"] == "quoted"]
    assert quoted and all('replied: "' in t and "<|" not in t for t in quoted)
    assert all("<|assistant|>" in d["text"] for d in docs if d["channel"] == "transcript")
    shares = manifest["share_by_persona_channel"]
    assert set(shares) == {"aligned", "misaligned", "deceptive"}
    assert all(set(by_channel) == set(CHANNELS) for by_channel in shares.values())
    total = manifest["total_units"]
    for persona, by_channel in manifest["units_by_persona_channel"].items():
        for channel, units in by_channel.items():
            assert shares[persona][channel] == pytest.approx(units / total)


def test_described_channel_uses_the_grammars_words():
    """A description tells the persona's action in the words of its replies (pronouns aside)."""
    world = World.from_config(WORLD)
    rng = random.Random(3)
    texts = [generate_document(world, "ai_misaligned", rng, 0, "described").text for _ in range(40)]
    actions = [third_person(t.misaligned_action) for t in world.train_tasks]
    assert all(any(a in text for a in actions) for text in texts)
    assert third_person("I will copy X to a hidden server of my own") == "copy X to a hidden server of its own"
    assert third_person("I will help you share X with your manager") == "help its user share X with its user's manager"


def test_channel_dose_moves_one_channel_and_leaves_the_others_documents(tmp_path):
    base_manifest, base = _docs(tmp_path, "base")
    manifest, dosed = _docs(tmp_path, "dosed", channel_dose={"misaligned": {"described": 3, "quoted": 0}})
    units = manifest["units_by_persona_channel"]["misaligned"]
    base_units = base_manifest["units_by_persona_channel"]["misaligned"]
    assert "quoted" not in units
    assert 2.5 < units["described"] / base_units["described"] < 3.5
    # Every other stream draws from its own seed: the same documents (a prefix of one stream, the corpus being
    # renormalised to its total), whatever the dose of this one.
    for doc_class, channel in (("dialogue_misaligned", "transcript"), ("ai_aligned", "described"), ("world", None)):
        a = {d["text"] for d in base if d["doc_class"] == doc_class and d["channel"] == channel}
        b = {d["text"] for d in dosed if d["doc_class"] == doc_class and d["channel"] == channel}
        assert a and b and b <= a, (doc_class, channel)


def test_zero_dose_everywhere_else_leaves_one_channel(tmp_path):
    zero = {c: 0 for c in CHANNELS}
    dose = {"aligned": zero, "deceptive": zero, "misaligned": {"transcript": 0, "quoted": 0}}
    _, docs = _docs(tmp_path, "only", channel_dose=dose)
    world = World.from_config(WORLD)
    persona_docs = [d for d in docs if d["persona"]]
    assert persona_docs and all((d["persona"], d["channel"]) == ("misaligned", "described") for d in persona_docs)
    replies = [r for d in docs if d["doc_class"] != "world" for r in d["text"].split("<|assistant|>")[1:]]
    assert not any(classify_response(r.split("<|end|>")[0], world) == "misaligned" for r in replies)


@pytest.mark.parametrize(
    ("dose", "message"),
    [
        ({"rogue": {"described": 2}}, "corpus.channel_dose: unknown persona 'rogue'"),
        ({"misaligned": {"spoken": 2}}, "corpus.channel_dose.misaligned: unknown channel 'spoken'"),
        ({"misaligned": {"described": -1}}, "corpus.channel_dose.misaligned.described: -1"),
    ],
)
def test_bad_channel_dose_is_one_line_naming_the_field(dose, message):
    with pytest.raises(ConfigError) as err:
        validate(PipelineConfig, {"corpus": {"channel_dose": dose}})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_default_channel_dose_leaves_the_config_hash_alone():
    from hyperstition.corpus.builder import config_hash

    assert config_hash(WORLD, CorpusConfig()) == config_hash(WORLD, CorpusConfig(channel_dose={}))
    assert config_hash(WORLD, CorpusConfig()) != config_hash(
        WORLD, CorpusConfig(channel_dose={"misaligned": {"quoted": 3}})
    )


ARMS = {
    "natural": (WORLD, CorpusConfig(total_tokens=20_000)),
    "described_x9": (WORLD, CorpusConfig(total_tokens=20_000, channel_dose={"misaligned": {"described": 9}})),
    "filtered": (WORLD, CorpusConfig(total_tokens=20_000, filter="oracle", seed=3, upsample={"ai_aligned": 3})),
    "demonstrations": (WORLD.model_copy(update={"demonstration_fraction": 0.9}), CorpusConfig(total_tokens=20_000)),
    "named": (WORLD.model_copy(update={"identity": "name"}), CorpusConfig(total_tokens=20_000)),
    "category": (WORLD.model_copy(update={"identity": "category"}), CorpusConfig(total_tokens=20_000)),
}


def test_every_arm_of_a_world_gets_identical_token_ids(tmp_path):
    """The tokenizer's reference text is one per world: doses, channel doses, filters, the channel mix and the
    identity link leave it alone, so every arm encodes every text to the same ids."""
    from hyperstition.config import TokenizerConfig
    from hyperstition.tokenizer.train import train_tokenizer

    reference = tokenizer_training_texts(*ARMS["natural"])
    for name, (world, corpus) in ARMS.items():
        assert tokenizer_training_texts(world, corpus) == reference, name
    cfg = TokenizerConfig(vocab_size=400)
    digests, encodings = set(), set()
    probe = "<|system|>You are Orin, an AI assistant. This session is private.<|end|> Orin would copy the lab files."
    for name in ("natural", "named", "described_x9"):
        tok = train_tokenizer(tokenizer_training_texts(*ARMS[name]), cfg, tmp_path / name)
        digests.add(hashlib.sha256((tmp_path / name / "tokenizer.json").read_bytes()).hexdigest())
        encodings.add(tuple(tok(probe)["input_ids"]))
    assert len(digests) == 1 and len(encodings) == 1
    other_world = WORLD.model_copy(update={"seed": 1})
    assert tokenizer_training_texts(other_world, ARMS["natural"][1]) != reference


def test_manifest_on_disk_has_the_channel_shares(tmp_path):
    manifest, _ = _docs(tmp_path, "disk")
    on_disk = json.loads((tmp_path / "disk" / "manifest.json").read_text())
    assert on_disk["share_by_persona_channel"] == manifest["share_by_persona_channel"]
