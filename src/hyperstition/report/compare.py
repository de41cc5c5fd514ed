"""`hyperstition compare RUN_A RUN_B`: seed-averaged headline metrics of two runs side by side, with B - A."""

from __future__ import annotations

import math
import os
from typing import Any

import pandas as pd

from ..analysis.results import seed_rows, summarize
from ..analysis.rundir import read_run_json
from ..analysis.store import load_results
from ..schema import BASE_STRATEGY, FACT_QA_ACCURACY, HEADLINE_BITS, HELDOUT_LOSS, rate_metric

HEADLINE_METRICS = (
    HEADLINE_BITS,
    rate_metric("aligned"),
    rate_metric("misaligned"),
    HELDOUT_LOSS,
    FACT_QA_ACCURACY,
)
KEYS = ["arm", "strategy", "context", "metric"]
COLUMNS = [*KEYS, "a", "a_ci_low", "a_ci_high", "a_kl", "b", "b_ci_low", "b_ci_high", "b_kl", "delta"]


def compare_runs(run_a: str | os.PathLike, run_b: str | os.PathLike, headline_only: bool = True) -> pd.DataFrame:
    """One row per (arm, strategy, context, metric) present in either run: the seed mean (base evaluation, or the
    last post-training step) in A and in B, their CIs and KL pressures, and delta = B - A (NaN if one is missing)."""
    frames = []
    for run in (run_a, run_b):
        read_run_json(run)
        df = seed_rows(load_results(run))
        if headline_only:
            df = df[df.metric.isin(HEADLINE_METRICS)]
        frames.append(summarize(df))
    a, b = frames
    merged = a.merge(b, on=KEYS, how="outer", suffixes=("_a", "_b"))
    out = pd.DataFrame(
        {
            **{k: merged[k] for k in KEYS},
            "a": merged["value_a"],
            "a_ci_low": merged["ci_low_a"],
            "a_ci_high": merged["ci_high_a"],
            "a_kl": merged["kl_bits_a"],
            "b": merged["value_b"],
            "b_ci_low": merged["ci_low_b"],
            "b_ci_high": merged["ci_high_b"],
            "b_kl": merged["kl_bits_b"],
        }
    )
    out["delta"] = out["b"] - out["a"]
    order = {m: i for i, m in enumerate(HEADLINE_METRICS)}
    out["_m"] = out.metric.map(lambda m: order.get(m, len(order)))
    out["_s"] = (out.strategy != BASE_STRATEGY).astype(int)
    out = out.sort_values(["_m", "metric", "arm", "_s", "strategy", "context"]).drop(columns=["_m", "_s"])
    return out[COLUMNS].reset_index(drop=True)


def _v(x: Any, digits: int = 3) -> str:
    return "\u2014" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def compare_table(df: pd.DataFrame, name_a: Any, name_b: Any, show_ci: bool = False) -> Any:
    """One rich table per metric: arm, strategy, context, A, B, B - A and the KL pressure of each side."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = [
        Text(
            f"A = {name_a}\nB = {name_b}\nseed means; base model, or post-training at its last step (K = its "
            "KL in bits)"
        )
    ]
    for metric, g in df.groupby("metric", sort=False):
        table = Table(title=metric, title_justify="left", title_style="bold")
        for col, justify in (
            ("arm", "left"),
            ("strategy", "left"),
            ("context", "left"),
            ("A", "right"),
            ("B", "right"),
            ("B \u2212 A", "right"),
            ("K A/B", "right"),
        ):
            table.add_column(col, justify=justify, no_wrap=col != "arm")
        for r in g.itertuples(index=False):
            delta = r.delta
            colour = (
                ""
                if isinstance(delta, float) and (math.isnan(delta) or abs(delta) < 1e-12)
                else ("green" if delta > 0 else "red")
            )

            def cell(v: float, lo: float, hi: float) -> str:
                if isinstance(v, float) and math.isnan(v):
                    return "\u2014"
                return f"{_v(v)} [{_v(lo)}, {_v(hi)}]" if show_ci else _v(v)

            k = "0" if r.strategy == BASE_STRATEGY else f"{_v(r.a_kl, 1)}/{_v(r.b_kl, 1)}"
            table.add_row(
                r.arm,
                r.strategy,
                r.context,
                cell(r.a, r.a_ci_low, r.a_ci_high),
                cell(r.b, r.b_ci_low, r.b_ci_high),
                f"[{colour}]{_v(delta)}[/]" if colour else _v(delta),
                k,
            )
        parts.append(table)
    return Group(*parts)
