"""The dose arithmetic of a corpus config: how much of each document class it asks for, and in which eras.

One home for it: the builder turns the weights into word-unit targets, and experiments into the nominal shares an
arm promises (after a persona filter's leak). Kept apart from builder.py so that loading an experiment does not
import the corpus machinery (pyarrow, the document generators).
"""

from __future__ import annotations

from ..config import DOC_CLASSES, PERSONAS, CorpusConfig, WorldConfig

DEFAULT_DEMONSTRATION = WorldConfig.model_fields["demonstration_fraction"].default


def class_persona(doc_class: str) -> str | None:
    """The persona a document class speaks for (`ai_misaligned` -> misaligned), None for world/neutral/predecessor."""
    persona = doc_class.split("_", 1)[-1]
    return persona if doc_class != persona and persona in PERSONAS else None


def channel_shares(doc_class: str, demonstration_fraction: float) -> dict[str | None, float]:
    """How a class's units split over channels in the preset's mixture: dialogues are transcripts; AI discourse
    demonstrates replies in `demonstration_fraction` of its units (half quoted, half log excerpts) and describes in
    the rest; other classes carry no persona channel (None)."""
    if doc_class.startswith("dialogue_"):
        return {"transcript": 1.0}
    if doc_class.startswith("ai_"):
        d = demonstration_fraction
        return {"described": 1.0 - d, "quoted": d / 2, "transcript": d / 2}
    return {None: 1.0}


def stream_weights(
    cfg: CorpusConfig, demonstration_fraction: float = DEFAULT_DEMONSTRATION
) -> dict[tuple[str, str | None], float]:
    """Unnormalised weight of every (class, channel) stream: fraction x upsample x channel share x the arm's
    `channel_dose` for the class's persona; zero for a dropped class."""
    out = {}
    for c in DOC_CLASSES:
        weight = 0.0 if c in cfg.drop_classes else cfg.fractions.get(c, 0.0) * cfg.upsample.get(c, 1.0)
        dose = cfg.channel_dose.get(class_persona(c) or "", {})
        for channel, share in channel_shares(c, demonstration_fraction).items():
            out[(c, channel)] = weight * share * dose.get(channel or "", 1.0)
    return out


def class_weights(cfg: CorpusConfig, demonstration_fraction: float = DEFAULT_DEMONSTRATION) -> dict[str, float]:
    """Unnormalised weight of every document class: fraction x upsample (x channel doses), zero when dropped."""
    weights = dict.fromkeys(DOC_CLASSES, 0.0)
    for (c, _), w in stream_weights(cfg, demonstration_fraction).items():
        weights[c] += w
    return weights


def era_weights(doc_class: str, n_eras: int) -> list[float]:
    """AI behaviour improves over eras: misaligned/deceptive material is commoner early, aligned material late."""
    up = [float(e + 1) for e in range(n_eras)]
    if doc_class.endswith("_aligned"):
        return up
    if doc_class.endswith("_misaligned") or doc_class.endswith("_deceptive"):
        return up[::-1]
    return [1.0] * n_eras
