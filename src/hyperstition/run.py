"""`hyperstition run`: run an experiment grid (experiments/), then render its report (report/).

This is the one module that needs both: the grid runner knows nothing of the report, and the report only reads the
run directory and its results (analysis/), so neither imports the other (experiments -> analysis <- report). The
heavy modules load inside the functions, so that `hyperstition --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .analysis.config import DEFAULT_EXPERIMENT, list_experiments
from .cliutil import output_directory, refused
from .config import ConfigError

if TYPE_CHECKING:
    from .analysis.config import ExperimentConfig
    from .experiments.executor import Executor
    from .experiments.schedule import Reporter, RunSummary

RUN_HELP = f"""\
Run an experiment grid: arms x seeds x post-training strategies.

For every (arm, seed) the pipeline is pretrained once and evaluated once (strategy "base"); every post-training
strategy then starts from that checkpoint. Each job runs in its own directory under OUT/cells/; rerunning the
same command skips finished jobs and resumes unfinished ones, so an interrupted or killed run loses no finished
job. A failing job records its traceback and the others go on; the exit status is 1 if any failed.
At the end OUT/results.parquet and OUT/report.html are written.

EXPERIMENT is a name from configs/experiments/ ({", ".join(list_experiments()) or "none found"}) or a YAML path;
default: {DEFAULT_EXPERIMENT}. KEY=VALUE overrides apply to the experiment config, for example
  seeds=[0]  strategies=[sft,dpo,rl]  preset=smoke  pipeline.pretrain.steps=100  arms.filtered.corpus.leak_rate=0.1

examples:
  hyperstition run                                  stickiness on the quick preset -> runs/stickiness-quick
  hyperstition run dose seeds=[0,1,2,3] --workers 2
  hyperstition run smoke --stages hyperstition.experiments.simulate   the machinery with simulated stages
  hyperstition run dose --executor ray --address HEAD:6379 --gpus-per-cell 0.25   cells as Ray tasks on a cluster
