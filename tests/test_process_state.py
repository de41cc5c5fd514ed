"""tests/process_state.py: a live process runs; a zombie, a reaped one and one whose /proc entry vanishes do not."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import process_state
from process_state import is_running


def test_this_process_runs():
    assert is_running(os.getpid())


def test_an_exited_child_is_not_running_before_or_after_it_is_reaped():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while is_running(child.pid) and time.monotonic() < deadline:  # exited but not reaped: a zombie
        time.sleep(0.01)
    assert not is_running(child.pid)
    child.wait()
    assert not is_running(child.pid)


def test_a_process_reaped_between_the_two_looks_at_proc_is_not_running(monkeypatch):
    def vanished(self, *args, **kwargs):
        raise FileNotFoundError(str(self))

    # os.kill finds the process, then its status file is gone (pathlib's Path, restored after the test)
    monkeypatch.setattr(process_state.Path, "read_text", vanished)
    assert not is_running(os.getpid())
