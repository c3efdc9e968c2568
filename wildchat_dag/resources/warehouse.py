from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import polars as pl
from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field

from wildchat_dag.core.sql import query as run_query
from wildchat_dag.resources.duckdb_io import (
    DEFAULT_LOCK_TIMEOUT_S,
    DEFAULT_MEMORY_LIMIT,
    STREAMING_MEMORY_LIMIT,
    kept_open,
    locked_connection,
)


class Warehouse(ConfigurableResource):
    """SQL on the DuckDB file the IO manager writes: checks across partitions, and the tables an
    asset maintains itself (the incremental PII frequency)."""

    database: str = Field(description="Path to the DuckDB file; the same as the IO manager's.")
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    memory_limit: str = Field(
        default=DEFAULT_MEMORY_LIMIT,
        description="DuckDB's memory limit for these queries (the IO manager's too, unless its "
        "connection_config names another). DuckDB's own default is 80% of RAM, and a "
        "statistics pass over a 1M-conversation release then holds 10 GB; past the limit it "
        "evicts cached blocks or spills beside the file.",
    )

    streaming_memory_limit: str = Field(
        default=STREAMING_MEMORY_LIMIT,
        description="DuckDB's memory limit for the exports' reads, which pass over the release "
        "records once (the days' records, the takedown check, the card's facts, the version "
        "index): a larger cache only holds memory. At 250,000 conversations an export peaked "
        "at 3.3 GB under memory_limit's 2 GB, and at 2.0 GB under this 512 MB.",
    )

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # As the IO manager does: the file stays open between the run's transactions.
        self._kept = kept_open(self.database)
        self._kept.__enter__()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        self._kept.__exit__(None, None, None)

    @contextmanager
    def connect(self, streaming: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction under the file lock: committed on exit, rolled back on error.
        ``streaming``: under ``streaming_memory_limit``, for a read that is not read again."""
        config = {"memory_limit": self.streaming_memory_limit if streaming else self.memory_limit}
        with locked_connection(self.database, config, timeout_s=self.lock_timeout_s) as con:
            yield con

    def query(
        self,
        sql: str,
        parameters: dict | None = None,
        frames: dict[str, pl.DataFrame] | None = None,
        streaming: bool = False,
    ) -> pl.DataFrame:
        """Run ``sql``; ``frames`` are visible to it as tables of those names. ``streaming``:
        as ``connect``'s."""
        with self.connect(streaming) as con:
            return run_query(con, sql, parameters, frames)
