"""Artefacts built once per test session and shared by pytest-xdist's workers (a uniquely named module: test dirs
are not packages)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def xdist_worker() -> str | None:
    """This process's xdist worker id (gw0, gw1, ...), or None outside xdist's workers."""
    return os.environ.get("PYTEST_XDIST_WORKER")


def shared_artefact(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """`<shared>/name`, built once per session by `build(path)` (which creates `path`) in whichever xdist worker asks
    first; the others wait on a file lock and reuse it. A marker file written after a successful build is the commit
    point: a build that raised leaves no marker, and the next caller removes what it left and builds again. Callers
    must not modify the artefact (copy it first). Without xdist the folder is the session's own temporary directory.
    Builders must not ask for another shared artefact (two workers could then wait on each other)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if xdist_worker() is not None else base  # xdist: .../pytest-N/popen-gwK -> .../pytest-N
    path, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            if path.exists():
                shutil.rmtree(path)
            build(path)
            done.touch()
    return path
