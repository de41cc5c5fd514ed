"""Atomic, self-describing file output: every result file is written to a temp name and renamed into place."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .config import UserError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same directory; on success it is fsynced and renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_replaceable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; results are meant to be shared, so give them the umask's ordinary file mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_parquet_atomic(path: str | os.PathLike, table: Any) -> None:
    """Write a pyarrow Table or pandas DataFrame to Parquet atomically (deterministic bytes for equal input)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and flush it to disk (metrics logs; a torn last line is skipped by `read_jsonl`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=_json_default) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The JSON objects of a .jsonl file; a torn line (a kill mid-write), a corrupt one or a non-object is skipped."""
    out = []
    p = Path(path)
    if not p.is_file():
        return out
    for line in read_regular_bytes(p).splitlines():
        try:
            record = json.loads(line.decode("utf-8"))
        except ValueError:  # JSONDecodeError or UnicodeDecodeError
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


# A checkpoint's manifest (model/checkpoint.py): sha256 and size of every other file in its directory. Named here,
# where file handling lives, so readers of finished runs can skip it without importing torch.
CHECKSUMS = "checksums.json"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open_regular(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ---------------------------------------------------------------------------------------------------------------
# Reading only regular files; writing only over our own files


class BadFileError(UserError, OSError):
    """A path the program must read or replace is a FIFO, device, socket or directory (reading a FIFO or a device
    would block forever or never end; replacing one would destroy something that is not ours)."""


def file_kind(mode: int) -> str:
    """What a stat mode is, in words ("a FIFO", "a character device", ...)."""
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    )
    return next((word for test, word in kinds if test(mode)), "not a regular file")


def check_regular_file(path: str | os.PathLike) -> None:
    """Raise BadFileError unless `path` (links followed) is a regular file; FileNotFoundError when it is missing."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise BadFileError(f"{path}: is {file_kind(mode)}, not a regular file; remove or replace it")


def open_regular(path: str | os.PathLike) -> Any:
    """`open(path, "rb")` for a regular file only: the check is made on the open descriptor (no race) and the open
    itself cannot block (O_NONBLOCK), so a FIFO or a device in place of a file is one clear error, never a hang."""
    check_regular_file(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise BadFileError(f"{path}: is {file_kind(mode)}, not a regular file; remove or replace it")
    return os.fdopen(fd, "rb")


def read_regular_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a regular file (BadFileError for anything else)."""
    with open_regular(path) as fh:
        return fh.read()


def check_replaceable(path: str | os.PathLike) -> None:
    """Refuse to replace `path` when something that is not a regular file (or a link to one) is there: a device,
    FIFO, socket or directory is someone else's, and renaming over it would destroy it (as root, even /dev/full)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:  # a dangling link: replacing the link itself harms nothing
            return
    if not stat.S_ISREG(mode):
        raise BadFileError(f"{path}: is {file_kind(mode)}; refusing to write over it")


# ---------------------------------------------------------------------------------------------------------------
# One writer per training directory


class RunLockedError(UserError, RuntimeError):
    """Another live process is training in the same run directory."""


@contextmanager
def training_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Exclusive lock held by pretraining and post-training alike: two writers would interleave checkpoints and
    metrics. The flock is on the directory itself (`directory_lock`), so deleting train.lock cannot let a second
    writer in; train.lock only records who holds it.

    An flock dies with its process, so a run killed with SIGKILL never leaves a stale lock behind.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with directory_lock(run_dir, run_dir / "train.lock", "training in this run directory"):
        yield


def lock_record() -> dict:
    """Who holds a lock: pid, host and start time (shown to the process that is refused)."""
    import datetime as _dt
    import platform

    return {"pid": os.getpid(), "host": platform.node(), "since": _dt.datetime.now(_dt.timezone.utc).isoformat()}


def read_lock_record(record_path: Path) -> str:
    """`pid P on HOST` from a lock record, or why not (it is missing, unreadable or not ours: a link, a FIFO)."""
    try:
        if not stat.S_ISREG(os.lstat(record_path).st_mode):
            return f"{record_path.name} is not a regular file"
        data = json.loads(read_regular_bytes(record_path).decode("utf-8"))
        return f"pid {int(data['pid'])} on {str(data.get('host', '?'))[:80]}"
    except FileNotFoundError:
        return f"its {record_path.name} record was removed"
    except (OSError, ValueError, TypeError, KeyError):
        return f"its {record_path.name} record is unreadable"


def live_holder(record_path: Path) -> str | None:
    """`pid P on HOST` when the lock record names another live hyperstition process on this host: a second check
    behind the flock, for a holder that never took it (another version, or a lock on a filesystem without flock)."""
    import platform

    try:
        if not stat.S_ISREG(os.lstat(record_path).st_mode):
            return None
        data = json.loads(read_regular_bytes(record_path).decode("utf-8"))
        pid, host = int(data["pid"]), str(data.get("host"))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if host != platform.node() or pid == os.getpid() or pid <= 0:
        return None
    cmdline = _cmdline(pid)
    return f"pid {pid} on {host}" if cmdline is not None and b"hyperstition" in cmdline else None


def process_gone(pid: int) -> bool:
    """True when process `pid` has ended: no such process, or a zombie not yet reaped. A process reaped between two
    looks at /proc reads as gone (its files vanish), never as an error."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False


def _cmdline(pid: int, tries: int = 20) -> bytes | None:
    """/proc/PID/cmdline, or None when the process is not running (or there is no /proc to ask). A process that has
    just been exec'd can read as empty for a moment, so an empty answer is asked again, up to `tries` x 25 ms."""
    import time

    for _ in range(tries):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if cmdline:
            return cmdline
        time.sleep(0.025)
    return b""


def try_directory_lock(directory: Path) -> int | None:
    """An exclusive, non-blocking flock on `directory` itself: its descriptor, or None when another process holds
    it. Every writer must open the directory to work in it, so no file can be removed or swapped to sneak past."""
    import fcntl

    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def directory_locked(directory: Path) -> bool:
    """Whether some process holds `try_directory_lock` on `directory` (a missing directory is not locked)."""
    import fcntl

    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextmanager
def directory_lock(directory: Path, record_path: Path, doing: str) -> Iterator[None]:
    """Hold `try_directory_lock` on `directory` and write who holds it to `record_path` (replaced atomically, so a
    link planted there is replaced, never followed); RunLockedError naming the holder when it is taken."""
    fd = try_directory_lock(directory)
    if fd is None:
        raise RunLockedError(
            f"{directory}: another process is {doing} ({read_lock_record(record_path)}); wait for it or use another "
            "directory"
        )
    try:
        write_json_atomic(record_path, lock_record())
        yield
    finally:
        os.close(fd)  # releases the flock
