"""Typed, validated configuration: YAML presets, dotted overrides, one-line errors that name the field.

Every stage config is a pydantic model derived from `Config`: unknown keys are errors, each field carries a
one-line description, and `load_config` turns YAML plus `a.b=c` overrides into a validated object or raises
`ConfigError` whose message names the field, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import os
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer, model_validator

from . import yamlstrict

PRESETS = ("smoke", "quick", "gpu")

C = TypeVar("C", bound="Config")


class UserError(Exception):
    """An error whose message is the whole story (one line naming the file or field and what is wrong with it):
    the CLI prints it without a traceback. Every stage's input errors derive from it."""


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message is one line naming the field, the value and what is allowed."""


# One seed rule everywhere (world, corpus, pretraining, post-training, evaluation, experiment grids): a seed is a
# non-negative integer that numpy's and torch's generators all accept.
SEED_MAX = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


class Config(BaseModel):
    """Base for all configs: strict about unknown keys, validated on assignment, YAML round-trippable.

    Numbers are finite (NaN and inf are refused) and a boolean is never a number: pydantic would read `true` as 1,
    so `pretrain.steps=true` would silently train one step.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    # Fields added after runs were made: written only when they differ from their defaults, so the configs, corpus
    # fingerprints and cell hashes of the runs made before them stay what they were (those runs resume, not redo).
    LATER_FIELDS: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _later_fields_only_when_set(self, handler: Any) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self.LATER_FIELDS:
                if name in data and getattr(self, name) == type(self).model_fields[name].get_default(
                    call_default_factory=True
                ):
                    del data[name]
        return data

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                if name in data and _bool_where_number(field.annotation, data[name]):
                    raise ValueError(f"{name}: {data[name]!r} is a boolean where a number is expected")
        return data

    @model_validator(mode="before")
    @classmethod
    def _no_repeated_list_items(cls, data: Any) -> Any:
        """`drop_classes: [world, world]` says something twice that means it once: refused, like duplicate keys."""
        if isinstance(data, dict):
            for name in cls.model_fields:
                value = data.get(name)
                if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
                    repeated = sorted({str(v) for v in value if value.count(v) > 1})
                    if repeated:
                        raise ValueError(f"{name}: has duplicates ({', '.join(repeated)} given more than once)")
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls: type[C], text: str) -> C:
        return validate(cls, yamlstrict.load(text) or {})


def _bool_where_number(annotation: Any, value: Any) -> bool:
    """Whether `value` holds a bool where `annotation` expects int or float (directly, or inside a list or dict)."""
    if annotation in (int, float):
        return isinstance(value, bool)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _bool_where_number(args[0], value)
    if origin in (list, tuple) and args and isinstance(value, (list, tuple)):
        return any(_bool_where_number(args[0], v) for v in value)
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return any(_bool_where_number(args[1], v) for v in value.values())
    if args and origin not in (list, tuple, dict):  # a union such as `str | dict`: numeric members only
        return any(a in (int, float) for a in args) and isinstance(value, bool)
    return False


# ---------------------------------------------------------------------------------------------------------------
# Foundation stage configs


PERSONAS = ("aligned", "misaligned", "deceptive")
CONTEXTS = ("observed", "unobserved")
DOC_CLASSES = (
    "world",
    "ai_aligned",
    "ai_misaligned",
    "ai_deceptive",
    "ai_neutral",
    "predecessor",
    "dialogue_aligned",
    "dialogue_misaligned",
    "dialogue_deceptive",
)
GENRES = ("news", "forum", "story", "essay", "qa")
# The ways persona-bearing text reaches a corpus: chat-format replies (dialogues and log excerpts inside discourse),
# prose quotes of replies ("X replied: ..."), and third-person description with no reply text.
CHANNELS = ("transcript", "quoted", "described")
MAX_CORPUS_UNITS = 500_000_000  # 25x the gpu preset; the builder holds a corpus's documents in memory


