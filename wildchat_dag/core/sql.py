"""Running SQL on a DuckDB connection with polars frames as tables."""

from __future__ import annotations

import duckdb
import polars as pl


def query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    parameters: dict | None = None,
    frames: dict[str, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """Run ``sql``; each of ``frames`` is visible to it as a table of that name."""
    for name, frame in (frames or {}).items():
        con.register(name, frame)
    return con.execute(sql, parameters or {}).pl()
