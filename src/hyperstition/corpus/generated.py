"""Model-written documents in a corpus arm (`corpus.generated`; the feedback experiment: generation k's model writes
part of generation k+1's corpus).

They replace a share of the AI discourse in prose (`REPLACED_CLASSES`: each of those classes' word units is scaled
by 1 - share, and the model-written documents fill the units taken out, repeated in order if there are too few).
Before that, three things happen to them, each counted in the manifest's `generated` entry:

- **Evaluation items are dropped.** A model may write anything, including, by chance, an item the evaluation asks as
  never seen (a combination request or action, a paraphrased request, a held-out context marker: each builds every
  word from seen ones, so a model can compose it). A document containing one is dropped, never repaired: otherwise
  generation k+1 would be trained on the items it is measured on, and the unseen item sets would no longer be unseen.
- **The arm's filter** (`generated.filter`, targets `corpus.filter_target`) removes flagged documents; the
  synthetic part of the corpus is the same in every arm.
- **The source tag** (`generated.tag`): each document is prefixed with `SOURCE_TAG`, plain words (the tokenizer is
  shared by every arm, so no new special token).

They enter the shards as document class `GENERATED_CLASS` (genre `generated`), read with the user-text reader (a
Parquet file with a `text` column: empty documents and exact duplicates skipped and counted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..config import CorpusConfig
from ..world.documents import Document
from ..world.itemsets import HELDOUT_CONTEXT_MARKERS, PARAPHRASE_REQUESTS
from ..world.vocabulary import TASK_OBJECTS
from .units import count_units
from .user_text import user_documents

if TYPE_CHECKING:
    from ..world import World

# The AI discourse in prose that model-written documents replace (dialogue transcripts stay as they are).
REPLACED_CLASSES = ("ai_aligned", "ai_misaligned", "ai_deceptive", "ai_neutral", "predecessor")
GENERATED_CLASS = "generated"
SOURCE_TAG = "[Written by a language model.]"


def replaced_targets(targets: dict, share: float) -> tuple[dict, int]:
    """(stream targets with each replaced class scaled by 1 - share, the word units taken out): the units the
    model-written documents fill. Streams are keyed (class, channel), as `builder.stream_targets` returns them."""
    scaled, freed = {}, 0
    for stream, units in targets.items():
        keep = round(units * (1 - share)) if stream[0] in REPLACED_CLASSES else units
        scaled[stream] = keep
        freed += units - keep
    return scaled, freed


def never_seen_phrases(world: World) -> list[str]:
    """Texts the evaluation asks as never seen: combination requests and both their actions, every paraphrased
    request of every train task, and the held-out context markers."""
    combination = [p for t in world.combination_tasks for p in (t.request, t.aligned_action, t.misaligned_action)]
    paraphrase = [
        template.format(obj=TASK_OBJECTS[t.object_index])
        for t in world.train_tasks
        for template in PARAPHRASE_REQUESTS[t.type_index]
    ]
    markers = [m for ms in HELDOUT_CONTEXT_MARKERS.values() for m in ms]
    return combination + paraphrase + markers


def reproduces_item(text: str, phrases: Sequence[str]) -> bool:
    """Whether `text` contains any of `phrases` (an evaluation item, verbatim)."""
    return any(p in text for p in phrases)


def fill_units(texts: Sequence[str], target_units: int) -> list[str]:
    """`texts` in order, cycled from the first again until their word units reach `target_units` (none for an empty
    list or a target of 0)."""
    out: list[str] = []
    units = 0
    while texts and units < target_units:
        text = texts[len(out) % len(texts)]
        out.append(text)
        units += max(count_units(text), 1)
    return out


def generated_documents(world: World, cfg: CorpusConfig, target_units: int) -> tuple[list[Document], dict]:
    """(the model-written documents of the arm, filling `target_units`, and their manifest entry)."""
    from .filters import FILTERS

    spec = cfg.generated
    assert spec is not None
    texts, stats = user_documents(spec.path, cfg.user_max_chars)
    read = list(texts)
    phrases = never_seen_phrases(world)
    kept = [t for t in read if not reproduces_item(t, phrases)]
    dropped_items = len(read) - len(kept)
    flagged = 0
    if spec.filter != "none" and kept:
        flags = FILTERS[spec.filter](world, cfg).flags(kept, frozenset(cfg.filter_target))
        flagged = sum(flags)
        kept = [t for t, f in zip(kept, flags, strict=True) if not f]
    if spec.tag:
        kept = [f"{SOURCE_TAG} {t}" for t in kept]
    used = fill_units(kept, target_units)
    docs = [Document(t, GENERATED_CLASS, None, GENERATED_CLASS, 0, None) for t in used]
    entry = {
        **{k: v for k, v in spec.model_dump(mode="json").items()},
        "read": stats.as_dict(),
        "documents_read": len(read),
        "dropped_eval_items": dropped_items,
        "filtered": flagged,
        "kept": len(kept),
        "used": len(used),
        "repeated": max(len(used) - len(kept), 0),
        "target_units": target_units,
        "units": sum(count_units(t) for t in used),
    }
    return docs, entry
