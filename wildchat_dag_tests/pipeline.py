"""Materialize the real assets against a real DuckDB file and an in-process Dagster instance."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
from dagster import AssetKey, DagsterInstance, materialize

from wildchat_dag.definitions import all_assets, build_resources

INGEST = [AssetKey("raw_requests"), AssetKey("quarantined_log_lines")]
LINKING = [AssetKey("linked_conversations"), AssetKey("orphaned_requests")]
TABLES = ("raw_requests", "quarantined_log_lines", "linked_conversations", "orphaned_requests")


class Pipeline:
    def __init__(self, log_root: Path, database: Path) -> None:
        self.database = database
        self.resources = build_resources(log_root=str(log_root), duckdb_path=str(database))
        self.instance = DagsterInstance.ephemeral()

    def run(self, keys: list[AssetKey], partition: str, raise_on_error: bool = True):
        return materialize(
            all_assets,
            selection=keys,
            partition_key=partition,
            resources=self.resources,
            instance=self.instance,
            raise_on_error=raise_on_error,
        )

    def ingest(self, *partitions: str) -> None:
        for p in partitions:
            self.run(INGEST, p)

    def link(self, *partitions: str) -> None:
        for p in partitions:
            self.run(LINKING, p)

    def table(self, name: str) -> pl.DataFrame:
        con = duckdb.connect(str(self.database), read_only=True)
        try:
            return con.sql(f"SELECT * FROM main.{name}").pl()
        finally:
            con.close()

    def snapshot(self) -> dict[str, pl.DataFrame]:
        """Every table, in a canonical row order, for comparing runs."""
        keys = {
            "raw_requests": ["turn_id"],
            "quarantined_log_lines": ["source_file", "line_number"],
            "linked_conversations": ["conversation_id"],
            "orphaned_requests": ["turn_id", "partition_day"],
        }
        return {name: self.table(name).sort(keys[name]) for name in TABLES}
