"""What a run was computed on: CPU model, torch's CPU capability (the SIMD kernels it dispatches to), thread
count, accelerator, Python and library versions. Recorded in run.json so that `hyperstition verify` can tell a
difference in code (a changed corpus or tokenizer hash) from a difference in machine (same inputs, other floats).
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

PACKAGES = (
    "hyperstition",
    "torch",
    "transformers",
    "trl",
    "tokenizers",
    "numpy",
    "pandas",
    "pyarrow",
    "duckdb",
    "matplotlib",
    "pydantic",
    "scipy",
    "rich",
    "safetensors",
    "pyyaml",
)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def torch_facts() -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {"threads": torch.get_num_threads()}
    try:
        facts["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        facts["cpu_capability"] = "unknown"
    facts["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return facts


def machine_record() -> dict[str, Any]:
    """The machine and software a run computes with (JSON-ready)."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        **{f"torch_{k}": v for k, v in torch_facts().items()},
        "packages": package_versions(),
    }


def differences(recorded: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """`key: recorded -> current` for every fact that differs (package versions one by one)."""
    if not isinstance(recorded, dict):
        return ["the run did not record its machine (written by an older hyperstition)"]
    out = []
    for key, now in current.items():
        then = recorded.get(key)
        if key == "packages" and isinstance(then, dict):
            out += [f"{name}: {then.get(name)} -> {v}" for name, v in now.items() if then.get(name) != v]
        elif key not in ("cores", "torch_threads") and then != now:
            out.append(f"{key}: {then} -> {now}")
    return out
