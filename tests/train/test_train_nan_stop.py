"""Pretraining stops at the first non-finite loss or gradient norm, names the step and the value, and keeps the last
good checkpoint (no checkpoint ever holds weights updated by a non-finite step)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from hyperstition.config import ModelConfig, PretrainConfig
from hyperstition.model.checkpoint import intact_checkpoint_info
from hyperstition.train import pretrain
from hyperstition.train.pretrain import PretrainDiverged, train_lm

TINY = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=32)
CFG = PretrainConfig(steps=20, batch_size=4, lr=1e-2, warmup_steps=2, log_every=5, checkpoint_every=10, threads=1)


def _poison(monkeypatch, at_step: int, loss: float | None = None, grad: float | None = None) -> None:
    """From optimizer step `at_step` on, the step reports a non-finite loss or gradient norm (and NaN weights)."""
    real = pretrain.train_step
    calls = {"n": 0}

    def step(model, *args, **kwargs):
        calls["n"] += 1
        out_loss, out_grad = real(model, *args, **kwargs)
        if calls["n"] < at_step:
            return out_loss, out_grad
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))
        out_loss = torch.tensor(loss) if loss is not None else out_loss
        return out_loss, (torch.tensor(grad) if grad is not None else out_grad)

    monkeypatch.setattr(pretrain, "train_step", step)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(monkeypatch, tmp_path, tiny_tokenizer, tiny_texts):
    _poison(monkeypatch, at_step=13, loss=float("nan"))
    with pytest.raises(PretrainDiverged) as info:
        train_lm(TINY, CFG, tiny_tokenizer, tiny_texts, tmp_path, progress=False)
    message = str(info.value)
    assert "\n" not in message and "step 13" in message and "loss nan" in message
    assert "latest (step 10, resumable)" in message
    assert not (tmp_path / "final").exists()
    latest = intact_checkpoint_info(tmp_path / "checkpoints" / "latest")
    assert latest is not None and latest["step"] == 10
    assert not (tmp_path / "checkpoints" / "step-000016").exists()
    tensors = load_file(str(tmp_path / "checkpoints" / "latest" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in tensors.values())
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [5, 10]


def test_infinite_grad_norm_at_step_one_saves_nothing(monkeypatch, tmp_path, tiny_tokenizer, tiny_texts):
    _poison(monkeypatch, at_step=1, grad=float("inf"))
    with pytest.raises(PretrainDiverged, match=r"step 1: loss .*, grad norm inf; stopped \(no checkpoint was saved"):
        train_lm(TINY, CFG, tiny_tokenizer, tiny_texts, tmp_path, progress=False)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
