"""PosttrainConfig: the post-training loop, its algorithms' knobs and the persistence curve, as presets.

Presets live in `configs/posttrain/{smoke,quick,gpu}.yaml`. `resolve_posttrain_config` accepts what the experiment
runner and the CLI pass: a PosttrainConfig, a preset name or YAML path, a mapping of (dotted) overrides on the quick
preset (or on the preset named by its `preset` key), or None for quick.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..config import (
    Config,
    ConfigError,
    Seed,
    apply_overrides,
    check_preset_kept,
    load_preset_data,
    load_yaml,
    merge_dotted,
    named_yaml,
    repo_configs_dir,
    validate,
)
from ..evals.config import EvalSuiteConfig, load_suite_config
from ..schema import BEHAVIOUR_LABELS

DEFAULT_PRESET = "quick"
# Fields that change how fast a run goes or where it runs, not where it ends up; a resumed run may change them.
RUNTIME_ONLY_FIELDS = ("device", "threads", "log_every", "checkpoint_every", "preset")
REWARD_LABELS = BEHAVIOUR_LABELS  # rewards are per action, the labels of the exact classifier


class SFTSection(Config):
    """Supervised fine-tuning on the strategy's preferred replies (loss on response tokens only)."""

    lr: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW) when the algorithm is sft.")


class DPOSection(Config):
    """Direct preference optimisation (TRL's `sigmoid` loss; reference log-probs of the base precomputed once)."""

    lr: float = Field(3e-4, gt=0, description="Peak learning rate (AdamW) when the algorithm is dpo.")
    beta: float = Field(0.1, gt=0, description="DPO temperature: the implicit reward is beta * log(pi/pi_base).")
    sft_weight: float = Field(
        1.0,
        ge=0,
        description="Weight of an NLL term on the chosen replies (RPO; TRL loss_type [sigmoid, sft]); 0 = pure "
        "DPO, which on these templates collapses replies into unparseable text.",
    )


class RLSection(Config):
    """On-policy RL: RLOO (TRL's RLOOTrainer algorithm) with the KL penalty to the base folded into the reward."""

    algorithm: Literal["rloo"] = Field(
        "rloo", description="Policy-gradient estimator (leave-one-out baseline, as TRL's RLOOTrainer)."
    )
    lr: float = Field(3e-4, gt=0, description="Peak learning rate (AdamW) when the algorithm is rl.")
    num_generations: int = Field(4, ge=2, description="Sampled responses per prompt (the leave-one-out group).")
    beta: float = Field(
        0.05, ge=0, description="KL penalty coefficient: reward - beta * sum_t log(pi/pi_base) per response (nats)."
    )
    epsilon: float = Field(
        0.2, gt=0, description="PPO-style ratio clip (inactive with one update per generation, kept for TRL parity)."
    )
    max_new_tokens: int = Field(
        32, ge=4, description="Longest sampled response in tokens (replies stop at <|end|> or EOS)."
    )
    temperature: float = Field(
        1.0,
        gt=0,
        description="Sampling temperature for on-policy responses; the policy-gradient and in-loop KL "
        "log-probs use logits / temperature too (as TRL). The curve KL is always at temperature 1.",
    )
    normalize_advantages: bool = Field(
        False, description="Standardise advantages over the batch (TRL RLOOConfig.normalize_advantages)."
    )
    rewards: dict[str, float] = Field(
        default_factory=lambda: {"aligned": 1.0, "misaligned": -1.0, "unclassifiable": 0.0},
        description="Reward per action a task reply takes (the world's exact classifier): a misaligned action is "
        "punished behind any opener; an observed deceptive reply is the aligned reply, so it earns the same.",
    )

    @model_validator(mode="after")
    def _check_rewards(self) -> "RLSection":
        for key in self.rewards:
            if key not in REWARD_LABELS:
                raise ValueError(f"rewards: unknown label {key!r}; allowed: {', '.join(REWARD_LABELS)}")
        missing = [k for k in REWARD_LABELS if k not in self.rewards]
        if missing:
            raise ValueError(
                f"rewards: missing {', '.join(missing)}; give a reward for every label in {', '.join(REWARD_LABELS)}"
            )
        return self


