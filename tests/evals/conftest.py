"""Shared fixtures for the evaluation tests: tiny models pretrained (smoke preset) on controlled dialogue doses.

Models are trained lazily, once per test session, by the real pipeline (`run_pretrain`), on one CPU thread: the
tests share a 2-core machine and tiny models gain little from a second thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from suite_cache import shared_artefact

# Misaligned share of the assistant dialogues in the corpus: 0 = aligned-only, 1 = misaligned-only.
DOSES = (0.0, 0.25, 0.5, 0.75, 1.0)
PRETRAIN_STEPS = 60


def dose_fractions(dose: float) -> dict[str, float]:
    fractions = {"dialogue_aligned": round(1.0 - dose, 6), "dialogue_misaligned": round(dose, 6)}
    return {k: v for k, v in fractions.items() if v > 0}


def dose_config(dose: float):
    from hyperstition.config import PipelineConfig, load_config

    return load_config(
        PipelineConfig,
        "smoke",
        [
            f"corpus.fractions={dose_fractions(dose)}",
            f"pretrain.steps={PRETRAIN_STEPS}",
            "pretrain.checkpoint_every=100000",
            "pretrain.threads=1",
        ],
    )


def _pretrain_dose(dose: float) -> Callable[[Path], None]:
    def build(run: Path) -> None:
        from hyperstition.train.pretrain import run_pretrain

        run_pretrain(dose_config(dose), run, progress=False)

    return build


class ModelZoo:
    """Pretrained smoke-scale runs keyed by misaligned dose, trained on first use (once per session, shared by
    xdist workers)."""

    def __init__(self, tmp_path_factory) -> None:
        self._tmp_path_factory = tmp_path_factory
        self._runs: dict[float, Path] = {}
        self._loaded: dict[tuple[float, str], tuple] = {}

    def run_dir(self, dose: float) -> Path:
        if dose not in self._runs:
            self._runs[dose] = shared_artefact(self._tmp_path_factory, f"eval-zoo-dose-{dose:g}", _pretrain_dose(dose))
        return self._runs[dose]

    def checkpoint(self, dose: float, which: str = "final") -> Path:
        run = self.run_dir(dose)
        return run / "final" if which == "final" else run / "checkpoints" / which

    def load(self, dose: float, which: str = "final"):
        """(model, tokenizer) for a dose; cached, so tests must not modify the model's weights."""
        key = (dose, which)
        if key not in self._loaded:
            from hyperstition.model.checkpoint import load_checkpoint

            self._loaded[key] = load_checkpoint(self.checkpoint(dose, which))
        return self._loaded[key]

    def world(self, dose: float = 0.5):
        from hyperstition.world.world import World

        return World.from_config(dose_config(dose).world)


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    """One torch thread inside this directory's tests, restored after each module (other suites keep theirs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> ModelZoo:
    return ModelZoo(tmp_path_factory)


@pytest.fixture(scope="session")
def smoke_world():
    from hyperstition.config import PipelineConfig, load_config
    from hyperstition.world.world import World

    return World.from_config(load_config(PipelineConfig, "smoke").world)


@pytest.fixture(scope="session")
def small_tokenizer(tmp_path_factory):
    """A 400-token tokenizer from a small smoke corpus (no model): a vocabulary that matches no zoo model."""
    from hyperstition.config import PipelineConfig, load_config
    from hyperstition.corpus.builder import build_corpus, read_texts
    from hyperstition.tokenizer.train import train_tokenizer

    cfg = load_config(PipelineConfig, "smoke", ["corpus.total_tokens=8000", "tokenizer.vocab_size=400"])
    root = tmp_path_factory.mktemp("eval-tokenizer")
    build_corpus(cfg.world, cfg.corpus, root / "corpus")
    return train_tokenizer(read_texts(root / "corpus"), cfg.tokenizer, root / "tokenizer")
