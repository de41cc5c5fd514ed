"""Whether a process still runs, for the kill-and-resume tests (imported by name, like suite_cache)."""

from __future__ import annotations

import os
from pathlib import Path


def is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie. A process can be reaped between any two looks at /proc (a test
    failed once reading the status file of a worker that had just gone), so a vanished file means it has ended."""
    try:
        os.kill(pid, 0)
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except (ProcessLookupError, FileNotFoundError):
        return False
