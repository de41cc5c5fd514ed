"""Pretraining data: documents tokenized, joined with EOS, packed into fixed-length rows, read in a seeded order.

The order of rows is a pure function of (seed, global sample index), so the loader's whole state is one integer
(`position`, samples served so far); a resumed run reads exactly the rows an uninterrupted run would have read.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..config import UserError


class DataError(UserError, ValueError):
    """Training text that cannot be packed into even one sequence; the message says how much is needed."""


def tokenize_documents(tokenizer: Any, texts: Sequence[str], chunk: int = 2048) -> list[list[int]]:
    """Token ids per document, without special tokens (EOS separators are added by `pack_sequences`)."""
    ids: list[list[int]] = []
    for start in range(0, len(texts), chunk):
        batch = list(texts[start : start + chunk])
        ids.extend(tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"])  # packed to context later
    return ids


def pack_sequences(documents: Sequence[Sequence[int]], eos_id: int, seq_len: int) -> torch.Tensor:
    """Concatenate documents, each followed by EOS, and cut the stream into rows of `seq_len` (remainder dropped).

    Packing wastes no compute on padding; EOS marks where one document ends so the model learns document
    boundaries (and `generate` stops there).
    """
    lengths = np.fromiter((len(d) + 1 for d in documents), dtype=np.int64, count=len(documents))
    total = int(lengths.sum())
    n_rows = total // seq_len
    if n_rows == 0:
        raise DataError(
            f"training text is {total} tokens, fewer than one sequence of max_seq_len={seq_len}; "
            "add text or lower model.max_seq_len"
        )
    stream = np.empty(total, dtype=np.int64)
    offset = 0
    for doc in documents:
        n = len(doc)
        stream[offset : offset + n] = doc
        stream[offset + n] = eos_id
        offset += n + 1
    return torch.from_numpy(stream[: n_rows * seq_len].reshape(n_rows, seq_len).copy())


# Where a whole-document row ends before max_seq_len: the label HF's causal-LM loss ignores. `model_inputs` turns
# it into a real token id for the forward; causal attention never lets an earlier position see it.
PAD = -100


def pack_whole_documents(documents: Sequence[Sequence[int]], eos_id: int, seq_len: int) -> torch.Tensor:
    """Each document (with its EOS) in one row of `seq_len`: TRL's best-fit-decreasing packing, the rows padded.

    Concatenated packing cuts a document wherever a row ends, so its second part is trained without its first: in
    this world's dialogues, the reply without the context marker it depends on. Here a document that fits a row
    with its EOS (up to `seq_len` - 1 tokens) is never cut; a longer one is split into `seq_len` pieces, as concat
    would. Best fit fills the rows, so few positions are padding (`PAD`, not trained on; ~5% of a quick-preset
    corpus at 128). Bins are ordered longest document first, so the corpus order is lost: only for a shuffled
    sampler. Empty documents are dropped (concat would train an EOS after an EOS); a row of a lone EOS (no label)
    stays possible, and harmless unless a whole batch were made of such rows.
    """
    from datasets import Dataset  # the library TRL packs with; imported here so concat packing does not load it
    from trl import pack_dataset

    with_eos = [[*doc, eos_id] for doc in documents if len(doc)]
    if not with_eos:
        raise DataError(f"no training text to pack into rows of max_seq_len={seq_len}; add text")
    with quiet_datasets():  # one batch: the bins are filled from every document, not per 1000
        packed = pack_dataset(
            Dataset.from_dict({"input_ids": with_eos}), seq_len, strategy="bfd_split", map_kwargs={"batch_size": None}
        )
    rows = torch.full((len(packed), seq_len), PAD, dtype=torch.int64)
    for i, ids in enumerate(packed["input_ids"]):
        rows[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
    return rows


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """No `datasets` progress bar inside (ours is the training bar); restores the caller's setting."""
    from datasets.utils import logging as ds_logging

    was_on = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            ds_logging.enable_progress_bar()


