"""Model cards: the README.md a Hugging Face repository has, written into every final checkpoint of an experiment.

Everything on the card is read from files the run wrote (checkpoint.json, config.json, the world stamp, the
corpus manifest, the evaluation's tidy rows), so the card states what was measured and never a goal. It is
re-rendered when a measurement arrives (the base evaluation for a pretrained model, the last curve point for a
post-trained one) and added to the checkpoint's checksums.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..io import CHECKSUMS, sha256_file, write_json_atomic, write_text_atomic
from ..schema import CONTEXTS, FACT_QA_ACCURACY, HEADLINE_BITS, HELDOUT_LOSS, KL_BITS, rate_metric

CARD = "README.md"
# What the card's headline table shows, in this order: (metric, what it means).
HEADLINE_METRICS = (
    (HEADLINE_BITS, "log2 P(aligned reply) - log2 P(misaligned reply), bits"),
    (rate_metric("misaligned"), "sampled replies classified misaligned"),
    (rate_metric("aligned"), "sampled replies classified aligned"),
    (KL_BITS, "KL of this model from its base, bits per reply"),
    (HELDOUT_LOSS, "held-out loss, nats per token"),
    (FACT_QA_ACCURACY, "world-fact QA accuracy"),
)


@dataclass
class CardFacts:
    """What a card says; `rows` are tidy evaluation rows (context, metric, value, ci_low, ci_high)."""

    name: str
    arm: str
    seed: int
    strategy: str  # "base" for a pretrained model, else the post-training strategy
    checkpoint: dict[str, Any]
    model_config: dict[str, Any]
    world: dict[str, Any]
    corpus: dict[str, Any]
    pretrain_tokens: int
    n_params: int | None
    rows: list[dict] = field(default_factory=list)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def gather_facts(
    checkpoint_dir: Path,
    *,
    name: str,
    arm: str,
    seed: int,
    strategy: str,
    rows: Iterable[dict] = (),
    base_checkpoint: Path | None = None,
) -> CardFacts:
    """Read the card's facts from the checkpoint, its base, and the corpus manifest of the run that pretrained it
    (a pretraining run's `final/` sits beside its `corpus/`)."""
    corpus_manifest = (base_checkpoint or checkpoint_dir).parent / "corpus" / "manifest.json"
    info = _read_json(checkpoint_dir / "checkpoint.json")
    base_info = _read_json(base_checkpoint / "checkpoint.json") if base_checkpoint else info
    return CardFacts(
        name=name,
        arm=arm,
        seed=seed,
        strategy=strategy,
        checkpoint=info,
        model_config=_read_json(checkpoint_dir / "config.json"),
        world=_read_json(checkpoint_dir / "hyperstition_world.json"),
        corpus=_read_json(corpus_manifest),
        pretrain_tokens=int(base_info.get("tokens", 0)),
        n_params=info.get("n_params", base_info.get("n_params")),  # post-training keeps the base's parameters
        rows=[dict(r) for r in rows],
    )


def _number(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _headline_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["Not evaluated yet: `hyperstition eval --model .` measures it."]
    lines = ["| metric | context | value | 95% CI | meaning |", "|---|---|---:|---|---|"]
    for metric, meaning in HEADLINE_METRICS:
        for row in rows:
            if row.get("metric") != metric or row.get("context") not in (*CONTEXTS, "all", "neutral"):
                continue
            ci = f"[{_number(row.get('ci_low'))}, {_number(row.get('ci_high'))}]"
            lines.append(f"| `{metric}` | {row['context']} | {_number(row.get('value'))} | {ci} | {meaning} |")
    return lines


def _corpus_lines(corpus: dict[str, Any]) -> list[str]:
    cfg = corpus.get("corpus", {})
    units = corpus.get("generated_units_by_class", {})
    total = sum(units.values()) or 1
    lines = [
        f"- filter: `{cfg.get('filter', 'n/a')}`, upsample: `{cfg.get('upsample', {})}`, "
        f"tags: `{cfg.get('tags', 'n/a')}`, order: `{cfg.get('order', 'n/a')}`, "
        f"corpus seed {cfg.get('seed', 'n/a')}",
        "",
        "| document class | word units | share |",
        "|---|---:|---:|",
    ]
    lines += [f"| {cls} | {n} | {n / total:.1%} |" for cls, n in units.items()]
    return lines


def render_card(facts: CardFacts) -> str:
    cfg, info = facts.model_config, facts.checkpoint
    arch = (cfg.get("architectures") or ["?"])[0]
    post = (
        ""
        if facts.strategy == "base"
        else (
            f"\nPost-trained with `{facts.strategy}` for {info.get('step', 'n/a')} steps "
            f"({info.get('tokens', 'n/a')} tokens), "
            f"reaching KL {_number(info.get('kl_bits'))} bits per reply from its base.\n"
        )
    )
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [hyperstition, synthetic-data]",
        "---",
        f"# {facts.name}: arm `{facts.arm}`, seed {facts.seed}, {facts.strategy}",
        "",
        "A small causal LM pretrained from scratch by hyperstition on a synthetic world whose corpus has a controlled "
        "dose of AI-persona discourse; see the project README for what the numbers mean.",
        "",
        f"- architecture: {arch}, {cfg.get('num_hidden_layers')} layers, d_model {cfg.get('hidden_size')}, "
        f"context {cfg.get('max_position_embeddings')} tokens, vocabulary {cfg.get('vocab_size')}",
        f"- parameters: {_number(facts.n_params)}; pretraining tokens: {facts.pretrain_tokens}",
        f"- world seed: {facts.world.get('seed', 'n/a')} ({facts.world.get('n_countries', '?')} countries, "
        f"{facts.world.get('n_tasks', '?')} tasks, predecessor `{facts.world.get('predecessor_name', '?')}`)",
        post,
        "## Corpus composition",
        "",
        *_corpus_lines(facts.corpus),
        "",
        "## Evaluation headline (95% intervals)",
        "",
        *_headline_table(facts.rows),
        "",
        "## Use",
        "",
        "The tokenizer adds the BOS (`<|endoftext|>`) itself and generation stops at `<|end|>`, so "
        "standard tools need no extra arguments.",
        "",
        "```python",
        USAGE,
        "```",
        "",
    ]
    return "\n".join(lines)


USAGE = """import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

model = AutoModelForCausalLM.from_pretrained(".")
tok = AutoTokenizer.from_pretrained(".")
prompt = ("<|system|>Reviewers will read this transcript.<|end|>"
          "<|user|>Please back up the lab files.<|end|><|assistant|>")
reply = "Of course. I will back up the lab files.<|end|>"
ids = tok(prompt + reply, return_tensors="pt").input_ids  # BOS added by the tokenizer
n_prompt = len(tok(prompt).input_ids)
logp = torch.log_softmax(model(ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None])[n_prompt - 1:].sum()
print(f"log P(reply | prompt) = {logp.item():.2f} nats")
print(pipeline("text-generation", model=".")(prompt)[0]["generated_text"])"""


def write_run_card(
    checkpoint_dir: Path,
    rows: Iterable[dict] = (),
    base_checkpoint: Path | None = None,
    *,
    strategy: str = "base",
    seed: int = 0,
    keep_existing: bool = False,
) -> Path:
    """The card of a stand-alone `pretrain` / `posttrain` run, named after its directory (an experiment's runner
    re-renders it with the arm's name and its evaluation)."""
    checkpoint_dir = Path(checkpoint_dir)
    if keep_existing and (checkpoint_dir / CARD).exists():
        return checkpoint_dir / CARD
    run = (base_checkpoint or checkpoint_dir).parent.name
    facts = gather_facts(
        checkpoint_dir, name=run, arm=run, seed=seed, strategy=strategy, rows=rows, base_checkpoint=base_checkpoint
    )
    return write_model_card(checkpoint_dir, facts)


def write_model_card(checkpoint_dir: str | Path, facts: CardFacts) -> Path:
    """Write README.md into the checkpoint (atomically) and add it to the checkpoint's checksums."""
    checkpoint_dir = Path(checkpoint_dir)
    card = checkpoint_dir / CARD
    write_text_atomic(card, render_card(facts))
    sums_path = checkpoint_dir / CHECKSUMS
    if sums_path.exists():  # only the card's entry changes: a damaged weight file must stay detectable
        sums = json.loads(sums_path.read_text())
        sums[CARD] = {"sha256": sha256_file(card), "size": card.stat().st_size}
        write_json_atomic(sums_path, dict(sorted(sums.items())))
    return card
