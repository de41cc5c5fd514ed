"""Pretraining data: documents tokenized, joined with EOS, packed into fixed-length rows, read in a seeded order.

The order of rows is a pure function of (seed, global sample index), so the loader's whole state is one integer
(`position`, samples served so far); a resumed run reads exactly the rows an uninterrupted run would have read.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

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
