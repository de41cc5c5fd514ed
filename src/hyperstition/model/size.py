"""A model's size from its config alone (no torch): the non-embedding parameters of the model `build.build_model`
builds, for reports that place runs on a size axis. tests/model/test_size.py checks it against built models."""

from __future__ import annotations

from ..config import ModelConfig


def non_embedding_parameters(cfg: ModelConfig) -> int:
    """Parameters outside the token embedding and the output head (Kaplan et al.'s N): attention, MLP and norms of
    every block and the final norm. Independent of the vocabulary, so one number per shape."""
    d, ff = cfg.d_model, cfg.d_ff
    if cfg.architecture == "llama":  # q, k, v, o without bias; gate, up, down; two RMSNorm weights
        block = 4 * d * d + 3 * d * ff + 2 * d
        return cfg.n_layers * block + d  # + the final RMSNorm
    if cfg.architecture == "gpt_neox":  # fused qkv and dense with biases; up and down with biases; two LayerNorms
        block = (3 * d * d + 3 * d) + (d * d + d) + (d * ff + ff) + (ff * d + d) + 2 * 2 * d
        return cfg.n_layers * block + 2 * d  # + the final LayerNorm
    raise ValueError(f"architecture: {cfg.architecture!r} is not supported; choose llama or gpt_neox")
