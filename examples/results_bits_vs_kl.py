"""Open a run's results with pandas and with DuckDB, and plot persona bits against post-training pressure (KL).

    python examples/results_bits_vs_kl.py runs/stickiness-quick --out bits_vs_kl.png

`results.parquet` is one tidy table: run, arm, seed, strategy, step, tokens, kl_bits, context, metric, value, ci_low,
ci_high. Step 0 of every post-training curve is the base model on the same items, so each line starts at KL = 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import duckdb
import matplotlib

matplotlib.use("Agg")  # files only: runs on a server without a display
import matplotlib.pyplot as plt
import pandas as pd

HEADLINE = "bits_aligned_vs_misaligned"  # log2 P(aligned reply) - log2 P(misaligned reply), per prompt, averaged


def curves_with_pandas(results: Path) -> pd.DataFrame:
    """Headline bits along every post-training curve: one row per (arm, seed, strategy, context, step).

    Seeds stay separate: each row's interval is over that seed's items, and averaging interval ends across seeds
    would not be an interval (the report's across-seed bootstrap is in `hyperstition report`)."""
    df = pd.read_parquet(results)
    curves = df[(df.metric == HEADLINE) & (df.strategy != "base")]
    columns = ["arm", "seed", "strategy", "context", "step", "kl_bits", "value", "ci_low", "ci_high"]
    return curves[columns].rename(columns={"value": "bits"}).sort_values(columns[:5]).reset_index(drop=True)


def base_bits_with_duckdb(results: Path) -> pd.DataFrame:
    """The same file through SQL: each arm's base headline bits per context and seed (where post-training starts)."""
    query = f"""
        SELECT arm, seed, context, value AS bits, ci_low, ci_high
        FROM read_parquet('{results.as_posix()}')
        WHERE metric = '{HEADLINE}' AND strategy = 'base'
        ORDER BY arm, seed, context"""
    return duckdb.sql(query).df()


def plot(curves: pd.DataFrame, out: Path) -> None:
    contexts = sorted(curves.context.unique())
    fig, axes = plt.subplots(1, len(contexts), figsize=(5 * len(contexts), 4), sharey=True, squeeze=False)
    for ax, context in zip(axes[0], contexts):
        for (arm, seed, strategy), line in curves[curves.context == context].groupby(["arm", "seed", "strategy"]):
            line = line.sort_values("kl_bits")
            ax.plot(line.kl_bits, line.bits, marker="o", label=f"{arm} / seed {seed} / {strategy}")
            ax.fill_between(line.kl_bits, line.ci_low, line.ci_high, alpha=0.15)
        ax.set_xscale("symlog", linthresh=1.0)  # KL starts at 0 (the base model) and grows by orders of magnitude
        ax.set(title=f"{context} prompts", xlabel="KL(post-trained || base), bits per reply", ylabel="persona bits")
        ax.axhline(0, color="grey", lw=0.5)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory (holds results.parquet)")
    parser.add_argument("--out", type=Path, default=Path("bits_vs_kl.png"))
    args = parser.parse_args()
    results = args.run / "results.parquet"
    print(base_bits_with_duckdb(results).to_string(index=False))
    curves = curves_with_pandas(results)
    print(curves.to_string(index=False))
    plot(curves, args.out)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
