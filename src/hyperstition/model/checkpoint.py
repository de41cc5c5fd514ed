"""Checkpoints in plain Hugging Face format (safetensors), verified by checksums, written atomically, no pickle.

A checkpoint directory is what `save_pretrained` writes for the model and the tokenizer, so
`AutoModelForCausalLM.from_pretrained(dir)` and `AutoTokenizer.from_pretrained(dir)` load it with no code of ours.
Resumable checkpoints add `training_state.safetensors` (optimizer moments, RNG states) and `training_state.json`
(step counters, data position, optimizer hyper-parameters). Nothing is pickled: a checkpoint from an untrusted
run can be loaded without executing code.

`checksums.json` (sha256 and size of every other file) is written last and the directory is built beside its final
name and renamed into place, so a checkpoint either exists complete or not at all; `verify_checkpoint` catches
anything that went wrong afterwards (a truncated copy, a flipped byte) and names the file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..config import UserError
from ..io import CHECKSUMS, fsync_dir, sha256_file, write_json_atomic
from ..tokenizer.train import write_tokenizer_files
from .build import stamp_hub_defaults

MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"


class CheckpointError(UserError, RuntimeError):
    """A directory that is not a complete, intact checkpoint; the message is one line naming the file."""


# ---------------------------------------------------------------------------------------------------------------
# Pickle-free serialisation of nested training state


def pack_state(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split nested state into a JSON skeleton and a flat dict of tensors (for safetensors).

    Tensors and numpy arrays become `{"__tensor__": key}`; tuples and dicts with non-string keys are tagged so
    `unpack_state` restores exactly the same Python types (optimizer state dicts use int keys, RNG states tuples).
    """
    tensors: dict[str, torch.Tensor] = {}

    def store(path: str, tensor: torch.Tensor) -> str:
        if path in tensors:
            raise ValueError(f"training state: two entries map to tensor name {path!r}; rename a key")
        tensors[path] = tensor
        return path

    def visit(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            return {"__tensor__": store(path, node.detach().to("cpu").contiguous().clone())}
        if isinstance(node, np.ndarray):
            return {"__ndarray__": store(path, torch.from_numpy(np.ascontiguousarray(node).copy()))}
        if isinstance(node, tuple):
            return {"__tuple__": [visit(v, f"{path}.{i}") for i, v in enumerate(node)]}
        if isinstance(node, list):
            return [visit(v, f"{path}.{i}") for i, v in enumerate(node)]
        if isinstance(node, dict):
            if all(isinstance(k, str) for k in node) and not any(k.startswith("__") for k in node):
                return {k: visit(v, f"{path}.{k}") for k, v in node.items()}
            return {"__items__": [[_json_key(k), visit(v, f"{path}.{k}")] for k, v in node.items()]}
        if isinstance(node, (np.integer,)):
            return int(node)
        if isinstance(node, (np.floating,)):
            return float(node)
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"training state at {path or '<root>'}: cannot store {type(node).__name__} without pickle")

    return visit(obj, "state"), tensors


def _json_key(key: Any) -> Any:
    if isinstance(key, (str, int, float, bool)) or key is None:
        return key
    raise TypeError(f"training state: dict key {key!r} of type {type(key).__name__} is not storable")


