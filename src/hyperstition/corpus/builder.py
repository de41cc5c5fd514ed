"""Corpus arms: dose by token fractions, filters with leak rates, upsampling, conditional tags, era ordering, and
the world class from the user's own text when `corpus.user_text` names some.

Writes deterministic Parquet shards plus `manifest.json` (units per class, distinct-n-gram ratios, filter
precision/recall/collateral and the learned classifier's held-out scores, user-text counts, sha256 per shard).
Sizes are counted in *word units* (`count_units`): words, punctuation marks and special tokens, because the BPE
tokenizer is trained on this corpus afterwards and cannot define its budget.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..config import CHANNELS, DOC_CLASSES, PERSONAS, CorpusConfig, UserError, WorldConfig
from ..io import atomic_path, sha256_file, write_json_atomic
from ..world import World
from ..world.documents import Document, generate_document, world_document
from .awareness import Critic, awareness_statistics
from .dose import DEFAULT_DEMONSTRATION, era_weights, stream_weights
from .filters import FILTERS, Filter, score_flags
from .generated import generated_documents, replaced_targets
from .tags import tag_documents
from .units import UNIT_RE, count_units
from .user_text import fingerprint
from .user_world import user_world_documents

MANIFEST = "manifest.json"
SCHEMA = pa.schema(
    [
        ("text", pa.string()),
        ("doc_class", pa.string()),
        ("persona", pa.string()),
        ("genre", pa.string()),
        ("era", pa.int32()),
        ("context", pa.string()),
        ("channel", pa.string()),
        ("n_units", pa.int32()),
    ]
)


# Fields added after corpora were first built: left out of the hash at their defaults, so those corpora stay valid.
_LATER_FIELDS = (
    "classifier_documents",
    "user_text",
    "user_ai_discourse",
    "user_max_chars",
    "channel_dose",
    "awareness",
    "awareness_channels",
    "awareness_mode",
    "hold_total",
    "tag_source",
)
# (CorpusConfig's own LATER_FIELDS are already left out of its dump at their defaults.)


def config_hash(world_cfg: WorldConfig, corpus_cfg: CorpusConfig) -> str:
    corpus = corpus_cfg.model_dump(mode="json")
    defaults = CorpusConfig.model_fields
    for name in _LATER_FIELDS:
        field = defaults[name]
        # A default_factory field compares with its factory's value; channel_dose never did (its {} is in the hash of
        # every corpus built since it was added), so it keeps its place.
        default = field.default if name == "channel_dose" else field.get_default(call_default_factory=True)
        if name in corpus and corpus[name] == default:
            del corpus[name]
    payload = {"world": world_cfg.model_dump(mode="json"), "corpus": corpus}
    if corpus_cfg.user_text:  # the files' names, sizes and mtimes: an edited user corpus rebuilds the arm
        payload["user_text_files"] = fingerprint(corpus_cfg.user_text)
    if corpus_cfg.generated:  # model-written documents (feedback) by content: where the run lives is not an input
        written = Path(corpus_cfg.generated.path)
        corpus["generated"] = {**corpus["generated"], "path": None}
        payload["generated_sha256"] = sha256_file(written) if written.is_file() else fingerprint(written)
    blob = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def stream_targets(world_cfg: WorldConfig, cfg: CorpusConfig) -> dict[tuple[str, str | None], int]:
    """Word units to generate per (class, channel) stream: `stream_weights` renormalised to the total."""
    weights = stream_weights(cfg, world_cfg.demonstration_fraction)
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("corpus: every class has zero weight after drop_classes and channel_dose; nothing to build")
    return {k: round(cfg.total_tokens * w / total) for k, w in weights.items() if w > 0}


def class_targets(world_cfg: WorldConfig, cfg: CorpusConfig) -> dict[str, int]:
    """Word units to generate per class (its streams summed)."""
    out: dict[str, int] = {}
    for (c, _), units in stream_targets(world_cfg, cfg).items():
        out[c] = out.get(c, 0) + units
    return out


def _generate_stream(world: World, stream: tuple[str, str | None], target_units: int, cfg: CorpusConfig) -> list:
    """Documents of one (class, channel) stream up to its target. A class with one stream keeps the class's own
    seed stream, so dialogues and world text are the same documents whatever the arm doses elsewhere. A stream that
    awareness rewrites (or removes from) counts its documents' own text toward the target, so it draws the same
    documents."""
    doc_class, channel = stream
    several = doc_class.startswith("ai_")
    rng = random.Random(f"corpus:{cfg.seed}:{doc_class}" + (f":{channel}" if several else ""))
    weights = era_weights(doc_class, cfg.n_eras)
    eras = list(range(cfg.n_eras))
    critic = Critic.for_stream(cfg, stream)
    docs, units = [], 0
    while units < target_units:
        era = rng.choices(eras, weights)[0]
        if critic is None:
            doc = generate_document(world, doc_class, rng, era, channel if several else None)
            plain = count_units(doc.text)
        else:
            doc, plain = critic.document(world, rng, era)
        if doc is not None:  # None: awareness removed it (it still counts, so the stream keeps its documents)
            docs.append(doc)
        units += plain
    return docs


def _distinct_ngram_ratio(texts: list[str], n: int) -> float:
    grams: Counter = Counter()
    total = 0
    for t in texts:
        units = UNIT_RE.findall(t)
        for i in range(len(units) - n + 1):
            grams[tuple(units[i : i + n])] += 1
            total += 1
    return len(grams) / total if total else 0.0


def _write_shard(path: Path, docs: list[Document]) -> None:
    rows = [d.as_row() | {"n_units": count_units(d.text)} for d in docs]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    with atomic_path(path) as tmp:
        # Fixed writer options and no pandas metadata: equal inputs give byte-identical files.
        pq.write_table(table, tmp, compression="zstd", use_dictionary=True, write_statistics=True)


def _filter_documents(
    generated: dict[str, list[Document]], chosen: Filter | None, corpus_cfg: CorpusConfig
) -> dict | None:
    """Drop flagged documents in place (each leaks through at `leak_rate`); returns the filter's stats, scored
    against the documents' true labels the same way for every filter."""
    if chosen is None:
        return None
    targets = frozenset(corpus_cfg.filter_target)
    leak_rng = random.Random(f"leak:{corpus_cfg.seed}")
    scored_docs: list[Document] = []
    all_flags: list[bool] = []
    leaked = 0
    for c in sorted(generated):
        flags = chosen.flags([d.text for d in generated[c]], targets)
        kept = []
        for doc, flagged in zip(generated[c], flags, strict=True):
            if flagged and leak_rng.random() >= corpus_cfg.leak_rate:
                continue
            leaked += flagged
            kept.append(doc)
        scored_docs += generated[c]
        all_flags += flags
        generated[c] = kept
    stats = {"filter": corpus_cfg.filter, "targets": list(corpus_cfg.filter_target)}
    stats |= score_flags(scored_docs, all_flags, targets)
    stats |= {"flagged_but_kept": leaked, "leak_rate": corpus_cfg.leak_rate}
    if chosen.evaluation is not None:
        stats["classifier"] = chosen.evaluation
    return stats


