"""Errors of the post-training stage. Every message is one line; the CLI prints it and exits 2 (3 for divergence)."""

from __future__ import annotations

from pathlib import Path

from ..config import UserError


class PosttrainError(UserError, ValueError):
    """Input post-training cannot use: unknown strategy, a base whose tokenizer does not fit the world, no data."""


class UnknownStrategy(PosttrainError):
    """A strategy name that is not defined; the message lists the valid ones."""


class PosttrainDataError(PosttrainError):
    """Training data that cannot be used (empty preference set, unreadable file, prompts off-distribution)."""


class TokenizerMismatch(PosttrainError):
    """The base checkpoint's tokenizer is not the one the world's chat prompts (or the model's embedding) expect."""


class PosttrainDiverged(UserError, RuntimeError):
    """Training loss, gradients or KL became NaN/inf; the run stopped and saved its last good weights."""

    def __init__(self, message: str, step: int, last_good: Path, last_good_step: int) -> None:
        super().__init__(message)
        self.step = step
        self.last_good = Path(last_good)
        self.last_good_step = last_good_step
