"""Data-parallel pretraining across processes: `torchrun --nproc_per_node N -m hyperstition pretrain ...`.

torchrun starts N copies of the command with RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT set; `process_group`
joins them (gloo on CPU, nccl on CUDA) and the pretraining loop wraps the model in DistributedDataParallel.

The contract, so a DDP run is the single-process run with the work split:
  - The global batch is `pretrain.batch_size`, served by the same seeded, resumable `SequenceSampler` on every
    rank; rank r trains on rows [r*B/N, (r+1)*B/N) of it (per-rank batch = global / N, no gradient accumulation).
    DDP averages the gradients, and every row has the same number of tokens, so the averaged gradient is the
    single-process gradient up to fp32 summation order.
  - The logged loss is the mean over ranks (the global batch's mean loss), so metrics.jsonl reads as one run.
  - Only rank 0 writes: config, corpus, tokenizer, metrics, checkpoints and final (atomically, as always), under
    the run directory's lock; the other ranks wait at a barrier and then read what rank 0 wrote. Every rank
    resumes from the same `checkpoints/latest`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import ContextManager, Iterator

import torch
import torch.distributed as dist

from ..config import ConfigError
from .runtime import resolve_device

# Rank 0 may build a corpus and train a tokenizer while the others wait at a barrier: give it hours, not minutes.
BARRIER_TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the data-parallel processes (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files (rank 0)."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1


def launched_world_size() -> int:
    """How many processes torchrun started (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def current() -> Ranks:
    """The ranks of the joined process group, or the single process when none is joined."""
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def process_group(device: str, field: str = "pretrain.device") -> Iterator[Ranks]:
    """Join the processes torchrun started (gloo on CPU, nccl on CUDA) for the block, then leave; a process started
    without torchrun (or a group already joined by the caller) runs the block as it is."""
    if launched_world_size() <= 1 or dist.is_initialized():
        yield current()
        return
    on_cuda = resolve_device(device, field).type == "cuda"
    if on_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if on_cuda else "gloo", timeout=BARRIER_TIMEOUT)
    try:
        yield current()
    finally:
        dist.destroy_process_group()


def check_batch(batch_size: int, ranks: Ranks) -> None:
    """The global batch must split evenly: every rank trains on the same number of rows."""
    if batch_size % ranks.world_size:
        raise ConfigError(
            f"pretrain.batch_size: {batch_size} does not split over {ranks.world_size} processes; "
            f"use a multiple of {ranks.world_size} (the batch size is the global batch)"
        )


def shard(indices: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This rank's contiguous slice of the global batch's row indices."""
    per_rank = len(indices) // ranks.world_size
    return indices[ranks.rank * per_rank : (ranks.rank + 1) * per_rank]


def mean_over_ranks(value: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The mean of `value` over ranks (itself in one process); sum then divide, as gloo has no AVG."""
    if not ranks.parallel:
        return value
    total = value.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / ranks.world_size


def barrier(ranks: Ranks) -> None:
    if ranks.parallel:
        dist.barrier()


def wrap(model: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around `model` when parallel. Buffers are synced once, not before every forward:
    the only buffers (rotary frequencies) are constants every rank computes alike."""
    if not ranks.parallel:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """On CUDA each rank owns the GPU of its local rank; on CPU all share the host."""
    return torch.device("cuda", ranks.local_rank) if device.type == "cuda" and ranks.parallel else device


def main_only(ranks: Ranks, context: ContextManager) -> ContextManager:
    """`context` (a lock) entered by rank 0 only: the run directory has one writer however many ranks train."""
    return context if ranks.main else nullcontext()


@contextmanager
def main_first(ranks: Ranks) -> Iterator[bool]:
    """Rank 0 runs the block first (writing what the others will read); the others wait, then run it (reading).
    Yields whether this rank is the first."""
    if not ranks.main:
        barrier(ranks)
    yield ranks.main
    if ranks.main:
        barrier(ranks)