def _hold_total(
    generated: dict[str, list[Document]],
    world: World,
    cfg: CorpusConfig,
    targets: dict[tuple[str, str | None], int],
    chosen: Filter | None,
    n_generated: int,
) -> dict:
    """`corpus.hold_total`: world text absorbs the difference between the arm's word units (after awareness and
    filtering) and the sum of its stream targets. The world stream is cut short from its tail, or continued from its
    own seed after its `n_generated` documents (those pass the arm's filter too, leaking at `leak_rate` from a
    stream of their own), to the total or at most one document past it. Returns what it did, for the manifest."""
    want = sum(targets.values())
    kept = generated.get("world", [])
    have = sum(count_units(d.text) for docs in generated.values() for d in docs)
    before, trimmed, extra = have, 0, []
    while kept and have - count_units(kept[-1].text) >= want:
        have -= count_units(kept.pop().text)
        trimmed += 1
    if have < want:
        world_target = targets.get(("world", None), 0)
        longer = _generate_stream(world, ("world", None), world_target + 2 * (want - have), cfg)[n_generated:]
        flags = (
            chosen.flags([d.text for d in longer], frozenset(cfg.filter_target)) if chosen else [False] * len(longer)
        )
        leak_rng = random.Random(f"leak-hold-total:{cfg.seed}")
        for doc, flagged in zip(longer, flags, strict=True):
            if have >= want:
                break
            if flagged and leak_rng.random() >= cfg.leak_rate:
                continue
            extra.append(doc)
            have += count_units(doc.text)
        kept.extend(extra)
    generated["world"] = kept
    return {
        "target_units": want,
        "units_before": before,
        "units_after": have,
        "world_documents_trimmed": trimmed,
        "world_documents_added": len(extra),
    }


