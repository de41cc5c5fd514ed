"""SIGKILL the whole run mid-grid: no finished cell is lost or recomputed, and the rerun completes the grid."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

SIM = "hyperstition.experiments.simulate"


def _run_argv(out: Path, *extra: str, stages: str = SIM, overrides: tuple[str, ...] = ()) -> list[str]:
    """The smoke grid on one seed (6 jobs), simulated stages unless told, 2 workers."""
    smoke = ["run", "smoke", "seeds=[0]", *overrides, "--stages", stages, "--out", str(out), "--workers", "2", *extra]
    return [sys.executable, "-m", "hyperstition.experiments", *smoke]


# A chained grid: the second arm's pretraining branches from the first's, and a relapse fine-tune follows SFT.
CHAINED = (
    "followups.relapse.after=sft",
    "followups.relapse.strategy=world_text",
    "branches.misalignment_upsampled.trunk=unfiltered",
    "branches.misalignment_upsampled.at=0.5",
)


def _start(
    out: Path, seconds: float, *extra: str, stages: str = SIM, overrides: tuple[str, ...] = ()
) -> subprocess.Popen:
    env = {**os.environ, "HYPERSTITION_SIMULATE_SECONDS": str(seconds)}
    cmd = _run_argv(out, "--no-report", *extra, stages=stages, overrides=overrides)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _done(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.glob("cells/*/*/*/DONE.json")}


def _wait_for(pred, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"the run exited ({proc.returncode}) before the test could kill it:\n{proc.stdout.read().decode()}"
            )
        time.sleep(0.05)
    raise AssertionError("timed out")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_sigkill_of_the_whole_run_then_resume(tmp_path):
    out = tmp_path / "run"
    proc = _start(out, seconds=1.5)
    try:
        # Both pretrain cells finish (~1.5 s each) while later cells are still running.
        _wait_for(lambda: len(_done(out)) >= 2, timeout=60, proc=proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    finished = _done(out)
    assert 2 <= len(finished) < 6, finished
    for rel in finished:  # every DONE.json is complete JSON (atomic write)
        assert json.loads((out / rel).read_text())["config_hash"]

    rerun = subprocess.run(
        _run_argv(out),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{len(finished)} already done" in rerun.stderr
    after = _done(out)
    assert len(after) == 6
    assert {k: after[k] for k in finished} == finished  # finished cells were not recomputed
    assert len(pd.read_parquet(out / "results.parquet")) > 0 and (out / "report.html").exists()


def test_sigkill_of_a_chained_grid_then_resume(tmp_path):
    """Branch and follow-up cells are cells like any other: a kill loses no finished one, the rerun finishes the
    chain from the parents' recorded outputs, and each follow-up measures KL to its parent and to the base."""
    out = tmp_path / "run"
    proc = _start(out, 1.5, *CHAINED)
    parent = out / "cells/unfiltered/seed-0/sft/DONE.json"
    try:
        _wait_for(parent.exists, timeout=120, proc=proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    finished = _done(out)
    assert 2 <= len(finished) < 8, finished  # at least the pretraining and the SFT the relapse follows
    rerun = subprocess.run(_run_argv(out, "--no-report", *CHAINED), capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    after = _done(out)
    assert len(after) == 8 and {k: after[k] for k in finished} == finished
    relapse = json.loads((out / "cells/unfiltered/seed-0/relapse/job.json").read_text())
    assert relapse["deps"] == ["unfiltered/seed-0/sft", "unfiltered/seed-0/pretrain"]
    assert relapse["inputs"] == {
        "model_dir": "cells/unfiltered/seed-0/sft/final",
        "base_dir": "cells/unfiltered/seed-0/pretrain/final",
    }
    branch = json.loads((out / "cells/misalignment_upsampled/seed-0/pretrain/job.json").read_text())
    assert branch["inputs"] == {"trunk_dir": "cells/unfiltered/seed-0/pretrain"} and branch["params"]["branch_at"] == 30
    rows = pd.read_parquet(out / "results.parquet")
    chained = rows[(rows.strategy == "relapse") & rows.seed.notna()]
    assert set(chained.arm) == {"unfiltered", "misalignment_upsampled"}
    to_base = chained[chained.metric == "kl_to_base_bits_per_response"]
    to_parent = chained[chained.metric == "kl_bits_per_response"]
    assert len(to_base) and (to_base.value.max() > to_parent.value.max())  # the chain adds the parent's own KL


# Spawned workers (simulated stages, 30 s a job) and workers forked from the server that preloads the real stages'
# imports (executor.py), whose parent is that server and not the runner (a pretraining of minutes).
@pytest.mark.parametrize(
    "stages,overrides",
    [(SIM, ()), ("hyperstition.experiments.stages", ("pipeline.pretrain.steps=100000",))],
    ids=["spawned", "forked"],
)
def test_killing_only_the_runner_leaves_no_orphan_worker(tmp_path, stages, overrides):
    out = tmp_path / "run"
    proc = _start(out, 30, stages=stages, overrides=overrides)
    try:
        _wait_for(lambda: len(list(out.glob("cells/*/*/*/RUNNING.json"))) >= 1, timeout=60, proc=proc)
        running = [json.loads(p.read_text())["pid"] for p in out.glob("cells/*/*/*/RUNNING.json")]
        parents = {int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in running}
        assert (parents == {proc.pid}) == (stages == SIM), (parents, proc.pid)  # forked: the server is the parent
        proc.kill()  # the runner only, not its process group
        proc.wait(timeout=30)
        _wait_for(lambda: not any(_alive(pid) for pid in running), timeout=15)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    status = subprocess.run(
        [sys.executable, "-m", "hyperstition.experiments", "status", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert status.returncode == 0, status.stderr
    assert "runner not running" in status.stdout and "interrupted; resumes on rerun" in status.stdout
    assert "\u2502 running" not in status.stdout
