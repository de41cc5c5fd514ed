"""LocalExecutor's two ways of starting a worker: spawned fresh, or forked from a server that imported the stages'
modules once (`preload`). A job must not be able to tell them apart: same environment, working directory and torch
thread count as at `submit`, same crash reporting. (Killing the runner: test_experiment_kill_resume.py; Ctrl-C:
tests/reliability/test_interrupt.py.)"""

from __future__ import annotations

import os
import sys

import pytest

from hyperstition.experiments import executor as executor_module
from hyperstition.experiments.executor import JobCrashed, LocalExecutor
from hyperstition.experiments.stages import WORKER_IMPORTS


def what_the_job_sees() -> dict:
    import torch

    return {
        "var": os.environ.get("HYPERSTITION_TEST_VAR"),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "cwd": os.getcwd(),
        "threads": torch.get_num_threads(),
        "parent": os.getppid(),
        "preloaded": [name for name in WORKER_IMPORTS if name in sys.modules],  # this job imports only torch
    }


def exit_with_three() -> None:
    os._exit(3)


def _result(ex: LocalExecutor, fn, *args):
    (handle,) = [ex.submit(fn, *args)]
    done, _ = ex.wait([handle], timeout=120)
    assert done, "the job did not finish in 120 s"
    return handle.result()


@pytest.mark.parametrize("preload", [(), WORKER_IMPORTS], ids=["spawned", "forked"])
def test_a_job_sees_the_runner_as_it_was_at_submit(tmp_path, monkeypatch, preload):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what the suite's workers run with; the executor's count must win
    with LocalExecutor(1, threads=2) as ex:
        ex.preload(preload)
        first = _result(ex, what_the_job_sees)  # starts the fork server, where there is one
        monkeypatch.setenv("HYPERSTITION_TEST_VAR", "changed after the first job")
        monkeypatch.chdir(tmp_path)
        second = _result(ex, what_the_job_sees)
    forked = bool(preload) and executor_module.forks_safely()
    assert (first["parent"] != os.getpid()) == forked and (second["parent"] != os.getpid()) == forked
    # Every module the real stages need is already there in a forked job (an import the server failed is silent).
    assert second["preloaded"] == (list(WORKER_IMPORTS) if forked else ["torch"])
    assert first["var"] is None and second["var"] == "changed after the first job"
    assert second["cwd"] == str(tmp_path)
    assert first["threads"] == second["threads"] == 2 and second["omp"] == "2"


@pytest.mark.parametrize("preload", [(), WORKER_IMPORTS], ids=["spawned", "forked"])
def test_each_executor_s_thread_count_reaches_its_jobs(preload):
    # The fork server is one per process and keeps the thread count it started with; at least one of these differs.
    for threads in (1, 2, 1):
        with LocalExecutor(1, threads=threads) as ex:
            ex.preload(preload)
            assert _result(ex, what_the_job_sees)["threads"] == threads


@pytest.mark.parametrize("preload", [(), WORKER_IMPORTS], ids=["spawned", "forked"])
def test_a_dead_worker_is_a_crash_that_names_its_exit_code(preload):
    with LocalExecutor(1, threads=1) as ex:
        ex.preload(preload)
        with pytest.raises(JobCrashed, match="exited with code 3"):
            _result(ex, exit_with_three)
        assert _result(ex, what_the_job_sees)["threads"] == 1  # the next job runs normally


def test_workers_are_spawned_where_forking_is_not_safe(monkeypatch):
    monkeypatch.setattr(executor_module, "forks_safely", lambda: False)
    with LocalExecutor(1, threads=1) as ex:
        ex.preload(WORKER_IMPORTS)
        assert _result(ex, what_the_job_sees)["parent"] == os.getpid()


def test_preload_after_the_first_job_changes_nothing():
    with LocalExecutor(1, threads=1) as ex:
        assert _result(ex, what_the_job_sees)["parent"] == os.getpid()
        ex.preload(WORKER_IMPORTS)
        assert _result(ex, what_the_job_sees)["parent"] == os.getpid()