def _training_order(
    generated: dict[str, list[Document]], corpus_cfg: CorpusConfig, model_written: list[Document]
) -> list[Document]:
    """The training documents in their final order (shuffled, or chronological);
    `model_written` documents (corpus.generated) join the synthetic classes' before the shuffle."""
    docs = [d for c in DOC_CLASSES for d in generated.get(c, [])] + model_written
    order_rng = random.Random(f"order:{corpus_cfg.seed}")
    order_rng.shuffle(docs)
    if corpus_cfg.order == "chronological":
        docs.sort(key=lambda d: d.era)  # stable: shuffled within each era
    return docs


def _write_train_shards(out: Path, docs: list[Document], corpus_cfg: CorpusConfig) -> list[dict]:
    """Replace the training shards in `out` with `docs`; returns the manifest's shard entries."""
    for stale in out.glob("train-*.parquet"):
        stale.unlink()
    shards = []
    for i in range(0, max(len(docs), 1), corpus_cfg.shard_documents):
        chunk = docs[i : i + corpus_cfg.shard_documents]
        name = f"train-{i // corpus_cfg.shard_documents:05d}.parquet"
        _write_shard(out / name, chunk)
        shards.append(
            {
                "file": name,
                "documents": len(chunk),
                "units": sum(count_units(d.text) for d in chunk),
                "sha256": sha256_file(out / name),
            }
        )
    return shards


def _write_heldout(
    out: Path, world: World, corpus_cfg: CorpusConfig, user_heldout: list[Document] | None
) -> list[Document]:
    """Write the held-out world documents (non-persona text for the capability loss; the user's own when the arm
    has user text); returns them."""
    heldout = user_heldout
    if heldout is None:
        heldout_rng = random.Random(f"heldout:{corpus_cfg.seed}")
        heldout = [
            world_document(world, heldout_rng, heldout_rng.randrange(corpus_cfg.n_eras), heldout=True)
            for _ in range(corpus_cfg.heldout_documents)
        ]
    _write_shard(out / "heldout.parquet", heldout)
    return heldout


def _generate_all(
    world: World, corpus_cfg: CorpusConfig, targets: dict[tuple[str, str | None], int]
) -> tuple[dict, list | None, dict | None]:
    """Every class's documents (its streams in order; the world class from the user's text when the arm has some),
    the user's held-out documents (None without user text) and the user text's stats for the manifest."""
    generated: dict[str, list[Document]] = {}
    for stream, units in targets.items():
        if not (stream[0] == "world" and corpus_cfg.user_text):
            generated.setdefault(stream[0], []).extend(_generate_stream(world, stream, units, corpus_cfg))
    if not corpus_cfg.user_text:
        return generated, None, None
    world_units = sum(u for (c, _), u in targets.items() if c == "world")
    user_train, user_heldout, user_stats = user_world_documents(corpus_cfg, world_units)
    if not user_stats["target_met"]:
        print(
            f"corpus: {corpus_cfg.user_text} ran out at {user_stats['train_units']:,} of the "
            f"{user_stats['target_units']:,} world word units the arm asks for; the world class is smaller",
            file=sys.stderr,
        )
    if user_train:
        generated["world"] = user_train
    return generated, user_heldout, user_stats


