"""Names shared by the ecosystem tests: the smoke experiment's arms, seed and strategy, and a cell's directory."""

from __future__ import annotations

from pathlib import Path

# SEED is the one seed of the session's smoke run (the `smoke_run` fixture in tests/conftest.py).
ARM_A, ARM_B, SEED, STRATEGY = "unfiltered", "misalignment_upsampled", 0, "sft"


def cell(run: Path, arm: str = ARM_A) -> Path:
    return run / "cells" / arm / f"seed-{SEED}"
