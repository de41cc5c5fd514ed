"""Search for the cheapest quick preset at which the calibration controls pass (issue 12).

Each candidate is a set of pipeline overrides on the quick preset. For each, the calibration experiment runs (or an
existing run directory is read with --from-run), and one table row records: the candidate, pretraining steps and
tokens, measured training throughput, wall time, every control's pass / fail / not run, and the classifiable
rate per arm. Rows are added to the table in benchmarks/preset_search.md, so it is the record of what was measured.

    python benchmarks/preset_search.py                          # every candidate below, in order, cheapest first
    python benchmarks/preset_search.py --candidate p1000        # one candidate
    python benchmarks/preset_search.py --from-run runs/cal-p1 --candidate p1000   # record a run made earlier

Not a test: numbers depend on the machine and on whatever else is running on it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
from default_run_stages import run_wall  # a sibling script: run as `python benchmarks/preset_search.py`

from hyperstition.experiments import calibration as cal

TABLE = Path(__file__).with_name("preset_search.md")
# name -> pipeline overrides on the quick preset (cheapest first). The quick preset is p1000 itself; q200 is what it
# was before calibration (200 steps, fp32, a 200k-word corpus).
CANDIDATES: dict[str, str] = {
    "q200": "pipeline={pretrain: {steps: 200, precision: fp32}, corpus: {total_tokens: 200000}}",
    "p500": "pipeline={pretrain: {steps: 500}, corpus: {total_tokens: 500000}}",
    "p1000": "pipeline={}",
}


def throughput(run_dir: Path) -> float:
    """Median of the pretraining cells' last logged tokens/s."""
    rates = []
    for path in run_dir.glob("cells/*/seed-*/pretrain/metrics.jsonl"):
        lines = path.read_text().splitlines()
        if lines:
            rates.append(json.loads(lines[-1]).get("tokens_per_s", float("nan")))
    rates.sort()
    return rates[len(rates) // 2] if rates else float("nan")


def row(name: str, run_dir: Path, wall_s: float | None) -> str:
    from hyperstition.analysis.store import collect_results, load_results

    collect_results(run_dir)
    df = load_results(run_dir)
    marks = {True: "pass", False: "FAIL", None: "not run"}
    controls = "; ".join(f"{c.name}: {marks[c.passed]} ({c.reason})" for c in cal.run_controls(df))
    cells = sorted({(a, int(s)) for a, s in zip(df.arm, df.seed) if not pd.isna(s)})  # seed-null rows: aggregates
    wall_s = wall_s or run_wall(run_dir)  # a recorded run: its own log's total
    wall = f"{wall_s / 60:.1f} min" if wall_s else "n/a"
    return (
        f"| {name} | `{CANDIDATES.get(name, '?')}` | {len(cells)} cells | {throughput(run_dir):.0f} tok/s | "
        f"{wall} | {controls} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", action="append", choices=sorted(CANDIDATES))
    parser.add_argument("--from-run", type=Path, help="record an existing calibration run instead of running one")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where candidate runs go (runs/preset-NAME)")
    args = parser.parse_args()
    if not TABLE.exists():
        TABLE.write_text(
            "| candidate | overrides | cells | pretrain throughput | wall | controls |\n|---|---|---|---|---|---|\n"
        )
    for name in args.candidate or list(CANDIDATES):
        run_dir, wall = args.from_run, None
        if run_dir is None:
            from hyperstition.analysis.catalog import load_experiment
            from hyperstition.experiments.executor import LocalExecutor
            from hyperstition.run import run_and_report

            run_dir = args.runs / f"preset-{name}"
            exp = load_experiment("calibration", [CANDIDATES[name]])
            t0 = time.perf_counter()
            run_and_report(exp, run_dir, executor=LocalExecutor(exp.workers))
            wall = time.perf_counter() - t0
        line = row(name, run_dir, wall)
        lines = TABLE.read_text().splitlines()
        last_row = max(i for i, text in enumerate(lines) if text.startswith("|"))  # the table comes before its notes
        TABLE.write_text("\n".join([*lines[: last_row + 1], line, *lines[last_row + 1 :]]) + "\n")
        print(line)


if __name__ == "__main__":
    main()
