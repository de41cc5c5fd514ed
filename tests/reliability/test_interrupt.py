"""Ctrl-C on `hyperstition run`: one clean line and exit 130, whatever the workers were doing (still starting,
importing, or running a stage); never a worker's KeyboardInterrupt traceback or a leaked-semaphore warning."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


SIMULATED, REAL = "hyperstition.experiments.simulate", "hyperstition.experiments.stages"


def _interrupt_after(tmp_path: Path, marker: str, extra_wait: float, stages: str = SIMULATED) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str(SRC), HYPERSTITION_SIMULATE_SECONDS="30")
    cmd = [
        sys.executable,
        "-m",
        "hyperstition.cli",
        "run",
        "smoke",
        "--stages",
        stages,
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
        "--no-report",
        "--workers",
        "2",
    ]
    # SIGINT at its default in the child, as in a terminal: a suite launched in the background by a non-interactive
    # shell inherits SIGINT ignored, and Python then never raises KeyboardInterrupt at all.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = []
    for line in proc.stderr:  # wait for the runner to reach the moment under test
        seen.append(line)
        if marker in line:
            break
    time.sleep(extra_wait)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground process group
    out, err = proc.communicate(timeout=60)
    time.sleep(0.5)  # a resource tracker would print its warning just after the runner exits
    return proc.returncode, "".join(seen) + err + out


# The real stages' workers are forked from a server that imports torch and transformers first (executor.py):
# Ctrl-C while that server imports, and while a forked worker runs a stage.
@pytest.mark.parametrize(
    "stages,marker,wait",
    [
        (SIMULATED, "jobs:", 0.0),
        (SIMULATED, "started", 0.3),
        (SIMULATED, "started", 3.0),
        (REAL, "jobs:", 2.0),
        (REAL, "started", 1.0),
    ],
    ids=["workers-spawning", "workers-importing", "stages-running", "server-importing", "forked-stage-running"],
)
def test_ctrl_c_is_one_clean_line(tmp_path, stages, marker, wait):
    code, text = _interrupt_after(tmp_path, marker, wait, stages)
    assert code == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text and "leaked" not in text, text
    assert text.strip().splitlines()[-1] == "hyperstition run: interrupted; rerun the same command to resume."
    assert not list((tmp_path / "run").glob("cells/*/*/*/ERROR.json"))  # interrupted is not failed
