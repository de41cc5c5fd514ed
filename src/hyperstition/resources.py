"""Running out of a machine's resources (memory, disk) said in one line: what was needed and what to do.

Libraries report these in their own words: torch's CPU allocator as a RuntimeError naming the bytes it tried to
allocate, CUDA as torch.OutOfMemoryError, Rust-backed libraries (safetensors, tokenizers) as their own exception
types carrying "(os error 28)". `describe` turns each into a user's error line; anything else is left alone.
"""

from __future__ import annotations

import errno
import os
import re

CPU_ALLOC = re.compile(r"can't allocate memory: you tried to allocate (\d+) bytes")
CUDA_ALLOC = re.compile(r"Tried to allocate ([\d.]+ [KMGT]?i?B)")
OS_ERROR = re.compile(r"\(os error (\d+)\)")
RESUME = "rerun the same command to resume"


def gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.3g} GiB" if n_bytes >= 2**27 else f"{n_bytes / 2**20:.3g} MiB"


def describe(err: BaseException) -> str | None:
    """A one-line explanation when `err` is the machine running out of memory or disk, else None."""
    text = str(err)
    if isinstance(err, MemoryError):
        return "out of memory; use a smaller model, batch or corpus (or a machine with more memory)"
    found = CPU_ALLOC.search(text)
    if found:
        return (
            f"out of memory: one allocation needed {gib(int(found.group(1)))}, more than this machine could give; "
            "use a smaller model, batch or sequence length"
        )
    if type(err).__name__ == "OutOfMemoryError" or "CUDA out of memory" in text:
        need = CUDA_ALLOC.search(text)
        return (
            f"out of accelerator memory{f': one allocation needed {need.group(1)}' if need else ''}; use a smaller "
            "model, batch or sequence length"
        )
    found = OS_ERROR.search(text)
    if found:
        code = int(found.group(1))
        hint = f"; free some space and {RESUME}" if code in (errno.ENOSPC, errno.EDQUOT) else ""
        return f"{os.strerror(code)} (while {type(err).__name__} was writing or reading a file){hint}"
    return None


def available_memory() -> int | None:
    """Bytes of memory this process could still get (MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_memory(need: int, what: str) -> None:
    """Refuse, before allocating, work whose memory need alone exceeds what the machine has free: a model that
    cannot be allocated would otherwise thrash or be killed by the kernel without a word."""
    from .config import UserError

    have = available_memory()
    if have is not None and need > have:
        raise UserError(
            f"out of memory: {what} needs about {gib(need)}; this machine has {gib(have)} free. Use a smaller "
            "model, batch or sequence length"
        )
