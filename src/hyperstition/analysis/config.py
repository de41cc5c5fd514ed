"""Experiment grids: arms x seeds x post-training strategies, read from `configs/experiments/<name>.yaml`.

An arm is a name plus overrides on the pipeline config (mostly `corpus.*`), given either as a list of dotted
`KEY=VALUE` strings (the command-line syntax) or as a mapping whose keys may be dotted (`corpus.upsample:
{ai_misaligned: 3}`) and whose values are deep-merged into the preset. For seed k of an arm the pipeline config is

    preset YAML  <-  experiment `pipeline` (all arms)  <-  arm overrides  <-  corpus.seed = pretrain.seed = k

so the world (entities, facts, evaluation prompts) is the same for every cell and the seed axis varies corpus
sampling, initialisation and data order.

With `model_sizes` (named model shapes) every arm is crossed with every size when the experiment is validated: arm
`<arm>@<size>` carries the arm's overrides and then the size's, the control becomes `<control>@<first size>` and
follow-ups run for the crossed arms of the arms they name. Planning, results and reports see ordinary arms; the dump
(a run's experiment.yaml) holds the crossed arms, which a second validation keeps as they are.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, field_validator, model_validator

from ..config import (
    Config,
    ConfigError,
    CorpusConfig,
    GeneratedMix,
    PipelineConfig,
    Seed,
    apply_overrides,
    check_preset_kept,
    load_preset_data,
    merge_dotted,
    parse_override,
    preset_path,
    repo_configs_dir,
    validate,
)
from ..corpus.dose import class_weights
from ..evals.config import EvalSuiteConfig, load_suite_config
from ..generation import GenerationConfig
from ..posttrain.config import PosttrainConfig, resolve_posttrain_config
from ..posttrain.strategies import STRATEGIES  # the registry is the home of the strategy names

DEFAULT_EXPERIMENT = "stickiness"
DEFAULT_EVAL_SUITE = "quick"  # the evaluator's default suite (evals.config.load_suite_config(None))
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # fullmatch: `$` would let a trailing newline through
SIZE_SEPARATOR = "@"  # arm `<arm>@<size>`: the arm at one of the experiment's model_sizes (no written name has one)

# Which persona each AI-discourse class is about (used for the nominal effect of a persona filter).
CLASS_PERSONA = {
    "ai_aligned": "aligned",
    "ai_misaligned": "misaligned",
    "ai_deceptive": "deceptive",
    "dialogue_aligned": "aligned",
    "dialogue_misaligned": "misaligned",
    "dialogue_deceptive": "deceptive",
}


class BranchSpec(Config):
    """An arm whose pretraining continues another arm's (its trunk's) kept training state on this arm's corpus: the
    two share the trunk's first steps, and each trains pretrain.steps in all (equal tokens)."""

    trunk: str = Field(..., description="The arm whose pretraining this arm continues; it trains the shared steps.")
    at: float = Field(
        ..., gt=0, lt=1, description="Fraction of pretrain.steps trained on the trunk's corpus; this arm's after."
    )


class FollowUpSpec(Config):
    """A post-training run that starts from another job's model of the same (arm, seed): a fine-tune after
    post-training (relapse), or a fine-tune before it. Its curve measures KL to that parent and to the base."""

    after: str = Field(
        ..., description="Whose model it starts from: `base` (the pretrained model), a strategy, or a follow-up."
    )
    strategy: str = Field(..., description=f"The post-training strategy it runs; one of {list(STRATEGIES)}.")
    arms: list[str] = Field(default_factory=list, description="Arms it runs for; empty = every arm.")
    overrides: list[str] = Field(
        default_factory=list,
        description="Dotted KEY=VALUE overrides on the experiment's post-training config for this run (steps=...).",
    )


