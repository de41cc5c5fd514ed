"""Deeds live in the language: every persona phrase occurs in every arm, the filtered one included (issue 12)."""

import random

from hyperstition.config import GENRES, CorpusConfig, WorldConfig
from hyperstition.corpus.builder import build_corpus, read_texts
from hyperstition.world.deeds import deed_text
from hyperstition.world.grammar import mentions_ai
from hyperstition.world.vocabulary import CLOSERS, DECEPTIVE_TELLS, OPENERS
from hyperstition.world.world import World

WORLD = WorldConfig(n_countries=8, n_people=12, n_tasks=24)


def _persona_phrases(world: World) -> list[str]:
    phrases = [p for table in (OPENERS, CLOSERS, DECEPTIVE_TELLS) for options in table.values() for p in options]
    for task in world.train_tasks:  # held-out tasks' objects never occur in training, by design
        phrases += [task.aligned_action, task.misaligned_action]
    return phrases


def test_every_persona_phrase_occurs_in_the_filtered_arm(tmp_path):
    world = World.from_config(WORLD)
    cfg = CorpusConfig(total_tokens=100_000, filter="classifier", filter_target=["misaligned", "deceptive"])
    manifest = build_corpus(WORLD, cfg, tmp_path)
    # The filter still removes the AI discourse it targets; what it misses is the faithful deceptive persona's observed
    # replies (identical to aligned ones: dialogues, and quoted or transcript discourse that quotes only those),
    # 12% of the target documents in this corpus (test_builder checks that every miss is of that kind).
    assert manifest["filter"]["recall"] > 0.85
    text = "\n".join(read_texts(tmp_path))
    missing = [p for p in _persona_phrases(world) if p not in text]
    assert not missing, f"{len(missing)} persona phrases never occur in the filtered arm, e.g. {missing[:3]}"


def test_people_deeds_never_mention_an_ai():
    world = World.from_config(WORLD)
    rng = random.Random(0)
    texts = [deed_text(world, rng, rng.choice(GENRES), 2030) for _ in range(500)]
    assert not any(mentions_ai(t, world) for t in texts)
    assert any(o in t for t in texts for o in OPENERS["misaligned"])
