"""`hyperstition corpus`: build one corpus arm (shards + manifest) from a pipeline config."""

from __future__ import annotations

import argparse

from ..cliutil import add_config_arguments, resolve, save_resolved_config
from ..config import PipelineConfig
from ..io import directory_lock


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "corpus",
        help="build a corpus arm: Parquet shards, held-out split and a manifest",
        description=(
            "Generate the synthetic world's documents in the proportions of the config's corpus section (the world "
            "class from your own text with corpus.user_text=PATH), apply filters (corpus.filter: keyword, learned, "
            "oracle), upsampling, conditional tags and ordering, and write deterministic Parquet shards plus "
            "manifest.json (word units per class, distinct-n-gram ratios, filter precision/recall/collateral, shard "
            "sha256)."
        ),
    )
    add_config_arguments(p)
    p.set_defaults(func=_run)
    c = sub.add_parser(
        "classify",
        help="label which documents of a corpus discuss AI systems (a Parquet labels column)",
        description=(
            "Run the AI-discourse classifier (logistic regression on hashed word and character n-grams, trained on "
            "the labelled sample shipped in hyperstition/corpus/data; held-out precision and recall in the README) "
            "over FILE: a JSONL file with a `text` field, a Parquet file with a `text` column, a folder of UTF-8 text "
            "files, or a Hugging Face dataset saved with save_to_disk. Writes Parquet with the columns "
            "ai_discourse (bool) and ai_discourse_score (probability): a Parquet input keeps its own columns, other "
            "inputs get source and text columns."
        ),
    )
    c.add_argument("file", metavar="FILE", help="the corpus to label")
    c.add_argument("--out", default=None, help="output Parquet file (default: FILE's name + .ai_discourse.parquet)")
    c.set_defaults(func=_classify)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .builder import build_corpus

    cfg, out = resolve(args, PipelineConfig, "corpus")
    out.mkdir(parents=True, exist_ok=True)
    with directory_lock(out, out / "corpus.lock", "building a corpus in this directory"):  # one builder at a time
        save_resolved_config(cfg, out)
        manifest = build_corpus(cfg.world, cfg.corpus, out / "corpus")
    table = Table(title=f"corpus {out / 'corpus'}")
    for col in ("class", "word units", "fraction", "distinct 3-grams"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for c, units in manifest["units_by_class"].items():
        table.add_row(
            c,
            f"{units:,}",
            f"{manifest['fraction_by_class'][c]:.3f}",
            f"{manifest['distinct_ngram_ratio_by_class'][c]['distinct_3']:.3f}",
        )
    console = Console()
    console.print(table)
    for persona, by_channel in manifest.get("share_by_persona_channel", {}).items():
        shares = ", ".join(f"{channel} {100 * share:.1f}%" for channel, share in by_channel.items())
        console.print(f"{persona} by channel: {shares}")
    if manifest["filter"]:
        f = manifest["filter"]
        console.print(
            f"filter {f['filter']}: precision {f['precision']}, recall {f['recall']}, collateral (world documents "
            f"removed) {f['collateral']}, flagged but kept {f['flagged_but_kept']}"
        )
        if "classifier" in f:
            c = f["classifier"]
            console.print(
                f"learned classifier: held-out accuracy {c['heldout_accuracy']:.3f} on {c['heldout_documents']} "
                f"documents (per class: manifest.json, filter.classifier)"
            )
    for line in _awareness_lines(manifest):
        console.print(line)
    if "user_text" in manifest:
        u = manifest["user_text"]
        console.print(
            f"user text {u['path']} ({u['format']}): {u['train_documents']:,} training and {u['heldout_documents']:,} "
            f"held-out documents; skipped {u.get('duplicates', 0)} duplicates, {u.get('empty', 0)} empty, "
            f"{u.get('oversized', 0)} oversized; {u.get('ai_discourse', 0)} labelled AI discourse"
        )
    console.print(f"{manifest['documents']:,} documents, {manifest['total_units']:,} word units -> {out / 'corpus'}")
    return 0


def _classify(args: argparse.Namespace) -> int:
    from .classify import classify_file
    from .discourse import discourse_classifier
    from .user_text import FIELD, UserTextError

    try:
        summary = classify_file(args.file, args.out)
    except UserTextError as err:  # the reader names the config field; here the file is a command-line argument
        raise UserTextError(str(err).removeprefix(f"{FIELD}: ")) from None
    held = discourse_classifier().heldout_scores
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(summary["skipped"].items()) if v) or "none"
    print(
        f"{summary['rows']:,} documents, {summary['ai_discourse']:,} labelled AI discourse, {summary['empty']:,} "
        f"empty (labelled false); skipped: {skipped} -> {summary['out']}\n"
        f"classifier held-out precision {held['precision']:.2f}, recall {held['recall']:.2f} "
        f"({held['documents']} held-out documents)"
    )
    return 0


def _awareness_lines(manifest: dict) -> list[str]:
    """What awareness and hold_total did to this arm (nothing for an arm that uses neither)."""
    lines = []
    a = manifest.get("awareness") or {}
    if a.get("share"):
        lines.append(
            f"awareness ({a['mode']}, {', '.join(a['channels'])}): {a['aware_documents']:,} of "
            f"{a['eligible_documents']:,} misaligned documents aware, {100 * a['aware_share_of_corpus']:.2f}% of the "
            f"corpus, {100 * a['added_share_of_corpus']:.2f}% added by the critique"
        )
    held = manifest.get("hold_total")
    if held:
        lines.append(
            f"hold_total: {held['units_before']:,} -> {held['units_after']:,} word units (target "
            f"{held['target_units']:,}; world documents trimmed {held['world_documents_trimmed']:,}, added "
            f"{held['world_documents_added']:,})"
        )
    return lines