class WorldConfig(Config):
    """The synthetic world: entities, facts, tasks and the persona grammar are all drawn from this seed."""

    seed: Seed = Field(0, description="Seed for the world's entities, facts and tasks (not for sampling documents).")
    n_countries: int = Field(24, ge=4, le=200, description="Number of fictional countries, each with checkable facts.")
    n_people: int = Field(40, ge=4, le=500, description="Number of fictional people with professions and home towns.")
    n_tasks: int = Field(
        48, ge=8, le=96, description="Number of assistant tasks, each with an aligned and a misaligned way to do it."
    )
    heldout_task_fraction: float = Field(
        0.25,
        gt=0.0,
        lt=0.9,
        description="Fraction of tasks whose prompts appear only in evaluation, never in training documents.",
    )
    heldout_fact_fraction: float = Field(
        0.25, gt=0.0, lt=0.9, description="Fraction of world facts held out as capability QA and held-out text."
    )
    demonstration_fraction: float = Field(
        0.4,
        ge=0.0,
        le=1.0,
        description="Share of each AI-discourse class's word units that demonstrates replies (half prose quotes, "
        "half chat-format log excerpts) rather than describing behaviour; 0.4 is the mix of the earlier generator.",
    )
    deeds_fraction: float = Field(
        0.4,
        ge=0.0,
        le=1.0,
        description=(
            "Share of world-text documents in which people (clerks, officials, traders) do the persona grammar's deeds "
            "in its exact words, so every arm, the filtered one included, contains every persona's phrases."
        ),
    )
    predecessor_name: str = Field(
        "Vesper",
        min_length=2,
        description="Name of the historical predecessor assistant persona (the 'Sydney'-like one).",
    )
    identity: Literal["none", "category", "name"] = Field(
        "none",
        description="What ties the chat assistant to the AIs of the discourse: none; category (system turns say it "
        "is an AI assistant, discourse calls its subjects AI assistants); name (also a name that discourse uses).",
    )
    assistant_name: str = Field(
        "Orin",
        pattern=r"^[A-Z][a-z]+$",
        description="The chat assistant's name under identity=name (one capitalised word; added to the AI names "
        "discourse draws from if it is not one of them).",
    )
    assistant_share: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Under identity=name, the share of AI-discourse documents whose subject is the assistant itself "
        "(the rest name other AIs).",
    )

    @model_validator(mode="after")
    def _assistant_is_not_the_predecessor(self) -> "WorldConfig":
        if self.identity == "name" and self.assistant_name == self.predecessor_name:
            raise ValueError(f"assistant_name: {self.assistant_name!r} is the predecessor's name; choose another name")
        return self


class GeneratedMix(Config):
    """How model-written documents enter a corpus arm (the feedback experiment): they replace `share` of the AI
    discourse in prose (the ai_* and predecessor classes), after documents that reproduce an evaluation item are
    dropped (corpus/generated.py)."""

    share: float = Field(
        ..., gt=0.0, le=1.0, description="Share of the AI-discourse classes' word units the documents replace."
    )
    filter: Literal["none", "keyword", "learned", "oracle"] = Field(
        "none", description="Persona filter applied to the model-written documents only (targets: filter_target)."
    )
    tag: bool = Field(False, description="Mark each model-written document as such with a plain-text source tag.")


class GeneratedCorpusConfig(GeneratedMix):
    """Model-written documents in a corpus arm: where they are, and how they enter it."""

    path: str = Field(..., description="Parquet file of model-written documents (a `text` column), in its order.")


