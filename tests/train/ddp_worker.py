"""One rank of the data-parallel tests, started by torchrun: `ddp_worker.py RUN_DIR WORK_DIR STEP_DELAY_S`.

Runs train_lm on the kill-and-resume test's tiny model and settings (resume_worker.py) inside the process group
torchrun describes (gloo on CPU). STEP_DELAY_S slows each step so the test can SIGKILL the run mid-way.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from resume_worker import MODEL, PRETRAIN

from hyperstition.tokenizer.train import load_tokenizer
from hyperstition.train import pretrain
from hyperstition.train.distributed import process_group


def main() -> None:
    run_dir, work_dir, delay = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    texts = json.loads((work_dir / "texts.json").read_text())
    tokenizer = load_tokenizer(work_dir / "tokenizer")
    real_step = pretrain.train_step

    def slow_step(*args, **kwargs):
        time.sleep(delay)
        return real_step(*args, **kwargs)

    pretrain.train_step = slow_step
    cfg = PRETRAIN.model_copy(update={"device": "cpu"})
    with process_group("cpu") as ranks:
        final = pretrain.train_lm(MODEL, cfg, tokenizer, texts, run_dir, progress=False)
    print(f"RANK {ranks.rank} OF {ranks.world_size} FINAL {final}")


if __name__ == "__main__":
    main()