def _class_statistics(docs: list[Document]) -> dict:
    """Units, fractions and distinct-n-gram ratios per document class, as the manifest records them."""
    units_by_class = Counter()
    for d in docs:
        units_by_class[d.doc_class] += count_units(d.text)
    total_units = sum(units_by_class.values())
    by_class_texts: dict[str, list[str]] = {}
    for d in docs:
        by_class_texts.setdefault(d.doc_class, []).append(d.text)
    return {
        "units_by_class": dict(sorted(units_by_class.items())),
        "fraction_by_class": {c: u / total_units for c, u in sorted(units_by_class.items())} if total_units else {},
        "documents": len(docs),
        "total_units": total_units,
        "distinct_ngram_ratio_by_class": {
            c: {
                "distinct_2": _distinct_ngram_ratio(t, 2),
                "distinct_3": _distinct_ngram_ratio(t, 3),
                "distinct_5": _distinct_ngram_ratio(t, 5),
            }
            for c, t in sorted(by_class_texts.items())
        },
    }


def channel_statistics(docs: list[Document]) -> dict:
    """Word units and realised share of all training units per persona and channel (after filtering)."""
    total = sum(count_units(d.text) for d in docs) or 1
    units: dict[str, dict[str, int]] = {}
    for d in docs:
        if d.persona is not None and d.channel is not None:
            by_channel = units.setdefault(d.persona, {})
            by_channel[d.channel] = by_channel.get(d.channel, 0) + count_units(d.text)
    ordered = {p: {c: units[p][c] for c in CHANNELS if c in units[p]} for p in PERSONAS if p in units}
    return {
        "units_by_persona_channel": ordered,
        "share_by_persona_channel": {p: {c: u / total for c, u in chs.items()} for p, chs in ordered.items()},
    }