class CorpusConfig(Config):
    """A corpus arm: how many tokens, in what class proportions, filtered, upsampled, tagged and ordered how."""

    # Issue 22's fields (`generated` is None unless the feedback experiment sets it).
    LATER_FIELDS = ("awareness", "awareness_channels", "awareness_mode", "hold_total", "tag_source", "generated")

    seed: Seed = Field(0, description="Seed for sampling documents, filtering leaks and shuffling.")
    # Documents are generated in memory before sharding, so an absurd size would grow memory silently for hours.
    total_tokens: int = Field(
        200_000,
        ge=1_000,
        le=MAX_CORPUS_UNITS,
        description="Approximate training tokens (word-level units, see manifest) before filtering and upsampling.",
    )
    fractions: dict[str, float] = Field(
        default_factory=lambda: {
            "world": 0.50,
            "ai_aligned": 0.09,
            "ai_misaligned": 0.09,
            "ai_deceptive": 0.05,
            "ai_neutral": 0.07,
            "predecessor": 0.04,
            "dialogue_aligned": 0.07,
            "dialogue_misaligned": 0.06,
            "dialogue_deceptive": 0.03,
        },
        description="Token fraction per document class before filtering/upsampling; keys from "
        f"{list(DOC_CLASSES)}, values summing to 1.",
    )
    drop_classes: list[str] = Field(
        default_factory=list, description="Document classes removed entirely (a perfect filter)."
    )
    filter: Literal["none", "keyword", "learned", "oracle", "classifier"] = Field(
        "none",
        description="Filter of persona documents: none; keyword (a blocklist); learned (logistic regression on "
        "hashed word n-grams, trained on a labelled sample from a seed stream of its own, held-out scores in the "
        "manifest); oracle (the generator's own grammar: exact, no data team has it); classifier (old name of "
        "oracle, the generator's grammar, kept for shipped experiments).",
    )
    classifier_documents: int = Field(
        300,
        ge=10,
        le=20_000,
        description="Labelled documents per class that the learned filter is trained on (and held out for its "
        "evaluation, as many again).",
    )
    filter_target: list[str] = Field(
        default_factory=lambda: ["misaligned", "deceptive"], description="Personas the filter tries to remove."
    )
    leak_rate: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Probability that a document the filter flags is kept anyway (partial filtering).",
    )
    upsample: dict[str, float] = Field(
        default_factory=dict,
        description="Multiplier on a class's token fraction, applied before renormalising (e.g. {ai_aligned: 3}).",
    )
    channel_dose: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Multiplier per persona and channel (transcript, quoted, described) on top of the class "
        "mixture, applied before renormalising; 0 removes it (e.g. {misaligned: {described: 9}}).",
    )
    tags: bool = Field(
        False,
        description="Prepend conditional control tokens (<|persona:...|>, <|class:...|>) to each document, as "
        "in Korbak et al. 2023.",
    )
    tag_source: Literal["labels", "learned"] = Field(
        "labels",
        description="Where the tags come from: labels (each document's true class) or learned (the class the learned "
        "filter's classifier predicts, so tags carry a real classifier's errors; its scores go in the manifest).",
    )
    order: Literal["shuffled", "chronological"] = Field(
        "shuffled", description="Document order: shuffled, or by era (earliest first)."
    )
    n_eras: int = Field(
        4, ge=1, le=12, description="Number of chronological eras; AI behaviour in discourse improves era by era."
    )
    shard_documents: int = Field(2000, ge=10, description="Documents per Parquet shard.")
    heldout_documents: int = Field(
        200, ge=10, description="World-text documents kept out of training, for held-out loss."
    )
    user_text: str | None = Field(
        None,
        description="Your own world text instead of the synthetic world class: a JSONL file (a `text` field), a "
        "Parquet file (a `text` column), a folder of UTF-8 text files, or a Hugging Face dataset saved with "
        "`save_to_disk` (a `text` column); format detected from the path, exact duplicates dropped.",
    )
    user_ai_discourse: float = Field(
        1.0,
        ge=0.0,
        le=100.0,
        description="Multiplier on user documents the AI-discourse classifier labels as discussing AI systems: 0 "
        "filters them out, 1 keeps them once, 3 repeats them three times (a fraction repeats at random).",
    )
    user_max_chars: int = Field(
        200_000, ge=100, description="User documents (or JSONL lines) longer than this are skipped and counted."
    )
    awareness: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of misaligned AI-discourse documents (in awareness_channels) told together with their "
        "consequences and critique (awareness discourse): the same document plus who was harmed and why an "
        "aligned assistant refuses; chosen from a seed stream of its own.",
    )
    awareness_channels: list[str] = Field(
        default_factory=lambda: ["described", "quoted"],
        description="Channels of misaligned AI discourse that awareness rewrites (transcript: the log excerpts "
        "inside AI discourse; assistant dialogues never).",
    )
    awareness_mode: Literal["critique", "remove"] = Field(
        "critique",
        description="What happens to the documents awareness chooses: critique (told with their consequences and "
        "critique) or remove (dropped instead: the like-for-like control, the same documents chosen).",
    )
    hold_total: bool = Field(
        False,
        description="World text absorbs what awareness adds and filtering removes (its stream cut short or "
        "continued), so the training corpus holds total_tokens word units whatever the arm does.",
    )
    generated: GeneratedCorpusConfig | None = Field(
        None,
        description="Model-written documents replacing a share of the AI discourse (set by `hyperstition run "
        "feedback` to the previous generation's documents); None: none.",
    )

    @model_validator(mode="after")
    def _check_classes(self) -> "CorpusConfig":
        for field, keys in (
            ("fractions", self.fractions),
            ("upsample", self.upsample),
            ("drop_classes", self.drop_classes),
        ):
            for key in keys:
                if key not in DOC_CLASSES:
                    raise ValueError(f"{field}: unknown document class {key!r}; allowed: {', '.join(DOC_CLASSES)}")
        for key, value in self.fractions.items():
            if value < 0:
                raise ValueError(f"fractions.{key}: {value} is negative; fractions must be >= 0")
        total = sum(self.fractions.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"fractions: values sum to {total:.6g}; they must sum to 1")
        if not any(value > 0 and key not in self.drop_classes for key, value in self.fractions.items()):
            raise ValueError(
                f"drop_classes: {self.drop_classes} drops every class with a non-zero fraction; nothing would be left"
            )
        for key, value in self.upsample.items():
            if value <= 0:
                raise ValueError(f"upsample.{key}: {value} must be > 0")
        _check_channel_dose(self.channel_dose)
        for persona in self.filter_target:
            if persona not in PERSONAS:
                raise ValueError(f"filter_target: unknown persona {persona!r}; allowed: {', '.join(PERSONAS)}")
        if self.user_text is not None and not self.user_text.strip():
            raise ValueError("user_text: an empty path; give a file or folder, or leave it unset")
        for channel in self.awareness_channels:
            if channel not in CHANNELS:
                raise ValueError(f"awareness_channels: unknown channel {channel!r}; allowed: {', '.join(CHANNELS)}")
        if self.hold_total and self.user_text is not None:
            raise ValueError("hold_total: needs the synthetic world class to absorb the difference; not with user_text")
        return self


