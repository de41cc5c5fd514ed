"""build_model: stock HF classes sized by the tokenizer; presets pinned to their parameter counts."""

from __future__ import annotations

import pytest
import torch
from transformers import GPTNeoXForCausalLM, LlamaForCausalLM

from hyperstition.config import ModelConfig
from hyperstition.model.build import MODEL_PRESETS, build_model, count_parameters

TINY = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=32)


class FakeTokenizer:
    """Just what build_model reads: length and special ids (a real 2048-entry BPE would cost seconds to train)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.eos_token_id, self.bos_token_id, self.pad_token_id = 0, 0, 1

    def __len__(self) -> int:
        return self.size


def test_llama_matches_tokenizer(tiny_tokenizer):
    model = build_model(TINY, tiny_tokenizer, seed=0)
    assert isinstance(model, LlamaForCausalLM)
    assert model.config.vocab_size == len(tiny_tokenizer)
    assert model.config.eos_token_id == tiny_tokenizer.eos_token_id
    assert model.config.pad_token_id == tiny_tokenizer.pad_token_id
    assert model.config.bos_token_id == tiny_tokenizer.eos_token_id
    assert model.get_input_embeddings().weight.shape == (len(tiny_tokenizer), 32)
    assert model.dtype == torch.float32


def test_gpt_neox_architecture(tiny_tokenizer):
    model = build_model(TINY.model_copy(update={"architecture": "gpt_neox"}), tiny_tokenizer, seed=0)
    assert isinstance(model, GPTNeoXForCausalLM)
    ids = torch.tensor([[3, 4, 5, 6]])
    assert model(input_ids=ids).logits.shape == (1, 4, len(tiny_tokenizer))


def test_same_seed_same_weights(tiny_tokenizer):
    a, b, c = (build_model(TINY, tiny_tokenizer, seed=s) for s in (0, 0, 1))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_tied_embeddings_counted_once(tiny_tokenizer):
    tied = build_model(TINY, tiny_tokenizer, seed=0)
    untied = build_model(TINY.model_copy(update={"tie_embeddings": False}), tiny_tokenizer, seed=0)
    assert count_parameters(untied) - count_parameters(tied) == len(tiny_tokenizer) * 32
    assert tied.get_output_embeddings().weight is tied.get_input_embeddings().weight


@pytest.mark.parametrize(
    ("preset", "expected"), [("1M", 1_053_824), ("5M", 5_049_600), ("25M", 26_354_176), ("124M", 118_377_216)]
)
def test_preset_sizes_at_vocab_2048(preset, expected):
    assert count_parameters(build_model(MODEL_PRESETS[preset], FakeTokenizer(2048))) == expected


@pytest.mark.parametrize(
    ("pipeline", "model", "expected"), [("gpu", "25M", 29_499_904), ("gpu-124m", "124M", 123_095_808)]
)
def test_gpu_size_ladder(pipeline, model, expected):
    """The GPU presets are the builder's sizes, and their parameter counts at their own vocabulary are the ladder's."""
    from hyperstition.config import PipelineConfig, load_config

    cfg = load_config(PipelineConfig, pipeline)
    assert cfg.model == MODEL_PRESETS[model]
    assert count_parameters(build_model(cfg.model, FakeTokenizer(cfg.tokenizer.vocab_size))) == expected