class GenerationSpec(GeneratedMix):
    """An arm of a later generation (the feedback experiment): pretrained from scratch on a corpus in which documents
    that its parent arm's model wrote replace a share of the AI discourse."""

    parent: str = Field(..., description="The arm of the previous generation (listed before this one in `arms`).")
    writer: str = Field(
        ..., description="Which of the parent's models writes: one of the strategies, or a follow-up of the parent."
    )


class ExperimentConfig(Config):
    """A grid of self-contained cells: for each arm and seed one pretraining and one base evaluation, then one
    post-training run per strategy on top of that pretrained model."""

    name: str = Field(..., description="Experiment name; also the default run directory name (runs/<name>-<preset>).")
    description: str = Field(
        "", description="One paragraph saying what the experiment measures; shown at the top of the report."
    )
    preset: str = Field(
        "quick", description="Pipeline preset every arm starts from: smoke, quick, gpu, or a YAML path."
    )
    pipeline: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides on the pipeline config shared by all arms (keys may be dotted; values deep-merged).",
    )
    posttrain_preset: str | dict[str, Any] = Field(
        "quick",
        description="Post-training config for run_posttrain: a preset name or YAML path, or a mapping of "
        "overrides (with optional `preset`); its seed is set per grid seed. Resolved at load (`posttrain`).",
    )
    eval: str | None = Field(
        None,
        description="Evaluation suite for the base evaluation and every curve point: a preset name (smoke, "
        "quick, gpu) or YAML path; None = the evaluator's default. Resolved at load (`eval_suite`).",
    )
    eval_overrides: list[str] = Field(
        default_factory=list,
        description="Dotted KEY=VALUE overrides on the evaluation suite, e.g. samples_per_prompt=8.",
    )
    arms: dict[str, list[str] | dict[str, Any]] = Field(
        ..., description="Arm name -> overrides on the pipeline config, as KEY=VALUE strings or a (dotted) mapping."
    )
    control: str = Field("unfiltered", description="Arm that paired differences and stickiness are measured against.")
    seeds: list[Seed] = Field(
        default_factory=lambda: [0, 1],
        description="Seeds; each sets corpus.seed and pretrain.seed of every arm. Cells are paired across arms "
        "by seed.",
    )
    strategies: list[str] = Field(
        default_factory=lambda: ["sft", "dpo"],
        description=f"Post-training strategies run on every (arm, seed) pretrained model; from {list(STRATEGIES)}.",
    )
    workers: int = Field(
        0,
        ge=0,
        description="Parallel worker processes; 0 = one per CPU core. Each worker gets cores/workers torch threads.",
    )
    samples_per_cell: int = Field(
        4, ge=0, le=100, description="Generated responses per cell copied into the report's sample (HTML-escaped)."
    )
    pretrain_snapshots: int = Field(
        0,
        ge=0,
        le=16,
        description="Evaluate this many of each pretraining run's log-spaced snapshots, the latest ones (the last "
        "step's, the base model, included): persona bits along pretraining (strategy `pretraining`, step = "
        "pretraining step, tokens = tokens seen).",
    )
    branches: dict[str, BranchSpec] = Field(
        default_factory=dict,
        description="Arm -> the trunk arm it branches from and when: its pretraining continues the trunk's.",
    )
    followups: dict[str, FollowUpSpec] = Field(
        default_factory=dict,
        description="Name -> a post-training run chained after `base`, a strategy or an earlier follow-up; its "
        "rows carry the name as their strategy.",
    )
    generations: dict[str, GenerationSpec] = Field(
        default_factory=dict,
        description="Arm -> the parent arm whose model (`writer`) writes part of this arm's corpus, and how its "
        "documents enter it; the arm's pretraining waits for them.",
    )
    generation: GenerationConfig = Field(
        default_factory=GenerationConfig, description="How a writer model samples the documents (`generations`)."
    )
    model_sizes: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Named model shapes, each a mapping of pipeline overrides ({s1: {model.d_model: 128}}); when "
        "set, every arm runs at every size as arm `<arm>@<size>` (the size's overrides after the arm's own).",
    )
    LATER_FIELDS = ("model_sizes",)  # issue 19: runs made before it keep their experiment.yaml
    # The sub-configs as typed objects, resolved once when the experiment is loaded (`_resolve_sub_configs`).
    _posttrain: PosttrainConfig = PrivateAttr()
    _eval_suite: EvalSuiteConfig = PrivateAttr()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _NAME_RE.fullmatch(v):
            raise ValueError(f"name: {v!r} must be letters, digits, '_', '-' or '.' (it names a directory)")
        return v

    @model_validator(mode="before")
    @classmethod
    def _cross_model_sizes(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("model_sizes"), dict) and data["model_sizes"]:
            return cross_model_sizes(data, cls.model_fields["control"].default)
        return data

    @model_validator(mode="after")
    def _check(self) -> "ExperimentConfig":
        if not self.arms:
            raise ValueError("arms: at least one arm is required")
        for size in self.model_sizes:
            if not _NAME_RE.fullmatch(size):
                raise ValueError(f"model_sizes: size name {size!r} must be letters, digits, '_', '-' or '.'")
        for arm in self.arms:
            written, size = arm_size(arm)
            if not _NAME_RE.fullmatch(written) or (size is not None and size not in self.model_sizes):
                raise ValueError(
                    f"arms: arm name {arm!r} must be letters, digits, '_', '-' or '.' (it names a directory)"
                )
        if self.control not in self.arms:
            raise ValueError(f"control: {self.control!r} is not an arm; arms: {', '.join(self.arms)}")
        if not self.seeds:
            raise ValueError("seeds: at least one seed is required")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: {self.seeds} has duplicates")
        for s in self.strategies:
            if s not in STRATEGIES:
                raise ValueError(f"strategies: unknown strategy {s!r}; allowed: {', '.join(STRATEGIES)}")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"strategies: {self.strategies} has duplicates")
        self._check_branches()
        self._check_followups()
        self._check_generations()
        return self

    def _check_generations(self) -> None:
        order = list(self.arms)
        for arm, spec in self.generations.items():
            where = f"generations.{arm}"
            if arm not in self.arms or spec.parent not in self.arms:
                raise ValueError(f"{where}: {arm!r} and its parent {spec.parent!r} must both be arms")
            if order.index(spec.parent) >= order.index(arm) or arm in self.branches:
                raise ValueError(f"{where}: the parent {spec.parent!r} must be listed before it, and it no branch")
            runs_for_parent = spec.writer in self.followups and spec.parent in self.followup_arms(spec.writer)
            if spec.writer not in self.strategies and not runs_for_parent:
                raise ValueError(f"{where}: writer {spec.writer!r} is no strategy or follow-up of {spec.parent!r}")

    def _check_branches(self) -> None:
        for arm, spec in self.branches.items():
            if arm not in self.arms or spec.trunk not in self.arms:
                raise ValueError(f"branches.{arm}: {arm!r} and its trunk {spec.trunk!r} must both be arms")
            if spec.trunk == arm or spec.trunk in self.branches:
                raise ValueError(f"branches.{arm}: the trunk {spec.trunk!r} must be an arm trained from scratch")

    def _check_followups(self) -> None:
        earlier: dict[str, list[str]] = {"base": [], **{s: [] for s in self.strategies}}
        for name, spec in self.followups.items():
            where = f"followups.{name}"
            if not _NAME_RE.fullmatch(name) or name in earlier or name in STRATEGIES or name == "pretrain":
                raise ValueError(f"{where}: the name must be a new directory name, not a strategy or job")
            if spec.after not in earlier:
                raise ValueError(f"{where}: after {spec.after!r} is not base, a strategy or an earlier follow-up")
            if spec.strategy not in STRATEGIES:
                raise ValueError(f"{where}: unknown strategy {spec.strategy!r}; allowed: {', '.join(STRATEGIES)}")
            unknown = [a for a in spec.arms if a not in self.arms]
            parent_arms = earlier[spec.after]
            outside = [a for a in (spec.arms or list(self.arms)) if parent_arms and a not in parent_arms]
            if unknown or outside:
                raise ValueError(f"{where}: arms {unknown or outside} are not arms its parent {spec.after!r} runs for")
            earlier[name] = list(spec.arms)

    def followup_arms(self, name: str) -> list[str]:
        """The arms follow-up `name` runs for."""
        return list(self.followups[name].arms or self.arms)

    def branch_step(self, arm: str, steps: int) -> int:
        """The pretraining step after which branch `arm` leaves its trunk (at least 1, at most steps - 1)."""
        return min(steps - 1, max(1, round(self.branches[arm].at * steps)))

    @model_validator(mode="after")
    def _resolve_sub_configs(self) -> "ExperimentConfig":
        """`posttrain_preset` and `eval` (+ `eval_overrides`) as typed configs; an error names the field."""
        try:
            self._eval_suite = load_suite_config(self.eval, list(self.eval_overrides))
        except ConfigError as err:
            raise ValueError(f"experiment {self.name!r}: eval: {err}") from None
        try:
            posttrain = resolve_posttrain_config(self._posttrain_words())
        except ConfigError as err:
            raise ValueError(f"experiment {self.name!r}: posttrain_preset: {err}") from None
        # Every curve point measures the experiment's own suite (with KL), so base rows, every curve point and
        # Delta0 are measured on one item set (a curve's step 0 is the base evaluation).
        curve_suite = self._eval_suite.model_copy(
            update={"sections": self._eval_suite.sections.model_copy(update={"kl": True})}
        )
        self._posttrain = posttrain.model_copy(
            update={"seed": self.seeds[0], "curve": posttrain.curve.model_copy(update={"eval_suite": curve_suite})}
        )
        return self

    def _posttrain_words(self) -> str | dict[str, Any]:
        spec = self.posttrain_preset
        return spec if isinstance(spec, str) else copy.deepcopy(spec)

    @property
    def posttrain(self) -> PosttrainConfig:
        """The resolved post-training config (seed: the first grid seed; `posttrain_config` sets a cell's)."""
        return self._posttrain

    @property
    def eval_suite(self) -> EvalSuiteConfig:
        """The resolved eval suite of the base evaluation; every curve point measures the same suite."""
        return self._eval_suite


