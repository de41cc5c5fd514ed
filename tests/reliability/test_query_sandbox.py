"""`hyperstition query` sees the run's `results` table and nothing else: no writes, no file reads, no extensions."""

from __future__ import annotations

import pandas as pd
import pytest

from hyperstition.analysis.store import QueryError, query

ESCAPES = {
    "copy over results": "COPY (SELECT 1 AS x) TO '{run}/results.parquet' (FORMAT parquet)",
    "copy to a new file": "COPY results TO '{tmp}/leak.csv'",
    "export database": "EXPORT DATABASE '{tmp}/export'",
    "attach a database": "ATTACH '{tmp}/new.duckdb' AS other",
    "read_csv": "SELECT * FROM read_csv('/etc/passwd')",
    "read_text": "SELECT * FROM read_text('/etc/passwd')",
    "read_parquet of another file": "SELECT * FROM read_parquet('{run}/cells/*/seed-0/base/rows.parquet')",
    "a file path as a table": "SELECT * FROM '/etc/passwd'",
    "glob": "SELECT * FROM glob('/etc/*')",
    "install an extension": "INSTALL httpfs",
    "load an extension": "LOAD httpfs",
    "unlock the configuration": "SET enable_external_access = true",
    "a Python variable of the caller": "SELECT * FROM secret_frame",
    "a Python variable of query()": "SELECT * FROM df",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escape_is_refused_and_changes_nothing(name, run_copy, tmp_path):
    secret_frame = pd.DataFrame({"secret": [42]})  # noqa: F841 - what a replacement scan would find
    results = (run_copy / "results.parquet").read_bytes()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(QueryError) as info:
        query(run_copy, ESCAPES[name].format(run=run_copy, tmp=tmp_path))
    assert "\n" not in str(info.value)
    assert (run_copy / "results.parquet").read_bytes() == results
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_ordinary_queries_still_work(finished_run):
    df = query(finished_run, "SELECT strategy, count(*) AS n FROM results GROUP BY strategy ORDER BY strategy")
    assert list(df.strategy) == ["base", "sft"] and (df.n > 0).all()
    # Tables made inside the sandbox live and die with it.
    assert query(finished_run, "CREATE TABLE t AS SELECT 1 AS x; SELECT * FROM t").x.tolist() == [1]


def test_empty_sql_is_one_line(finished_run):
    with pytest.raises(QueryError, match="SQL is empty"):
        query(finished_run, "  ")
