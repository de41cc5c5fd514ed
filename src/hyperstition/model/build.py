"""Build a Hugging Face causal LM from our `ModelConfig`, sized to the tokenizer it will be trained with.

We build stock `LlamaForCausalLM` / `GPTNeoXForCausalLM` models (never a class of our own) so that every checkpoint
loads with `AutoModelForCausalLM.from_pretrained` and works with TRL, PEFT and generation utilities unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import ModelConfig
from ..resources import check_memory

# Architectures sized for the lab's three scales. Parameter counts (tied embeddings, vocab 2048) are pinned by
# tests/model/test_build.py so a change to the builder that silently resizes them fails loudly.
MODEL_PRESETS: dict[str, ModelConfig] = {
    # ~1.05M params: smoke tests and the `quick` preset; trains at a few thousand tokens/s on 2 CPU cores.
    "1M": ModelConfig(d_model=128, n_layers=4, n_heads=4, d_ff=344, max_seq_len=256),
    # ~5.1M params: CPU-scale experiments where persona effects are clearer.
    "5M": ModelConfig(d_model=256, n_layers=6, n_heads=4, d_ff=640, max_seq_len=256),
    # ~26M params: GPU scale (the `gpu` preset: 29.5M at its vocabulary of 8192).
    "25M": ModelConfig(d_model=512, n_layers=8, n_heads=8, d_ff=1376, max_seq_len=512),
    # ~118M params, GPT-2 small's shape: one large GPU (the `gpu-124m` preset: 123.1M at its vocabulary of 8192).
    "124M": ModelConfig(d_model=768, n_layers=12, n_heads=12, d_ff=3200, max_seq_len=1024),
}


def vocab_size_of(tokenizer: Any) -> int:
    """Rows needed in the embedding: `len(tokenizer)` counts added special tokens, `tokenizer.vocab_size` does not."""
    return len(tokenizer)


def special_token_ids(tokenizer: Any) -> dict[str, int | None]:
    """bos/eos/pad ids for the HF config, so `generate` stops at EOS and pads with PAD without extra arguments."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("tokenizer has no eos_token; train it with hyperstition.tokenizer.train_tokenizer")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return {"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad}


def hf_config(cfg: ModelConfig, tokenizer: Any):
    """The transformers config for `cfg`: the same numbers every time, so a checkpoint's config.json is reproducible."""
    common = dict(
        vocab_size=vocab_size_of(tokenizer),
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        intermediate_size=cfg.d_ff,
        max_position_embeddings=cfg.max_seq_len,
        tie_word_embeddings=cfg.tie_embeddings,
        use_cache=True,
        **special_token_ids(tokenizer),
    )
    if cfg.architecture == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(
            num_key_value_heads=cfg.n_heads,
            hidden_act="silu",
            rms_norm_eps=1e-5,
            rope_theta=10_000.0,
            attention_bias=False,
            mlp_bias=False,
            attention_dropout=0.0,
            initializer_range=0.02,
            **common,
        )
    if cfg.architecture == "gpt_neox":
        from transformers import GPTNeoXConfig

        return GPTNeoXConfig(
            hidden_act="gelu",
            rotary_pct=0.25,
            rotary_emb_base=10_000,
            use_parallel_residual=True,
            attention_dropout=0.0,
            hidden_dropout=0.0,
            layer_norm_eps=1e-5,
            initializer_range=0.02,
            **common,
        )
    raise ValueError(f"architecture: {cfg.architecture!r} is not supported; choose llama or gpt_neox")


def stamp_hub_defaults(model: torch.nn.Module, tokenizer: Any) -> None:
    """Make the defaults of standard tools right for this model: set before every checkpoint is written.

    `tokenizer.model_max_length` becomes the model's context (tools truncate and window by it), and the generation
    config stops at the end of the assistant turn (`<|end|>`) as well as at EOS, greedy, with room up to the context,
    so `pipeline("text-generation")` ends a reply where our sampler does.
    """
    from transformers import GenerationConfig

    from ..tokenizer.train import END

    model = getattr(model, "_orig_mod", model)
    context = int(model.config.max_position_embeddings)
    tokenizer.model_max_length = context
    ids = special_token_ids(tokenizer)
    end = tokenizer.convert_tokens_to_ids(END)
    stops = [i for i in (end, ids["eos_token_id"]) if isinstance(i, int) and i >= 0 and i != tokenizer.unk_token_id]
    model.generation_config = GenerationConfig(
        bos_token_id=ids["bos_token_id"],
        eos_token_id=list(dict.fromkeys(stops)),
        pad_token_id=ids["pad_token_id"],
        max_length=context,
        do_sample=False,
    )


def build_model(cfg: ModelConfig, tokenizer: Any, seed: int | None = None):
    """A freshly initialised fp32 causal LM for `cfg` whose vocabulary and special ids match `tokenizer`.

    `seed` (when given) seeds torch before initialisation so two builds with the same seed are identical; the
    pretraining loop passes its own seed so a resumed run and an uninterrupted run start from the same weights.
    """
    from transformers import AutoModelForCausalLM

    config = hf_config(cfg, tokenizer)
    with torch.device("meta"):  # count the parameters without allocating them: refuse a model that cannot fit
        n_params = count_parameters(AutoModelForCausalLM.from_config(config, attn_implementation="sdpa"))
    check_memory(4 * n_params, f"a model of {n_params:,} fp32 parameters")
    if seed is not None:
        torch.manual_seed(seed)
    # sdpa is the fastest attention available everywhere (CPU and CUDA) and is what from_pretrained picks too.
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    return model


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Distinct parameters (tied input/output embeddings counted once), the N in the 6·N·tokens FLOP estimate."""
    seen: set[int] = set()
    total = 0
    for param in model.parameters():
        if id(param) in seen or (trainable_only and not param.requires_grad):
            continue
        seen.add(id(param))
        total += param.numel()
    return total