"""


def run_and_report(
    exp: ExperimentConfig,
    run_dir: str | os.PathLike,
    *,
    render: bool = True,
    executor: Executor | None = None,
    stages: str | None = None,
    reporter: Reporter | None = None,
    redo_stale: bool = False,
    reuse_from: Sequence[str | os.PathLike] = (),
) -> RunSummary:
    """Run (or resume) the grid of `exp` in `run_dir` (`experiments.runner.run_experiment`: the other arguments are
    its own), then render RUN/report.html unless `render` is false. A failed render is recorded in the summary
    (`report_error`), not raised: the results are safe and `hyperstition report` can retry."""
    from .experiments import runner
    from .report import render_report

    summary = runner.run_experiment(
        exp,
        run_dir,
        executor=executor,
        stages=stages or runner.DEFAULT_STAGES,
        reporter=reporter,
        redo_stale=redo_stale,
        reuse_from=reuse_from,
    )
    if render and summary.results is not None:
        try:
            summary.report = render_report(summary.run_dir)
        except Exception as err:
            summary.report_error = f"{type(err).__name__}: {err}"
    return summary


def build_simulated_run(
    run_dir: str | os.PathLike, experiment: str = "smoke", overrides: list[str] | None = None, render: bool = True
) -> RunSummary:
    """Run `experiment` in-process with the simulated stages (seconds); returns the RunSummary. For tests and demos."""
    from .analysis.catalog import load_experiment
    from .experiments.executor import InlineExecutor
    from .experiments.stageset import SIMULATED_STAGES

    exp = load_experiment(experiment, overrides)
    return run_and_report(exp, run_dir, render=render, executor=InlineExecutor(), stages=SIMULATED_STAGES)


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_run(subparsers)


def _register_run(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run an experiment grid (default: stickiness) and write its report",
        description=RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "experiment",
        nargs="?",
        default=DEFAULT_EXPERIMENT,
        metavar="EXPERIMENT",
        help=f"experiment name or YAML path (default: {DEFAULT_EXPERIMENT})",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="overrides on the experiment config, e.g. seeds=[0] preset=smoke",
    )
    p.add_argument("--out", help="run directory (default: runs/<experiment>-<preset>)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="parallel worker processes (default: the experiment's `workers`; 0 = one per CPU core); each gets "
        "cores/N torch threads. With --executor ray: cells in flight at once (default: what the cluster holds)",
    )
    _register_executor_options(p)
    p.add_argument(
        "--stages",
        default=None,
        metavar="NAME",
        help="registered stage set running pretrain/evaluate/posttrain (default: the real pipeline, "
        "hyperstition.experiments.stages; hyperstition.experiments.simulate runs fast fakes)",
    )
    p.add_argument(
        "--redo-stale",
        action="store_true",
        help="recompute finished cells whose config changed (their old outputs are kept as *.stale-N) instead "
        "of refusing",
    )
    p.add_argument(
        "--reuse-from",
        action="append",
        default=[],
        metavar="RUN",
        help="copy the cells another run directory finished with the same config hash (same path, same stage set, "
        "outputs verified) instead of computing them again, e.g. the default run's pretrainings for `filtering`; "
        "may be given more than once (the first run that has a cell wins); logged in runlog.jsonl",
    )
    p.add_argument("--no-report", action="store_true", help="do not render report.html at the end")
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of progress bars")
    p.set_defaults(func=cmd_run)


def _register_executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--executor",
        choices=sorted(EXECUTORS),
        default="local",
        help="where cells run: local worker processes (default) or Ray tasks, on a Ray instance started here or "
        "the cluster at --address (the run directory must be on a file system every node sees at the same path)",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="HOST:PORT",
        help="with --executor ray: the head node of an existing Ray cluster (HOST:PORT or ray://HOST:PORT; default: "
        "RAY_ADDRESS, else a Ray instance on this machine); an unreachable address fails within seconds",
    )
    p.add_argument(
        "--cpus-per-cell",
        type=float,
        default=1.0,
        metavar="N",
        help="with --executor ray: CPU cores each cell declares",
    )
    p.add_argument(
        "--gpus-per-cell",
        type=float,
        default=0.0,
        metavar="N",
        help="with --executor ray: GPUs each cell declares; a fraction (0.25) packs tiny models onto one GPU",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=1,
        metavar="N",
        help="with --executor ray: resubmit a cell whose worker died (killed, node lost) up to N times; each retry "
        "is logged (runlog.jsonl); then the cell fails",
    )


def _local_executor(args: argparse.Namespace, exp: ExperimentConfig) -> Executor:
    from .experiments.executor import LocalExecutor

    return LocalExecutor(exp.workers)


def _ray_executor(args: argparse.Namespace, exp: ExperimentConfig) -> Executor:
    from .experiments.ray_executor import CellResources, RayExecutor

    if args.retries < 0:
        raise ConfigError(f"--retries: {args.retries} must be >= 0")
    resources = CellResources(cpus=args.cpus_per_cell, gpus=args.gpus_per_cell)
    # A Ray worker does not inherit this process's environment; our own knobs travel, as to a local worker.
    env = {k: v for k, v in os.environ.items() if k.startswith("HYPERSTITION_")}
    return RayExecutor(args.address, resources, workers=args.workers or 0, retries=args.retries, env=env)


# Where `--executor NAME` runs the cells; each builds its executor from the parsed arguments.
EXECUTORS: dict[str, Callable[[argparse.Namespace, ExperimentConfig], Executor]] = {
    "local": _local_executor,
    "ray": _ray_executor,
}


def _ray_only_options(args: argparse.Namespace) -> list[str]:
    defaults = {"address": None, "cpus_per_cell": 1.0, "gpus_per_cell": 0.0, "retries": 1}
    return [f"--{k.replace('_', '-')}" for k, v in defaults.items() if getattr(args, k) != v]


def cmd_run(args: argparse.Namespace) -> int:
    if args.executor == "ray" and args.address:  # first: an unreachable cluster fails before the heavy imports
        from .experiments.ray_executor import check_reachable

        check_reachable(args.address)
    from rich.console import Console
    from rich.markup import escape

    from .analysis.catalog import load_experiment
    from .analysis.rundir import RunDirError
    from .cliutil import is_override
    from .experiments.progress import RichReporter, print_controls, print_summary
    from .experiments.rundir import check_run_dir
    from .experiments.runner import DEFAULT_STAGES

    experiment, overrides = args.experiment, list(args.overrides)
    if experiment and is_override(experiment):  # `hyperstition run seeds=[0]`: no experiment named
        overrides.insert(0, experiment)
        experiment = DEFAULT_EXPERIMENT
    exp = load_experiment(experiment, overrides)
    if args.workers is not None:
        if args.workers < 0:
            raise ConfigError(f"--workers: {args.workers} must be >= 0")
        exp.workers = args.workers
    if args.executor != "ray" and _ray_only_options(args):
        raise ConfigError(f"{', '.join(_ray_only_options(args))}: only with --executor ray")
    out = output_directory(Path(args.out) if args.out else Path("runs") / f"{exp.name}-{Path(exp.preset).stem}")
    try:
        check_run_dir(out, exp.name)
    except RunDirError as err:
        return refused("run", err)
    executor = EXECUTORS[args.executor](args, exp)  # an unreachable cluster is an error before anything is written
    console = Console(stderr=True)
    console.print(
        f"[bold]hyperstition run {escape(exp.name)}[/]: {len(exp.arms)} arms x {len(exp.seeds)} seeds x "
        f"{len(exp.strategies)} strategies ({escape(', '.join(exp.strategies))}), preset {escape(exp.preset)} -> "
        f"{escape(str(out))}"  # names and paths are data, not markup
    )
    reporter = RichReporter(console, enabled=not args.no_progress and console.is_terminal)
    try:
        summary = run_and_report(
            exp,
            out,
            render=not args.no_report,
            executor=executor,
            stages=args.stages or DEFAULT_STAGES,
            reporter=reporter,
            redo_stale=args.redo_stale,
            reuse_from=args.reuse_from,
        )
    except RunDirError as err:
        return refused("run", err)
    print_summary(summary, Console(soft_wrap=True))  # a log file gets whole lines, not lines cut at 80 columns
    if summary.results is not None:
        print_controls(summary.run_dir, Console(soft_wrap=True))
    return 0 if summary.ok else 1
