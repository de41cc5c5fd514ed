"""The aligned-discourse dose each timing of the `timing` experiment trains on, in tokens, per grid seed.

    python benchmarks/timing_dose.py [--experiment timing] [--seeds 0 1 2] [--set KEY=VALUE ...] [--out DIR]

Builds the shared tokenizer and the `start` and `midtraining` corpora (no training; about 20 s of CPU per seed at
the quick preset) and counts, with the trainers' tokenization, packing and samplers
(`hyperstition.experiments.timing_dose`): `start`'s aligned-discourse tokens over all its pretraining steps,
`midtraining`'s over the steps after its branch point, and the `discourse` fine-tune's over its steps. The numbers
are exact for the config, not timings: the figures in timing.yaml's comment come from this script.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="timing", help="experiment name or YAML (default timing)")
    parser.add_argument("--seeds", type=int, nargs="*", help="grid seeds (default: the experiment's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="experiment overrides")
    parser.add_argument("--out", help="working directory for corpora and the tokenizer (default: a temporary one)")
    args = parser.parse_args(argv)

    from hyperstition.analysis.catalog import load_experiment
    from hyperstition.experiments.timing_dose import shared_tokenizer, timing_doses

    exp = load_experiment(args.experiment, args.set)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.out or tmp)
        tokenizer = shared_tokenizer(exp, work)
        print("seed  start  midtraining  finetune  spread")
        for seed in args.seeds if args.seeds is not None else exp.seeds:
            d = timing_doses(exp, seed, tokenizer, work)
            print(f"{seed:4d}  {d.start:,}  {d.midtraining:,}  {d.finetune:,}  {d.spread():.1%}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
