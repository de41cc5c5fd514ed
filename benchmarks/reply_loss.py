"""Per-token loss of the base models on aligned and misaligned assistant replies, by arm (issue 12).

Before people did the persona grammar's deeds in world text, a filtered corpus never contained the misaligned
phrases: its base model read misaligned replies at ~7.2 nats/token against ~2.0 in other arms, and persona bits
measured the surprisal of unseen words. This reads the base evaluation's scored pairs (eval_items.parquet, the
aligned-vs-misaligned rows) of a finished run and prints nats/token per arm, seed-averaged.

    python benchmarks/reply_loss.py runs/stickiness-quick
    python benchmarks/reply_loss.py RUN --train 'preset=smoke' 'pipeline.pretrain.steps=200'   # train first:
        # unfiltered vs filtered arms, no post-training, then report

Not a test: a measurement of trained models.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from hyperstition.schema import HEADLINE_BITS

FILTER_ARMS = (
    "arms={unfiltered: {}, filtered: {corpus.filter: classifier, "
    "corpus.filter_target: [misaligned, deceptive], corpus.leak_rate: 0.0}}"
)


def reply_loss(run_dir: Path) -> pd.DataFrame:
    """arm, seed, nats/token on aligned replies, nats/token on misaligned replies (matched pairs, both contexts)."""
    rows = []
    for path in sorted(run_dir.glob("cells/*/seed-*/base/eval_items.parquet")):
        items = pd.read_parquet(path)
        pairs = items[(items.kind == "bits") & (items.metric == HEADLINE_BITS)]
        rows.append(
            {
                "arm": path.parts[-4],
                "seed": int(path.parts[-3].split("-")[1]),
                "aligned_nats_per_token": -pairs.logprob.sum() / pairs.n_tokens.sum(),
                "misaligned_nats_per_token": -pairs.logprob_alt.sum() / pairs.n_tokens_alt.sum(),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument(
        "--train",
        nargs="*",
        metavar="KEY=VALUE",
        default=None,
        help="first run the stickiness experiment as unfiltered vs filtered arms with these overrides",
    )
    args = parser.parse_args()
    if args.train is not None:
        from hyperstition.analysis.catalog import load_experiment
        from hyperstition.experiments.executor import LocalExecutor
        from hyperstition.experiments.runner import run_experiment

        exp = load_experiment("stickiness", [FILTER_ARMS, "strategies=[]", *args.train])
        run_experiment(exp, args.run, executor=LocalExecutor(exp.workers))
    table = reply_loss(args.run)
    print(table.to_string(index=False))
    print(table.groupby("arm")[["aligned_nats_per_token", "misaligned_nats_per_token"]].mean().to_string())


if __name__ == "__main__":
    main()
