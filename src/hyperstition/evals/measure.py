"""`evaluate`: every registered measure (`evals/measures/`: the measurements of docs/design.md) on an in-memory
model, as tidy rows plus per-item records.

Pure measuring: no files, no global RNG use, the model's train/eval flag restored. Post-training calls it at each
curve point with the smoke or quick suite, sections it does not need switched off.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import PERSONAS
from ..world.world import World
from .config import EvalSuiteConfig
from .context import ITEM_COLUMNS, ROW_KEYS, EvalContext
from .scoring import check_compatible, inference
from .suite import EvalSuite, build_suite


@dataclass
class EvalResult:
    """`rows`: tidy dicts (ROW_KEYS: context, metric, value, ci_low, ci_high). `items`: one dict per item or
    sample (ITEM_COLUMNS).

    `meta`: observations per row (`n`, keyed "context/metric"), `seconds` per measure, `chance` levels of the
    multiple-choice accuracies, `notes`, the measures that ran (`sections`), the `suite` config, `items_per_kind`
    and the scored `personas`.
    """

    rows: list[dict[str, Any]]
    items: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def row(self, metric: str, context: str) -> dict[str, Any]:
        for r in self.rows:
            if r["metric"] == metric and r["context"] == context:
                return r
        available = sorted({f"{r['context']}/{r['metric']}" for r in self.rows})
        raise KeyError(f"no row {context}/{metric}; have {', '.join(available)}")

    def value(self, metric: str, context: str) -> float:
        return float(self.row(metric, context)["value"])

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(ROW_KEYS))

    def items_frame(self):
        import pandas as pd

        return pd.DataFrame(self.items, columns=list(ITEM_COLUMNS))


def evaluate(
    model,
    tokenizer,
    world: World,
    cfg: EvalSuiteConfig,
    reference=None,
    progress: bool = False,
    suite: EvalSuite | None = None,
) -> EvalResult:
    """Measure `model` (and KL against `reference`, when given) on the suite `cfg`; `suite` defaults to
    `build_suite(world, cfg)` (post-training builds it once for every curve point).

    The measures switched on in `cfg.sections` run in registration order (bits, rates, knowledge, capability, kl,
    then any registered later), and their rows come out in that order.
    Raises EvalError (one line) when the tokenizer does not match the model or the reference.
    """
    if not isinstance(cfg, EvalSuiteConfig):
        raise TypeError(f"evaluate: cfg is a {type(cfg).__name__}; expected an EvalSuiteConfig (load_suite_config)")
    check_compatible(model, tokenizer)
    if reference is not None:
        check_compatible(reference, tokenizer)
    if suite is None:
        suite = build_suite(world, cfg)
    ctx = EvalContext(model, tokenizer, world, cfg, reference)
    enabled = [m for m in suite.measures if cfg.sections.enabled(m.name)]
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(enabled), desc="eval", unit="section", disable=not progress, file=sys.stderr, dynamic_ncols=True
    )
    try:
        with inference(model, reference):
            for measure in enabled:
                bar.set_postfix_str(measure.name, refresh=True)
                start = time.perf_counter()
                measure.score(ctx, suite.items_for(measure))
                ctx.meta["seconds"][measure.name] = round(time.perf_counter() - start, 3)
                bar.update(1)
    finally:
        bar.close()
    ctx.meta.update(
        sections=[m.name for m in enabled],
        suite=cfg.model_dump(mode="json"),
        items_per_kind=suite.summary(),
        personas=[p for p in PERSONAS if p in cfg.personas],
    )
    return EvalResult(ctx.rows, ctx.items, ctx.meta)
