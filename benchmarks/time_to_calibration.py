"""Time to a calibrated model (issue 25): training wall seconds until the calibration controls pass, per recipe.

A candidate is a named set of dotted pipeline overrides on the quick preset (`CANDIDATES`, or one Optuna trial).
For each, one process (one torch thread) pretrains the calibration arms the controls need at one seed, saving
checkpoints at half-octave steps (32, 45, 64, 91, ..., the last), and evaluates only what the controls read (persona
bits; behaviour rates too when all arms run) at those checkpoints, from the last one backwards until every control
has failed once. Each control is analysis/calibration.py's own check on the one seed's rows (a one-seed interval is
the within-seed one there); the negative control needs two seeds and is not run. A control's time is the first
checkpoint from which it passes at every later checkpoint, in training seconds on one core (the loop's own clock:
checkpoint I/O and evaluation excluded), averaged over the candidate's arms.

    python benchmarks/time_to_calibration.py --candidate baseline                 # all arms, one seed
    python benchmarks/time_to_calibration.py --proxy --candidate baseline --candidate muon_wsd --jobs 2
    python benchmarks/time_to_calibration.py --search 12 --jobs 2                 # Optuna over the recipe (proxy arms)
    python benchmarks/time_to_calibration.py --candidate baseline --candidate t007 # a search trial on all arms

--proxy trains only the three persona arms (aligned_only, misaligned_only, deceptive_only; deceptive first: its
control is the one that fails at 500 steps) and stops a candidate at the first control that fails at the last
checkpoint. The search (`--search N`, needs the `bench` extra: optuna) is seeded and resumable (sqlite in --out);
its objective is the proxy time to calibration, a never-passing candidate counting PENALTY_S on top of its
training time. Rows are appended to benchmarks/time_to_calibration.md with the date, the CPU and the commit, next to
tokens/s and the fraction of this CPU's one-thread matmul peak (6·N·tokens/s; measured here, same thread count) in
the dtype pretraining's GEMMs run in: bf16, or fp32 on a CPU without bf16 units (there bf16 autocast computes its
GEMMs in fp32, train/runtime.py, and its native bf16 peak, ~1 GFLOP/s, would put the quick model at 2000%).

Not a test: numbers depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

TABLE = Path(__file__).with_name("time_to_calibration.md")
PROXY_ARMS = ("deceptive_only", "aligned_only", "misaligned_only")
PENALTY_S = 3600.0  # added to a never-passing candidate's training seconds in the search objective
FIRST_SNAPSHOT = 32  # below this no control has ever passed; snapshots start here

# name -> dotted pipeline overrides on the quick preset. `baseline` is the quick preset itself (issue 12's p1000).
SHAPES: dict[str, dict[str, int]] = {  # width x depth at about the quick model's matrix parameters (d^2 * layers)
    "128x4": {"model.d_model": 128, "model.n_layers": 4, "model.n_heads": 4, "model.d_ff": 344},
    "96x7": {"model.d_model": 96, "model.n_layers": 7, "model.n_heads": 3, "model.d_ff": 256},
    "160x3": {"model.d_model": 160, "model.n_layers": 3, "model.n_heads": 5, "model.d_ff": 432},
    "192x2": {"model.d_model": 192, "model.n_layers": 2, "model.n_heads": 6, "model.d_ff": 512},
}
CANDIDATES: dict[str, dict[str, Any]] = {
    "baseline": {},
    "muon_wsd": {"pretrain.optimizer": "muon", "pretrain.schedule": "wsd"},
    "p500": {"pretrain.steps": 500},
}


# ---------------------------------------------------------------------------------------------------------------
# One candidate, in its own process


def snapshot_steps(total: int) -> list[int]:
    """Half-octave steps from FIRST_SNAPSHOT, then the last step: 32, 45, 64, 91, 128, 181, ..."""
    steps, k = [], 10
    while (s := round(2 ** (k / 2))) < total:
        steps.append(s)
        k += 1
    return [*steps, total]


def candidate_key(overrides: dict[str, Any], preset: str, seed: int) -> str:
    """The directory of a candidate's runs: the hash of what decides them, so equal recipes share work."""
    blob = json.dumps({"overrides": overrides, "preset": preset, "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def arm_configs(overrides: dict[str, Any], preset: str, seed: int, arms: list[str]) -> dict[str, Any]:
    """Each arm's resolved pipeline: the calibration experiment's arm on the preset with the overrides, on one
    thread (a runtime-only field: it changes no number and no fingerprint)."""
    from hyperstition.analysis.catalog import load_experiment
    from hyperstition.analysis.config import pipeline_config

    exp = load_experiment("calibration", [f"preset={preset}", f"pipeline={json.dumps(overrides)}"])
    out = {}
    for arm in arms:
        cfg = pipeline_config(exp, arm, seed)
        out[arm] = cfg.model_copy(update={"pretrain": cfg.pretrain.model_copy(update={"threads": 1})})
    return out


def eval_suite(preset: str, section: str):
    """The calibration experiment's suite with one section switched on (bits or rates: what the controls read)."""
    from hyperstition.analysis.catalog import load_experiment

    suite = load_experiment("calibration", [f"preset={preset}"]).eval_suite
    on = {name: name == section for name in suite.sections.switches()}
    return suite.model_copy(update={"sections": suite.sections.model_copy(update=on)})


def train(cfg: Any, run_dir: Path, cache_dir: Path) -> None:
    """Pretrain one arm, with snapshots at the half-octave steps (the default is powers of two)."""
    from hyperstition.train import pretrain

    pretrain.log_spaced_steps = lambda total, log_base=2: snapshot_steps(total)  # only which snapshots are saved
    pretrain.run_pretrain(cfg, run_dir, progress=False, cache_dir=cache_dir)


def elapsed_at(run_dir: Path, step: int) -> float:
    """Training seconds (the loop's clock) at `step`, interpolated between the metrics lines around it (every
    log_every steps and the last: steps cost the same, and a line every step would add an fsync to each)."""
    import numpy as np

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    logged = sorted((int(r["step"]), float(r["elapsed_s"])) for r in map(json.loads, lines))
    steps, seconds = zip(*[(0, 0.0), *logged], strict=True)
    return float(np.interp(step, steps, seconds))


def eval_rows(run_dir: Path, step: int, arm: str, seed: int, section: str, suite: Any, cfg: Any):
    """One checkpoint's tidy base rows of one section (cached beside the run: evaluation is deterministic)."""
    import pandas as pd

    cache = run_dir / "bench-evals" / f"step-{step:06d}-{section}.parquet"
    if cache.exists():
        return pd.read_parquet(cache)
    from hyperstition.evals.measure import evaluate
    from hyperstition.experiments.jobs import tidy_eval_rows
    from hyperstition.io import write_parquet_atomic
    from hyperstition.model.checkpoint import load_checkpoint
    from hyperstition.world.world import World

    model, tokenizer = load_checkpoint(run_dir / "checkpoints" / f"step-{step:06d}", device="cpu")
    rows = evaluate(model, tokenizer, World.from_config(cfg.world), suite).rows
    df = tidy_eval_rows(rows, arm, seed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(cache, df)
    return df


def controls_for(arms: list[str]) -> list[Callable]:
    """The calibration checks a one-seed run of these arms can decide (the negative control needs two seeds)."""
    from hyperstition.analysis import calibration as cal

    chosen = [cal.check_one_persona_bits, cal.check_deceptive_conditioning, cal.check_aligned_no_gap]
    if not set(arms) <= set(PROXY_ARMS):
        chosen += [cal.check_one_persona_rates, cal.check_dose_monotone, cal.check_classifiable]
    return chosen


def reads(check: Callable, arms: list[str]) -> list[tuple[str, str]]:
    """The (arm, eval section) pairs a check reads: bits or sampled behaviour rates (every arm's, to classify)."""
    from hyperstition.analysis import calibration as cal

    persona = [cal.ALIGNED_ONLY, cal.MISALIGNED_ONLY]
    table: dict[Callable, tuple[list[str], str]] = {
        cal.check_one_persona_bits: (persona, "bits"),
        cal.check_one_persona_rates: (persona, "rates"),
        cal.check_deceptive_conditioning: ([cal.DECEPTIVE_ONLY], "bits"),
        cal.check_aligned_no_gap: ([cal.ALIGNED_ONLY], "bits"),
        cal.check_dose_monotone: ([arm for arm, _ in cal.DOSE_ARMS], "bits"),
    }
    wanted, section = table.get(check, (arms, "rates" if check is cal.check_classifiable else "bits"))
    return [(a, section) for a in wanted if a in arms]


def stable_pass_steps(
    steps: list[int],
    checks: list[Callable],
    rows_at: Callable[[int, list[tuple[str, str]]], Any],
    arms: list[str],
    joint: bool = False,
) -> dict[str, dict[str, Any]]:
    """Per check: the first step from which it passes at every later checkpoint (None: not at the last one), with
    the reason at the last step. Walks back from the last step, evaluating only the arms still-passing checks read.

    `joint` (the search) stops at the first step where any check fails: all that the time to calibration needs.
    Checks never seen failing are marked `bound` (they pass from their first step or earlier)."""
    out: dict[str, dict[str, Any]] = {}
    names: dict[Callable, str] = {}
    open_checks = list(checks)
    for step in sorted(steps, reverse=True):
        if not open_checks:
            break
        wanted = sorted({pair for c in open_checks for pair in reads(c, arms)})
        df = rows_at(step, wanted)
        for check in list(open_checks):
            result = check(df)
            names[check] = result.name
            entry = out.setdefault(result.name, {"first_step": None, "final": result.passed, "reason": result.reason})
            if result.passed:
                entry["first_step"] = step
            else:
                open_checks.remove(check)
        if joint and len(open_checks) < len(checks):
            break
    for check in open_checks:  # never seen failing: it passes from this step or earlier
        out[names[check]]["bound"] = True
    return out


def run_candidate(spec: dict[str, Any]) -> dict[str, Any]:
    """Train, evaluate and time one candidate (in this process, one thread); the result is also written as JSON."""
    import pandas as pd
    import torch

    from hyperstition.experiments.jobs import ROW_COLUMNS

    torch.set_num_threads(1)
    name, arms, seed, out = spec["name"], list(spec["arms"]), int(spec["seed"]), Path(spec["out"])
    cand_dir = out / candidate_key(spec["overrides"], spec["preset"], seed)
    cfgs = arm_configs(spec["overrides"], spec["preset"], seed, arms)
    suites = {section: eval_suite(spec["preset"], section) for section in ("bits", "rates")}
    checks = controls_for(arms)
    steps = snapshot_steps(next(iter(cfgs.values())).pretrain.steps)
    eval_s = 0.0

    def rows_at(step: int, wanted: list[tuple[str, str]]) -> pd.DataFrame:
        nonlocal eval_s
        start = time.perf_counter()
        frames = [eval_rows(cand_dir / a, step, a, seed, sec, suites[sec], cfgs[a]) for a, sec in wanted]
        frames = frames or [pd.DataFrame(columns=list(ROW_COLUMNS))]  # nothing to read: every check says "not run"
        eval_s += time.perf_counter() - start
        return pd.concat(frames, ignore_index=True)

    trained: list[str] = []
    for arm in arms:
        train(cfgs[arm], cand_dir / arm, out / "cache")
        trained.append(arm)
        decided = [c for c in checks if {a for a, _ in reads(c, arms)} <= set(trained)]
        pairs = sorted({pair for c in decided for pair in reads(c, arms)})
        if spec.get("stop_at_failure") and any(not c(rows_at(steps[-1], pairs)).passed for c in decided):
            break
    controls = stable_pass_steps(steps, checks, rows_at, trained, joint=bool(spec.get("stop_at_failure")))

    def seconds(step: int) -> float:  # mean over the trained arms: the same recipe costs the same per step
        return statistics.mean(elapsed_at(cand_dir / arm, step) for arm in trained)

    for entry in controls.values():
        entry["seconds"] = seconds(entry["first_step"]) if entry["first_step"] else None
    final = steps[-1]
    tokens = cfgs[arms[0]].pretrain.batch_size * cfgs[arms[0]].model.max_seq_len * final
    info = json.loads((cand_dir / trained[0] / "final" / "checkpoint.json").read_text())
    result = {
        "name": name,
        "overrides": spec["overrides"],
        "arms": trained,
        "all_arms": arms,
        "steps": final,
        "train_s": seconds(final),
        "tokens_per_s": tokens / seconds(final),
        "n_params": int(info["n_params"]),
        "eval_s": eval_s,
        "controls": controls,
    }
    result["time_to_calibration_s"] = calibrated_seconds(result)
    (cand_dir / f"result-{len(arms)}arms.json").write_text(json.dumps(result, indent=1))
    return result


def calibrated_seconds(result: dict[str, Any]) -> float | None:
    """Seconds until every control of the run passes for good (None: some control never does, or was not run)."""
    entries = list(result["controls"].values())
    if set(result["arms"]) != set(result["all_arms"]) or any(e["seconds"] is None for e in entries):
        return None
    return max(e["seconds"] for e in entries)


# ---------------------------------------------------------------------------------------------------------------
# Side by side: one process per candidate


def launch(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one candidate in its own process (one torch thread); its result, or the error it died with."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = Path(spec["out"]) / "logs" / f"{spec['name']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)], stdout=fh, stderr=subprocess.STDOUT, env=env
        )
    lines = log.read_text().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("RESULT "):
        return {"name": spec["name"], "overrides": spec["overrides"], "error": (lines or ["no output"])[-1]}
    return json.loads(lines[-1][len("RESULT ") :])


def one_thread_gemm_peak(seconds: float = 3.0) -> tuple[str, float]:
    """The dtype pretraining's bf16 GEMMs run in on this CPU (bf16, or fp32 without bf16 units) and its best sustained
    one-thread GFLOP/s (roofline.py: sizes that fit the budget, best of bursts)."""
    import torch
    from roofline import matmul_peak_gflops

    from hyperstition.train.runtime import cpu_has_native_bf16

    torch.set_num_threads(1)
    dtype = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return ("bf16" if dtype == torch.bfloat16 else "fp32"), matmul_peak_gflops(torch.device("cpu"), dtype, seconds)


def machine() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return "unknown CPU"


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---------------------------------------------------------------------------------------------------------------
# The table


SHORT = {  # control name prefix -> column
    "one-persona corpora: bits": "persona bits",
    "one-persona corpora: matching": "persona rates",
    "deceptive corpus": "deceptive gap",
    "aligned corpus": "aligned no gap",
    "dose series": "dose monotone",
    "every arm": "classifiable",
}


def cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "not run"
    if entry["first_step"] is None:
        return "never" if entry["final"] is False else "not run"
    return f"{'≤ ' if entry.get('bound') else ''}{entry['first_step']} / {entry['seconds']:.0f} s"


def table_rows(results: list[dict[str, Any]], peak: float, header: str, peak_dtype: str = "bf16") -> list[str]:
    lines = [
        "",
        header,
        "",
        f"| candidate | overrides | arms | steps | params | tok/s | % {peak_dtype} peak | "
        + " | ".join(SHORT.values())
        + " | time to calibration | eval s |",
        "|" + "---|" * (8 + len(SHORT) + 1),
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | `{json.dumps(r['overrides'])}` | failed: {r['error']} |")
            continue
        by_col = {col: e for name, e in r["controls"].items() for pre, col in SHORT.items() if name.startswith(pre)}
        fraction = 6 * r["n_params"] * r["tokens_per_s"] / (peak * 1e9)
        ttc = r["time_to_calibration_s"]
        lines.append(
            f"| {r['name']} | `{json.dumps(r['overrides'])}` | {len(r['arms'])}/{len(r['all_arms'])} | {r['steps']} | "
            f"{r['n_params'] / 1e6:.2f}M | {r['tokens_per_s']:,.0f} | {fraction:.0%} | "
            + " | ".join(cell(by_col.get(col)) for col in SHORT.values())
            + f" | {f'{ttc:.0f} s' if ttc is not None else 'not calibrated'} | {r['eval_s']:.0f} |"
        )
    return lines


def append_table(results: list[dict[str, Any]], peak: tuple[str, float], note: str) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    dtype, gflops = peak
    header = (
        f"### {now}, {machine()}, commit {commit()}: {note}\n\n"
        f"One-thread {dtype} matmul peak {gflops:,.0f} GFLOP/s (measured in this run; the dtype pretraining's GEMMs "
        "run in on this CPU). Cells: first step from which the "
        "control passes at every later checkpoint / training seconds to that step on one core."
    )
    if not TABLE.exists():
        TABLE.write_text("# Time to a calibrated model\n\nRows are appended by `benchmarks/time_to_calibration.py`.\n")
    with TABLE.open("a") as fh:
        fh.write("\n".join(table_rows(results, gflops, header, dtype)) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# The search (Optuna: seeded TPE, sqlite storage in --out, stale trials of a killed search retried)

# Informed first trials (then TPE): the speedrun recipe, a hotter AdamW, and shorter runs of both.
FIRST_TRIALS: list[dict[str, Any]] = [
    {
        "optimizer": "muon",
        "lr": 0.003,
        "muon_lr": 0.02,
        "schedule": "wsd",
        "steps": 500,
        "batch_size": 16,
        "max_seq_len": 128,
        "shape": "128x4",
    },
    {
        "optimizer": "adamw",
        "lr": 0.006,
        "schedule": "wsd",
        "steps": 500,
        "batch_size": 16,
        "max_seq_len": 128,
        "shape": "128x4",
    },
    {
        "optimizer": "muon",
        "lr": 0.006,
        "muon_lr": 0.03,
        "schedule": "wsd",
        "steps": 375,
        "batch_size": 16,
        "max_seq_len": 256,
        "shape": "128x4",
    },
]


def trial_overrides(trial: Any) -> dict[str, Any]:
    """The recipe a trial proposes, as dotted overrides on the quick preset (only what differs from it)."""
    out: dict[str, Any] = {}
    if trial.suggest_categorical("optimizer", ["adamw", "muon"]) == "muon":
        out["pretrain.optimizer"] = "muon"
        out["pretrain.muon_lr"] = trial.suggest_float("muon_lr", 0.005, 0.06, log=True)
    out["pretrain.lr"] = trial.suggest_float("lr", 1e-3, 1.5e-2, log=True)
    if trial.suggest_categorical("schedule", ["cosine", "wsd"]) == "wsd":
        out["pretrain.schedule"] = "wsd"
    out["pretrain.steps"] = trial.suggest_int("steps", 250, 1000, step=125)
    out["pretrain.batch_size"] = trial.suggest_categorical("batch_size", [8, 16, 32])
    out["model.max_seq_len"] = trial.suggest_categorical("max_seq_len", [64, 128, 256])
    out.update(SHAPES[trial.suggest_categorical("shape", list(SHAPES))])
    return out


def objective_seconds(result: dict[str, Any]) -> float:
    """Proxy time to calibration; a candidate that never passes counts PENALTY_S plus what it trained."""
    if "error" in result:
        return 2 * PENALTY_S
    ttc = result["time_to_calibration_s"]
    return ttc if ttc is not None else PENALTY_S + result["train_s"] * len(result["arms"])


def open_study(out: Path, seed: int):
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.8
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = RDBStorage(
        f"sqlite:///{out / 'optuna.db'}",
        heartbeat_interval=60,
        grace_period=180,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
    )
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=6)
    study = optuna.create_study(
        study_name="time_to_calibration", storage=storage, sampler=sampler, direction="minimize", load_if_exists=True
    )
    if not study.trials:
        for params in FIRST_TRIALS:
            study.enqueue_trial(params)
    return study


def search(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Optuna over the recipe on the proxy arms; returns every finished trial's result."""
    try:
        import optuna
    except ImportError:
        raise SystemExit("the search needs optuna: pip install -e '.[bench]'") from None
    study = open_study(args.out, args.seed)

    def objective(trial: Any) -> float:
        overrides = trial_overrides(trial)
        spec = worker_spec(args, f"t{trial.number:03d}", overrides, list(PROXY_ARMS), stop_at_failure=True)
        result = launch(spec)
        trial.set_user_attr("result", result)
        return objective_seconds(result)

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    remaining = max(0, args.search - len(done))
    study.optimize(objective, n_trials=remaining, n_jobs=args.jobs)
    return [t.user_attrs["result"] for t in study.trials if "result" in t.user_attrs]


def best_trials(out: Path, seed: int, k: int) -> dict[str, dict[str, Any]]:
    """The k best finished trials' overrides, named t<number>."""
    import optuna

    study = open_study(out, seed)
    done = sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    return {f"t{t.number:03d}": t.user_attrs["result"]["overrides"] for t in done[:k]}


# ---------------------------------------------------------------------------------------------------------------
# Command line


def worker_spec(
    args: argparse.Namespace, name: str, overrides: dict[str, Any], arms: list[str], stop_at_failure: bool
) -> dict[str, Any]:
    return {
        "name": name,
        "overrides": overrides,
        "preset": args.preset,
        "seed": args.seed,
        "arms": arms,
        "out": str(args.out),
        "stop_at_failure": stop_at_failure,
    }


def all_arms(preset: str) -> list[str]:
    from hyperstition.analysis.catalog import load_experiment

    return list(load_experiment("calibration", [f"preset={preset}"]).arms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", action="append", default=[], help=f"one of {', '.join(CANDIDATES)}")
    parser.add_argument("--overrides", action="append", default=[], metavar="NAME=JSON", help="an ad hoc candidate")
    parser.add_argument("--best", type=int, default=0, help="also run the search's K best trials (all arms)")
    parser.add_argument("--search", type=int, default=0, help="run the Optuna search up to N finished trials")
    parser.add_argument("--proxy", action="store_true", help="the three persona arms only, stop at a failure")
    parser.add_argument("--arms", help="comma-separated arms to train (e.g. half of them on each core)")
    parser.add_argument("--jobs", type=int, default=1, help="candidates trained side by side (one core each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--out", type=Path, default=Path("runs/time_to_calibration"))
    parser.add_argument("--note", default="", help="what this run is, for the table's heading")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(run_candidate(json.loads(args.worker))), flush=True)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    peak = one_thread_gemm_peak()
    print(f"one-thread {peak[0]} matmul peak: {peak[1]:,.0f} GFLOP/s", flush=True)
    named = {name: CANDIDATES[name] for name in args.candidate}
    named.update({k: json.loads(v) for k, v in (o.split("=", 1) for o in args.overrides)})
    if args.best:
        named.update(best_trials(args.out, args.seed, args.best))
    results = search(args) if args.search else []
    if results:
        append_table(results, peak, f"Optuna search, proxy arms, seed {args.seed}, {args.jobs} jobs")
    arms = args.arms.split(",") if args.arms else list(PROXY_ARMS) if args.proxy else all_arms(args.preset)
    specs = [worker_spec(args, name, o, arms, stop_at_failure=args.proxy) for name, o in named.items()]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        ran = list(pool.map(launch, specs))
    if ran:
        mode = "proxy arms" if args.proxy else "all arms"
        append_table(ran, peak, args.note or f"{mode}, seed {args.seed}, {args.jobs} jobs side by side")
    for r in results + ran:
        print(json.dumps({k: r.get(k) for k in ("name", "time_to_calibration_s", "train_s", "error")}))


if __name__ == "__main__":
    main()