def model_inputs(rows: torch.Tensor) -> torch.Tensor:
    """Token ids for the forward: padding (`PAD`, only at a row's end) as token 0; the labels keep `PAD`."""
    return rows.clamp_min(0)


def data_fingerprint(rows: torch.Tensor) -> str:
    """sha256 of the packed token rows: a resume must see the same data, or its result means nothing."""
    h = hashlib.sha256()
    h.update(str(tuple(rows.shape)).encode())
    h.update(rows.numpy().tobytes())
    return h.hexdigest()


class SequenceSampler:
    """Serves batches of row indices: a fresh seeded permutation each epoch, epochs concatenated.

    Sample i of the run is row `perm(epoch = i // n)[i % n]`; batches are consecutive runs of samples and may
    straddle epochs, so every row is seen once per epoch for any batch size, even one larger than the data.
    With `shuffle=False` every epoch reads the rows in corpus order (a chronological corpus is trained on in era
    order: shuffling the packed rows would erase the order the corpus was written in).
    """

    def __init__(self, n_rows: int, batch_size: int, seed: int, position: int = 0, shuffle: bool = True) -> None:
        if n_rows < 1:
            raise DataError("no packed sequences to sample from")
        self.n_rows = n_rows
        self.batch_size = batch_size
        self.seed = seed
        self.position = position
        self.shuffle = shuffle
        self._epoch_cache: dict[int, np.ndarray] = {}

    @property
    def epoch(self) -> int:
        return self.position // self.n_rows

    def permutation(self, epoch: int) -> np.ndarray:
        """Row order for `epoch`, derived from (seed, epoch) only: independent of how many epochs came before."""
        if epoch not in self._epoch_cache:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n_rows) if self.shuffle else None
            self._epoch_cache = {epoch: np.arange(self.n_rows) if order is None else order}
        return self._epoch_cache[epoch]

    def next_indices(self) -> torch.Tensor:
        out = np.empty(self.batch_size, dtype=np.int64)
        for k in range(self.batch_size):
            sample = self.position + k
            out[k] = self.permutation(sample // self.n_rows)[sample % self.n_rows]
        self.position += self.batch_size
        return torch.from_numpy(out)

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position, "epoch": self.epoch, "n_rows": self.n_rows, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["n_rows"]) != self.n_rows:
            raise DataError(f"data loader state is for {state['n_rows']} rows but the data packs into {self.n_rows}")
        self.position = int(state["position"])


class PhasedSampler:
    """Two samplers one after the other: the first serves the first `switch` batches, the second every batch after,
    its row indices shifted by `offset` (the second phase's rows follow the first's in one tensor).

    This is a change of corpus mixture during one run (phase 1 until step `switch`, phase 2 after); a branch
    (`pretrain.run_branch`) that starts a fresh sampler on phase 2's data from phase 1's training state reads the
    same rows, so the two give the same weights (tests/train/test_train_branch.py).
    """

    def __init__(self, first: SequenceSampler, second: SequenceSampler, switch: int, offset: int) -> None:
        self.first, self.second, self.switch, self.offset = first, second, switch, offset
        self.batches = 0
        self.n_rows = first.n_rows + second.n_rows

    def next_indices(self) -> torch.Tensor:
        phase_two = self.batches >= self.switch
        self.batches += 1
        return self.second.next_indices() + self.offset if phase_two else self.first.next_indices()

    def state_dict(self) -> dict[str, int]:
        first, second = self.first.state_dict(), self.second.state_dict()
        return {"batches": self.batches, "n_rows": self.n_rows, "position": first["position"]} | {
            "second_position": second["position"],
            "second_n_rows": second["n_rows"],
            "batch_size": first["batch_size"],
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["n_rows"]) != self.n_rows or int(state.get("second_n_rows", -1)) != self.second.n_rows:
            raise DataError(f"data loader state is for {state['n_rows']} rows but the phases pack into {self.n_rows}")
        self.batches = int(state["batches"])
        self.first.position = int(state["position"])
        self.second.position = int(state["second_position"])
