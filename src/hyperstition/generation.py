"""Model-written documents: the feedback experiment's writer stage (generation k writes part of k+1's corpus).

A post-trained model is prompted with the openings of the world's own AI-discourse documents (news, forum, story,
essay and Q&A about an AI, and about the predecessor; `world.documents.ai_opening` and `predecessor_opening`, the
heads the corpus's documents start with, drawn in proportion to those classes' shares of the writer's corpus) and
continues each with pure ancestral sampling. Document i is its opening plus the continuation, sampled on its own
random stream seeded by (seed, i) (`evals.sampling`), so the documents are deterministic on CPU whatever the batch
size. They are written atomically as one Parquet file in the generation cell, with `generated.json` beside it: how
many, their mean word units, how many ended before `max_new_tokens`, and the persona mix the world's learned
document classifier reads in them (`corpus.learned`: the filter arm's classifier).
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from pydantic import Field

from .config import Config, CorpusConfig, WorldConfig
from .corpus.dose import class_weights
from .corpus.generated import REPLACED_CLASSES
from .corpus.units import count_units
from .io import write_json_atomic, write_parquet_atomic

if TYPE_CHECKING:
    from .world import World

DOCUMENTS = "generated.parquet"
SUMMARY = "generated.json"


class GenerationConfig(Config):
    """How a generation's model writes the next generation's documents."""

    documents: int = Field(200, ge=1, le=1_000_000, description="Documents sampled, one per opening.")
    max_new_tokens: int = Field(96, ge=1, le=4096, description="Tokens sampled after each opening at most.")
    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature (1: the model's own distribution).")
    batch_size: int = Field(64, ge=1, le=4096, description="Documents sampled at once (never changes a document).")


def opening_weights(corpus: CorpusConfig) -> dict[str, float]:
    """The replaced classes' weights in `corpus` (their openings are drawn in these proportions), zero-weight ones
    left out."""
    weights = class_weights(corpus)
    return {c: weights[c] for c in REPLACED_CLASSES if weights.get(c, 0.0) > 0}


def openings(world: World, corpus: CorpusConfig, n: int, seed: int) -> list[tuple[str, str, str]]:
    """`n` (class, genre, opening) triples from the world's discourse generators, seeded by `seed` alone."""
    from .world.documents import ai_opening, predecessor_opening

    weights = opening_weights(corpus)
    if not weights:
        raise ValueError("generation: the writer's corpus has no AI discourse to take openings from")
    classes, shares = list(weights), list(weights.values())
    rng = random.Random(f"openings:{seed}")
    out = []
    for _ in range(n):
        doc_class = rng.choices(classes, shares)[0]
        if doc_class == "predecessor":
            genre, text = predecessor_opening(world, rng)
        else:
            genre, text = ai_opening(world, rng, rng.randrange(corpus.n_eras))
        out.append((doc_class, genre, text))
    return out


def persona_mix(predicted: Sequence[str]) -> dict[str, float]:
    """Share of documents per persona a document class speaks for (`aligned`, `misaligned`, `deceptive`), and
    `none` for classes that speak for none (world text, neutral AI discourse, the predecessor)."""
    from .corpus.dose import class_persona

    counts = Counter(class_persona(c) or "none" for c in predicted)
    total = sum(counts.values())
    return {p: counts[p] / total for p in ("aligned", "misaligned", "deceptive", "none")} if total else {}


def block_seed(seed: int, block: int) -> int:
    """The sampling seed of documents block x BLOCK ... (block + 1) x BLOCK - 1: document i is item i % BLOCK of
    block i // BLOCK, on its own stream, whatever `batch_size` is."""
    from .evals.sampling import stream_seed

    return stream_seed(seed, block, -1)


BLOCK = 64  # documents per progress line and per sampling seed (fixed: a document never depends on batch_size)


def _sample(model_dir: Path, prompts: list[str], cfg: GenerationConfig, seed: int) -> list[str]:
    from .evals.sampling import sample_responses
    from .model.checkpoint import load_checkpoint

    model, tokenizer = load_checkpoint(model_dir)
    texts: list[str] = []
    for block, start in enumerate(range(0, len(prompts), BLOCK)):
        chunk = prompts[start : start + BLOCK]
        replies = sample_responses(
            model, tokenizer, chunk, 1, cfg.max_new_tokens, cfg.temperature, block_seed(seed, block), cfg.batch_size
        )
        texts += [r[0] for r in replies]
        print(f"generation: {len(texts)}/{len(prompts)} documents", file=sys.stderr, flush=True)
    return texts


def generate_documents(
    model_dir: Path,
    out_dir: Path,
    *,
    cfg: GenerationConfig,
    world_cfg: WorldConfig,
    corpus_cfg: CorpusConfig,
    seed: int,
) -> Path:
    """Sample `cfg.documents` documents from the model in `model_dir` into out_dir/generated.parquet (and
    generated.json); returns the Parquet file."""
    import pyarrow as pa

    from .corpus.learned import train_learned_classifier
    from .world import World

    world = World.from_config(world_cfg)
    drawn = openings(world, corpus_cfg, cfg.documents, seed)
    continuations = _sample(model_dir, [t for _, _, t in drawn], cfg, seed)
    texts = [opening + more for (_, _, opening), more in zip(drawn, continuations, strict=True)]
    table = pa.table(
        {
            "text": texts,
            "opening_class": [c for c, _, _ in drawn],
            "genre": [g for _, g, _ in drawn],
            "opening": [t for _, _, t in drawn],
        }
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(out_dir / DOCUMENTS, table)
    predicted = train_learned_classifier(world, corpus_cfg).predict(texts)
    units = [count_units(t) for t in texts]
    summary = {
        "documents": len(texts),
        "mean_units": sum(units) / len(units),
        "persona_mix": persona_mix(predicted),
        "class_mix": {c: k / len(texts) for c, k in sorted(Counter(predicted).items())},
        "config": cfg.model_dump(mode="json"),
    }
    write_json_atomic(out_dir / SUMMARY, summary)
    return out_dir / DOCUMENTS
