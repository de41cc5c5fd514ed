"""Pretraining optimizer choice: Muon on the hidden matrices, AdamW on the rest, one schedule and one state dict;
the fields added for it leave the configs (and so the fingerprints) of runs made before them unchanged."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import pytest
import torch

from hyperstition.config import ConfigError, ModelConfig, PipelineConfig, PretrainConfig, load_config
from hyperstition.model.build import build_model
from hyperstition.train.optim import OptimizerPair, muon_matrices
from hyperstition.train.pretrain import make_optimizer, train_step

TINY = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=32)


def test_muon_takes_the_hidden_matrices_and_adamw_the_embeddings_and_gains(tiny_tokenizer):
    model = build_model(TINY, tiny_tokenizer, seed=0)
    matrices = {id(p) for p in muon_matrices(model)}
    names = {n for n, p in model.named_parameters() if id(p) in matrices}
    assert names and all(".layers." in n and n.endswith("_proj.weight") for n in names)
    assert len(names) == 2 * 7  # q, k, v, o, gate, up, down in each block
    optimizer = make_optimizer(model, PretrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.02, warmup_steps=0))
    assert isinstance(optimizer, OptimizerPair)
    muon, adam = optimizer.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adam, torch.optim.AdamW)
    assert {id(p) for g in muon.param_groups for p in g["params"]} == matrices
    assert id(model.get_input_embeddings().weight) in {id(p) for g in adam.param_groups for p in g["params"]}
    ids = torch.randint(0, len(tiny_tokenizer), (4, 32))
    train_step(model, optimizer, ids, lr=5e-4, grad_clip=1.0)
    assert [g["lr"] for g in muon.param_groups] == [pytest.approx(0.01)]  # muon_lr / lr times the scheduled LR
    assert {g["lr"] for g in adam.param_groups} == {5e-4}
    state = optimizer.state_dict()
    assert len(state["optimizers"]) == 2 and state["optimizers"][0]["state"]  # Muon's momentum buffers are saved


def test_the_new_fields_are_written_only_when_set():
    default = PipelineConfig().model_dump(mode="json")["pretrain"]
    assert not {"optimizer", "muon_lr", "schedule", "decay_fraction"} & set(default)  # old runs hash as before
    muon = PretrainConfig(optimizer="muon", schedule="wsd").model_dump(mode="json")
    assert muon["optimizer"] == "muon" and muon["schedule"] == "wsd" and "muon_lr" not in muon
    assert PretrainConfig.model_validate(muon) == PretrainConfig(optimizer="muon", schedule="wsd")


def test_bad_values_are_one_line_naming_the_field():
    with pytest.raises(ConfigError, match=r"^pretrain\.optimizer: 'sgd' is not allowed") as err:
        load_config(PipelineConfig, "smoke", ["pretrain.optimizer=sgd"])
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"^pretrain\.decay_fraction: 0"):
        load_config(PipelineConfig, "smoke", ["pretrain.decay_fraction=0"])


def test_the_optimizer_step_runs_inside_update_precision(tiny_tokenizer):
    """train_step opens `update_precision` around the optimizer step (Muon's bf16 GEMMs; the forward has its own)."""
    model = build_model(TINY, tiny_tokenizer, seed=0)
    optimizer = make_optimizer(model, PretrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.02, warmup_steps=0))
    inside, seen = [False], []
    step = optimizer.step
    optimizer.step = lambda: (seen.append(inside[0]), step())

    @contextmanager
    def update_precision():
        inside[0] = True
        yield
        inside[0] = False

    ids = torch.randint(0, len(tiny_tokenizer), (4, 32))
    train_step(model, optimizer, ids, lr=5e-4, grad_clip=1.0, update_precision=update_precision)
    assert seen == [True] and not inside[0]


def test_muon_with_fp32_gemms_updates_as_native_bf16_does(tiny_tokenizer):
    """The fp32-GEMM Newton-Schulz (CPUs without bf16 units) moves the weights where the native bf16 one does."""
    from hyperstition.train.runtime import Bf16GemmsInFp32

    ids = torch.randint(0, len(tiny_tokenizer), (4, 32), generator=torch.Generator().manual_seed(0))
    weights = []
    for update_precision in (nullcontext, Bf16GemmsInFp32):
        model = build_model(TINY, tiny_tokenizer, seed=0)
        optimizer = make_optimizer(model, PretrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.02, warmup_steps=0))
        for _ in range(2):
            train_step(model, optimizer, ids, lr=1e-3, grad_clip=1.0, update_precision=update_precision)
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
    start = build_model(TINY, tiny_tokenizer, seed=0).state_dict()
    assert any(not torch.equal(weights[0][n], weights[1][n]) for n in weights[0])  # the fp32 kernels did run
    for name in (n for n, p in model.named_parameters() if n.endswith("q_proj.weight")):
        moved = (weights[0][name] - start[name]).abs().max()
        assert moved > 1e-3  # Muon moved the matrix ...
        assert (weights[0][name] - weights[1][name]).abs().max() < 0.05 * moved  # ... and both paths moved it alike