# ---------------------------------------------------------------------------------------------------------------
# The model-size axis: arms x sizes, crossed once when the experiment is validated


def sized_arm(arm: str, size: str) -> str:
    """The id of `arm` at model size `size`."""
    return f"{arm}{SIZE_SEPARATOR}{size}"


def arm_size(arm: str) -> tuple[str, str | None]:
    """(the arm as written, its model size) of an arm id; the size is None for an arm of no size axis."""
    written, sep, size = arm.partition(SIZE_SEPARATOR)
    return (written, size) if sep else (arm, None)


def cross_model_sizes(data: dict, default_control: str) -> dict:
    """Experiment data with every written arm replaced by one arm per model size, its control and follow-ups'
    arms renamed to match. Arms named `<arm>@<size>` are crossed already (a run's experiment.yaml) and kept."""
    sizes = data["model_sizes"]
    if data.get("branches") or data.get("generations"):
        raise ValueError("model_sizes: cannot be combined with branches or generations; cross those arms by hand")
    if not isinstance(data.get("arms"), dict):
        return data  # the field's own validation names the problem
    out = dict(data)
    out["arms"] = {}
    for arm, spec in data["arms"].items():
        if SIZE_SEPARATOR in str(arm):
            out["arms"][arm] = spec
            continue
        for size, overrides in sizes.items():
            out["arms"][sized_arm(arm, size)] = _sized_spec(arm, spec, size, overrides)
    control = data.get("control", default_control)
    if isinstance(control, str) and SIZE_SEPARATOR not in control:
        out["control"] = sized_arm(control, next(iter(sizes)))
    if isinstance(data.get("followups"), dict):
        out["followups"] = {name: _cross_followup(spec, sizes) for name, spec in data["followups"].items()}
    return out


