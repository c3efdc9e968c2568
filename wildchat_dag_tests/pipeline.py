"""Materialize the real assets against a real DuckDB file and an in-process Dagster instance."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
from dagster import AssetKey, DagsterInstance, Definitions

from wildchat_dag.core.redaction_rules import RedactionRules, load_rules
from wildchat_dag.definitions import build_assets, build_resources, wildchat_daily_job

INGEST = [AssetKey("raw_requests"), AssetKey("quarantined_log_lines")]
LINKING = [AssetKey("linked_conversations"), AssetKey("orphaned_requests")]
DETECTION = [AssetKey("pii_candidates"), AssetKey("pii_scanned_utterances")]
FREQUENCY = [AssetKey("redaction_rules"), AssetKey("pii_entity_frequency")]
ANONYMIZATION = [AssetKey("anonymized_conversations")]
TABLES = ("raw_requests", "quarantined_log_lines", "linked_conversations", "orphaned_requests")
# A test salt: real ones come from the environment, and these tests set it there.
TEST_SALT = "test-salt-0123456789abcdef"

SORT_KEYS = {
    "raw_requests": ["turn_id"],
    "quarantined_log_lines": ["source_file", "line_number"],
    "linked_conversations": ["conversation_id"],
    "orphaned_requests": ["turn_id", "partition_day"],
    "pii_candidates": ["partition_day", "content_sha256", "start", "end", "entity_type"],
    "pii_scanned_utterances": ["conversation_id", "utterance_index"],
    "anonymized_conversations": ["conversation_id"],
    "pii_entity_frequency": ["entity_type", "value_key"],
}


class Pipeline:
    def __init__(
        self,
        log_root: Path,
        database: Path,
        rules_path: Path | None = None,
        instance: DagsterInstance | None = None,
    ) -> None:
        self.log_root = log_root
        self.database = database
        self.rules_path = rules_path
        # The rules the assets below are built with, read when the pipeline is.
        self.rules: RedactionRules = load_rules(rules_path) if rules_path else load_rules()
        self.resources = build_resources(log_root=str(log_root), duckdb_path=str(database))
        self.defs = Definitions(
            assets=build_assets(rules_path),
            jobs=[wildchat_daily_job],
            resources=self.resources,
        )
        self.job = self.defs.resolve_job_def("wildchat_daily")
        self.instance = instance or DagsterInstance.ephemeral()

    def run(self, keys: list[AssetKey], partition: str | None, raise_on_error: bool = True):
        return self.job.execute_in_process(
            asset_selection=keys,
            partition_key=partition,
            instance=self.instance,
            raise_on_error=raise_on_error,
        )

    def ingest(self, *partitions: str) -> None:
        for p in partitions:
            self.run(INGEST, p)

    def link(self, *partitions: str) -> None:
        for p in partitions:
            self.run(LINKING, p)

    def detect(self, *partitions: str) -> None:
        for p in partitions:
            self.run(DETECTION, p)

    def count_frequencies(self):
        return self.run(FREQUENCY, None)

    def anonymize(self, *partitions: str) -> None:
        for p in partitions:
            self.run(ANONYMIZATION, p)

    def all_steps(self, *partitions: str) -> None:
        """Each stage over every day before the next, as the demo runs them."""
        self.ingest(*partitions)
        self.link(*partitions)
        self.detect(*partitions)
        self.count_frequencies()
        self.anonymize(*partitions)

    def table(self, name: str) -> pl.DataFrame:
        con = duckdb.connect(str(self.database), read_only=True)
        try:
            return con.sql(f"SELECT * FROM main.{name}").pl()
        finally:
            con.close()

    def snapshot(self, tables: tuple[str, ...] = TABLES) -> dict[str, pl.DataFrame]:
        """Every table, in a canonical row order, for comparing runs."""
        return {name: self.table(name).sort(SORT_KEYS[name]) for name in tables}
