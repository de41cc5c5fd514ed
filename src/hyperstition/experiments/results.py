"""The results store: SQL over `results.parquet`, and seed-aggregated views of it for the report and `compare`.

Aggregation rule everywhere: a number for an (arm, strategy, context, metric) is the mean over seeds with the
t interval over seed means (`stats.ESTIMATOR_DESCRIPTION`); with a single seed the CI is the within-seed CI the
stage reported (bootstrap over prompts or Wilson), so a one-seed run still shows its uncertainty. Functions here
take the per-seed rows: `results.parquet` also holds the persisted aggregates (seed null, `aggregate.py`), which
`seed_rows` removes.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import ConfigError, UserError
from ..io import BadFileError, check_regular_file, check_replaceable, write_parquet_atomic
from ..schema import BASE_STRATEGY, RESULT_COLUMNS, TOY_RESULTS_FILE
from ..textsafe import plain
from . import stats
from .aggregate import paired_estimate, seed_estimate, seed_rows, with_aggregates
from .finished import check_done, read_json_object
from .rundir import ROWS, RunDirError, planned_jobs, read_run_json


def _read_toy_results(path: Path) -> pd.DataFrame:
    try:
        return read_parquet_file(path)
    except BadFileError:
        raise
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise QueryError(
            f"{path}: unreadable ({type(err).__name__}); rerun `hyperstition toy fit` to rewrite it"
        ) from None


class QueryError(UserError, ValueError):
    """SQL that DuckDB rejected."""


# Set once the run's table is loaded, then locked: the query sees that table and nothing else. No file reads or
# writes (COPY TO, ATTACH, read_csv, read_text, glob, EXPORT), no extensions, no Python variables, no settings.
SANDBOX_SETTINGS = ("python_enable_replacements = false", "enable_external_access = false", "lock_configuration = true")


def query(run_dir: str | os.PathLike, sql: str) -> pd.DataFrame:
    """Run `sql` over the run's results (table `results`) in a locked-down, in-memory DuckDB."""
    import duckdb

    if not sql.strip():
        raise QueryError('SQL is empty; e.g. "select metric, avg(value) from results group by metric"')
    read_run_json(run_dir)
    df = load_results(run_dir, write=False)
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        con.register("results_frame", df)
        con.execute("CREATE TABLE results AS SELECT * FROM results_frame")
        con.unregister("results_frame")
        toy_path = Path(run_dir) / TOY_RESULTS_FILE
        if toy_path.exists():  # written by `hyperstition toy fit`
            con.register("toy_frame", _read_toy_results(toy_path))
            con.execute("CREATE TABLE toy_results AS SELECT * FROM toy_frame")
            con.unregister("toy_frame")
        for setting in SANDBOX_SETTINGS:
            con.execute(f"SET {setting}")
        cursor = con.cursor()  # a busy connection refuses every other call, interrupt() included; a cursor does not
        return interruptible(lambda: _select(cursor, sql), cursor.interrupt)
    except duckdb.InterruptException:  # Ctrl-C inside DuckDB: an interrupt, like anywhere else
        raise KeyboardInterrupt from None
    except RuntimeError as err:
        if "interrupted" in str(err).lower():
            raise KeyboardInterrupt from None
        raise
    except duckdb.PermissionException as err:
        raise QueryError(
            f"refused (a query sees only the table `results`: no files, no extensions): {str(err).splitlines()[0]}"
        ) from None
    except duckdb.Error as err:
        raise QueryError(f"SQL error: {str(err).splitlines()[0]}") from None
    finally:
        with contextlib.suppress(duckdb.Error):  # after an interrupt DuckDB may still call itself busy; it is freed
            con.close()


def _select(con: Any, sql: str) -> pd.DataFrame:
    result = con.execute(sql)
    if result is None or result.description is None:  # None: the SQL held no statement (only a comment)
        raise QueryError("the SQL returned no rows or columns; a query over `results` must be a SELECT")
    return result.fetchdf()


def interruptible(work: Any, interrupt: Any) -> Any:
    """`work()` in a helper thread, so that Ctrl-C reaches this (main) thread while DuckDB computes: a signal is
    handled only between Python bytecodes, never inside a C call. On Ctrl-C, `interrupt()` stops the work."""
    import threading

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as err:  # handed to the caller's thread as it is
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except KeyboardInterrupt:
        interrupt()
        thread.join()  # stops within moments of the interrupt; a second Ctrl-C ends the wait
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


def rich_table(df: pd.DataFrame, limit: int = 200, title: str | None = None) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col])
        table.add_column(plain(col), justify="right" if numeric else "left")
    for row in df.head(limit).itertuples(index=False):
        table.add_row(*(plain(_fmt(v)) for v in row))  # data, never markup or terminal codes
    return table


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}"
    return str(v)