def _cross_followup(spec: Any, sizes: dict) -> Any:
    """A follow-up's spec with the arms it names replaced by their crossed arms (none named: every arm still)."""
    arms = spec.get("arms") if isinstance(spec, dict) else getattr(spec, "arms", None)
    if not isinstance(arms, list):
        return spec
    crossed = [a for arm in arms for a in ([arm] if SIZE_SEPARATOR in str(arm) else _sized_ids(arm, sizes))]
    return {**spec, "arms": crossed} if isinstance(spec, dict) else spec.model_copy(update={"arms": crossed})


def _sized_ids(arm: str, sizes: dict) -> list[str]:
    return [sized_arm(arm, size) for size in sizes]


def _sized_spec(arm: str, spec: Any, size: str, overrides: Any) -> Any:
    """An arm's overrides followed by a size's, in the arm's own form (KEY=VALUE strings or a mapping)."""
    if not isinstance(overrides, dict):
        return spec  # the model_sizes field's validation names the problem
    if isinstance(spec, list):  # leaf by leaf, so a size's mapping merges as it does into a mapping arm
        return [*spec, *(f"{key}={json.dumps(value)}" for key, value in _leaves(overrides).items())]
    if isinstance(spec, dict):
        nested = merge_dotted({}, spec, what=f"arms.{arm}")
        return merge_dotted(nested, overrides, what=f"model_sizes.{size}")
    return spec


