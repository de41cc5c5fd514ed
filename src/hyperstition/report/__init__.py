"""report stage: a self-contained report.html per run (`render_report`) and run-to-run comparison (`compare`)."""

from __future__ import annotations

import os
from pathlib import Path


def render_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Render RUN/report.html from the run's results, response sample and provenance; returns the path."""
    from .render import render_report as _render

    return _render(run_dir, out)


__all__ = ["render_report"]
