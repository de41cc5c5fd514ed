"""non_embedding_parameters: the count from the config alone equals the built model's parameters less its token
embedding and output head, for both architectures, tied and untied."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from hyperstition.config import ModelConfig
from hyperstition.model.build import count_parameters, hf_config
from hyperstition.model.size import non_embedding_parameters


class _Vocab:
    def __init__(self, size: int) -> None:
        self.size, self.eos_token_id, self.bos_token_id, self.pad_token_id = size, 0, 0, 1

    def __len__(self) -> int:
        return self.size


@pytest.mark.parametrize("architecture", ["llama", "gpt_neox"])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize(("d_model", "n_layers", "n_heads", "d_ff"), [(64, 5, 2, 172), (48, 3, 3, 100)])
def test_matches_the_built_model(architecture, tied, d_model, n_layers, n_heads, d_ff):
    cfg = ModelConfig(
        architecture=architecture,
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        d_ff=d_ff,
        max_seq_len=64,
        tie_embeddings=tied,
    )
    vocab = 300
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config(cfg, _Vocab(vocab)))
    embedding = vocab * d_model * (1 if tied else 2)
    assert non_embedding_parameters(cfg) == count_parameters(model) - embedding