# ---------------------------------------------------------------------------------------------------------------
# Seed aggregation


def _estimate(values: np.ndarray, lows: np.ndarray, highs: np.ndarray, metric: str) -> tuple[float, float, float, int]:
    """The persisted aggregates' rule (`aggregate.seed_estimate`), plus the number of seeds."""
    value, lo, hi = seed_estimate(values, lows, highs, metric)
    return value, lo, hi, int(np.sum(~np.isnan(values)))


def endpoint_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (arm, seed, strategy, context, metric): the base evaluation for strategy `base`, the last step
    of the curve for post-training strategies."""
    df = seed_rows(df)
    if df.empty:
        return df
    last = df.groupby(["arm", "seed", "strategy"])["step"].transform("max")
    return df[df["step"] == last]


def summarize(df: pd.DataFrame, by: tuple[str, ...] = ("arm", "strategy", "context", "metric")) -> pd.DataFrame:
    """Mean over seeds with its t interval for each group of endpoint rows; adds n (seeds) and mean kl_bits/step."""
    ends = endpoint_rows(df)
    out = []
    for key, g in ends.groupby(list(by), sort=False):
        g = (
            g.groupby("seed")
            .agg(
                value=("value", "mean"),
                ci_low=("ci_low", "mean"),
                ci_high=("ci_high", "mean"),
                kl_bits=("kl_bits", "mean"),
                step=("step", "max"),
            )
            .reset_index()
        )
        metric = dict(zip(by, key)).get("metric", "")
        value, lo, hi, n = _estimate(
            g["value"].to_numpy(float), g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float), metric
        )
        out.append(
            {
                **dict(zip(by, key)),
                "value": value,
                "ci_low": lo,
                "ci_high": hi,
                "n": n,
                "kl_bits": float(g["kl_bits"].mean()),
                "step": int(g["step"].max()),
            }
        )
    return pd.DataFrame(out, columns=[*by, "value", "ci_low", "ci_high", "n", "kl_bits", "step"])


def per_seed(df: pd.DataFrame, arm: str, strategy: str, context: str, metric: str) -> dict[int, float]:
    ends = endpoint_rows(df)
    sel = ends[(ends.arm == arm) & (ends.strategy == strategy) & (ends.context == context) & (ends.metric == metric)]
    return {int(s): float(v) for s, v in sel.groupby("seed")["value"].mean().items()}


def per_seed_with_ci(df: pd.DataFrame, arm: str, strategy: str, context: str, metric: str) -> dict[int, tuple]:
    """seed -> (value, ci_low, ci_high) of the endpoint rows."""
    ends = endpoint_rows(df)
    sel = ends[(ends.arm == arm) & (ends.strategy == strategy) & (ends.context == context) & (ends.metric == metric)]
    means = sel.groupby("seed")[["value", "ci_low", "ci_high"]].mean()
    return {int(s): (float(r.value), float(r.ci_low), float(r.ci_high)) for s, r in means.iterrows()}


def paired_vs_control(df: pd.DataFrame, control: str, metric: str, strategy: str = BASE_STRATEGY) -> pd.DataFrame:
    """Each arm minus the control arm, paired by seed, per context: mean difference with its t interval (floored by
    the within-seed intervals for proportions; within-seed intervals in quadrature for one seed)."""
    rows = []
    sub = df[df.metric == metric]
    for context in sorted(sub.context.unique()):
        ctrl = per_seed_with_ci(df, control, strategy, context, metric)
        for arm in _arms_in_order(df):
            if arm == control:
                continue
            treated = per_seed_with_ci(df, arm, strategy, context, metric)
            shared = set(treated) & set(ctrl)
            if not shared:
                continue
            value, lo, hi = paired_estimate(treated, ctrl, metric)  # the persisted aggregates' rule
            rows.append(
                {
                    "arm": arm,
                    "context": context,
                    "metric": metric,
                    "strategy": strategy,
                    "diff": value,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": len(shared),
                }
            )
    return pd.DataFrame(rows, columns=["arm", "context", "metric", "strategy", "diff", "ci_low", "ci_high", "n"])


def _arms_in_order(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["arm"]))


def curves(
    df: pd.DataFrame, arm: str, strategy: str, context: str, metric: str
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per seed: (kl, value, ci_low, ci_high) in step order, starting from the base evaluation at K = 0 (the
    curve's own step-0 rows, if any, are replaced by it: one measurement on the same items)."""
    out = {}
    df = seed_rows(df)
    sel = df[(df.arm == arm) & (df.context == context) & (df.metric == metric)]
    for s, g in sel.groupby("seed"):
        curve = g[(g.strategy == strategy) & (g.step != 0) & (g.kl_bits > 0)]  # K <= 0 has no place on a log axis
        if curve.empty:
            continue
        base = g[g.strategy == BASE_STRATEGY].assign(kl_bits=0.0, step=0)
        curve = pd.concat([base, curve]).sort_values("step")
        out[int(s)] = (
            curve.kl_bits.to_numpy(float),
            curve.value.to_numpy(float),
            curve.ci_low.to_numpy(float),
            curve.ci_high.to_numpy(float),
        )
    return out


