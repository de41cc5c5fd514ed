"""Runtime choices: auto resolves per device; bf16 on CPU runs (with matmul attention) and still saves
stock checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from torch.overrides import TorchFunctionMode
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


def test_explicit_choices_win_over_auto(monkeypatch):
    from hyperstition.train import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "cpu_has_native_bf16", lambda: True)
    runtime = resolve_runtime(PretrainConfig(device="cpu", precision="bf16", compile="on"))
    assert runtime.bf16 and runtime.compile and runtime.attention == "eager"


def test_compiled_bf16_is_refused_on_a_cpu_without_bf16_units(monkeypatch):
    """Compiled, Bf16GemmsInFp32 holds only in part (measured: a backward of native bf16 GEMMs, the step 7x slower)
    under a label naming fp32 GEMMs, so the combination is refused by name; fp32 compiled and bf16 eager stay."""
    from hyperstition.config import ConfigError
    from hyperstition.train import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(
        ConfigError, match=r"^pretrain\.compile: 'on' with bf16 .*pretrain\.compile=off .*pretrain\.precision=fp32$"
    ):
        resolve_runtime(PretrainConfig(device="cpu", precision="bf16", compile="on"))
    assert resolve_runtime(PretrainConfig(device="cpu", precision="fp32", compile="on")).compile
    assert resolve_runtime(PretrainConfig(device="cpu", precision="bf16", compile="off")).bf16_gemms_in_fp32


def test_a_refused_runtime_stops_pretraining_before_its_run_directory_exists(monkeypatch, tmp_path):
    from hyperstition.config import ConfigError, PipelineConfig, load_config
    from hyperstition.train import runtime as runtime_module
    from hyperstition.train.pretrain import run_pretrain

    monkeypatch.setattr(runtime_module, "cpu_has_native_bf16", lambda: False)
    cfg = load_config(PipelineConfig, "smoke", ["pretrain.precision=bf16", "pretrain.compile=on"])
    with pytest.raises(ConfigError, match="pretrain.compile"):
        run_pretrain(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # no corpus built, no empty directory left behind


def test_auto_on_cuda_is_bf16_compiled_and_tf32_for_pretraining_only(monkeypatch):
    """What auto picks when torch sees a GPU (resolution only: nothing runs on it)."""
    from hyperstition.train import runtime
    from hyperstition.train.distributed import Ranks

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)  # the host CPU's bf16 units do not matter
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


def _bf16_gemm_outputs(emulate: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A linear and a batched matmul under CPU bf16 autocast, and the input's gradient through both."""
    from hyperstition.train.runtime import autocast

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 96, generator=generator, requires_grad=True)
    weight = torch.randn(80, 96, generator=generator)
    keys = torch.randn(4, 16, 80, generator=generator)
    with autocast("cpu", bf16=True, gemms_in_fp32=emulate):
        hidden = torch.nn.functional.linear(x, weight)
        scores = torch.matmul(hidden.view(4, 16, 80), keys.transpose(1, 2))
    scores.float().sum().backward()
    return hidden.detach(), scores.detach(), x.grad


def test_bf16_gemms_in_fp32_compute_what_native_bf16_gemms_compute():
    """The path for CPUs without bf16 units (10x slower there) gives native autocast's dtypes and values: bf16
    outputs, each within one bf16 ulp of the native kernel's and nearly all equal; gradients rounded where
    autocast rounds them. (Native is slow but exact on such CPUs, so this runs everywhere.)"""
    native, emulated = _bf16_gemm_outputs(emulate=False), _bf16_gemm_outputs(emulate=True)
    for a, b in zip(native[:2], emulated[:2]):
        assert a.dtype == b.dtype == torch.bfloat16
        ulp = torch.finfo(torch.bfloat16).eps * a.float().abs().clamp_min(1e-3)
        assert ((a.float() - b.float()).abs() <= ulp * 1.01).all()
        assert (a == b).float().mean() > 0.99
    assert native[2].dtype == emulated[2].dtype == torch.float32
    assert torch.allclose(native[2], emulated[2], rtol=2e-2, atol=1e-2)
    assert torch.equal(emulated[2], emulated[2].bfloat16().float())  # the gradient went through bf16


def test_bf16_gemms_in_fp32_leave_autocast_off_regions_in_fp32():
    """Rotary embeddings switch autocast off for their matmul; the emulation must not round it either."""
    from hyperstition.train.runtime import autocast

    a, b = torch.randn(8, 5, dtype=torch.float64).float(), torch.randn(5, 3).float()
    with autocast("cpu", bf16=True, gemms_in_fp32=True):
        with torch.autocast("cpu", enabled=False):
            inside = a @ b
    assert inside.dtype == torch.float32 and torch.equal(inside, a @ b)


def _within_one_bf16_ulp(native: torch.Tensor, emulated: torch.Tensor) -> None:
    assert native.dtype == emulated.dtype == torch.bfloat16
    ulp = torch.finfo(torch.bfloat16).eps * native.float().abs().clamp_min(1e-3)
    assert ((native.float() - emulated.float()).abs() <= ulp * 1.01).all()
    assert (native == emulated).float().mean() > 0.99


