"""hyperstition.io.process_gone: a live process is not gone; a zombie, a reaped one and one whose /proc entry vanishes
between two looks are (the kill tests and the grid's runner watch both ask it)."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
import time

from hyperstition.io import process_gone


def test_this_process_is_not_gone():
    assert not process_gone(os.getpid())


def test_an_exited_child_is_gone_before_and_after_it_is_reaped():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while not process_gone(child.pid) and time.monotonic() < deadline:  # exited, not reaped: a zombie
        time.sleep(0.01)
    assert process_gone(child.pid)
    child.wait()
    assert process_gone(child.pid)


def test_a_process_whose_proc_files_vanish_mid_look_is_gone(monkeypatch):
    real_open = builtins.open

    def vanished(path, *args, **kwargs):
        if str(path).startswith(f"/proc/{os.getpid()}/"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", vanished)
    assert process_gone(os.getpid())
