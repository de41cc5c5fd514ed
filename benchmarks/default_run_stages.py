"""Wall time of a finished experiment run split by stage: corpus, tokenizer, pretrain, eval, each strategy, report.

Reads the run directory the runner wrote (DONE.json wall time per job, file times inside each pretrain cell for the
corpus and tokenizer parts of the pretrain job, the run log's total) and re-renders the report to time it.

    python benchmarks/default_run_stages.py runs/stickiness-quick       # after `hyperstition run`
    python benchmarks/default_run_stages.py RUN --run                   # run the default experiment into RUN first

Job times are CPU-seconds of one worker each; with W workers the run's wall time is roughly their sum / W plus the
report. Not a test: numbers depend on the machine and on whatever else is running on it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path


def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime if path.exists() else None


def _within(t: float | None, lo: float, hi: float) -> float:
    return lo if t is None else min(max(t, lo), hi)


def stage_seconds(run_dir: Path) -> dict[str, float]:
    """Summed job seconds per stage over every finished job of the run."""
    out: dict[str, float] = defaultdict(float)
    for done_path in sorted(run_dir.glob("cells/*/seed-*/*/DONE.json")):
        cell = done_path.parent
        done = json.loads(done_path.read_text())
        job = json.loads((cell / "job.json").read_text())
        wall = float(done.get("wall_s", 0.0))
        if job["kind"] != "pretrain":
            out["eval" if job["kind"] == "eval" else job["strategy"]] += wall
            continue
        end = done_path.stat().st_mtime
        start = end - wall
        # A corpus or tokenizer reused from an earlier cell (content-addressed cache) keeps that cell's file times:
        # clamped into this job's span, it counts as no time here instead of inflating the pretraining share.
        corpus_end = _within(_mtime(cell / "corpus" / "manifest.json"), start, end)
        tokenizer_end = _within(_mtime(cell / "tokenizer" / "tokenizer.json"), corpus_end, end)
        out["corpus"] += max(0.0, corpus_end - start)
        out["tokenizer"] += max(0.0, tokenizer_end - corpus_end)
        out["pretrain"] += max(0.0, wall - (tokenizer_end - start))
    return dict(out)


def run_wall(run_dir: Path) -> float | None:
    ends = [json.loads(line) for line in (run_dir / "runlog.jsonl").read_text().splitlines() if '"end"' in line]
    return float(ends[-1]["wall_s"]) if ends else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--run", dest="do_run", action="store_true", help="run the default experiment into RUN first")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.do_run:
        from hyperstition.analysis.catalog import load_experiment
        from hyperstition.experiments.executor import LocalExecutor
        from hyperstition.run import run_and_report

        exp = load_experiment("stickiness", args.override)
        run_and_report(exp, args.run, executor=LocalExecutor(exp.workers))
    from hyperstition.report import render_report

    t0 = time.perf_counter()
    render_report(args.run, out=args.run / "report.bench.html")
    report_s = time.perf_counter() - t0
    stages = stage_seconds(args.run) | {"report": report_s}
    total = sum(stages.values())
    print(f"{'stage':<12} {'job-seconds':>12} {'share':>7}")
    for name, seconds in stages.items():
        print(f"{name:<12} {seconds:>12.1f} {seconds / total:>7.1%}")
    wall = run_wall(args.run)
    print(f"run wall time (runlog): {wall / 60:.1f} min" if wall else "run wall time: no finished run in the run log")


if __name__ == "__main__":
    main()