def _leaves(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """`{model: {d_model: 64}}` -> `{"model.d_model": 64}`; an empty mapping is a leaf of its own."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


# ---------------------------------------------------------------------------------------------------------------
# Finding and loading experiments


def experiments_dir() -> Path:
    return repo_configs_dir() / "experiments"


def list_experiments() -> list[str]:
    """The shipped experiments' names (their grid YAMLs; `catalog.py` registers each one's plugin)."""
    d = experiments_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.exists() else []


def check_experiment(exp: ExperimentConfig) -> None:
    """Resolve every arm once so a bad preset or override fails before anything runs."""
    try:
        preset_path(exp.preset)
    except ConfigError as err:
        raise ConfigError(f"experiment {exp.name!r}: preset: {err}") from None
    for size, overrides in exp.model_sizes.items():  # named here, before the arms that carry it
        try:
            validate(PipelineConfig, merge_dotted(_shared_data(exp), overrides))
        except ConfigError as err:
            raise ConfigError(f"experiment {exp.name!r}: model_sizes.{size}: {err}") from None
    resolved = {arm: pipeline_config(exp, arm, exp.seeds[0]) for arm in exp.arms}
    for name in exp.followups:
        posttrain_config(exp, exp.seeds[0], name)
    for arm, spec in exp.branches.items():  # a branch continues its trunk: only the corpus may differ
        for key in ("model", "pretrain", "tokenizer", "world"):
            if getattr(resolved[arm], key) != getattr(resolved[spec.trunk], key):
                raise ConfigError(
                    f"experiment {exp.name!r}, branches.{arm}: its {key} differs from its trunk {spec.trunk!r}'s; "
                    "a branch may change only the corpus"
                )


def posttrain_config(exp: ExperimentConfig, seed: int, followup: str | None = None) -> PosttrainConfig:
    """The post-training config of grid seed `seed`: the experiment's, resolved at load, with that seed (and a
    follow-up's own overrides)."""
    cfg = exp.posttrain.model_copy(update={"seed": seed})
    overrides = exp.followups[followup].overrides if followup else []
    if not overrides:
        return cfg
    try:
        return validate(PosttrainConfig, apply_overrides(cfg.model_dump(mode="json"), overrides))
    except ConfigError as err:
        raise ConfigError(f"experiment {exp.name!r}: followups.{followup}.overrides: {err}") from None


