"""Where and how a training step runs: device, precision (bf16 autocast), compilation, attention kernel, threads.

One home for the choices pretraining, post-training and evaluation make from their `device` (and, for
pretraining, `precision` and `compile`) fields. Measured speeds behind the defaults are in benchmarks/README.md.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import torch

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

    @property
    def attention(self) -> str:
        """sdpa everywhere except bf16 on CPU, where plain matmul attention is faster (benchmarks/README.md)."""
        return "eager" if self.device.type == "cpu" and self.bf16 else "sdpa"

    def describe(self) -> str:
        precision = "bf16 autocast" if self.bf16 else "fp32"
        return f"{self.device.type}, {precision}, {'compiled' if self.compile else 'eager'}"

    def autocast(self) -> ContextManager:
        return autocast(self.device.type, self.bf16)


def autocast(device_type: str, bf16: bool) -> ContextManager:
    """bf16 autocast when asked for, else nothing (fp32)."""
    return torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else nullcontext()


def resolve_runtime(
    device: str, precision: str = "fp32", compile: str = "off", field: str = "device", allow_tf32: bool = False
) -> Runtime:
    """auto = bf16 + torch.compile on CUDA (fast), fp32 eager on CPU (bit-exact resume, no 30 s compile).

    TF32 matmuls only where the caller allows them (pretraining): post-training and evaluation keep fp32 matmuls.
    """
    resolved = resolve_device(device, field)
    on_cuda = resolved.type == "cuda"
    bf16 = precision == "bf16" or (precision == "auto" and on_cuda)
    compiled = compile == "on" or (compile == "auto" and on_cuda)
    return Runtime(device=resolved, bf16=bf16, compile=compiled, tf32=on_cuda and allow_tf32)


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
