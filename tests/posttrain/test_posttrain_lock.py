"""Post-training holds the same one-writer lock as pretraining: a second run into the same directory is refused
with one line, and leaves the first run's files alone."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from hyperstition.cli import main
from hyperstition.io import training_lock
from hyperstition.posttrain import run as posttrain_run
from hyperstition.train import pretrain

SRC = Path(__file__).resolve().parents[2] / "src"


def test_pretraining_and_posttraining_share_one_lock_helper():
    assert pretrain.training_lock is training_lock and posttrain_run.training_lock is training_lock


def test_second_posttrain_into_a_locked_directory_is_refused(capsys, tmp_path):
    out = tmp_path / "out"
    with training_lock(out):  # a live post-training (or pretraining) run holds the directory
        code = main(["posttrain", "--base", str(tmp_path / "base"), "--strategy", "sft", "smoke", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0 and "another process is training" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["train.lock"]


def test_two_concurrent_posttrain_processes(base_dir, tmp_path):
    """Two identical runs at once: the second is refused with one line while the first holds the directory."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "hyperstition.cli",
        "posttrain",
        "--base",
        str(base_dir),
        "--strategy",
        "sft",
        "smoke",
        "threads=1",
        "steps=100000",
        "--out",
        str(out),
        "--quiet",
    ]  # the first runs until this test kills it
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while not (out / "config.yaml").exists():  # written under the lock, once the run has really started
            assert first.poll() is None, first.communicate()[1]
            time.sleep(0.1)
        second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert first.poll() is None  # still training: the refusal below is the lock's doing
    finally:
        first.kill()
        first.communicate()
    assert second.returncode == 1 and "another process is training" in second.stderr
    assert "Traceback" not in second.stderr and second.stderr.strip().count("\n") == 0
