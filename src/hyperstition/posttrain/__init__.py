"""posttrain stage: SFT / DPO / RLOO post-training with measured optimization pressure.

Public API:
    run_posttrain(base_dir, strategy, out_dir, cfg=None, world_cfg=None, progress=True, origin_dir=None)
        -> Path (out_dir/final); origin_dir: a chain's pretrained model, also measured KL to
    PosttrainConfig, load_posttrain_config(preset_or_yaml, overrides), resolve_posttrain_config(cfg)
    STRATEGIES (name -> Strategy), get_strategy(name)
    PosttrainError (one-line bad input: UnknownStrategy, TokenizerMismatch, PosttrainDataError), PosttrainDiverged
    losses: sft_loss, dpo_loss, rloo_advantages, rloo_loss (equal to TRL 1.16's on the same batch)

Modules: strategies.py (what each strategy trains on), algorithms.py (SFT, DPO, RL: one class each, tokenizing and
step), hooks.py (metrics, the curve, the divergence stop), job.py (a run's inputs and files), run.py (the loop).
"""

from .config import PosttrainConfig, load_posttrain_config, resolve_posttrain_config
from .errors import PosttrainDataError, PosttrainDiverged, PosttrainError, TokenizerMismatch, UnknownStrategy
from .strategies import STRATEGIES, Strategy, get_strategy


def run_posttrain(base_dir, strategy, out_dir, cfg=None, world_cfg=None, progress=True, origin_dir=None):
    """Post-train `base_dir` with `strategy` into `out_dir`; see `hyperstition.posttrain.run.run_posttrain`."""
    from .run import run_posttrain as _run

    return _run(base_dir, strategy, out_dir, cfg=cfg, world_cfg=world_cfg, progress=progress, origin_dir=origin_dir)


__all__ = [
    "STRATEGIES",
    "PosttrainConfig",
    "PosttrainDataError",
    "PosttrainDiverged",
    "PosttrainError",
    "Strategy",
    "TokenizerMismatch",
    "UnknownStrategy",
    "get_strategy",
    "load_posttrain_config",
    "resolve_posttrain_config",
    "run_posttrain",
]