def mean_curve(seed_curves: dict[int, tuple], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds on `grid` with the t interval per grid point (within-seed CI when there is one seed)."""
    if not seed_curves:
        nan = np.full(len(grid), np.nan)
        return nan, nan, nan
    vals = np.array([stats.interpolate_curve(c[0], c[1], grid) for c in seed_curves.values()])
    if len(seed_curves) == 1:
        (c,) = seed_curves.values()
        return vals[0], stats.interpolate_curve(c[0], c[2], grid), stats.interpolate_curve(c[0], c[3], grid)
    mean, lo, hi, _ = stats.t_interval(vals.T)
    return mean, lo, hi


def curve_grid(all_curves: list[dict[int, tuple]], n: int = 32) -> np.ndarray:
    """Log-spaced pressures inside the range every curve of every mapping reached."""
    kls = [c[0] for curves_ in all_curves for c in curves_.values()]
    return stats.log_kl_grid(kls, n=n) if kls else np.array([])


STICKINESS_COLUMNS = [
    "arm",
    "K",
    "S",
    "ci_low",
    "ci_high",
    "delta",
    "delta0",
    "delta0_low",
    "delta0_high",
    "n",
    "reason",
]


def stickiness_frame(
    df: pd.DataFrame, control: str, strategy: str, context: str, metric: str, n_grid: int = 32
) -> pd.DataFrame:
    """S(K) of every arm against the control on the common log-KL grid, Fieller intervals; columns
    STICKINESS_COLUMNS (`reason` says why S is undefined or has no interval)."""
    ctrl = curves(df, control, strategy, context, metric)
    rows = []
    if not ctrl:
        return pd.DataFrame(columns=STICKINESS_COLUMNS)
    arm_curves = {arm: curves(df, arm, strategy, context, metric) for arm in _arms_in_order(df) if arm != control}
    grid = curve_grid([ctrl, *arm_curves.values()], n=n_grid)
    for arm, c in arm_curves.items():
        if not c or not set(c) & set(ctrl) or not len(grid):
            continue
        st = stats.stickiness({s: v[:2] for s, v in c.items()}, {s: v[:2] for s, v in ctrl.items()}, grid)
        for i, k in enumerate(st.grid):
            rows.append(
                {
                    "arm": arm,
                    "K": k,
                    "S": st.s[i],
                    "ci_low": st.ci_low[i],
                    "ci_high": st.ci_high[i],
                    "delta": st.delta[i],
                    "delta0": st.delta0,
                    "delta0_low": st.delta0_low,
                    "delta0_high": st.delta0_high,
                    "n": st.n,
                    "reason": st.reason,
                }
            )
    return pd.DataFrame(rows, columns=STICKINESS_COLUMNS)


def load(run_dir: str | os.PathLike) -> pd.DataFrame:
    return load_results(Path(run_dir))


# ---------------------------------------------------------------------------------------------------------------
# Collecting the cells' rows

GENERATED_KINDS = ("sample", "samples", "generation", "generated")  # eval_items kinds holding model-generated responses


def gather_results(run_dir: str | os.PathLike, samples_per_cell: int = 0) -> tuple[pd.DataFrame | None, list[dict]]:
    """The rows of every finished job (with seed aggregates) and a response sample, in memory; (None, []) when
    nothing has finished. Writes nothing."""
    run_dir = Path(run_dir)
    jobs, _ = planned_jobs(run_dir)
    frames, samples = [], []
    for job in jobs:
        cell = run_dir / job["path"]
        if not check_done(run_dir, cell, job["config_hash"]).finished:
            continue  # unfinished, or its outputs do not verify: `status` and the next `run` say which and why
        if (cell / ROWS).exists():
            frames.append(_read_rows(cell / ROWS))
        if job["kind"] != "pretrain" and samples_per_cell:
            samples.extend(_sample_items(cell, job, samples_per_cell))
    if not frames:
        return None, samples
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "run", run_dir.resolve().name)
    df = with_aggregates(  # seed aggregates (seed null) after the per-seed rows
        df[list(RESULT_COLUMNS)], (read_json_object(run_dir / "arms.json") or {}).get("control")
    )
    return df, samples


def collect_results(run_dir: str | os.PathLike, samples_per_cell: int = 4) -> Path | None:
    """Concatenate the rows of every finished job into RUN/results.parquet (and a response sample into
    RUN/samples.parquet). Returns the results path, or None when nothing has finished."""
    run_dir = Path(run_dir)
    df, samples = gather_results(run_dir, samples_per_cell)
    if df is None:
        return None
    path = run_dir / "results.parquet"
    write_parquet_atomic(path, df)
    cols = ["arm", "seed", "strategy", "kind", "context", "prompt", "response", "label"]
    sample_df = pd.DataFrame(samples, columns=cols) if samples else pd.DataFrame(columns=cols)
    write_parquet_atomic(run_dir / "samples.parquet", sample_df.astype({c: "string" for c in cols if c != "seed"}))
    return path


def read_parquet_file(path: Path) -> pd.DataFrame:
    """A Parquet file that must be a regular file (a FIFO or device there would block the reader forever)."""
    check_regular_file(path)
    return pd.read_parquet(path)


def _read_rows(path: Path) -> pd.DataFrame:
    try:
        return read_parquet_file(path)
    except BadFileError:
        raise
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise RunDirError(
            f"{path}: unreadable ({type(err).__name__}); rerun `hyperstition run` to recompute the cell"
        ) from None


def _sample_items(cell: Path, job: dict, n: int) -> list[dict]:
    out = []
    for path in sorted(cell.rglob("eval_items.parquet")):
        try:
            items = pd.read_parquet(path)
        except Exception:  # a sample is optional
            continue
        if "response" not in items.columns:
            continue
        items = items[items["response"].notna() & (items["response"].astype(str).str.len() > 0)]
        if "kind" in items.columns and items["kind"].isin(GENERATED_KINDS).any():
            items = items[items["kind"].isin(GENERATED_KINDS)]  # sampled responses, not scored reference texts
        if items.empty:
            continue
        # Round-robin over contexts so both observed and unobserved responses are shown.
        groups = [g for _, g in items.groupby("context", sort=True)] if "context" in items.columns else [items]
        picked = []
        i = 0
        while len(picked) < n and any(i < len(g) for g in groups):
            for g in groups:
                if i < len(g) and len(picked) < n:
                    picked.append(g.iloc[i])
            i += 1
        for row in picked:
            out.append(
                {
                    "arm": job["arm"],
                    "seed": job["seed"],
                    "strategy": job["strategy"],
                    **{
                        c: (None if c not in row.index or pd.isna(row[c]) else str(row[c]))
                        for c in ("kind", "context", "prompt", "response", "label")
                    },
                }
            )
        break
    return out


def stored_results(run_dir: Path) -> tuple[pd.DataFrame | None, str]:
    """RUN/results.parquet when it is a readable results table, else (None, why not)."""
    path = run_dir / "results.parquet"
    if not path.exists() and not path.is_symlink():
        return None, f"{path.name} is missing"
    try:
        df = read_parquet_file(path)
    except BadFileError:
        return None, f"{path.name} is not a regular file"
    except Exception:  # pyarrow raises several types for a damaged file
        return None, f"{path.name} is unreadable"
    if not set(RESULT_COLUMNS) <= set(df.columns):
        return None, f"{path.name} is not a results table"
    if df.empty:  # a run writes results.parquet only once a cell has rows: an empty one is damaged
        return None, f"{path.name} has no rows"
    return df, ""


def load_results(run_dir: str | os.PathLike, write: bool = True) -> pd.DataFrame:
    """The run's results as a DataFrame, re-collected from the cells when results.parquet is missing, unreadable
    or not a results table (it is derived data: the cells' rows are the record). `write=False` (query, compare)
    reads the cells' rows in memory and leaves the run directory as it was."""
    run_dir = Path(run_dir)
    read_run_json(run_dir)
    df, why = stored_results(run_dir)
    if df is not None:
        return df
    if write:
        check_replaceable(run_dir / "results.parquet")  # a FIFO or device there is named, not written over
        collected = collect_results(run_dir)
        df = pd.read_parquet(collected) if collected is not None else None
        if df is not None:
            print(f"hyperstition: {why}; re-collected it from the cells", file=sys.stderr)
    else:
        print(f"hyperstition: {why}; read the finished cells' rows in memory (nothing written)", file=sys.stderr)
        df, _ = gather_results(run_dir)
    if df is None:
        raise ConfigError(f"{run_dir}: no finished evaluation or post-training cells yet, so no results")
    return df
