"""benchmarks/pretrain_throughput.py's data: its word salad fills the tokenizer vocabulary asked for, so a benchmarked
model has the parameter count of the preset it stands for (step_profile.py profiles the quick preset's 0.92M)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from hyperstition.config import ModelConfig

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize("vocab_size", [1024, 2048])
def test_the_word_salad_fills_the_vocabulary_asked_for(vocab_size, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports its sibling roofline.py by name
    throughput = importlib.import_module("pretrain_throughput")
    model_cfg = ModelConfig(d_model=128, n_layers=4, n_heads=4, d_ff=344, max_seq_len=128)
    tokenizer, rows = throughput.prepare(model_cfg, 64, tmp_path, vocab_size)
    assert len(tokenizer) == vocab_size
    assert rows.shape[0] >= 64 and rows.shape[1] == 128
