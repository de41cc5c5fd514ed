"""The wheel a user installs: built from the repository, installed non-editable into a fresh virtual environment,
and `hyperstition run smoke` from an empty directory, with no checkout on the path.

The fresh environment reuses the shared environment's installed dependencies through a path (`.pth`) file instead of
downloading them: only the wheel itself is installed into it (`--no-deps`). Our editable install's own `.pth` lives in
that shared site-packages but is not processed (a path line in a `.pth` file adds a directory; it does not make it a
site directory), so `import hyperstition` can only find the installed wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _clean_env() -> dict[str, str]:
    """The caller's environment without anything that would put the checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["HYPERSTITION_THREADS"] = "1"
    return env


def build_wheel(out_dir: Path) -> Path:
    """`pip wheel` of a copy of the project (the build leaves nothing in the checkout), offline, no build isolation."""
    source = out_dir / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    _run([*pip_wheel, "-w", str(out_dir), str(source)], out_dir, _clean_env())
    (wheel,) = out_dir.glob("hyperstition-*.whl")
    return wheel


def fresh_venv_with(wheel: Path, root: Path) -> Path:
    """A new virtual environment that sees the shared dependencies and has `wheel` installed into it; its bin/."""
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root, _clean_env())
    shared = sysconfig.get_paths()["purelib"]
    (site_packages,) = venv.glob("lib/python*/site-packages")
    (site_packages / "shared-deps.pth").write_text(shared + "\n")
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], root, _clean_env())
    return venv / "bin"


@pytest.mark.slow
def test_wheel_ships_configs_and_runs_smoke_from_an_empty_directory(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    configs = (
        "smoke.yaml",
        "quick.yaml",
        "gpu.yaml",
        "experiments/smoke.yaml",
        "posttrain/smoke.yaml",
        "eval/smoke.yaml",
    )
    for config in configs:
        assert f"hyperstition/configs/{config}" in names, f"{config} missing from {wheel.name}"

    bin_dir = fresh_venv_with(wheel, tmp_path)
    which = "import hyperstition; print(hyperstition.__file__)"
    where = _run([str(bin_dir / "python"), "-c", which], tmp_path, _clean_env())
    installed = Path(where.stdout.strip())
    assert tmp_path / "venv" in installed.parents, f"imported {installed}, not the installed wheel"

    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run([str(bin_dir / "hyperstition"), "run", "smoke", "seeds=[0]"], empty, _clean_env(), timeout=900)
    run_dir = empty / "runs" / "smoke-smoke"
    assert (run_dir / "results.parquet").exists() and (run_dir / "report.html").exists(), proc.stdout[-2000:]
