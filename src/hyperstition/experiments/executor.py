"""Executors: where grid jobs run. The runner only uses `submit`, `wait`, `capacity` and `shutdown`, so another
backend slots in by implementing the same four members (ray_executor.py: `ray.remote(fn).remote(*args)` for
`submit`, `ray.wait` for `wait`); no other part of hyperstition knows which backend ran a job.

Contract for job functions: `fn` is a module-level (importable, picklable) function whose arguments are plain
data; it returns plain data. A job that raises is *not* a crash: job functions catch their own errors and report
them in their return value. `JobCrashed` is raised by `Handle.result()` only when the process running the job
died (killed, out of memory, segfault) or the function raised anyway.
"""

from __future__ import annotations

import abc
import atexit
import functools
import multiprocessing as mp
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from multiprocessing.connection import wait as mp_wait
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..io import process_gone


class JobCrashed(RuntimeError):
    """The process running a job died or the job function raised instead of returning."""


class Handle(abc.ABC):
    """A submitted job."""

    @abc.abstractmethod
    def done(self) -> bool: ...

    @abc.abstractmethod
    def result(self) -> Any:
        """The job function's return value (only once done); raises JobCrashed if it did not return."""

    def notes(self) -> list[str]:
        """What happened to the job on the way that the run should record (a retried worker), one line each."""
        return []


class Executor(abc.ABC):
    """Runs job functions somewhere, at most `capacity` at a time."""

    @property
    @abc.abstractmethod
    def capacity(self) -> int:
        """How many jobs can usefully run at once (the runner keeps at most this many submitted)."""

    @abc.abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any) -> Handle: ...

    @abc.abstractmethod
    def wait(self, handles: Iterable[Handle], timeout: float | None = None) -> tuple[set[Handle], set[Handle]]:
        """Block until at least one handle is done or `timeout` passes; return (done, not_done)."""

    def shutdown(self) -> None:  # optional hook
        """Stop all workers (running jobs are killed)."""

    def preload(self, modules: Sequence[str]) -> None:  # optional hook
        """The modules every job will import: an executor that can load them once for all its workers does."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def cpu_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def plan_workers(requested: int, cores: int | None = None) -> tuple[int, int]:
    """(workers, torch threads per worker): 0 workers means one per core; threads = cores // workers (>= 1)."""
    cores = cores or cpu_cores()
    workers = requested if requested > 0 else cores
    return workers, max(1, cores // workers)


# ---------------------------------------------------------------------------------------------------------------
# In-process (debugging, tests)


class _InlineHandle(Handle):
    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self._fn, self._args = fn, args
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._value = self._fn(*self._args)
        except Exception as err:
            self._error = JobCrashed(f"{type(err).__name__}: {err}")
        self._done = True

    def done(self) -> bool:
        return self._done

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


class InlineExecutor(Executor):
    """Runs each job in this process, one at a time, when it is waited on. No isolation: for tests and debugging."""

    @property
    def capacity(self) -> int:
        return 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> Handle:
        return _InlineHandle(fn, args)

    def wait(self, handles: Iterable[Handle], timeout: float | None = None) -> tuple[set[Handle], set[Handle]]:
        handles = set(handles)
        for h in handles:
            if not h.done():
                h._run()  # type: ignore[attr-defined]
                break
        done = {h for h in handles if h.done()}
        return done, handles - done


# ---------------------------------------------------------------------------------------------------------------
# Local processes


def _set_parent_death_signal() -> None:
    """Linux: die with SIGKILL when the runner dies, so a killed run leaves no orphan writing into a cell."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # best effort
        pass


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _watch_runner(runner_pid: int) -> None:
    """Die (SIGKILL, as the parent-death signal would) when the runner dies. A forked worker's parent is the fork
    server, which outlives the runner while any worker holds the end of the pipe that tells it the runner is alive,
    so the parent-death signal never comes: a daemon thread waits on the runner itself."""

    def watch() -> None:
        try:
            poller = select.poll()
            poller.register(os.pidfd_open(runner_pid), select.POLLIN)  # readable once the runner has exited
            poller.poll()
        except (AttributeError, OSError):  # no pidfd (old kernel, not Linux), or the runner is gone already
            while not process_gone(runner_pid):
                time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="runner-watch", daemon=True).start()


def _apply_job_env(env: dict[str, str]) -> None:
    """The runner's environment as it was at `submit` (multiprocessing already set the working directory), so a
    worker forked from a server started earlier sees what a freshly spawned one would. torch read its thread count
    when the server imported it, so a preloaded torch gets the worker's count here."""
    os.environ.clear()
    os.environ.update(env)
    torch = sys.modules.get("torch")
    if torch is not None and env.get("OMP_NUM_THREADS", "").isdigit():
        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))


