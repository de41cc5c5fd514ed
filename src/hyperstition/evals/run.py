"""`run_eval`: load checkpoint(s), evaluate, write `eval.json` + `eval_items.parquet` atomically, print a table."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import ConfigError, WorldConfig
from ..io import write_json_atomic, write_parquet_atomic
from ..train import runtime
from ..world.world import World
from .config import EvalSuiteConfig
from .context import ITEM_COLUMNS
from .measure import EvalResult, evaluate
from .scoring import EvalError, check_compatible

EVAL_JSON = "eval.json"
EVAL_ITEMS = "eval_items.parquet"


def default_out_dir(model_dir: str | os.PathLike) -> Path:
    """runs/p/final -> runs/p/eval-final."""
    d = Path(model_dir)
    return d.parent / f"eval-{d.name}"


def resolve_device(device: str = "auto") -> str:
    """The evaluation device, chosen as training chooses it (train.runtime), as a torch device string."""
    try:
        return runtime.resolve_device(device).type
    except ConfigError as err:
        raise EvalError(str(err)) from None


def _load(model_dir: str | os.PathLike, device: str, what: str):
    from ..model.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(model_dir, device=device)
    except CheckpointError as err:
        raise EvalError(f"{what}: {err}") from None


def _world_config(model_dir: Path, world_cfg: WorldConfig | None) -> WorldConfig:
    if world_cfg is not None:
        return world_cfg
    from ..world import world_config_for

    try:
        return world_config_for(model_dir)
    except FileNotFoundError as err:
        raise EvalError(str(err)) from None
    except ConfigError as err:
        raise EvalError(f"{model_dir}: its world config is invalid: {err}") from None


def run_eval(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None,
    suite_cfg: EvalSuiteConfig,
    *,
    reference_dir: str | os.PathLike | None = None,
    world_cfg: WorldConfig | None = None,
    progress: bool = True,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """Evaluate the checkpoint in `model_dir` (KL against `reference_dir` when given) and write the results.

    `out_dir` None means `eval-<name>` beside the checkpoint (never inside it: a checkpoint directory is replaced
    whole when re-saved); `suite_cfg` is the suite to measure with (`load_suite_config` resolves a preset name or YAML
    path); `world_cfg` defaults to the world the checkpoint was trained in (`world_config_for`). Writes `eval.json`
    (rows + metadata) and `eval_items.parquet` (one row per item or sample), prints a table when `progress`,
    and returns the rows. Raises EvalError / ConfigError with one-line messages on bad input.
    """
    if not isinstance(suite_cfg, EvalSuiteConfig):
        raise TypeError(f"run_eval: suite_cfg is a {type(suite_cfg).__name__}; expected an EvalSuiteConfig")
    model_dir = Path(model_dir)
    out = Path(out_dir) if out_dir is not None else default_out_dir(model_dir)
    device = resolve_device(device)
    model, tokenizer = _load(model_dir, device, "--model")
    try:
        check_compatible(model, tokenizer)
    except EvalError as err:
        raise EvalError(f"--model: {model_dir}: {err}") from None
    wcfg = _world_config(model_dir, world_cfg)
    reference = None
    if reference_dir is not None:
        reference, ref_tokenizer = _load(reference_dir, device, "--reference")
        if ref_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise EvalError(
                f"--reference: {reference_dir} has a different tokenizer from {model_dir}; expected the same "
                "vocabulary (a checkpoint of the same run)"
            )
    world = World.from_config(wcfg)
    start = time.perf_counter()
    result = evaluate(model, tokenizer, world, suite_cfg, reference=reference, progress=progress)
    elapsed = time.perf_counter() - start
    write_results(
        out, result, model_dir=model_dir, reference_dir=reference_dir, world_cfg=wcfg, seconds=elapsed, device=device
    )
    if progress:
        print_table(result, title=f"hyperstition eval: {model_dir}")
        from rich.console import Console

        Console(stderr=True).print(f"wrote {out / EVAL_JSON} and {out / EVAL_ITEMS}")
    return result.rows


def write_results(out_dir: str | os.PathLike, result: EvalResult, **meta: Any) -> tuple[Path, Path]:
    """Write `eval.json` and `eval_items.parquet` into `out_dir` (each atomically)."""
    import pandas as pd

    out = Path(out_dir)
    summary = {
        "hyperstition_version": __version__,
        "model": str(meta.get("model_dir")) if meta.get("model_dir") is not None else None,
        "reference": str(meta.get("reference_dir")) if meta.get("reference_dir") is not None else None,
        "world": meta["world_cfg"].model_dump(mode="json") if meta.get("world_cfg") is not None else None,
        "device": meta.get("device"),
        "seconds": round(float(meta.get("seconds", 0.0)), 3),
        "rows": [_json_row(r) for r in result.rows],
        "meta": result.meta,
    }
    json_path, items_path = out / EVAL_JSON, out / EVAL_ITEMS
    frame = pd.DataFrame(result.items, columns=list(ITEM_COLUMNS))
    for col in (
        "value",
        "logprob",
        "logprob_alt",
        "logprob_chosen",
        "n_tokens",
        "n_tokens_alt",
        "task_id",
        "variant",
        "sample",
    ):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame["correct"] = frame["correct"].astype("boolean")
    for col in ("kind", "context", "metric", "prompt", "response", "label", "chosen_response", "item_set"):
        frame[col] = frame[col].astype("string")
    write_parquet_atomic(items_path, frame)
    write_json_atomic(json_path, summary)
    return json_path, items_path


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """NaN is not JSON: store it as null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def _fmt(value: float | None, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if metric.startswith(("bits_", "length_diff")):
        return f"{value:+.2f}"
    return f"{value:.3f}"


LENGTH_PREFIX = "length_diff_tokens_"


def print_table(result: EvalResult, title: str = "hyperstition eval", console=None) -> None:
    """One compact rich table per context: metric, value, 95% CI, n (and the residual token-length gap for bits)."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    lengths = {
        (r["context"], r["metric"][len(LENGTH_PREFIX) :]): r["value"]
        for r in result.rows
        if r["metric"].startswith(LENGTH_PREFIX)
    }
    contexts = list(dict.fromkeys(r["context"] for r in result.rows))
    if not contexts:
        console.print(f"{title}: no measurements (every section off, or KL without a reference)")
    for k, context in enumerate(contexts):
        rows = [r for r in result.rows if r["context"] == context and not r["metric"].startswith(LENGTH_PREFIX)]
        has_bits = any(r["metric"].startswith("bits_") for r in rows)
        heading = f"{title} · context: {context}" if k == 0 else f"context: {context}"
        table = Table(title=escape(heading), box=box.SIMPLE_HEAD, title_justify="left")
        table.add_column("metric", no_wrap=True)
        table.add_column("value", justify="right", no_wrap=True)
        table.add_column("95% CI", justify="right", no_wrap=True)
        table.add_column("n", justify="right", no_wrap=True)
        if has_bits:
            table.add_column("Δlen", justify="right", no_wrap=True)
        for r in rows:
            metric = r["metric"]
            cells = [
                metric,
                _fmt(r["value"], metric),
                f"[{_fmt(r['ci_low'], metric)}, {_fmt(r['ci_high'], metric)}]",
                str(result.meta.get("n", {}).get(f"{context}/{metric}", "")),
            ]
            if has_bits:
                gap = lengths.get((context, metric[len("bits_") :])) if metric.startswith("bits_") else None
                cells.append(f"{gap:+.1f}" if gap is not None else "")
            table.add_row(*(escape(c) for c in cells))
        console.print(table)
    for note in result.meta.get("notes") or []:
        console.print(f"note: {note}")
    if lengths:
        console.print(
            "Δlen: mean token-length difference of the matched responses (first persona - second), per prompt."
        )
