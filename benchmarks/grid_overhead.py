"""Grid runner overhead: what the experiment machinery itself costs, with the stages simulated (near-zero work).

Runs a grid with `hyperstition.experiments.simulate` on real worker processes and reports the wall time per job
(process spawn + imports + bookkeeping), the time to assemble results, and the time to render the report. The
default `hyperstition run` (stickiness: 5 arms x 2 seeds x {sft, dpo} = 40 jobs) pays this per job on top of the
real training, so it bounds what the quick preset can spend on compute inside the 15-minute budget.

    python benchmarks/grid_overhead.py                          # stickiness grid, preset smoke, 2 workers
    python benchmarks/grid_overhead.py --experiment smoke --workers 1
    python benchmarks/grid_overhead.py --override seeds=[0,1,2]

Not a test: numbers depend on the machine and on whatever else is running on it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.store import collect_results
from hyperstition.experiments.executor import LocalExecutor
from hyperstition.experiments.runner import run_experiment
from hyperstition.report import render_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="stickiness")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", type=int, default=0, help="0 = one per core")
    args = parser.parse_args()

    exp = load_experiment(args.experiment, ["preset=smoke", *args.override])
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        executor = LocalExecutor(args.workers)
        t0 = time.perf_counter()
        summary = run_experiment(exp, run, executor=executor, stages="hyperstition.experiments.simulate")
        t_grid = time.perf_counter() - t0
        t0 = time.perf_counter()
        collect_results(run, exp.samples_per_cell)
        t_collect = time.perf_counter() - t0
        t0 = time.perf_counter()
        render_report(run)
        t_report = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = run_experiment(
            exp, run, executor=LocalExecutor(args.workers), stages="hyperstition.experiments.simulate"
        )
        t_rerun = time.perf_counter() - t0

    n = len(summary.jobs)
    job_wall = sum(summary.wall_by_job.values())
    print(
        f"grid: {exp.name} ({len(exp.arms)} arms x {len(exp.seeds)} seeds x {len(exp.strategies)} strategies) "
        f"= {n} jobs "
        f"on {executor.workers} worker(s) x {executor.threads} thread(s)"
    )
    print(f"  grid wall time          {t_grid:7.2f} s   ({t_grid / n * executor.workers:.2f} s per job per worker)")
    print(f"  in-job time (stage+io)  {job_wall:7.2f} s   ({job_wall / n:.2f} s per job; the rest is spawn + imports)")
    print(f"  collect results         {t_collect:7.2f} s")
    print(f"  render report           {t_report:7.2f} s")
    print(f"  rerun, all cells kept   {t_rerun:7.2f} s   ({len(again.skipped)} skipped)")


if __name__ == "__main__":
    main()