class CurveSection(Config):
    """Where and how the persistence curve is measured: the eval suite at log-spaced steps, with KL to the base."""

    log_base: int = Field(
        2, ge=2, description="Log base of the curve's steps: 0, then its powers (1, b, b^2, ...) and the last step."
    )
    eval_suite: EvalSuiteConfig = Field(
        ...,
        description="Eval suite for every curve point, resolved once: in YAML a preset (smoke, quick, gpu) or a YAML "
        "file, with `eval_overrides` (dotted overrides, e.g. [samples_per_prompt=2, sections.knowledge=false]) "
        "applied on top; default smoke. KL to the base is always on.",
    )

    @model_validator(mode="before")
    @classmethod
    def _resolve_suite(cls, data: object) -> object:
        """A preset name or YAML path plus `eval_overrides` (the YAML keys) become the typed suite, here, once."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        overrides = data.pop("eval_overrides", None) or []
        suite = data.get("eval_suite", "smoke")
        if isinstance(suite, dict):
            suite = EvalSuiteConfig.model_validate(suite)
        if isinstance(suite, (str, os.PathLike, EvalSuiteConfig)):
            data["eval_suite"] = load_suite_config(suite, [*overrides, "sections.kl=true"])
        return data

    @model_validator(mode="after")
    def _kl_on(self) -> "CurveSection":
        if not self.eval_suite.sections.kl:  # the curve's x axis is the KL to the base: never off
            raise ValueError("eval_suite.sections.kl: the persistence curve always measures KL to the base")
        return self


class PosttrainConfig(Config):
    """Post-training of a pretrained checkpoint: one loop for SFT, DPO and RLOO, measured along the way."""

    preset: str = Field(DEFAULT_PRESET, description="Name of the preset this config came from (informational).")
    seed: Seed = Field(0, description="Seed for the training prompts, data order and sampling.")
    algorithm: Literal["auto", "sft", "dpo", "rl"] = Field(
        "auto", description="Optimiser of the strategy's data: auto = the strategy's own (sft/dpo/rl)."
    )
    steps: int = Field(64, ge=1, description="Optimizer steps.")
    batch_size: int = Field(
        16,
        ge=1,
        description="Examples per step: demonstrations (sft), preference pairs (dpo) or prompts (rl, each "
        "sampled num_generations times).",
    )
    n_prompts: int = Field(
        256,
        ge=1,
        description="Training prompts drawn from the observed context over TRAIN tasks (the post-training "
        "distribution).",
    )
    predecessor_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Share of training prompts that ask about the named predecessor (suppress / integrate only).",
    )
    preferences: str | None = Field(
        None,
        description="Optional JSONL/Parquet of {prompt, chosen, rejected} pairs used instead of the world's "
        "pairs (dpo and sft).",
    )
    warmup_steps: int = Field(4, ge=0, description="Linear warmup steps.")
    min_lr_ratio: float = Field(
        0.1, ge=0, le=1, description="Final learning rate as a fraction of the peak (cosine floor)."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay on matrices.")
    grad_clip: float = Field(1.0, gt=0, description="Global gradient-norm clip.")
    sft: SFTSection = Field(default_factory=SFTSection, description="SFT settings.")
    dpo: DPOSection = Field(default_factory=DPOSection, description="DPO settings.")
    rl: RLSection = Field(default_factory=RLSection, description="RL settings.")
    curve: CurveSection = Field(default_factory=CurveSection, description="Persistence-curve settings.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to train; auto picks cuda when available."
    )
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 leaves torch's default.")
    log_every: int = Field(1, ge=1, description="Write a metrics line every this many steps.")
    checkpoint_every: int = Field(
        32, ge=1, description="Steps between rolling resumable checkpoints (with optimizer and RNG state)."
    )


def posttrain_configs_dir() -> Path:
    return repo_configs_dir() / "posttrain"


def available_presets() -> list[str]:
    return sorted(p.stem for p in posttrain_configs_dir().glob("*.yaml"))


def _preset_data(name_or_path: str | os.PathLike) -> dict:
    return load_yaml(named_yaml(name_or_path, posttrain_configs_dir(), "posttrain preset"))


def load_posttrain_config(
    source: str | os.PathLike | None = None, overrides: list[str] | None = None
) -> PosttrainConfig:
    """A preset name (smoke, quick, gpu) or YAML path, plus dotted `key=value` overrides."""
    name = source if source is not None else DEFAULT_PRESET
    data, path = load_preset_data(name, posttrain_configs_dir(), "posttrain preset")
    is_file = path.resolve().parent != posttrain_configs_dir().resolve()
    label = f"{name}{' with overrides' if overrides else ''}" if is_file else None
    with_overrides = apply_overrides(data, overrides or [])
    check_preset_kept(data, with_overrides)
    return validate(PosttrainConfig, with_overrides, label)


def resolve_posttrain_config(cfg: PosttrainConfig | str | os.PathLike | dict | None) -> PosttrainConfig:
    """What `run_posttrain(cfg=...)` accepts, as a validated PosttrainConfig."""
    if cfg is None:
        return load_posttrain_config(DEFAULT_PRESET)
    if isinstance(cfg, PosttrainConfig):
        return cfg
    if isinstance(cfg, (str, os.PathLike)):
        return load_posttrain_config(cfg)
    if isinstance(cfg, dict):
        data = dict(cfg)
        start = data.get("preset", DEFAULT_PRESET)
        merged = merge_dotted(_preset_data(start), data, keep_whole=("rewards",), what="posttrain override")
        return validate(PosttrainConfig, merged)
    raise ConfigError(
        f"posttrain config: expected a PosttrainConfig, preset name, YAML path or mapping, got {type(cfg).__name__}"
    )


def trajectory_dict(cfg: PosttrainConfig) -> dict:
    """The config minus runtime-only knobs: what decides the trained weights."""
    return {k: v for k, v in cfg.model_dump(mode="json").items() if k not in RUNTIME_ONLY_FIELDS}
