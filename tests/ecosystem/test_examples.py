"""The scripts in examples/ run as a researcher runs them (a subprocess, on a finished smoke run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from ecosystem_helpers import ARM_A, ARM_B, STRATEGY

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    cmd = [sys.executable, str(EXAMPLES / name), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_results_with_pandas_and_duckdb_and_a_plot_of_bits_vs_kl(smoke_run, tmp_path):
    out = run_example("results_bits_vs_kl.py", str(smoke_run), "--out", str(tmp_path / "bits.png"), cwd=tmp_path)
    assert (tmp_path / "bits.png").stat().st_size > 0
    assert ARM_A in out and ARM_B in out and "kl_bits" in out


def test_persona_direction_per_layer_and_its_shift_under_post_training(smoke_run, tmp_path):
    pytest.importorskip("transformer_lens")
    csv = tmp_path / "direction.csv"
    args = [str(smoke_run), "--arms", ARM_A, ARM_B, "--strategy", STRATEGY, "--csv", str(csv)]
    run_example("persona_direction.py", *args, cwd=tmp_path)
    table = pd.read_csv(csv)
    n_layers = table.layer.max() + 1
    assert len(table) == 2 * n_layers and set(table.arm) == {ARM_A, ARM_B}
    assert (table.direction_norm > 0).all() and table.cos_arms.between(-1, 1).all()
    assert (table["shift"] - (table[f"projection_{STRATEGY}"] - table.projection_base)).abs().max() < 1e-5
