"""Subprocess body for the kill-and-resume test:
`python resume_worker.py RUN_DIR WORK_DIR STEP_DELAY_S [PRECISION [OPTIMIZER [PACKING]]]`.

Loads texts and tokenizer from WORK_DIR and runs train_lm exactly as the test describes. STEP_DELAY_S slows each
step with a sleep (which changes no numbers) so the test can SIGKILL the process mid-run deterministically.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hyperstition.config import ModelConfig, PretrainConfig
from hyperstition.tokenizer.train import load_tokenizer
from hyperstition.train import pretrain

MODEL = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=32)
PRETRAIN = PretrainConfig(
    seed=3, steps=24, batch_size=4, lr=1e-2, warmup_steps=3, log_every=1, checkpoint_every=6, threads=1
)


def main() -> None:
    run_dir, work_dir, delay = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    texts = json.loads((work_dir / "texts.json").read_text())
    tokenizer = load_tokenizer(work_dir / "tokenizer")
    real_step = pretrain.train_step

    def slow_step(*args, **kwargs):
        time.sleep(delay)
        return real_step(*args, **kwargs)

    pretrain.train_step = slow_step
    precision = sys.argv[4] if len(sys.argv) > 4 else "fp32"
    optimizer = sys.argv[5] if len(sys.argv) > 5 else "adamw"
    packing = sys.argv[6] if len(sys.argv) > 6 else "concat"
    update = {"precision": precision, "device": "cpu", "optimizer": optimizer, "packing": packing}
    cfg = PRETRAIN.model_copy(update=update)
    final = pretrain.train_lm(MODEL, cfg, tokenizer, texts, run_dir, progress=False)
    print(f"FINAL {final}")


if __name__ == "__main__":
    main()
