from __future__ import annotations

import polars as pl
from dagster import ConfigurableResource
from pydantic import Field

from wildchat_dag.resources.duckdb_io import DEFAULT_LOCK_TIMEOUT_S, locked_connection


class Warehouse(ConfigurableResource):
    """Read access to the DuckDB file the IO manager writes, for checks across partitions."""

    database: str = Field(description="Path to the DuckDB file; the same as the IO manager's.")
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S

    def query(self, sql: str, parameters: dict | None = None) -> pl.DataFrame:
        with locked_connection(self.database, timeout_s=self.lock_timeout_s) as con:
            return con.execute(sql, parameters or {}).pl()
