"""The Ray executor: every grid job a Ray task with declared resources (CPUs, GPUs, fractional GPUs for tiny
models), on a cluster this process starts (no address) or an existing one (`--address HOST:PORT`).

Nothing else changes: the scheduler submits the same job function (`cell.execute_job`) with the same arguments, so
the run directory, the config hashes, resume and the results are those of the local executor. What Ray needs:

- the run directory on a file system every node sees at the same path (NFS, Lustre, a local disk for one node);
  the scheduler hands jobs the absolute path;
- hyperstition importable by the cluster's Python (installed there, or on PYTHONPATH when the nodes start).

A worker that dies (killed, out of memory, its node lost) is resubmitted up to `retries` times (the stages resume
from their checkpoints); each retry is returned by `Handle.notes()`, which the scheduler writes to runlog.jsonl and
the progress lines; past `retries` the cell fails with the reason, like a dead local worker. A job function that
raises is not retried (it would raise again). Ray's own task retries are off so that no retry goes unrecorded.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from ..config import UserError
from .executor import Executor, Handle, JobCrashed

CONNECT_TIMEOUT_S = 5.0
# The HTTP/2 client preface: a gRPC server (Ray's GCS and Ray Client both are) answers it with a SETTINGS frame.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_H2_SETTINGS = 0x4


class RayUnavailable(UserError):
    """Ray is not installed, or no Ray cluster answers at the address given."""


@dataclass(frozen=True)
class CellResources:
    """What one cell declares to Ray's scheduler."""

    cpus: float = 1.0  # CPU cores per cell; torch gets max(1, floor(cpus)) threads
    gpus: float = 0.0  # GPUs per cell; a fraction (0.25) packs several tiny models on one GPU

    def __post_init__(self) -> None:
        if not (self.cpus > 0 and math.isfinite(self.cpus)):
            raise UserError(f"--cpus-per-cell: {self.cpus} must be a positive number")
        if not (self.gpus >= 0 and math.isfinite(self.gpus)) or (self.gpus > 1 and self.gpus != int(self.gpus)):
            raise UserError(f"--gpus-per-cell: {self.gpus} must be >= 0, a fraction below 1 or a whole number")

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))


def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(
            f"--address {address}: expected HOST:PORT (the head node's GCS port, 6379 unless `ray start --head "
            "--port` said otherwise) or ray://HOST:PORT"
        )
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """A one-line RayUnavailable unless a gRPC server (a Ray head) answers at `address` within `timeout_s`.

    Why: `ray.init(address=...)` retries an unreachable head for minutes; this check fails in seconds instead."""
    host, port = _host_port(address)
    try:
        conn = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as err:
        why = f"timed out after {timeout_s:g} s" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise RayUnavailable(
            f"--address {address}: no Ray cluster reachable there ({why}); start one with "
            "`ray start --head` or check the head node's address and port"
        ) from None
    with conn:
        try:
            conn.settimeout(timeout_s)
            conn.sendall(_H2_PREFACE)
            frame = conn.recv(9)
        except OSError:
            frame = b""
    if len(frame) < 4 or frame[3] != _H2_SETTINGS:
        raise RayUnavailable(
            f"--address {address}: something answers there but not as a Ray head node does (no gRPC reply within "
            f"{timeout_s:g} s); check the port (`ray start --head` prints it)"
        )


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """The one remote function: runs `fn(*args)` in a Ray worker (fn travels by reference, as in a spawn)."""
    return fn(*args)


class _RayHandle(Handle):
    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.fn, self.args = fn, args
        self.ref: Any = None
        self.retries: list[str] = []
        self._outcome: tuple[str, Any] | None = None

    def done(self) -> bool:
        return self._outcome is not None

    def result(self) -> Any:
        if self._outcome is None:
            raise RuntimeError("job not finished")
        status, value = self._outcome
        if status != "ok":
            raise JobCrashed(value)
        return value

    def notes(self) -> list[str]:
        return [f"retried after: {why}" for why in self.retries]


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return f"{type(err).__name__}: {text.splitlines()[0][:300]}"