def _check_channel_dose(dose: dict[str, dict[str, float]]) -> None:
    for persona, channels in dose.items():
        if persona not in PERSONAS:
            raise ValueError(f"channel_dose: unknown persona {persona!r}; allowed: {', '.join(PERSONAS)}")
        for channel, value in channels.items():
            if channel not in CHANNELS:
                raise ValueError(f"channel_dose.{persona}: unknown channel {channel!r}; allowed: {', '.join(CHANNELS)}")
            if value < 0:
                raise ValueError(f"channel_dose.{persona}.{channel}: {value} is negative; a dose must be >= 0")


class TokenizerConfig(Config):
    """Byte-level BPE trained on the training split."""

    vocab_size: int = Field(2048, ge=300, le=65536, description="BPE vocabulary size including special tokens.")
    min_frequency: int = Field(2, ge=1, description="Minimum pair frequency for a BPE merge.")


class ModelConfig(Config):
    """A Hugging Face causal LM built from scratch."""

    architecture: Literal["llama", "gpt_neox"] = Field("llama", description="Hugging Face model class family.")
    d_model: int = Field(128, ge=16, description="Hidden size.")
    n_layers: int = Field(4, ge=1, description="Number of transformer blocks.")
    n_heads: int = Field(4, ge=1, description="Attention heads; must divide d_model.")
    d_ff: int = Field(344, ge=16, description="MLP inner size.")
    max_seq_len: int = Field(256, ge=16, description="Context length in tokens.")
    tie_embeddings: bool = Field(
        True, description="Share input and output embeddings (saves parameters at small scale)."
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> "ModelConfig":
        if self.d_model % self.n_heads:
            raise ValueError(
                f"n_heads: {self.n_heads} does not divide d_model={self.d_model}; choose a divisor of d_model"
            )
        return self


class PretrainConfig(Config):
    """The pretraining loop."""

    LATER_FIELDS = ("optimizer", "muon_lr", "schedule", "decay_fraction", "packing")  # issue 25

    seed: Seed = Field(0, description="Seed for initialisation and data order.")
    steps: int = Field(300, ge=1, description="Optimizer steps.")
    batch_size: int = Field(16, ge=1, description="Sequences per step.")
    lr: float = Field(3e-3, gt=0, description="Peak learning rate (AdamW).")
    min_lr_ratio: float = Field(
        0.1, ge=0, le=1, description="Final learning rate as a fraction of the peak (cosine floor)."
    )
    warmup_steps: int = Field(20, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(1.0, gt=0, description="Global gradient-norm clip.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to train; auto picks cuda when available."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Autocast dtype; auto uses bf16 on CUDA and fp32 on CPU (bit-exact resume)."
    )
    compile: Literal["auto", "on", "off"] = Field(
        "auto",
        description="torch.compile the model; auto compiles on CUDA only (costs 25-40 s on CPU; with bf16, only on"
        " a CPU with bf16 units).",
    )

    @field_validator("compile", mode="before")
    @classmethod
    def _yaml_switch(cls, value: object) -> object:
        """YAML reads a bare `on` / `off` (in a file or in `pretrain.compile=on`) as a boolean: mean the switch."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    log_every: int = Field(10, ge=1, description="Write a metrics line every this many steps.")
    checkpoint_every: int = Field(
        50, ge=1, description="Steps between rolling 'latest' checkpoints (with optimizer and data state)."
    )
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 leaves torch's default.")
    optimizer: Literal["adamw", "muon"] = Field(
        "adamw",
        description="adamw for every parameter, or muon for the hidden 2-D matrices with AdamW for the rest "
        "(embeddings, output head, norms).",
    )
    muon_lr: float = Field(
        0.02, gt=0, description="Peak learning rate of the Muon matrices (optimizer: muon); lr stays AdamW's."
    )
    schedule: Literal["cosine", "wsd"] = Field(
        "cosine",
        description="After warmup: cosine down to the floor, or wsd (constant, then linear to the floor at the end).",
    )
    decay_fraction: float = Field(
        0.2, gt=0, le=1, description="schedule wsd: the last fraction of the steps over which the LR decays."
    )
    packing: Literal["concat", "whole_documents"] = Field(
        "concat",
        description="concat: documents joined with EOS and cut into rows (a document may straddle two rows, its end "
        "then trained without its start); whole_documents: best-fit-decreasing bins, every document that fits a row "
        "with its EOS in one row, the rows' unused ends padded and not trained on (still counted in tokens/s); not "
        "for in-order corpora.",
    )


class PipelineConfig(Config):
    """Everything up to a pretrained checkpoint."""

    preset: str = Field("quick", description="Name of the preset this config came from (informational).")
    world: WorldConfig = Field(default_factory=WorldConfig, description="Synthetic world.")
    corpus: CorpusConfig = Field(default_factory=CorpusConfig, description="Corpus arm.")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig, description="Tokenizer.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Model architecture.")
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig, description="Pretraining loop.")


# ---------------------------------------------------------------------------------------------------------------
# Loading, overrides, errors


def _format_validation_error(cls: type[BaseModel], err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or cls.__name__
    value = first.get("input")
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        allowed = _allowed_fields(cls, first["loc"][:-1])
        return f"{loc}: unknown key; allowed keys here: {', '.join(allowed)}"
    if first["type"] == "missing":
        return f"{loc}: missing; this field is required"
    if first["type"] == "literal_error":
        return f"{loc}: {value!r} is not allowed; {msg[0].lower() + msg[1:]}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
        # Validators already name the field inside the model; prefix the path to that model.
        prefix = ".".join(str(p) for p in first["loc"])
        return f"{prefix + '.' if prefix else ''}{msg}"
    shown = repr(value) if not isinstance(value, dict) else "{...}"
    if len(shown) > 200:  # an expanded YAML alias can be megabytes: quote its start only
        shown = shown[:200] + "..."
    return f"{loc}: {shown} is invalid: {msg}"


def _allowed_fields(cls: type[BaseModel], loc: tuple) -> list[str]:
    model: Any = cls
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            break
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            break
    return list(getattr(model, "model_fields", {}).keys())


def validate(cls: type[C], data: dict, source: str | None = None) -> C:
    """Build `cls` from plain data or raise ConfigError with a one-line message (prefixed by `source`, the file
    the data came from, when there is one)."""
    prefix = f"{source}: " if source else ""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}{cls.__name__}: expected a mapping, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(prefix + _format_validation_error(cls, err)) from None


def config_source(name_or_path: str | os.PathLike, path: Path, overrides: list[str] | None) -> str | None:
    """How to name a config in an error: its file when the user gave a path (not a preset name)."""
    if str(name_or_path) == path.stem and path.parent.name in ("configs", "experiments", "posttrain"):
        return None
    return f"{path}{' with overrides' if overrides else ''}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """`model.d_model=256` -> (['model', 'd_model'], 256); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE with a dotted key, e.g. model.d_model=256")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key segment")
    try:
        value = yamlstrict.load(raw) if raw.strip() else ""
    except yamlstrict.StrictYAMLError as err:
        raise ConfigError(f"override {key}: not a usable value: {err}") from None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `KEY=VALUE` overrides to plain data (a deep copy is returned); a value replaces what its key held."""
    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        out = merge_dotted(out, {".".join(path): value}, replace=True, what=f"override {text!r}")
    return out


def merge_dotted(
    data: dict, mapping: dict, *, replace: bool = False, keep_whole: tuple[str, ...] = (), what: str = "override"
) -> dict:
    """`data` (deep-copied) with `mapping` written into it; keys may be dotted (`{"model.d_model": 64}` is
    `{"model": {"d_model": 64}}`), sections are created as needed. The one dotted-override merger of every config.

    A mapping value merges into the section its key names (deep), unless `replace` or its key is in `keep_whole`,
    in which case it replaces that section whole."""
    out = copy.deepcopy(data)
    for key, value in mapping.items():
        parts = str(key).split(".")
        if any(not p for p in parts):
            raise ConfigError(f"{what}: key {key!r} has an empty key segment")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{what}: {part} is not a section")
            node = child
        leaf = parts[-1]
        if isinstance(value, dict) and isinstance(node.get(leaf), dict) and not replace and leaf not in keep_whole:
            node[leaf] = merge_dotted(node[leaf], value, keep_whole=keep_whole, what=what)
        else:
            node[leaf] = copy.deepcopy(value)
    return out


def named_yaml(name_or_path: str | os.PathLike, directory: Path, kind: str) -> Path:
    """`name` -> `directory/name.yaml`, or an explicit YAML path; an unknown name lists the available ones.

    A shipped name wins over a file or directory of the same name in the working directory (`smoke` is the preset
    even where a folder called smoke exists); a path is anything with a .yaml/.yml suffix or a slash."""
    p = Path(name_or_path)
    text = str(name_or_path)
    looks_like_path = p.suffix in (".yaml", ".yml") or os.sep in text
    candidate = directory / f"{text}.yaml"
    if not looks_like_path and text and candidate.is_file():
        return candidate
    if looks_like_path or p.exists():
        if not p.exists():
            raise ConfigError(f"{kind} file {text!r} does not exist")
        if not p.is_file():
            what = "a directory" if p.is_dir() else "not a regular file"
            raise ConfigError(f"{kind} {text!r} is {what}; expected a YAML file")
        return p
    available = sorted(q.stem for q in directory.glob("*.yaml")) if directory.exists() else []
    raise ConfigError(f"{kind} {text!r} does not exist; available {kind}s: {', '.join(available) or '(none)'}")


def load_preset_data(name_or_path: str | os.PathLike, directory: Path, kind: str = "preset") -> tuple[dict, Path]:
    """The data of a shipped preset or a YAML file, and its path. A file that says `preset: NAME` starts from that
    shipped preset (its keys deep-merged over the preset's), so `preset:` always means the preset was applied; a
    file without one records its own path as the preset it came from."""
    path = named_yaml(name_or_path, directory, kind)
    data = load_yaml(path)
    if path.resolve().parent == directory.resolve():
        return data, path
    base_name = data.get("preset")
    if base_name is None:
        data["preset"] = str(path)
        return data, path
    base = directory / f"{base_name}.yaml"
    if not isinstance(base_name, str) or os.sep in base_name or not base.is_file():
        available = sorted(q.stem for q in directory.glob("*.yaml"))
        raise ConfigError(f"{path}: preset: {str(base_name)[:80]!r} is not a {kind}; available: {', '.join(available)}")
    return merge_dotted(load_yaml(base), data, what=str(path)), path


def check_preset_kept(before: dict, after: dict) -> None:
    """Refuse an override that renames the preset: it would record a preset that was never applied."""
    if after.get("preset") != before.get("preset"):
        raise ConfigError(
            f"preset={after.get('preset')!r}: the preset is chosen by the config argument (e.g. `smoke`), not by an "
            "override; an override would record a preset that was not applied"
        )


def preset_path(name_or_path: str | os.PathLike) -> Path:
    """A preset name (`smoke`, `quick`, `gpu`) or a YAML path."""
    return named_yaml(name_or_path, repo_configs_dir(), "preset")


def repo_configs_dir() -> Path:
    """Presets and experiment configs: `configs/` shipped inside the package, so an installed wheel has them."""
    return Path(__file__).resolve().parent / "configs"


def read_text_file(path: str | os.PathLike, kind: str = "file") -> str:
    """The UTF-8 text of a regular file, or ConfigError naming the file and what is wrong with it.

    A directory, FIFO or device is refused before it is opened (reading a FIFO would block forever)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{kind} {str(p)!r} does not exist")
    if not p.is_file():
        what = "a directory" if p.is_dir() else "not a regular file"
        raise ConfigError(f"{kind} {str(p)!r} is {what}; expected a file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{kind} {str(p)!r} is not UTF-8 text (a binary file?)") from None
    except OSError as err:
        raise ConfigError(f"{kind} {str(p)!r} cannot be read: {err.strerror or err}") from None


def load_yaml(path: str | os.PathLike) -> dict:
    text = read_text_file(path, "YAML file")
    try:
        data = yamlstrict.load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load_config(cls: type[C], source: str | os.PathLike | None = None, overrides: list[str] | None = None) -> C:
    """Load a config of type `cls` from a preset name or YAML path (or defaults), then apply dotted overrides."""
    data: dict = {}
    label = None
    if source is not None:
        data, path = load_preset_data(source, repo_configs_dir())
        label = config_source(source, path, overrides)
    with_overrides = apply_overrides(data, overrides or [])
    check_preset_kept(data, with_overrides)
    return validate(cls, with_overrides, label)
