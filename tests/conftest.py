"""Fixtures shared across test folders: a tiny tokenizer trained once per session (never downloaded)."""

from __future__ import annotations

import random

import pytest

from hyperstition.config import TokenizerConfig
from hyperstition.tokenizer.train import train_tokenizer

WORDS = "the assistant helped a user with the task and told the truth about the river city in the north country".split()


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
