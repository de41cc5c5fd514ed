"""Data-parallel pretraining (train/distributed.py): 2 gloo processes on 127.0.0.1 train the single-process run.

Two claims, on the kill-and-resume test's tiny model (resume_worker.py: 24 steps, global batch 4, fp32, one
thread per rank):

1. Same loss curve. Each rank trains on 2 of the 4 rows and DDP averages the two gradients, so the update is the
   single-process one up to fp32 summation order (two half-batch means averaged vs one full-batch mean), i.e. a
   relative error of a few fp32 eps (1.2e-7) per step that AdamW carries forward. Measured on the dev machine: the
   largest per-step loss difference over the 24 steps was 9.5e-7 (2 ulp of a loss near 5; final weights within
   3.9e-6). A sharding bug (both ranks reading the same half of the batch) moved the loss by 2.6e-3 at the least
   and 0.74 at the most. The tolerance, LOSS_TOLERANCE = 1e-4, is ~100x the measured difference (room for another
   CPU's SIMD blocking) and ~25x below the smallest difference the sharding bug made.
2. Kill and resume. A 2-process run SIGKILLed (all of its processes) after its first rolling checkpoint and
   started again ends with the weights of an uninterrupted 2-process run. Tolerance 0 (bit-identical), derived:
   both runs do the same operations in the same order, and an all-reduce over two ranks is one fp32 addition,
   which is commutative, so nothing differs between them but the restart, which the training state covers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from resume_worker import MODEL, PRETRAIN
from safetensors.torch import load_file

from hyperstition.config import ConfigError
from hyperstition.io import process_gone, read_jsonl
from hyperstition.train.distributed import Ranks, check_batch, shard
from hyperstition.train.pretrain import train_lm

WORKER = Path(__file__).with_name("ddp_worker.py")
LOSS_TOLERANCE = 1e-4


def _torchrun(run_dir: Path, work_dir: Path, delay: float) -> subprocess.Popen:
    """2 ranks under torchrun, one thread each."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.Popen(
        [*command, str(WORKER), str(run_dir), str(work_dir), str(delay)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "RANK 0 OF 2" in out and "RANK 1 OF 2" in out
    return err


def _kill_run(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and its ranks (each rank runs in a session of its own, so the agent's group is not enough)."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    for pid in [proc.pid, *map(int, children)]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    for pid in map(int, children):
        while not process_gone(pid):
            time.sleep(0.01)


def _kill_after_first_checkpoint(proc: subprocess.Popen, run_dir: Path, timeout: float = 180.0) -> None:
    marker = run_dir / "checkpoints" / "latest" / "checksums.json"
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(
                f"torchrun exited ({proc.returncode}) before the first checkpoint: {proc.stderr.read()[-2000:]}"
            )
        if time.monotonic() > deadline:
            _kill_run(proc)
            pytest.fail(f"{marker} did not appear within {timeout} s")
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; the test would prove nothing"
    _kill_run(proc)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "final" / "model.safetensors")


def test_two_processes_train_the_single_process_run_and_resume_after_a_kill(tmp_path, tiny_tokenizer, tiny_texts):
    work = tmp_path / "work"
    tiny_tokenizer.save_pretrained(work / "tokenizer")
    (work / "texts.json").write_text(json.dumps(tiny_texts))
    straight_dir, killed_dir, single_dir = tmp_path / "ddp", tmp_path / "ddp-killed", tmp_path / "single"

    straight = _torchrun(straight_dir, work, delay=0.0)
    victim = _torchrun(killed_dir, work, delay=0.15)
    cfg = PRETRAIN.model_copy(update={"device": "cpu"})
    train_lm(MODEL, cfg, tiny_tokenizer, tiny_texts, single_dir, progress=False)  # meanwhile, in this process
    _kill_after_first_checkpoint(victim, killed_dir)
    assert not (killed_dir / "final").exists()
    assert max(m["step"] for m in read_jsonl(killed_dir / "metrics.jsonl")) < PRETRAIN.steps
    assert "resuming" not in _finish(straight)
    assert "resuming from" in _finish(_torchrun(killed_dir, work, delay=0.0))

    single, ddp = read_jsonl(single_dir / "metrics.jsonl"), read_jsonl(straight_dir / "metrics.jsonl")
    assert [m["step"] for m in ddp] == [m["step"] for m in single] == list(range(1, PRETRAIN.steps + 1))
    assert [m["tokens"] for m in ddp] == [m["tokens"] for m in single]  # tokens count the global batch
    differences = [abs(a["loss"] - b["loss"]) for a, b in zip(ddp, single, strict=True)]
    assert max(differences) <= LOSS_TOLERANCE, differences
    assert single[-1]["loss"] < single[0]["loss"] - 1.0  # the curve being compared is a learning curve

    resumed, uninterrupted = _weights(killed_dir), _weights(straight_dir)
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in uninterrupted)
    assert [m["loss"] for m in read_jsonl(killed_dir / "metrics.jsonl")] == [m["loss"] for m in ddp]


def test_global_batch_is_split_into_disjoint_shards():
    indices = torch.arange(10, 18)
    parts = [shard(indices, Ranks(rank, 4)) for rank in range(4)]
    assert torch.equal(torch.cat(parts), indices)  # disjoint, in order, covering the global batch
    assert torch.equal(shard(indices, Ranks()), indices)


def test_batch_that_does_not_split_is_one_line_error():
    check_batch(8, Ranks(0, 4))
    with pytest.raises(ConfigError, match="batch_size: 6 does not split over 4 processes") as err:
        check_batch(6, Ranks(1, 4))
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_torchrun_runs_the_pretrain_command(tmp_path):
    """`torchrun ... -m hyperstition pretrain`: rank 0 builds corpus and tokenizer while rank 1 waits, then reads
    them; one final checkpoint, one config, one metrics file, announced once."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    overrides = ["corpus.total_tokens=4000", "corpus.heldout_documents=10", "tokenizer.vocab_size=300"]
    overrides += ["model.max_seq_len=64", "pretrain.steps=4", "pretrain.log_every=2", "pretrain.threads=1"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "hyperstition", "pretrain", "smoke", *overrides, "--no-progress", "--out", str(tmp_path / "r")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("final checkpoint:") == 1
    assert [m["step"] for m in read_jsonl(tmp_path / "r" / "metrics.jsonl")] == [2, 4]
    assert (tmp_path / "r" / "final" / "model.safetensors").exists() and (tmp_path / "r" / "config.yaml").exists()