class RayExecutor(Executor):
    """Each job a Ray task needing `resources`; at most `capacity` in flight (default: what the cluster's CPUs and
    GPUs hold when connecting). `address` None starts a Ray instance on this machine (or joins RAY_ADDRESS); `env`
    is set in every worker (when this executor makes the connection)."""

    def __init__(
        self,
        address: str | None = None,
        resources: CellResources = CellResources(),
        *,
        workers: int = 0,
        retries: int = 1,
        env: dict[str, str] | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise RayUnavailable(
                "--executor ray needs the `ray` package: pip install 'hyperstition[ray]' (or pip install ray)"
            ) from None
        self._ray = ray
        self.resources = resources
        self.threads = resources.threads
        self.retries = max(0, retries)
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address and address != "auto":
            check_reachable(address, connect_timeout_s)
        self._own_connection = not ray.is_initialized()
        if self._own_connection:
            _connect(ray, address, env or {}, connect_timeout_s)
        self._remote = ray.remote(_call).options(
            num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=0, retry_exceptions=False
        )
        self._capacity = workers if workers > 0 else _cluster_capacity(ray.cluster_resources(), resources)
        self._in_flight: list[_RayHandle] = []

    @property
    def capacity(self) -> int:
        return self._capacity

    def submit(self, fn: Callable[..., Any], *args: Any) -> Handle:
        handle = _RayHandle(fn, args)
        handle.ref = self._remote.remote(fn, *args)
        self._in_flight.append(handle)
        return handle

    def _settle(self, handle: _RayHandle) -> None:
        """Fetch a finished task's value; a dead worker is resubmitted (up to `retries`), else the job crashed."""
        ray = self._ray
        try:
            handle._outcome = ("ok", ray.get(handle.ref))
        except ray.exceptions.RayTaskError as err:  # the job function raised: it would raise again
            handle._outcome = ("error", _first_line(err.cause if err.cause is not None else err))
        except ray.exceptions.RayError as err:  # the worker, its node or the result was lost
            if len(handle.retries) < self.retries:
                handle.retries.append(_first_line(err))
                handle.ref = self._remote.remote(handle.fn, *handle.args)
                return
            tries = len(handle.retries) + 1
            handle._outcome = ("error", f"Ray worker lost after {tries} attempt(s): {_first_line(err)}")
        self._in_flight.remove(handle)

    def wait(self, handles: Iterable[Handle], timeout: float | None = None) -> tuple[set[Handle], set[Handle]]:
        handles = set(handles)
        while True:
            done = {h for h in handles if h.done()}
            if done:
                return done, handles - done
            by_ref = {h.ref: h for h in handles if isinstance(h, _RayHandle)}
            ready, _ = self._ray.wait(list(by_ref), num_returns=1, timeout=timeout)
            if not ready:
                return set(), handles
            for ref in ready:
                self._settle(by_ref[ref])

    def shutdown(self) -> None:
        """Cancel the jobs still in flight (their workers are killed) and leave the cluster if we joined it."""
        ray = self._ray
        for handle in self._in_flight:
            try:
                ray.cancel(handle.ref, force=True)
            except Exception:  # already finished or its node is gone: nothing left to stop
                pass
        self._in_flight.clear()
        if self._own_connection and ray.is_initialized():
            ray.shutdown()


def _connect(ray: Any, address: str | None, extra_env: dict[str, str], timeout_s: float) -> None:
    """Join (or start) the cluster; `extra_env` reaches every worker of this run (a worker does not inherit this
    process's environment: it is a child of its node's raylet)."""
    # Workers log to the cell's log.txt (cell.py redirects them), not to this terminal.
    env = {"TOKENIZERS_PARALLELISM": "false", **extra_env}
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "warning", "runtime_env": {"env_vars": env}}
    if address is None:
        kwargs["include_dashboard"] = False
    # Ray retries a head that answers but is not a GCS (a proxy) for ~20 one-second rounds, each a warning on fd 2
    # from its C++ core: bound the rounds, hold the warnings back and give them back only if the connection works.
    wait = {"RAY_gcs_server_port_wait_time_s": str(max(1, round(timeout_s)))} if address else {}
    with _environ(wait), _held_stderr() as held:
        try:
            ray.init(address=address, **kwargs)
        except ImportError as err:  # ray:// (Ray Client) needs grpcio, which plain `ray` does not install
            held.discard = True
            raise RayUnavailable(f"--address {address}: {_first_line(err)}; pip install 'ray[client]'") from None
        except ConnectionError as err:
            held.discard = True
            why = next((ln for ln in reversed(held.text().splitlines()) if "Failed" in ln), "")
            why = why.split("] ", 1)[-1].split(": ", 1)[-1][:200]
            raise RayUnavailable(f"--address {address}: {_first_line(err)}" + (f" ({why})" if why else "")) from None


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables the user has not set themselves, for the duration."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


class _Held:
    def __init__(self, file: Any) -> None:
        self.file = file
        self.discard = False

    def text(self) -> str:
        self.file.seek(0)
        return self.file.read().decode("utf-8", "replace")


@contextlib.contextmanager
def _held_stderr() -> Iterator[_Held]:
    """fd 2 (Python and native code alike) goes to a temporary file meanwhile; written back afterwards unless
    `discard` was set."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        held = _Held(tmp)
        os.dup2(tmp.fileno(), 2)
        try:
            yield held
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not held.discard:
                sys.stderr.write(held.text())
                sys.stderr.flush()


def _cluster_capacity(total: dict[str, float], resources: CellResources) -> int:
    """How many cells the cluster runs at once: its CPUs (and GPUs, when cells need them) over a cell's share."""
    fits = [total.get("CPU", 0.0) / resources.cpus]
    if resources.gpus > 0:
        fits.append(total.get("GPU", 0.0) / resources.gpus)
    n = int(min(fits) + 1e-9)
    if n < 1:
        raise RayUnavailable(
            f"the Ray cluster has {total.get('CPU', 0):g} CPU(s) and {total.get('GPU', 0):g} GPU(s); a cell needs "
            f"{resources.cpus:g} CPU(s) and {resources.gpus:g} GPU(s) (--cpus-per-cell, --gpus-per-cell), or give "
            "--workers N for a cluster that scales up on demand"
        )
    return n
