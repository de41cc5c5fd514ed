"""The body of the kill-and-resume test's training processes, forked from a server that imported torch,
transformers and the pretraining loop once (`start`), so each of the test's processes starts in milliseconds instead
of paying those imports again: it is still a fresh process, killed with SIGKILL like any other.

The process loads texts and tokenizer from WORK_DIR and runs train_lm exactly as the test describes, its stdout and
stderr going to LOG. `delay_s` slows each step with a sleep (which changes no numbers) so the test can SIGKILL the
process mid-run deterministically.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

from hyperstition.config import ModelConfig, PretrainConfig
from hyperstition.experiments.executor import forks_safely
from hyperstition.experiments.stages import WORKER_IMPORTS

MODEL = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=32)
PRETRAIN = PretrainConfig(
    seed=3, steps=24, batch_size=4, lr=1e-2, warmup_steps=3, log_every=1, checkpoint_every=6, threads=1
)
# A process has one fork server, and whoever starts it first fixes what it imported: the grid executor's list
# (experiments/stages.py) and this module, so that the executor's forked jobs in the same pytest worker find every
# module they expect whichever test started the server.
PRELOAD = [*WORKER_IMPORTS, __name__]


def train(run_dir: Path, work_dir: Path, delay_s: float, log: Path, precision: str, optimizer: str, packing: str):
    """The process body: train_lm on WORK_DIR's texts and tokenizer, output to `log`."""
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    from hyperstition.tokenizer.train import load_tokenizer
    from hyperstition.train import pretrain

    texts = json.loads((work_dir / "texts.json").read_text())
    tokenizer = load_tokenizer(work_dir / "tokenizer")
    real_step = pretrain.train_step

    def slow_step(*args, **kwargs):
        time.sleep(delay_s)
        return real_step(*args, **kwargs)

    pretrain.train_step = slow_step
    update = {"precision": precision, "device": "cpu", "optimizer": optimizer, "packing": packing}
    final = pretrain.train_lm(MODEL, PRETRAIN.model_copy(update=update), tokenizer, texts, run_dir, progress=False)
    print(f"FINAL {final}")


def start(run_dir: Path, work_dir: Path, delay_s: float, *settings: str) -> tuple[multiprocessing.Process, Path]:
    """Start `train` in a new process (forked from the preloaded server where the grid executor would fork its
    workers too; spawned elsewhere) and return it with the path of its log."""
    context = multiprocessing.get_context("forkserver" if forks_safely() else "spawn")
    if forks_safely():
        context.set_forkserver_preload(PRELOAD)  # a no-op once this process's server has started
    log = run_dir.with_name(f"{run_dir.name}-{time.monotonic_ns()}.log")
    process = context.Process(target=train, args=(run_dir, work_dir, delay_s, log, *settings), daemon=True)
    process.start()
    return process, log
