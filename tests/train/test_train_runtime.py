"""Runtime choices: auto resolves per device; bf16 on CPU runs (with matmul attention) and still saves
stock checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from hyperstition.config import ModelConfig, PretrainConfig
from hyperstition.io import RunLockedError, read_jsonl
from hyperstition.io import training_lock as run_lock
from hyperstition.train.pretrain import runtime_for as resolve_runtime
from hyperstition.train.pretrain import train_lm

TINY = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=32)


def test_auto_on_cpu_is_fp32_eager_with_sdpa():
    runtime = resolve_runtime(PretrainConfig(device="cpu"))
    assert (runtime.device.type, runtime.bf16, runtime.compile, runtime.attention) == ("cpu", False, False, "sdpa")


def test_explicit_choices_win_over_auto():
    runtime = resolve_runtime(PretrainConfig(device="cpu", precision="bf16", compile="on"))
    assert runtime.bf16 and runtime.compile and runtime.attention == "eager"


def test_auto_on_cuda_is_bf16_compiled_and_tf32_for_pretraining_only(monkeypatch):
    """What auto picks when torch sees a GPU (resolution only: nothing runs on it)."""
    from hyperstition.train import runtime
    from hyperstition.train.distributed import Ranks

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    pretraining = resolve_runtime(PretrainConfig(device="auto"))
    assert (pretraining.device.type, pretraining.bf16, pretraining.compile, pretraining.tf32) == (
        "cuda",
        True,
        True,
        True,
    )
    assert resolve_runtime(PretrainConfig(), Ranks(rank=3, world_size=4, local_rank=1)).device == torch.device(
        "cuda", 1
    )  # under torchrun each rank trains on the GPU of its local rank
    other = runtime.resolve_runtime("auto")  # post-training and evaluation: fp32 matmuls, no TF32
    assert (other.device.type, other.bf16, other.compile, other.tf32) == ("cuda", False, False, False)


def test_bf16_on_cpu_trains_and_saves_a_stock_checkpoint(tmp_path, tiny_tokenizer, tiny_texts):
    cfg = PretrainConfig(
        steps=6,
        batch_size=4,
        lr=1e-2,
        warmup_steps=1,
        log_every=3,
        checkpoint_every=3,
        precision="bf16",
        device="cpu",
        threads=1,
    )
    final = train_lm(TINY, cfg, tiny_tokenizer, tiny_texts, tmp_path, progress=False)
    losses = [m["loss"] for m in read_jsonl(tmp_path / "metrics.jsonl")]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    saved = json.loads((final / "config.json").read_text())
    assert "attn_implementation" not in json.dumps(saved)  # the CPU attention choice stays runtime-only
    model = AutoModelForCausalLM.from_pretrained(final)
    assert model.dtype == torch.float32  # master weights stay fp32 under autocast


def test_second_writer_to_a_run_dir_is_refused(tmp_path):
    with run_lock(tmp_path):
        with pytest.raises(RunLockedError, match="another process is training"):
            with run_lock(tmp_path):
                pass
    with run_lock(tmp_path):  # released on exit
        pass
