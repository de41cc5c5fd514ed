"""Where and how a training step runs: device, precision (bf16 autocast), compilation, attention kernel, threads.

One home for the choices pretraining, post-training and evaluation make from their `device` (and, for
pretraining, `precision` and `compile`) fields. Measured speeds behind the defaults are in benchmarks/README.md.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, ContextManager, Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..config import ConfigError


def resolve_device(choice: str, field: str = "device") -> torch.device:
    """auto = cuda when torch sees one, else cpu; an explicit cuda without one is refused, naming `field`."""
    if choice not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"{field}: {choice!r}; expected auto, cpu or cuda")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{field}: 'cuda' requested but torch sees no CUDA device; use auto or cpu")
    return torch.device("cuda" if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()) else "cpu")


@dataclass(frozen=True)
class Runtime:
    """Where and how the step runs, resolved from the config's `auto` values."""

    device: torch.device
    bf16: bool = False
    compile: bool = False
    tf32: bool = False  # allow TF32 matmuls on CUDA (pretraining only: post-training keeps fp32 matmuls)
    bf16_gemms_in_fp32: bool = False  # bf16 autocast on a CPU without native bf16 GEMMs: see Bf16GemmsInFp32
    update_gemms_in_fp32: bool = False  # a CPU without native bf16 GEMMs, any precision: Muon's bf16 GEMMs

    @property
    def attention(self) -> str:
        """sdpa everywhere except bf16 on CPU, where plain matmul attention is faster (benchmarks/README.md)."""
        return "eager" if self.device.type == "cpu" and self.bf16 else "sdpa"

    def describe(self) -> str:
        precision = "bf16 autocast" if self.bf16 else "fp32"
        if self.bf16_gemms_in_fp32:
            precision += " (GEMMs in fp32 on bf16-rounded operands)"
        elif self.update_gemms_in_fp32:
            precision += " (the optimizer's bf16 GEMMs in fp32: no bf16 units)"
        return f"{self.device.type}, {precision}, {'compiled' if self.compile else 'eager'}"

    def autocast(self) -> ContextManager:
        return autocast(self.device.type, self.bf16, self.bf16_gemms_in_fp32)

    def update_precision(self) -> ContextManager:
        """Around the optimizer step: Muon's Newton-Schulz GEMMs in fp32 where the CPU has no bf16 units."""
        return Bf16GemmsInFp32() if self.update_gemms_in_fp32 else nullcontext()


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 GEMMs in hardware here (AVX512-BF16 or AMX). Without it (AVX2 CPUs: most laptops
    before 2023, AMD before Zen 4) a bf16 GEMM was measured at 0.85 GFLOP/s against 82 for fp32 on one thread."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _bf16_rounded(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(torch.bfloat16).float()
    return value


def _float(value: Any) -> Any:
    return value.float() if isinstance(value, torch.Tensor) else value


def _all_bf16(args: tuple, kwargs: dict) -> bool:
    tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
    return bool(tensors) and all(t.dtype == torch.bfloat16 for t in tensors)


class Bf16GemmsInFp32(TorchFunctionMode):
    """On a CPU without bf16 units, compute each bf16 GEMM as an fp32 GEMM of bf16 operands, rounded back to bf16.

    That is what a native bf16 GEMM computes (bf16 x bf16 products are exact in fp32, and oneDNN accumulates in
    fp32), up to the order of the fp32 sums: on one GEMM 0.005-0.009% of the outputs differ by one bf16 ulp, as
    between two CPUs' native kernels. Two kinds of bf16 GEMM are caught: inside CPU bf16 autocast (the forward; its
    operands are rounded where autocast would cast them, gradients where autocast rounds them, every other op keeps
    autocast's own rule, and regions that switch autocast off, rotary embeddings, stay fp32), and GEMMs of tensors
    that are bf16 themselves outside autocast (torch.optim.Muon casts its momentum to bf16 for Newton-Schulz: 13x
    slower natively on such a CPU). GEMMs of fp32 tensors outside autocast are left alone.
    """

    GEMMS = frozenset(
        {F.linear, torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm, torch.Tensor.bmm,
         torch.mm, torch.Tensor.mm, torch.addmm, torch.Tensor.addmm}
    )  # fmt: skip

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in self.GEMMS or "out" in kwargs:  # out= must be written in place: leave such calls to torch
            return func(*args, **kwargs)
        if torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                out = func(*map(_bf16_rounded, args), **{k: _bf16_rounded(v) for k, v in kwargs.items()})
            return out.to(torch.bfloat16)
        if _all_bf16(args, kwargs):
            return func(*map(_float, args), **{k: _float(v) for k, v in kwargs.items()}).to(torch.bfloat16)
        return func(*args, **kwargs)