class _GemmOperandDtypes(TorchFunctionMode):
    """Below Bf16GemmsInFp32 on the mode stack: sees the GEMMs it hands down, with the operands it chose."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: list[torch.dtype] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        from hyperstition.train.runtime import Bf16GemmsInFp32

        if func in Bf16GemmsInFp32.GEMMS:
            self.dtypes.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


def test_bf16_gemms_in_fp32_compute_explicit_bf16_gemms_outside_autocast():
    """torch.optim.Muon multiplies bf16 tensors itself (Newton-Schulz): matmul and addmm of bf16 operands give what
    the native kernels give, while an fp32 GEMM outside autocast is left exactly as it was."""
    from torch.optim._muon import _zeropower_via_newtonschulz

    from hyperstition.train.runtime import Bf16GemmsInFp32

    generator = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(48, 40, generator=generator).bfloat16() for _ in range(3))
    native = (a @ b.T, torch.addmm(c @ c.T, a, b.T, beta=-4.775, alpha=2.0315))
    fp32 = torch.randn(8, 5, generator=generator), torch.randn(5, 3, generator=generator)
    with Bf16GemmsInFp32():
        emulated = (a @ b.T, torch.addmm(c @ c.T, a, b.T, beta=-4.775, alpha=2.0315))
        untouched = fp32[0] @ fp32[1]
    for n, e in zip(native, emulated):
        _within_one_bf16_ulp(n, e)
    gram = c @ c.T
    with _GemmOperandDtypes() as seen, Bf16GemmsInFp32():
        a @ b.T
        torch.addmm(gram, a, b.T, beta=-4.775, alpha=2.0315)
    assert seen.dtypes == [torch.float32, torch.float32]  # the kernels that ran were the fp32 ones
    assert untouched.dtype == torch.float32 and torch.equal(untouched, fp32[0] @ fp32[1])
    grad = torch.randn(64, 24, generator=generator)
    orthogonalised = _zeropower_via_newtonschulz(grad, (3.4445, -4.775, 2.0315), 5, 1e-7)
    with Bf16GemmsInFp32():
        emulated_ns = _zeropower_via_newtonschulz(grad, (3.4445, -4.775, 2.0315), 5, 1e-7)
    assert emulated_ns.dtype == torch.bfloat16
    assert torch.allclose(orthogonalised.float(), emulated_ns.float(), atol=0.02)


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_only_muon_gets_fp32_gemms_in_its_step_and_only_without_bf16_units(monkeypatch, native, precision):
    from hyperstition.train import runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    muon = resolve_runtime(PretrainConfig(device="cpu", precision=precision, optimizer="muon"))
    assert muon.update_gemms_in_fp32 is (not native)
    assert isinstance(muon.update_precision(), runtime.Bf16GemmsInFp32) is (not native)
    assert ("GEMMs in fp32" in muon.describe()) is (not native)
    adamw = resolve_runtime(PretrainConfig(device="cpu", precision=precision))
    assert not adamw.update_gemms_in_fp32 and not isinstance(adamw.update_precision(), runtime.Bf16GemmsInFp32)


def test_pretraining_hands_the_runtime_s_update_precision_to_each_step(
    monkeypatch, tmp_path, tiny_tokenizer, tiny_texts
):
    from hyperstition.train import pretrain, runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    contexts = []
    real_step = pretrain.train_step

    def step(*args, **kwargs):
        contexts.append(args[6]())
        return real_step(*args, **kwargs)

    monkeypatch.setattr(pretrain, "train_step", step)
    cfg = PretrainConfig(steps=2, batch_size=4, lr=1e-2, warmup_steps=1, log_every=1, optimizer="muon", threads=1)
    train_lm(TINY, cfg, tiny_tokenizer, tiny_texts, tmp_path / "run", progress=False)
    assert len(contexts) == 2 and all(isinstance(c, runtime.Bf16GemmsInFp32) for c in contexts)


@pytest.mark.parametrize("emulate", [False, True])
def test_autocast_is_entered_on_with_and_left_after_it(emulate):
    """Like torch.autocast: building the context changes nothing; entering it switches bf16 on, leaving it off."""
    from hyperstition.train.runtime import autocast

    a, b = torch.randn(4, 3), torch.randn(3, 2)
    context = autocast("cpu", bf16=True, gemms_in_fp32=emulate)
    assert (a @ b).dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
    with context:
        assert (a @ b).dtype == torch.bfloat16
    assert (a @ b).dtype == torch.float32 and not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_cpu_uses_fp32_gemms_only_without_bf16_units(monkeypatch, native):
    from hyperstition.train import runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    bf16 = resolve_runtime(PretrainConfig(device="cpu", precision="bf16"))
    assert bf16.bf16 and bf16.bf16_gemms_in_fp32 is (not native)
    assert ("GEMMs in fp32" in bf16.describe()) is (not native)
    assert not resolve_runtime(PretrainConfig(device="cpu", precision="fp32")).bf16_gemms_in_fp32


def test_bf16_with_fp32_gemms_trains_deterministically(monkeypatch, tmp_path, tiny_tokenizer, tiny_texts):
    from hyperstition.train import runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    cfg = PretrainConfig(steps=4, batch_size=4, lr=1e-2, warmup_steps=1, log_every=2, precision="bf16", threads=1)
    finals = [train_lm(TINY, cfg, tiny_tokenizer, tiny_texts, tmp_path / name, progress=False) for name in "ab"]
    weights = [AutoModelForCausalLM.from_pretrained(final).state_dict() for final in finals]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    losses = [m["loss"] for m in read_jsonl(tmp_path / "a" / "metrics.jsonl")]
    assert all(torch.isfinite(torch.tensor(losses)))
    info = json.loads((finals[0] / "checkpoint.json").read_text())
    assert "GEMMs in fp32" in info["runtime"]  # the checkpoint says which kernels trained it