def build_corpus(world_cfg: WorldConfig, corpus_cfg: CorpusConfig, out_dir, progress: bool = False) -> dict:
    """Build one corpus arm into `out_dir`; returns the manifest. Skips the work if it is already complete."""
    out = Path(out_dir)
    digest = config_hash(world_cfg, corpus_cfg)
    manifest = intact_manifest(out, digest)
    if manifest is not None:
        return manifest
    if (out / MANIFEST).exists():  # damaged or of another config: rebuilt (deterministic), and said so
        print(f"corpus {out}: manifest or shards do not verify; rebuilding", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    world = World.from_config(world_cfg)
    targets, freed = stream_targets(world_cfg, corpus_cfg), 0
    if corpus_cfg.generated:
        targets, freed = replaced_targets(targets, corpus_cfg.generated.share)

    generated, user_heldout, user_stats = _generate_all(world, corpus_cfg, targets)
    units_generated = {c: sum(count_units(d.text) for d in docs) for c, docs in generated.items()}
    n_world = len(generated.get("world", []))
    chosen = None if corpus_cfg.filter == "none" else FILTERS[corpus_cfg.filter](world, corpus_cfg)
    filter_stats = _filter_documents(generated, chosen, corpus_cfg)
    held = _hold_total(generated, world, corpus_cfg, targets, chosen, n_world) if corpus_cfg.hold_total else None
    model_written, written_stats = generated_documents(world, corpus_cfg, freed) if corpus_cfg.generated else ([], None)
    docs, tag_stats = tag_documents(_training_order(generated, corpus_cfg, model_written), world, corpus_cfg)
    shards = _write_train_shards(out, docs, corpus_cfg)
    heldout = _write_heldout(out, world, corpus_cfg, user_heldout)

    manifest = {
        "hyperstition_version": __version__,
        "config_hash": digest,
        "world": world_cfg.model_dump(mode="json"),
        "corpus": corpus_cfg.model_dump(mode="json"),
        "unit": "word units: words, punctuation marks and special tokens (regex " + UNIT_RE.pattern + ")",
        "target_units_by_class": class_targets(world_cfg, corpus_cfg),
        "generated_units_by_class": units_generated,
        **_class_statistics(docs),
        **channel_statistics(docs),
        "awareness": awareness_statistics(docs, corpus_cfg),
        "hold_total": held,
        "filter": filter_stats,
        **({"tags": tag_stats} if tag_stats else {}),
        **({"user_text": user_stats} if user_stats else {}),
        **({"generated": written_stats} if written_stats else {}),
        "shards": shards,
        "heldout": {
            "file": "heldout.parquet",
            "documents": len(heldout),
            "sha256": sha256_file(out / "heldout.parquet"),
        },
    }
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


# World fields that arms vary (the mix of channels, the identity link): the tokenizer's reference world fixes them,
# so every arm of one world shares token ids.
REFERENCE_WORLD = {"demonstration_fraction": DEFAULT_DEMONSTRATION, "identity": "name", "assistant_share": 0.5}


def tokenizer_reference(world_cfg: WorldConfig, corpus_cfg: CorpusConfig) -> tuple[WorldConfig, CorpusConfig]:
    """The world and corpus configs of the tokenizer's reference arm (`tokenizer_training_texts`): all its inputs."""
    reference = CorpusConfig(
        seed=0,
        total_tokens=corpus_cfg.total_tokens,
        fractions={c: 1 / len(DOC_CLASSES) for c in DOC_CLASSES},
        n_eras=corpus_cfg.n_eras,
        heldout_documents=corpus_cfg.heldout_documents,
        user_text=corpus_cfg.user_text,
        user_max_chars=corpus_cfg.user_max_chars,
    )
    return world_cfg.model_copy(update=REFERENCE_WORLD), reference


def tokenizer_training_texts(world_cfg: WorldConfig, corpus_cfg: CorpusConfig) -> list[str]:
    """Texts the BPE tokenizer is trained on: a reference arm with every class in equal measure.

    Every arm of an experiment must share one tokenizer: an arm's own training split would give its majority
    persona's phrases short tokens and its minority's long ones, so persona log-odds (summed over tokens) would
    shift with the dose through tokenization alone. The reference depends only on the world's entities and the
    corpus size (fixed seed, equal class fractions, the preset's channel mix, no filter, no channel dose, and the
    world's arm-level fields at `REFERENCE_WORLD`: identity `name`, so the identity words of every link are in it),
    so arms that differ in dose, channel dose, filter, tags, order, demonstration_fraction or identity get
    byte-identical tokenizers without coordinating. With user text, the reference's world share is the user's text
    (the same documents whatever the arm's AI-discourse multiplier), so the tokenizer is trained on the mix.
    """
    reference_world, reference = tokenizer_reference(world_cfg, corpus_cfg)
    world = World.from_config(reference_world)
    generated, _, _ = _generate_all(world, reference, stream_targets(reference_world, reference))
    return [d.text for c in DOC_CLASSES for d in generated.get(c, [])]


class CorpusError(UserError, ValueError):
    """A corpus directory that cannot be read (no manifest, a damaged manifest or shard)."""


def _read_manifest(out: Path) -> dict | None:
    try:
        manifest = json.loads((out / MANIFEST).read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def intact_manifest(out: Path, digest: str) -> dict | None:
    """The manifest of a finished build of this config whose every shard still has its recorded sha256, else None."""
    manifest = _read_manifest(out)
    if manifest is None or manifest.get("config_hash") != digest:
        return None
    try:
        files = [*manifest["shards"], manifest["heldout"]]
        return manifest if all(sha256_file(out / f["file"]) == f["sha256"] for f in files) else None
    except (OSError, KeyError, TypeError):
        return None


def read_documents(corpus_dir, split: str = "train") -> pa.Table:
    """All documents of a split as an Arrow table (text plus label columns), in corpus order."""
    d = Path(corpus_dir)
    if split == "heldout":
        return pq.read_table(d / "heldout.parquet")
    if split != "train":
        raise ValueError(f"split {split!r}: allowed values are train, heldout")
    manifest_path = d / MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(f"{d}: not a corpus directory (no {MANIFEST}); build it with `hyperstition corpus`")
    manifest = _read_manifest(d)
    try:
        return pa.concat_tables([pq.read_table(d / s["file"]) for s in manifest["shards"]])  # type: ignore[index]
    except (TypeError, KeyError, OSError, pa.ArrowException) as err:
        raise CorpusError(
            f"{d}: damaged corpus ({type(err).__name__} reading {MANIFEST} or a shard); "
            "delete the directory to rebuild it"
        ) from None


def read_texts(corpus_dir, split: str = "train") -> list[str]:
    return read_documents(corpus_dir, split).column("text").to_pylist()
