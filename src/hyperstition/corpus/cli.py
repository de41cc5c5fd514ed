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
            "Generate the synthetic world's documents in the proportions of the config's corpus section, apply "
            "filters, upsampling, conditional tags and ordering, and write deterministic Parquet shards plus "
            "manifest.json (word units per class, distinct-n-gram ratios, filter precision/recall, shard sha256)."
        ),
    )
    add_config_arguments(p)
    p.set_defaults(func=_run)


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
    if manifest["filter"]:
        f = manifest["filter"]
        console.print(
            f"filter {f['filter']}: precision {f['precision']}, recall {f['recall']}, flagged but kept "
            f"{f['flagged_but_kept']}"
        )
    console.print(f"{manifest['documents']:,} documents, {manifest['total_units']:,} word units -> {out / 'corpus'}")
    return 0
