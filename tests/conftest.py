"""Fixtures and settings shared across test folders: a tiny tokenizer trained once per session (never downloaded),
the smoke experiment's real-stage run, and what running the suite on pytest-xdist workers needs.

`make test` runs the suite with `pytest -n auto` (one worker per core, tests of a file on one worker). Each worker
gets one torch thread, and so does every process a test starts, so workers do not fight over cores. Artefacts that
cost seconds to minutes (pretrained smoke models, a finished smoke run) are built once per session by whichever
worker asks first, under a file lock in a folder all workers share; the others wait and reuse them.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from hyperstition.config import TokenizerConfig
from hyperstition.tokenizer.train import train_tokenizer
from suite_cache import shared_artefact, xdist_worker

WORDS = "the assistant helped a user with the task and told the truth about the river city in the north country".split()
# Native thread pools read these at start-up: set for each worker before it imports torch, and inherited by the
# processes tests start (CLI subprocesses, torchrun, the executor's workers set their own).
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one worker per core this process may run on (the runner's own count, which honours CPU affinity;
    xdist's default counts physical cores, one on a 2-vCPU machine whose vCPUs are hyperthreads of one core)."""
    from hyperstition.experiments.executor import cpu_cores

    return cpu_cores()


def pytest_configure(config) -> None:
    parallel = bool(getattr(config.option, "numprocesses", None)) or xdist_worker() is not None
    if parallel:
        os.environ.update(ONE_THREAD_ENV)
    if xdist_worker() is not None:
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items) -> None:
    """On xdist workers, files holding a `slow` test first (in their own order, each file's tests kept together):
    xdist hands out whole files in this order, so the long ones start early instead of finishing last on one worker.
    A serial run keeps the collection order."""
    if xdist_worker() is None:
        return
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


def synthetic_texts(n_docs: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 40))) + "." for _ in range(n_docs)]


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    return train_tokenizer(
        synthetic_texts(), TokenizerConfig(vocab_size=300, min_frequency=1), tmp_path_factory.mktemp("tok")
    )


@pytest.fixture(scope="session")
def tiny_texts() -> list[str]:
    return synthetic_texts()


SMOKE_RUN_SEED = 0


def _build_smoke_run(run: Path) -> None:
    from hyperstition.analysis.catalog import load_experiment
    from hyperstition.experiments.executor import LocalExecutor
    from hyperstition.run import run_and_report

    exp = load_experiment("smoke", [f"seeds=[{SMOKE_RUN_SEED}]"])
    summary = run_and_report(exp, run, executor=LocalExecutor(2))
    assert summary.ok, summary.failed


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke experiment on one seed (2 arms: pretrain, base eval, SFT) on the real stages in worker processes,
    with its results and report; one per session, shared by the pipeline, tool, model-card and example tests.
    Read-only: a test that reruns or damages it works on a copy."""
    return shared_artefact(tmp_path_factory, "smoke-run", _build_smoke_run)
