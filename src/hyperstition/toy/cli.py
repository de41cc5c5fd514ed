"""`hyperstition toy fit RUN | toy plot`: the analytic persona models, fitted to a run or drawn on their own."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable

TOY_HELP = """\
The toy persona models behind the seed argument ("a couple of bits of prior against orders of magnitude of
post-training evidence"), made computable.

Bayesian model: personas aligned, misaligned and deceptive (aligned when observed, misaligned when not) with
prior log-odds in bits; post-training is evidence on observed prompts only, under which aligned and deceptive are
identical. Closed forms give persona weights, observed and unobserved misalignment, behaviour log-odds and the
pressure K = KL(post || prior) of the behaviour on observed prompts, in bits, as measured in real runs.
Gradient-descent model: the same personas as a softmax trained on observed examples (SGD or Adam, optional KL
penalty), with a behaviour offset whose update carries over to unobserved prompts in proportion to a sharing
strength; it equals the Bayesian model in a limit derived in hyperstition/toy/gd.py.

  hyperstition toy plot [--out DIR]   canonical figures, no run needed
  hyperstition toy fit RUN            fit both models to a run's persistence curves; adds a report section
"""

FIT_HELP = """\
Fit both toy models to RUN/results.parquet: for every post-training strategy, the curves of persona bits (aligned
vs misaligned) against pressure K per arm, seed and context. Bayesian model: each arm's prior log-odds of the
aligned and deceptive personas, a behaviour noise floor and the evidence per bit of K, by least squares.
Gradient-descent model: the same priors and floor; sharing, plasticity and steps per bit of K by grid search.

Writes, next to results.parquet (which the runner rewrites; these files are left alone):
  toy_results.parquet  every measured point with each model's prediction (columns run, arm, seed, strategy,
                       step, tokens, kl_bits, context, metric, model, measured, predicted); SQL table toy_results
  toy_curves.parquet   both models' predictions on a dense K grid, per strategy, arm and context
  toy_fit.json         fitted parameters, RMSE per context against a no-change null model, and the sha256 of the
                       results.parquet they were fitted to
and re-renders RUN/report.html, whose "Toy models" section overlays the predictions on the measured curves.

example: hyperstition toy fit runs/stickiness-quick
"""

PLOT_HELP = """\
Draw the canonical figures of the argument (no run needed), each as a PNG with a CSV of every plotted number:
  unobserved_misalignment  misaligned rate on observed and unobserved prompts against K and against bits of
                           evidence, for priors of 0.5, 2 and 5 bits (aligned ahead of each other persona)
  stickiness               S of two priors that differ only in aligned vs deceptive: Bayes (S = 1 in persona
                           log-odds) against gradient descent at several sharing strengths

example: hyperstition toy plot --out runs/toy --priors 0.5,2,5 --sharing 0,0.5,0.9
"""


MAX_PRIOR_BITS = 64.0  # 2**64 odds: far past any plotted effect, and exp() of it stays finite


def _floats_in(low: float, high: float, open_low: bool = False) -> Callable[[str], tuple[float, ...]]:
    """An argparse type: comma-separated finite numbers in [low, high] ((low, high] with `open_low`), no empty item."""

    def parse(text: str) -> tuple[float, ...]:
        items = text.split(",")
        if any(not x.strip() for x in items):
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers with none empty, got {text!r}")
        try:
            values = tuple(float(x) for x in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
        for v in values:
            if not math.isfinite(v) or v > high or v < low or (open_low and v == low):
                bracket = "(" if open_low else "["
                raise argparse.ArgumentTypeError(f"{v:g} is outside {bracket}{low:g}, {high:g}]")
        return values

    return parse


_floats = _floats_in(-MAX_PRIOR_BITS, MAX_PRIOR_BITS)


def _noise(text: str) -> float:
    """The noise floor: strictly between 0 (a persona that never errs has infinite log-odds) and 0.5."""
    (value,) = _floats_in(0.0, 0.4999, open_low=True)(text) if "," not in text else (float("nan"),)
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"expected one number, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    toy = subparsers.add_parser(
        "toy",
        help="the Bayesian / gradient-descent persona models: fit a run, or plot",
        description=TOY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    toy.set_defaults(func=lambda args: _print_help(toy))
    sub = toy.add_subparsers(dest="toy_command", metavar="SUBCOMMAND")
    p = sub.add_parser(
        "fit",
        help="fit both models to a run's persistence curves and add them to its report",
        description=FIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run directory (with results.parquet)")
    p.add_argument("--no-report", action="store_true", help="do not re-render RUN/report.html")
    p.set_defaults(func=cmd_fit)
    p = sub.add_parser(
        "plot",
        help="draw the canonical figures of the argument (no run needed)",
        description=PLOT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="runs/toy", help="output directory (default: runs/toy)")
    p.add_argument(
        "--priors",
        type=_floats,
        default=(0.5, 2.0, 5.0),
        metavar="BITS,...",
        help="prior shifts in bits: the aligned persona's log-odds against every other (default 0.5,2,5)",
    )
    p.add_argument(
        "--sharing",
        type=_floats,  # finite and bounded here; PlotSettings says that sharing must lie in [0, 1]
        default=(0.0, 0.5, 0.9),
        metavar="RHO,...",
        help="sharing strengths of the gradient-descent model, each in [0, 1] (default 0,0.5,0.9)",
    )
    p.add_argument(
        "--noise",
        type=_noise,
        default=0.01,
        help="behaviour noise floor: P(misaligned response) of the aligned persona (default 0.01)",
    )
    p.set_defaults(func=cmd_plot)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def cmd_fit(args: argparse.Namespace) -> int:
    import json

    from ..analysis.rundir import RunDirError
    from .fit import ToyFitError, fit_run

    try:
        path = fit_run(args.run)
    except (RunDirError, ToyFitError) as err:
        print(f"hyperstition toy fit: {err}", file=sys.stderr)
        return 2
    for fit in json.loads(path.read_text())["fits"]:
        rmse, null = fit["rmse"], fit["null_rmse"]
        print(
            f"{fit['strategy']:>10} {fit['model']:>5}: RMSE {rmse['all']:.3f} bits (observed {rmse['observed']:.3f}, "
            f"unobserved {rmse['unobserved']:.3f}); no-change null {null['all']:.3f}; "
            f"{fit['n_points']} points, {fit['n_params']} parameters"
        )
    print(f"fit: {path}")
    if not args.no_report:
        from ..report import render_report  # the report shows the fit; toy itself never needs report

        print(f"report: {render_report(args.run)}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from ..io import write_bytes_atomic, write_text_atomic
    from .figures import FIGURES, PlotSettings

    try:
        settings = PlotSettings(priors_bits=args.priors, sharing=args.sharing, noise=args.noise)
        figures = [make(settings) for make in FIGURES]
    except ValueError as err:
        print(f"hyperstition toy plot: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    for fig in figures:
        write_bytes_atomic(out / f"{fig.name}.png", fig.png)
        write_text_atomic(out / f"{fig.name}.csv", fig.data.to_csv(index=False))
        print(f"{fig.name}: {out / fig.name}.png (+ .csv)")
    return 0