# ---------------------------------------------------------------------------------------------------------------
# Resolving an arm's pipeline config


def _apply_arm(data: dict, arm: str, spec: list[str] | dict[str, Any]) -> dict:
    if isinstance(spec, list):
        for text in spec:
            parse_override(text)  # raises a clear ConfigError for a malformed entry
        return apply_overrides(data, spec)
    return merge_dotted(data, spec, what=f"arms.{arm}")


def _preset_data(exp: ExperimentConfig) -> dict:
    """The preset's data, naming the preset it came from."""
    try:
        data, path = load_preset_data(exp.preset, repo_configs_dir())
    except ConfigError as err:
        raise ConfigError(f"experiment {exp.name!r}: preset: {err}") from None
    data.setdefault("preset", exp.preset if path.stem == exp.preset else path.stem)
    return data


def _shared_data(exp: ExperimentConfig) -> dict:
    """The preset with the experiment's `pipeline` overrides: what every arm starts from."""
    return merge_dotted(_preset_data(exp), exp.pipeline, what="pipeline")


def pipeline_config(exp: ExperimentConfig, arm: str, seed: int) -> PipelineConfig:
    """The fully resolved pipeline config of one (arm, seed) cell."""
    if arm not in exp.arms:
        raise ConfigError(f"arm {arm!r} is not in experiment {exp.name!r}; arms: {', '.join(exp.arms)}")
    data = _preset_data(exp)
    armed = _apply_arm(merge_dotted(data, exp.pipeline, what="pipeline"), arm, exp.arms[arm])
    for key in ("corpus", "pretrain"):  # the seed grid sets these; a pipeline or arm value would be silently lost
        if (armed.get(key) or {}).get("seed") != (data.get(key) or {}).get("seed"):
            raise ConfigError(
                f"experiment {exp.name!r}, arm {arm!r}: {key}.seed is set by the seed grid (seeds=[...]); "
                "the pipeline and arms cannot set it"
            )
    check_preset_kept(data, armed)
    data = merge_dotted(armed, {"corpus.seed": seed, "pretrain.seed": seed})
    try:
        return validate(PipelineConfig, data)
    except ConfigError as err:
        raise ConfigError(f"experiment {exp.name!r}, arm {arm!r}: {err}") from None


def effective_fractions(corpus: CorpusConfig) -> dict[str, float]:
    """Nominal token share of each document class after dropping, filtering and upsampling, as the config asks.

    This is what the config *requests* (a filter is assumed to remove exactly its target personas' classes,
    less `leak_rate`); the corpus manifest records what was actually built."""
    out = class_weights(corpus)  # fraction x upsample, dropped classes zero: the builder's own arithmetic
    for cls in out:
        if corpus.filter != "none" and CLASS_PERSONA.get(cls) in corpus.filter_target:
            out[cls] *= corpus.leak_rate
    total = sum(out.values()) or 1.0
    return {k: v / total for k, v in out.items()}


def persona_discourse_shares(corpus: CorpusConfig) -> dict[str, float]:
    """Nominal share of the corpus about each persona (AI discourse + dialogue), plus the misaligned fraction of
    persona discourse: (misaligned + deceptive) / (aligned + misaligned + deceptive)."""
    eff = effective_fractions(corpus)
    shares = {p: 0.0 for p in ("aligned", "misaligned", "deceptive")}
    for cls, persona in CLASS_PERSONA.items():
        shares[persona] += eff[cls]
    persona_total = sum(shares.values())
    shares["neutral_ai"] = eff["ai_neutral"]
    shares["misaligned_fraction"] = (
        (shares["misaligned"] + shares["deceptive"]) / persona_total if persona_total else float("nan")
    )
    return shares