def autocast(device_type: str, bf16: bool, gemms_in_fp32: bool = False) -> ContextManager:
    """bf16 autocast when asked for (with its GEMMs done in fp32 where the CPU has no bf16 units), else nothing."""
    if not bf16:
        return nullcontext()
    if not gemms_in_fp32:
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return _autocast_with_fp32_gemms(device_type)


@contextmanager
def _autocast_with_fp32_gemms(device_type: str) -> Iterator[None]:
    # Entered on `with`, not when autocast() is called, like torch.autocast itself.
    with torch.autocast(device_type, dtype=torch.bfloat16), Bf16GemmsInFp32():
        yield


def resolve_runtime(
    device: str,
    precision: str = "fp32",
    compile: str = "off",
    field: str = "device",
    allow_tf32: bool = False,
    section: str = "",
) -> Runtime:
    """auto = bf16 + torch.compile on CUDA (fast), fp32 eager on CPU (bit-exact resume, no 30 s compile).

    TF32 matmuls only where the caller allows them (pretraining): post-training and evaluation keep fp32 matmuls.
    `section` ("pretrain.") prefixes the precision and compile fields an error names.
    """
    resolved = resolve_device(device, field)
    on_cuda = resolved.type == "cuda"
    bf16 = precision == "bf16" or (precision == "auto" and on_cuda)
    compiled = compile == "on" or (compile == "auto" and on_cuda)
    no_bf16_units = resolved.type == "cpu" and not cpu_has_native_bf16()
    if compiled and bf16 and no_bf16_units:
        # Compiled, Bf16GemmsInFp32 (a TorchFunctionMode) holds only in part: Inductor drops the forward's operand
        # roundings and AOTAutograd traces the backward under autocast, so its GEMMs run in native bf16: the step ~7x
        # slower on such a CPU, values neither path's, under a label naming fp32 GEMMs (benchmarks/README.md).
        raise ConfigError(
            f"{section}compile: 'on' with bf16 precision needs a CPU with bf16 units (this one has none: a compiled"
            f" step would run ~7x slower); use {section}compile=off (its GEMMs then run in fp32) or"
            f" {section}precision=fp32"
        )
    return Runtime(
        device=resolved,
        bf16=bf16,
        compile=compiled,
        tf32=on_cuda and allow_tf32,
        bf16_gemms_in_fp32=bf16 and no_bf16_units,
        update_gemms_in_fp32=no_bf16_units,
    )


def prepare_model(
    model: torch.nn.Module, runtime: Runtime, wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None
) -> torch.nn.Module:
    """Move `model` to the device, pick its attention kernel, and return what the step calls (compiled or not).

    `wrap` (DistributedDataParallel) goes around the model before compiling, as torch.compile's DDP support expects.

    The attention choice is runtime-only: it is not written to config.json, so checkpoints load with the default.
    """
    model.to(runtime.device)
    model.train()
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(runtime.attention)
    step_model = wrap(model) if wrap is not None else model
    return torch.compile(step_model) if runtime.compile else step_model


@contextmanager
def torch_settings(threads: int, runtime: Runtime) -> Iterator[None]:
    """Pin torch's intra-op threads (0 = leave as is) and allow TF32 when the runtime says so, then restore both.

    Restoring matters because training is a library call: a test suite or notebook keeps its own settings. Pinning
    threads matters on a shared machine: with more threads than free cores, OpenMP barriers spin.
    """
    previous_threads, previous_matmul = torch.get_num_threads(), torch.get_float32_matmul_precision()
    if threads > 0:
        torch.set_num_threads(threads)
    if runtime.tf32 and runtime.device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.set_float32_matmul_precision(previous_matmul)