def unpack_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `pack_state`."""
    if isinstance(skeleton, list):
        return [unpack_state(v, tensors) for v in skeleton]
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__ndarray__" in skeleton:
            return tensors[skeleton["__ndarray__"]].numpy()
        if "__tuple__" in skeleton:
            return tuple(unpack_state(v, tensors) for v in skeleton["__tuple__"])
        if "__items__" in skeleton:
            return {k: unpack_state(v, tensors) for k, v in skeleton["__items__"]}
        return {k: unpack_state(v, tensors) for k, v in skeleton.items()}
    return skeleton


def save_training_state(directory: Path, state: dict[str, Any]) -> None:
    """Write `state` as training_state.safetensors + training_state.json into `directory`."""
    from safetensors.torch import save_file

    skeleton, tensors = pack_state(state)
    save_file(tensors, str(directory / STATE_TENSORS))
    (directory / STATE_JSON).write_text(json.dumps(skeleton, indent=1) + "\n")


def load_training_state(directory: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """The training state saved with a checkpoint (after verifying the checkpoint unless `verify=False`)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    if verify:
        verify_checkpoint(directory)
    if not (directory / STATE_JSON).exists() or not (directory / STATE_TENSORS).exists():
        raise CheckpointError(
            f"{directory}: has no training state ({STATE_JSON} + {STATE_TENSORS}); it is a model-only checkpoint"
        )
    try:
        skeleton = json.loads((directory / STATE_JSON).read_text())
        tensors = load_file(str(directory / STATE_TENSORS))
        return unpack_state(skeleton, tensors)
    except (ValueError, KeyError, OSError) as err:
        raise CheckpointError(f"{directory / STATE_JSON}: unreadable training state: {_one_line(err)}") from None


# ---------------------------------------------------------------------------------------------------------------
# Writing


def save_checkpoint(
    directory: str | os.PathLike,
    model: torch.nn.Module,
    tokenizer: Any,
    training_state: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    extra_json: dict[str, Any] | None = None,
) -> Path:
    """Write a complete checkpoint to `directory`, replacing any checkpoint there, atomically.

    Everything is written into a temp directory beside `directory`, `checksums.json` last, then renamed into
    place; a kill at any moment leaves either the previous checkpoint or the new one (see `recover_checkpoint`
    for the one window in which the previous one sits under a backup name). `info` is small JSON metadata
    (step, tokens) stored as `checkpoint.json`; `extra_json` maps further file names to JSON objects (the world
    stamp), written before the checksums so they are covered by them.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{directory.name}.", dir=directory.parent))
    try:
        model = getattr(model, "_orig_mod", model)  # torch.compile wrapper -> the HF model
        stamp_hub_defaults(model, tokenizer)
        with _quiet_transformers():
            model.save_pretrained(tmp)
            write_tokenizer_files(tokenizer, tmp)
        if training_state is not None:
            save_training_state(tmp, training_state)
        if info is not None:
            (tmp / "checkpoint.json").write_text(json.dumps(info, indent=2) + "\n")
        for name, obj in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(obj, indent=2) + "\n")
        _fsync_tree(tmp)
        write_json_atomic(tmp / CHECKSUMS, compute_checksums(tmp))
        _replace_dir(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def compute_checksums(directory: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under `directory` except checksums.json, keyed by relative POSIX path."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel == CHECKSUMS:
            continue
        out[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return out


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target`; an existing `target` is first renamed to a backup, removed once `new` is in place."""
    backup: Path | None = None
    if target.exists():
        backup = target.parent / f"{OLD_PREFIX}{target.name}"
        if backup.exists():
            shutil.rmtree(backup)
        os.rename(target, backup)
    os.rename(new, target)
    fsync_dir(target.parent)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def intact_checkpoint_info(directory: str | os.PathLike) -> dict[str, Any] | None:
    """`checkpoint.json` of an intact, verified checkpoint at `directory`; None if it is absent or damaged.

    Used to decide whether a run already finished: a damaged final checkpoint means "not finished", not an error.
    """
    directory = Path(directory)
    if not directory.exists():
        return None
    try:
        verify_checkpoint(directory)
        return json.loads((directory / "checkpoint.json").read_text())
    except (CheckpointError, OSError, ValueError):
        return None


