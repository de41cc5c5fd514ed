"""The results store: `results.parquet` and `samples.parquet` collected from the finished cells (with the seed
aggregates and the rows each experiment's analysis adds), read back, and queried with SQL.

`collect_results` is the one place results are computed from the cells; the report only reads what it wrote.
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
from ..schema import RESULT_COLUMNS, TOY_RESULTS_FILE
from ..textsafe import plain
from .aggregate import seed_rows, with_aggregates, with_curve_starts
from .catalog import plugin_for
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
    # One DuckDB thread: the results table is small, and no worker thread can outlive an interrupted query (a worker
    # still scanning at exit aborts the process instead of exiting 130).
    settings = {"autoinstall_known_extensions": False, "autoload_known_extensions": False, "threads": 1}
    con = duckdb.connect(":memory:", config=settings)
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
# Collecting the cells' rows

GENERATED_KINDS = ("sample", "samples", "generation", "generated")  # eval_items kinds holding model-generated responses


def gather_results(run_dir: str | os.PathLike, samples_per_cell: int = 0) -> tuple[pd.DataFrame | None, list[dict]]:
    """The rows of every finished job (with seed aggregates and the experiment's analyses) and a response sample,
    in memory; (None, samples) when nothing has finished. Writes nothing."""
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
    control = (read_json_object(run_dir / "arms.json") or {}).get("control")
    df = with_aggregates(df[list(RESULT_COLUMNS)], control)  # seed aggregates (seed null) after the per-seed rows
    return _with_analyses(df, read_run_json(run_dir).get("experiment"), control), samples


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


def _with_analyses(df: pd.DataFrame, experiment: str | None, control: str | None) -> pd.DataFrame:
    """`df` followed by the rows the experiment's registered analyses add (seed null, like every aggregate)."""
    per_seed = with_curve_starts(seed_rows(df))
    extra = [analysis(per_seed, control) for analysis in plugin_for(experiment or "").analyses]
    extra = [e for e in extra if len(e)]
    if not extra:
        return df
    added = pd.concat(extra, ignore_index=True)
    added.insert(0, "run", df["run"].iloc[0])
    return pd.concat([df, added.astype(df.dtypes.to_dict())[list(df.columns)]], ignore_index=True)


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
            items = read_parquet_file(path)
        except Exception:  # a sample is optional (and never read from a special file)
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


def read_results(run_dir: str | os.PathLike) -> pd.DataFrame:
    """RUN/results.parquet as written, or a one-line RunDirError: for readers that must not recompute (the report)."""
    path = Path(run_dir) / "results.parquet"
    try:
        df = read_parquet_file(path)
    except BadFileError:
        raise
    except FileNotFoundError:
        raise RunDirError(
            f"{path}: missing (no cell has finished yet, or it was deleted); `hyperstition run` writes it"
        ) from None
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise RunDirError(
            f"{path}: unreadable ({type(err).__name__}); `hyperstition run` (or `hyperstition query`) collects it "
            "again from the cells"
        ) from None
    if not set(RESULT_COLUMNS) <= set(df.columns):
        raise RunDirError(
            f"{path}: not a results table (columns {list(df.columns)[:6]}...); `hyperstition run` rewrites it"
        )
    if df.empty:  # a run writes results.parquet only once a cell has rows: an empty one is damaged
        raise RunDirError(
            f"{path}: has no rows (no finished evaluation or post-training cells yet, or it was damaged); "
            "`hyperstition run` collects it again from the cells"
        )
    return df


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
