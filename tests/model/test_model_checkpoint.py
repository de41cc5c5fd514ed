"""Checkpoints: stock HF loading, no pickle, checksums that catch damage, atomic replacement and recovery."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hyperstition.config import ModelConfig
from hyperstition.model.build import build_model
from hyperstition.model.checkpoint import (
    CHECKSUMS,
    CheckpointError,
    load_checkpoint,
    load_training_state,
    load_weights_into,
    pack_state,
    recover_checkpoint,
    save_checkpoint,
    unpack_state,
    verify_checkpoint,
)

TINY = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=32)


@pytest.fixture
def trained(tiny_tokenizer):
    """A model and AdamW after one real step, so optimizer moments are non-trivial."""
    model = build_model(TINY, tiny_tokenizer, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(0, len(tiny_tokenizer), (2, 16), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    return model, optimizer


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_loads_with_stock_transformers(tmp_path, trained, tiny_tokenizer):
    model, _ = trained
    ckpt = save_checkpoint(tmp_path / "ckpt", model, tiny_tokenizer, info={"step": 1})
    loaded = AutoModelForCausalLM.from_pretrained(ckpt)
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    assert same_weights(model, loaded)
    assert tokenizer.eos_token == tiny_tokenizer.eos_token
    assert tokenizer("the river city")["input_ids"] == tiny_tokenizer("the river city")["input_ids"]
    out = loaded.generate(torch.tensor([[5, 6]]), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 5)
    model2, tok2 = load_checkpoint(ckpt)
    assert same_weights(model, model2) and not model2.training and len(tok2) == len(tiny_tokenizer)


def test_checkpoint_carries_the_defaults_tools_read(tmp_path, trained, tiny_tokenizer):
    """BOS declared and added by the tokenizer, its max length the model's context, generation stops at <|end|>."""
    from transformers import GenerationConfig

    model, _ = trained
    ckpt = save_checkpoint(tmp_path / "ckpt", model, tiny_tokenizer, info={"step": 1})
    tok_config = json.loads((ckpt / "tokenizer_config.json").read_text())
    assert tok_config["add_bos_token"] is True and tok_config["model_max_length"] == TINY.max_seq_len
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    assert tokenizer("the river")["input_ids"][0] == tokenizer.bos_token_id
    assert tokenizer.model_max_length == TINY.max_seq_len
    generation = GenerationConfig.from_pretrained(ckpt)
    end, eos = tokenizer.convert_tokens_to_ids("<|end|>"), tokenizer.eos_token_id
    assert generation.eos_token_id == [end, eos] and generation.max_length == TINY.max_seq_len
    assert not generation.do_sample


def test_no_pickle_and_checksums_cover_every_file(tmp_path, trained, tiny_tokenizer):
    model, optimizer = trained
    ckpt = save_checkpoint(
        tmp_path / "ckpt", model, tiny_tokenizer, training_state={"optimizer": optimizer.state_dict()}
    )
    files = {p.relative_to(ckpt).as_posix() for p in ckpt.rglob("*") if p.is_file()}
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle")) for name in files)
    for name in files:
        assert b"\x80\x04\x95" not in (ckpt / name).read_bytes()[:64], f"{name} looks like a pickle"
    sums = json.loads((ckpt / CHECKSUMS).read_text())
    assert set(sums) == files - {CHECKSUMS}
    assert {"model.safetensors", "config.json", "tokenizer.json", "training_state.safetensors"} <= set(sums)


def test_training_state_roundtrip_is_exact(tmp_path, trained, tiny_tokenizer):
    model, optimizer = trained
    random.seed(3)
    np.random.seed(4)
    state = {
        "optimizer": optimizer.state_dict(),
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        "step": 7,
        "data": {"position": 12},
    }
    save_checkpoint(tmp_path / "ckpt", model, tiny_tokenizer, training_state=state)
    back = load_training_state(tmp_path / "ckpt")
    assert back["step"] == 7 and back["data"] == {"position": 12}
    assert back["rng"]["python"] == state["rng"]["python"]
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(back["rng"]["numpy"], state["rng"]["numpy"])
    )
    assert torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    fresh = build_model(TINY, tiny_tokenizer, seed=1)
    load_weights_into(fresh, tmp_path / "ckpt")
    assert same_weights(model, fresh)
    optimizer2 = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    optimizer2.load_state_dict(back["optimizer"])
    for p1, p2 in zip(model.parameters(), fresh.parameters()):
        s1, s2 = optimizer.state[p1], optimizer2.state[p2]
        assert all(torch.equal(s1[k], s2[k]) for k in ("step", "exp_avg", "exp_avg_sq"))


def test_pack_state_refuses_objects_it_would_have_to_pickle():
    with pytest.raises(TypeError, match="without pickle"):
        pack_state({"fn": object()})
    skeleton, tensors = pack_state({"t": (1, "a", None), 3: [torch.ones(2)]})
    json.dumps(skeleton)
    back = unpack_state(skeleton, tensors)
    assert back["t"] == (1, "a", None) and torch.equal(back[3][0], torch.ones(2))


def test_corrupt_byte_detected(tmp_path, trained, tiny_tokenizer):
    ckpt = save_checkpoint(tmp_path / "ckpt", trained[0], tiny_tokenizer)
    weights = ckpt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt") as err:
        load_checkpoint(ckpt)
    assert "\n" not in str(err.value)


def test_truncated_file_detected(tmp_path, trained, tiny_tokenizer):
    ckpt = save_checkpoint(tmp_path / "ckpt", trained[0], tiny_tokenizer)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated"):
        verify_checkpoint(ckpt)


def test_missing_checksums_means_incomplete(tmp_path, trained, tiny_tokenizer):
    ckpt = save_checkpoint(tmp_path / "ckpt", trained[0], tiny_tokenizer)
    (ckpt / CHECKSUMS).unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(ckpt)


def test_not_a_checkpoint_says_what_was_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"config\.json \+ model\.safetensors \+ tokenizer"):
        load_checkpoint(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="does not exist"):
        verify_checkpoint(tmp_path / "nowhere")


def test_replace_keeps_one_complete_checkpoint_and_recovers_interrupted_swap(tmp_path, trained, tiny_tokenizer):
    model, _ = trained
    target = tmp_path / "latest"
    save_checkpoint(target, model, tiny_tokenizer, info={"step": 1})
    save_checkpoint(target, model, tiny_tokenizer, info={"step": 2})
    assert json.loads((target / "checkpoint.json").read_text())["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]
    # A kill between the two renames: old checkpoint parked under its backup name, a half-written temp beside it.
    target.rename(tmp_path / ".old-latest")
    (tmp_path / ".tmp-latest.abc").mkdir()
    (tmp_path / ".tmp-latest.abc" / "config.json").write_text("{")
    assert recover_checkpoint(target) == target
    assert json.loads((target / "checkpoint.json").read_text())["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]
    assert recover_checkpoint(tmp_path / "other") is None