def recover_checkpoint(directory: str | os.PathLike) -> Path | None:
    """Return `directory` if it is an intact checkpoint, after undoing an interrupted replacement and clearing
    temp dirs.

    A kill between the two renames of `_replace_dir` leaves the previous checkpoint as `.old-<name>` and nothing
    at `<name>`; this puts it back. Half-written `.tmp-<name>.*` directories are deleted. Returns None when there
    is no checkpoint; raises CheckpointError when there is one but it is damaged.
    """
    directory = Path(directory)
    parent = directory.parent
    if parent.exists():
        for tmp in parent.glob(f"{TMP_PREFIX}{directory.name}.*"):
            shutil.rmtree(tmp, ignore_errors=True)
        backup = parent / f"{OLD_PREFIX}{directory.name}"
        if backup.exists():
            if directory.exists():
                shutil.rmtree(backup, ignore_errors=True)
            else:
                os.rename(backup, directory)
    if not directory.exists():
        return None
    verify_checkpoint(directory)
    return directory


# ---------------------------------------------------------------------------------------------------------------
# Verifying and loading


def verify_checkpoint(directory: str | os.PathLike) -> Path:
    """Raise CheckpointError unless `directory` is a complete checkpoint whose files match checksums.json."""
    directory = Path(directory)
    expected = f"expected {MODEL_CONFIG} + {MODEL_WEIGHTS} + tokenizer ({', '.join(TOKENIZER_FILES)})"
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a checkpoint directory (does not exist or is a file); {expected}")
    missing = [name for name in (MODEL_CONFIG, MODEL_WEIGHTS, *TOKENIZER_FILES) if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(f"{directory}: not a checkpoint, missing {', '.join(missing)}; {expected}")
    sums_path = directory / CHECKSUMS
    if not sums_path.is_file():
        raise CheckpointError(f"{sums_path}: missing; {CHECKSUMS} is written last, so this checkpoint is incomplete")
    try:
        sums = json.loads(sums_path.read_text())
        entries = {str(k): (str(v["sha256"]), int(v["size"])) for k, v in sums.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{sums_path}: corrupt (not a JSON map of file -> sha256, size)") from None
    for required in (MODEL_CONFIG, MODEL_WEIGHTS, *TOKENIZER_FILES):
        if required not in entries:
            raise CheckpointError(f"{sums_path}: does not list {required}; checkpoint was not written by hyperstition")
    for rel, (sha, size) in entries.items():
        path = directory / rel
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in {CHECKSUMS})")
        actual = path.stat().st_size
        if actual != size:
            kind = "truncated" if actual < size else "wrong size"
            raise CheckpointError(f"{path}: {kind}, {actual} bytes instead of {size}")
        if sha256_file(path) != sha:
            raise CheckpointError(f"{path}: corrupt, sha256 does not match {CHECKSUMS}")
    return directory


def load_checkpoint(directory: str | os.PathLike, device: str | torch.device = "cpu", verify: bool = True):
    """(model, tokenizer) from a verified checkpoint: the model in fp32 and eval mode on `device`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = Path(directory)
    if verify:
        verify_checkpoint(directory)
    try:
        with _quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{directory}: failed to load: {_one_line(err)}") from None
    model.to(device)
    model.eval()
    return model, tokenizer


def load_weights_into(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Copy model.safetensors from a (verified) checkpoint into an already built model, bit for bit.

    Used on resume: the model is rebuilt from our config and gets the exact saved tensors, avoiding any dtype or
    initialisation logic in `from_pretrained` that could perturb bit-exact continuation.
    """
    from safetensors.torch import load_file

    path = Path(directory) / MODEL_WEIGHTS
    saved = load_file(str(path))
    model = getattr(model, "_orig_mod", model)
    result = model.load_state_dict(saved, strict=False)
    # A tied output embedding is saved once (under the input embedding's name); it is "missing" but shared.
    loaded_storage = {t.data_ptr() for name, t in model.state_dict().items() if name in saved}
    current = model.state_dict()
    missing = [k for k in result.missing_keys if current[k].data_ptr() not in loaded_storage]
    if missing or result.unexpected_keys:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {result.unexpected_keys[:3]}"
        raise CheckpointError(f"{path}: weights do not fit this model ({detail})")


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-shard progress bars: a training run saves dozens of checkpoints under its own bar."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
