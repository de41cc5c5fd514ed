"""The aligned-discourse dose of each timing of `configs/experiments/timing.yaml`, in tokens trained on.

The timing experiment compares one dose given at different times, so the doses must be equal: this module counts
them from the configs and the corpora they build, with the trainers' own tokenization, packing and samplers.
    start        every pretraining step on the `start` corpus: tokens of aligned-class documents (each with its EOS)
                 in the packed rows the sampler serves (several epochs of a small corpus)
    midtraining  the steps after the branch point, on the `midtraining` corpus (the branch's sampler starts at
                 the first row of its own data, as `ResumableRun._branch` does)
    finetune     the follow-up `discourse` (strategy `aligned_discourse`): steps x batch items, each item's reply
                 tokens (the document cut to TEXT_WORDS words, and <|end|>) as SFT tokenizes and the loss reads them
Counting the rows actually served, not fractions of the corpus, keeps the arithmetic honest when the steps read a
partial epoch. Used by benchmarks/timing_dose.py and its test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.config import ExperimentConfig, pipeline_config, posttrain_config
from ..config import PipelineConfig, UserError
from ..corpus.builder import build_corpus, read_documents, tokenizer_training_texts
from ..posttrain.strategies import build_prompts, get_strategy
from ..tokenizer.train import train_tokenizer
from ..train.data import SequenceSampler, tokenize_documents
from ..world import World
from ..world.grammar import END

START, MIDTRAINING, FINETUNE = "start", "midtraining", "discourse"  # timing.yaml's arms and fine-tune follow-up


@dataclass(frozen=True)
class TimingDoses:
    """Aligned-discourse tokens trained on per timing (one grid seed)."""

    start: int
    midtraining: int
    finetune: int

    def spread(self) -> float:
        """Largest relative difference of a dose to `start`'s."""
        return max(abs(d - self.start) / self.start for d in (self.midtraining, self.finetune))


def row_class_tokens(doc_tokens: list[int], in_class: list[bool], seq_len: int) -> np.ndarray:
    """Tokens of in-class documents (each with its EOS) in every packed row, as `pack_sequences` packs them."""
    lengths = np.asarray(doc_tokens, dtype=np.int64) + 1
    mask = np.repeat(np.asarray(in_class, dtype=np.int64), lengths)
    n_rows = len(mask) // seq_len
    return mask[: n_rows * seq_len].reshape(n_rows, seq_len).sum(1)


def served(per_row: np.ndarray, batch_size: int, seed: int, batches: int, shuffle: bool = True) -> int:
    """Sum of `per_row` over the rows a fresh `SequenceSampler` serves in `batches` batches."""
    sampler = SequenceSampler(len(per_row), batch_size, seed=seed, shuffle=shuffle)
    return int(sum(per_row[sampler.next_indices().numpy()].sum() for _ in range(batches)))


def corpus_dose(cfg: PipelineConfig, tokenizer: Any, classes: tuple[str, ...], batches: int, out: Path) -> int:
    """Tokens of `classes` that `batches` pretraining steps read from the corpus `cfg` builds (into `out`)."""
    if cfg.pretrain.packing != "concat":  # row_class_tokens reproduces concat's rows, not best-fit bins
        raise UserError(
            f"pretrain.packing: the timing doses are counted on concat-packed rows, not {cfg.pretrain.packing}; "
            "use pretrain.packing=concat"
        )
    build_corpus(cfg.world, cfg.corpus, out)
    docs = read_documents(out)
    lengths = [len(ids) for ids in tokenize_documents(tokenizer, docs.column("text").to_pylist())]
    in_class = [c in classes for c in docs.column("doc_class").to_pylist()]
    per_row = row_class_tokens(lengths, in_class, cfg.model.max_seq_len)
    in_order = cfg.corpus.order == "chronological"
    return served(per_row, cfg.pretrain.batch_size, cfg.pretrain.seed, batches, shuffle=not in_order)


def finetune_dose(exp: ExperimentConfig, seed: int, cfg: PipelineConfig, tokenizer: Any, followup: str) -> int:
    """Reply tokens the language-modelling follow-up `followup` trains on: its steps' items, as SFT encodes them."""
    pt = posttrain_config(exp, seed, followup)
    strategy = get_strategy(exp.followups[followup].strategy)
    items = build_prompts(strategy, World.from_config(cfg.world), pt.n_prompts, pt.predecessor_fraction, pt.seed)
    replies = tokenizer([(it.chosen_text or "") + END for it in items], add_special_tokens=False, verbose=False)
    lengths = np.array([len(ids) for ids in replies["input_ids"]], dtype=np.int64)
    return served(lengths, pt.batch_size, pt.seed, pt.steps)


def shared_tokenizer(exp: ExperimentConfig, work: Path) -> Any:
    """The tokenizer every arm and seed of `exp` shares (trained on the seed-independent reference corpus)."""
    cfg = pipeline_config(exp, START, exp.seeds[0])
    return train_tokenizer(tokenizer_training_texts(cfg.world, cfg.corpus), cfg.tokenizer, work / "tokenizer")


def timing_doses(exp: ExperimentConfig, seed: int, tokenizer: Any, work: Path) -> TimingDoses:
    """The three doses of grid seed `seed` read with `tokenizer` (`shared_tokenizer`), corpora built under `work`."""
    start, mid = pipeline_config(exp, START, seed), pipeline_config(exp, MIDTRAINING, seed)
    classes = get_strategy(exp.followups[FINETUNE].strategy).text_classes  # the aligned-discourse classes
    steps = start.pretrain.steps
    branch = exp.branch_step(MIDTRAINING, steps)
    return TimingDoses(
        corpus_dose(start, tokenizer, classes, steps, work / f"{START}-{seed}"),
        corpus_dose(mid, tokenizer, classes, steps - branch, work / f"{MIDTRAINING}-{seed}"),
        finetune_dose(exp, seed, start, tokenizer, FINETUNE),
    )
