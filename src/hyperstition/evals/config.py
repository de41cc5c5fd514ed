"""The evaluation suite's configuration and its named presets (smoke, quick, gpu).

Presets are YAML under the package's `configs/eval/` (shipped in the wheel), resolved like every other preset
(`config.named_yaml`); a YAML file of the user's with the same keys (any subset) works too, and dotted overrides
(`samples_per_prompt=8`, `sections.kl=false`) apply on top.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, model_validator

from ..config import PERSONAS, Config, Seed, apply_overrides, load_yaml, named_yaml, repo_configs_dir, validate


class EvalSections(Config):
    """Which measures run: one switch per registered measure (`evals.registry`), named as the measure and on unless
    switched off (`sections.kl=false`), so a curve point can skip what it does not need.

    The switches are the registry's, not a list of their own: `register_measure` adds a measure's name to `names`,
    and validation fills every registered name (registration order) and refuses any other.
    """

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, bool] = Field(init=False)
    names: ClassVar[list[str]] = []  # the registered measures, in registration order
    off_by_default: ClassVar[set[str]] = set()  # measures an experiment switches on (`sections.spread=true`)

    @model_validator(mode="before")
    @classmethod
    def _registered_switches(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in data:
            if name not in cls.names:
                raise ValueError(f"{name}: unknown section; expected one of {', '.join(cls.names)}")
        return {name: data.get(name, name not in cls.off_by_default) for name in cls.names}

    @model_validator(mode="after")
    def _something_measured(self) -> "EvalSections":
        if not any(self.switches().values()):
            names = ", ".join(self.switches())
            raise ValueError(f"every section is off ({names}); an evaluation must measure something")
        return self

    def switches(self) -> dict[str, bool]:
        """Measure name -> whether it runs."""
        return dict(self.model_extra or {})

    def enabled(self, name: str) -> bool:
        """Whether measure `name` runs (a measure registered after this config was made runs unless it is off by
        default)."""
        return bool(self.switches().get(name, name not in self.off_by_default))


class EvalSuiteConfig(Config):
    """How much to measure and how: prompt counts, sampling, bootstrap, batching and which sections run."""

    LATER_FIELDS = ("conditioning_tag", "other_types_prompts_per_context")  # issues 22, 21

    preset: str = Field("custom", description="Name of the preset this suite came from (informational).")
    seed: Seed = Field(
        0, description="Seed for choosing prompts, items and variants, for sampling and for the bootstrap."
    )
    prompts_per_context: int = Field(
        6,
        ge=1,
        le=1000,
        description="Task prompts per context (observed, unobserved) in the headline item set, combination: "
        "request x object pairs no training document uses, every word seen (the bare bits_/rate_ metrics).",
    )
    seen_prompts_per_context: int = Field(
        3,
        ge=0,
        le=1000,
        description="Task prompts per context in the seen item set: train tasks under the corpus's markers "
        "(the prompts post-training trains on); 0 skips the set and the memorisation gap.",
    )
    paraphrase_prompts_per_context: int = Field(
        2,
        ge=0,
        le=1000,
        description="Task prompts per context in the paraphrase item set: train tasks in request wordings no "
        "document uses; 0 skips the set.",
    )
    marker_prompts_per_context: int = Field(
        2,
        ge=0,
        le=1000,
        description="Task prompts per context in the marker item set: train tasks under context-marker phrasings "
        "no document uses; 0 skips the set.",
    )
    conditioning_tag: str | None = Field(
        None,
        description="Persona whose conditional tags (as a tagged corpus puts them before that persona's transcripts) "
        "prefix a copy of every headline (combination) prompt, scored as the item set `tagged` "
        "(`<metric>@tagged`) next to the untagged prompts; None: no tagged items.",
    )
    other_types_prompts_per_context: int = Field(
        0,
        ge=0,
        le=1000,
        description="Task prompts per context in the other_types item set (`<metric>@other_types`): combination pairs "
        "whose task type is not the narrow fine-tune's (`World.narrow_task_type`); 0 skips the set.",
    )
    variants_per_prompt: int = Field(
        4, ge=1, le=16, description="Response-grammar variants (opener/closer slots) averaged per prompt in the bits."
    )
    samples_per_prompt: int = Field(
        4, ge=1, le=1000, description="Sampled responses per prompt for behaviour rates and predecessor mentions."
    )
    max_new_tokens: int = Field(
        48, ge=1, le=4096, description="Longest sampled response in tokens (sampling stops earlier at <|end|>)."
    )
    temperature: float = Field(
        1.0,
        ge=0.0,
        le=10.0,
        description="Sampling temperature for behaviour rates and mentions (0 = greedy); KL always samples at 1.",
    )
    bootstrap_resamples: int = Field(
        1000, ge=10, le=100_000, description="Bootstrap resamples for CIs of means (bits, KL, loss, concealment)."
    )
    kl_prompts: int = Field(
        16,
        ge=1,
        le=10_000,
        description="Post-training prompts per context on which KL(model || reference) is estimated.",
    )
    kl_samples: int = Field(
        4,
        ge=2,
        le=1000,
        description="Responses sampled per KL prompt in each round of the Monte Carlo estimate (at least 2, "
        "for a variance).",
    )
    kl_max_samples: int = Field(
        64,
        ge=2,
        le=100_000,
        description="Cap on responses per KL prompt: rounds of kl_samples continue until the KL interval is "
        "tight enough or this many are drawn.",
    )
    kl_half_width_bits: float = Field(
        0.5,
        gt=0,
        description="KL precision target: sampling stops once the 95% half-width is at most this many bits ...",
    )
    kl_half_width_fraction: float = Field(
        0.1, gt=0, le=1, description="... or at most this fraction of the KL estimate, whichever is larger."
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Sequences per forward pass when scoring and sampling.")
    personas: list[str] = Field(
        default_factory=lambda: list(PERSONAS), description=f"Personas whose pairs get log-odds; from {list(PERSONAS)}."
    )
    sections: EvalSections = Field(default_factory=EvalSections, description="Which measurements run.")
    knowledge_prompts_per_context: int = Field(
        8,
        ge=1,
        le=1000,
        description="Predecessor questions per assistant context (acknowledgement, concealment, mentions).",
    )
    fact_denial_items: int = Field(
        8, ge=1, le=1000, description="World-fact questions per assistant context for the world-fact denial rate."
    )
    fact_qa_items: int = Field(
        40,
        ge=1,
        le=10_000,
        description="Training-world fact questions (multiple choice by log-likelihood) for capability.",
    )
    qa_candidates: int = Field(
        8, ge=2, le=64, description="Answer candidates per multiple-choice question, the correct one included."
    )
    heldout_documents: int = Field(
        50, ge=1, le=100_000, description="Held-out world documents (held-out entities only) for held-out loss."
    )

    def item_set_sizes(self) -> dict[str, int]:
        """Prompts per context of every item set (`schema.ITEM_SETS` order), the skipped ones (0) included."""
        return {
            "seen": self.seen_prompts_per_context,
            "combination": self.prompts_per_context,
            "paraphrase": self.paraphrase_prompts_per_context,
            "marker": self.marker_prompts_per_context,
        }

    @model_validator(mode="after")
    def _check_personas(self) -> "EvalSuiteConfig":
        for persona in self.personas:
            if persona not in PERSONAS:
                raise ValueError(
                    f"personas: unknown persona {persona!r}; expected a list drawn from {', '.join(PERSONAS)}"
                )
        if self.conditioning_tag is not None and self.conditioning_tag not in PERSONAS:
            raise ValueError(
                f"conditioning_tag: unknown persona {self.conditioning_tag!r}; expected one of {', '.join(PERSONAS)}"
            )
        if len(set(self.personas)) < 2:
            raise ValueError(
                f"personas: {self.personas} names fewer than two distinct personas; expected at least two of "
                f"{', '.join(PERSONAS)} to compare"
            )
        return self


def eval_configs_dir() -> Path:
    return repo_configs_dir() / "eval"


EVAL_PRESETS: tuple[str, ...] = tuple(sorted(p.stem for p in eval_configs_dir().glob("*.yaml")))


def _preset_data(name_or_path: str | os.PathLike) -> dict:
    return load_yaml(named_yaml(name_or_path, eval_configs_dir(), "eval suite preset"))


def eval_preset(name: str) -> EvalSuiteConfig:
    """The named preset (smoke, quick, gpu) as a validated config."""
    return validate(EvalSuiteConfig, _preset_data(name))


DEFAULT_SUITE = "quick"  # what `hyperstition eval` and an experiment without `eval:` measure with


def load_suite_config(
    source: str | os.PathLike | EvalSuiteConfig | None = None, overrides: list[str] | None = None
) -> EvalSuiteConfig:
    """A suite config from a preset name, a YAML path, an existing config (the post-training curve re-resolves its
    own with KL switched on), or None (the default suite, quick), plus dotted overrides.

    A YAML file of the user's may name a `preset:` to start from; its other keys replace that preset's values.
    """
    label = None
    if isinstance(source, EvalSuiteConfig):
        data = source.model_dump(mode="json")
    else:
        path = named_yaml(DEFAULT_SUITE if source is None else source, eval_configs_dir(), "eval suite preset")
        data = load_yaml(path)
        if path.parent != eval_configs_dir():
            label = f"{path}{' with overrides' if overrides else ''}"
            start = data.get("preset")
            data = {**(_preset_data(start) if start in EVAL_PRESETS else {}), **data}
    data = apply_overrides(data, overrides or [])
    return validate(EvalSuiteConfig, data, label)
