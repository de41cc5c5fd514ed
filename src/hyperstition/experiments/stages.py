"""The real stage functions the runner calls, one per job kind (the default stage set).

Each wraps one stage's public entry point with progress bars off (workers log to their cell's log.txt);
`set_threads` sets torch's thread count to the executor's share of the cores (a runtime field of the job,
cell.py). `stageset.py` registers them (and the simulated ones of `simulate.py`) under a name
`hyperstition run --stages NAME` picks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..config import CorpusConfig, PipelineConfig, WorldConfig

if TYPE_CHECKING:
    from ..evals.config import EvalSuiteConfig
    from ..generation import GenerationConfig
    from ..posttrain.config import PosttrainConfig


# What the jobs below import when they run (torch and transformers take ~9 s on 2 cores): a worker forked from a
# server that imported these once starts in milliseconds (executor.LocalExecutor's `preload`).
WORKER_IMPORTS = (
    "torch",
    "transformers.models.llama.modeling_llama",
    "hyperstition.train.pretrain",
    "hyperstition.evals.run",
    "hyperstition.posttrain.run",
)


def set_threads(n: int) -> None:
    """torch's CPU thread count for this worker (its share of the cores); 0 leaves torch's default."""
    if n:
        import torch

        torch.set_num_threads(n)


def pretrain(
    cfg: PipelineConfig,
    out_dir: Path,
    *,
    trunk_dir: Path | None = None,
    branch_at: int = 0,
    keep_states: tuple[int, ...] = (),
    cache_dir: Path | None = None,
) -> Path:
    """Corpus, tokenizer and pretraining for one (arm, seed); returns the final HF checkpoint directory. A branch
    continues the trunk run in `trunk_dir` from its state after `branch_at` steps; `keep_states` are kept for
    branches; `cache_dir` holds the corpora and tokenizers the run's cells share (train/cache.py)."""
    from ..train.pretrain import Start, run_pretrain, state_dir

    start = Start(branch_from=state_dir(trunk_dir, branch_at) if trunk_dir else None, keep_states=keep_states)
    return Path(run_pretrain(cfg, out_dir, progress=False, start=start, cache_dir=cache_dir))


def evaluate(
    model_dir: Path,
    out_dir: Path,
    *,
    suite_cfg: EvalSuiteConfig,
    reference_dir: Path | None = None,
    world_cfg: WorldConfig | None = None,
) -> list[dict]:
    """Evaluate a checkpoint with the experiment's resolved suite; writes eval.json and eval_items.parquet into
    out_dir; returns tidy rows."""
    from ..evals import run_eval

    return run_eval(
        model_dir, out_dir, suite_cfg=suite_cfg, reference_dir=reference_dir, world_cfg=world_cfg, progress=False
    )


def posttrain(
    base_dir: Path,
    strategy: str,
    out_dir: Path,
    *,
    cfg: PosttrainConfig | None = None,
    world_cfg: WorldConfig | None = None,
    origin_dir: Path | None = None,
) -> Path:
    """Post-train base_dir with `strategy` and the cell's resolved config (None: the default preset); writes
    out_dir/posttrain_curve.parquet and out_dir/final/. With `origin_dir` (the pretrained model a chain started
    from) every curve point also measures KL to it."""
    from ..posttrain import run_posttrain

    return Path(
        run_posttrain(base_dir, strategy, out_dir, cfg=cfg, world_cfg=world_cfg, progress=False, origin_dir=origin_dir)
    )


def generate(
    model_dir: Path,
    out_dir: Path,
    *,
    cfg: GenerationConfig,
    world_cfg: WorldConfig,
    corpus_cfg: CorpusConfig,
    seed: int,
) -> Path:
    """Sample documents from the model in `model_dir`, prompted with the world's AI-discourse openings in the
    proportions of `corpus_cfg`; writes out_dir/generated.parquet (and generated.json); returns the Parquet file."""
    from ..generation import generate_documents

    return generate_documents(model_dir, out_dir, cfg=cfg, world_cfg=world_cfg, corpus_cfg=corpus_cfg, seed=seed)