def _child_main(
    conn: Any, fn: Callable[..., Any], args: tuple, env: dict[str, str], runner_pid: int, forked: bool
) -> None:
    _set_parent_death_signal()
    # Ctrl-C reaches the whole process group; the runner alone handles it and stops workers with SIGTERM, which
    # unwinds the job (finalizers run, so no leaked-semaphore warnings) instead of printing a worker's traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # already so when started through _sigint_ignoring_python
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # The runner died before prctl took effect: a spawned worker's parent is the runner, a forked one's the server.
    if process_gone(runner_pid) if forked else os.getppid() != runner_pid:
        os._exit(1)
    if forked:
        _watch_runner(runner_pid)
    _apply_job_env(env)
    try:
        value = fn(*args)
        conn.send(("ok", value))
    except BaseException as err:
        try:
            conn.send(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
        except Exception:
            pass
    finally:
        conn.close()


class _ProcessHandle(Handle):
    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.fn, self.args = fn, args
        self.process: Any = None
        self.conn: Any = None
        self._outcome: tuple[str, Any] | None = None

    def started(self) -> bool:
        return self.process is not None

    def _poll(self) -> None:
        if self._outcome is not None or self.process is None:
            return
        message = None
        if self.conn.poll():
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                message = None
        if message is not None:
            self._outcome = message
            self.process.join(timeout=10)
        elif not self.process.is_alive():
            self.process.join()
            code = self.process.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
            self._outcome = ("error", f"worker process {how} before returning a result")
        if self._outcome is not None:
            self.conn.close()

    def done(self) -> bool:
        self._poll()
        return self._outcome is not None

    def result(self) -> Any:
        if not self.done():
            raise RuntimeError("job not finished")
        status, value = self._outcome  # type: ignore[misc]
        if status != "ok":
            raise JobCrashed(value)
        return value


@functools.lru_cache(maxsize=1)
def _sigint_ignoring_python() -> str | None:
    """Path of a tiny launcher that starts this Python with SIGINT ignored (`trap '' INT; exec python`), or None
    where one cannot be made (no /bin/sh, a noexec temp directory).

    Why: Ctrl-C reaches the whole process group. A worker still importing would die of it with a KeyboardInterrupt
    traceback on the terminal; an ignored SIGINT is kept across exec and Python leaves it ignored, so the worker
    never sees it. Ignoring it in the runner around the start instead would lose a Ctrl-C meant for the runner."""
    try:
        directory = tempfile.mkdtemp(prefix="hyperstition-worker-")
        atexit.register(shutil.rmtree, directory, True)
        path = os.path.join(directory, "python")
        with open(path, "w") as fh:
            fh.write(f"#!/bin/sh\ntrap '' INT\nexec {shlex.quote(sys.executable)} \"$@\"\n")
        os.chmod(path, 0o755)
        subprocess.run([path, "-c", "pass"], check=True, timeout=60, capture_output=True)
        return path
    except (OSError, subprocess.SubprocessError):
        return None


@contextmanager
def _workers_ignore_sigint(start_method: str) -> Iterator[None]:
    """Start workers (spawn) or the server that forks them (forkserver, started with the first worker) through
    `_sigint_ignoring_python` (the spawn executable is process-wide, so only meanwhile)."""
    launcher = _sigint_ignoring_python() if start_method in ("spawn", "forkserver") else None
    if launcher is None:
        yield
        return
    from multiprocessing import spawn

    previous = spawn.get_executable()
    spawn.set_executable(launcher)
    try:
        yield
    finally:
        spawn.set_executable(previous)


@contextmanager
def _started_with(env: dict[str, str]) -> Iterator[None]:
    """`env` in this process's environment meanwhile: a worker, or a fork server, started now imports its native
    libraries (torch, numpy's BLAS) with the workers' thread counts, which they read only at start-up."""
    previous = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(previous)


def forks_safely() -> bool:
    """Whether workers may be forked from a server process: Linux only (macOS frameworks are not fork-safe)."""
    return sys.platform.startswith("linux") and "forkserver" in mp.get_all_start_methods()


class LocalExecutor(Executor):
    """A pool of `workers` fresh processes (one per job, so memory is returned and a crash costs one job); each gets
    OMP/MKL thread counts of `threads` (native libraries read them at start-up; the runner also hands `threads` to
    each job, which applies it to torch).

    Workers are spawned fresh, unless `preload` named the modules the jobs import (torch, transformers, the
    stages) before the first job and the platform forks safely: then they are forked from a server that imported
    them once (multiprocessing's forkserver), so a job starts in milliseconds instead of re-importing torch and
    transformers (about 10 s a job on 2 cores). The server is one per process: the first executor to start it sets
    its modules and the thread counts its native libraries start with (torch's is set again in each worker)."""

    def __init__(self, workers: int = 0, threads: int | None = None) -> None:
        w, t = plan_workers(workers)
        self.workers = w
        self.threads = threads or t
        self._start_method = "spawn"
        self._ctx = mp.get_context(self._start_method)
        self._started_any = False
        self._queue: list[_ProcessHandle] = []
        self._running: list[_ProcessHandle] = []

    def preload(self, modules: Sequence[str]) -> None:
        if not modules or self._started_any or not forks_safely():
            return
        self._start_method = "forkserver"
        self._ctx = mp.get_context(self._start_method)
        self._ctx.set_forkserver_preload(list(modules))

    @property
    def capacity(self) -> int:
        return self.workers

    def _thread_env(self) -> dict[str, str]:
        n = str(self.threads)
        return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "TOKENIZERS_PARALLELISM": "false"}

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self._thread_env()}

    def _start(self, h: _ProcessHandle) -> None:
        self._started_any = True
        recv, send = self._ctx.Pipe(duplex=False)
        h.process = self._ctx.Process(
            target=_child_main,
            args=(send, h.fn, h.args, self._env(), os.getpid(), self._start_method == "forkserver"),
            daemon=False,
        )
        with _workers_ignore_sigint(self._start_method), _started_with(self._thread_env()):
            h.process.start()
        send.close()
        h.conn = recv
        self._running.append(h)

    def _fill(self) -> None:
        self._running = [h for h in self._running if not h.done()]
        while self._queue and len(self._running) < self.workers:
            self._start(self._queue.pop(0))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Handle:
        h = _ProcessHandle(fn, args)
        self._queue.append(h)
        self._fill()
        return h

    def wait(self, handles: Iterable[Handle], timeout: float | None = None) -> tuple[set[Handle], set[Handle]]:
        handles = set(handles)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._fill()
            done = {h for h in handles if h.done()}
            if done:
                return done, handles - done
            waitables = []
            for h in handles:
                if isinstance(h, _ProcessHandle) and h.started():
                    waitables += [h.conn, h.process.sentinel]
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0.0:
                return set(), handles
            if not waitables:
                time.sleep(min(0.05, remaining or 0.05))
                continue
            mp_wait(waitables, timeout=remaining)

    def shutdown(self, grace_s: float = 2.0) -> None:
        """Stop running jobs: SIGTERM (the job unwinds and exits), then SIGKILL for any still alive after `grace_s`."""
        self._queue.clear()
        alive = [h.process for h in self._running if h.process is not None and h.process.is_alive()]
        for process in alive:
            process.terminate()
        deadline = time.monotonic() + grace_s
        for process in alive:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        self._running.clear()
