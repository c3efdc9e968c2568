"""Materialize the real assets against a real DuckDB file and an in-process Dagster instance."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
from dagster import AssetKey, DagsterInstance, Definitions

from wildchat_dag.definitions import build_assets, build_resources
from wildchat_dag.defs.anonymization.redaction_rules import RedactionRules, load_rules
from wildchat_dag.defs.automation.jobs import wildchat_daily_job
from wildchat_dag.defs.checks.raw_ip_check import RAW_IP_CHECK
from wildchat_dag.defs.checks.table_checks import build_table_checks
from wildchat_dag.defs.ingest.assets import INGEST_ASSETS
from wildchat_dag.defs.ingest.message_texts import with_texts
from wildchat_dag.defs.release.resource import ReleaseFolder
from wildchat_dag.defs.takedowns.resource import TakedownLedger

INGEST = [AssetKey(name) for name in INGEST_ASSETS]
# Linking with the takedown mark every later step reads.
LINKING = [
    AssetKey("linked_conversations"),
    AssetKey("orphaned_requests"),
    AssetKey("withdrawn_conversations"),
]
DETECTION = [AssetKey("pii_candidates"), AssetKey("pii_scanned_utterances")]
FREQUENCY = [AssetKey("redaction_rules"), AssetKey("pii_entity_frequency")]
ANONYMIZATION = [AssetKey("anonymized_conversations")]
GEO = [AssetKey("user_turn_locations"), AssetKey("conversation_locations")]
LANGUAGE = [AssetKey("utterance_languages"), AssetKey("conversation_languages")]
MODERATION = [AssetKey("openai_moderation"), AssetKey("detoxify_moderation")]
TOXICITY = [AssetKey("utterance_toxicity"), AssetKey("conversation_toxicity")]
# A day's release records with the statistics the release cut merges (built together, as the
# nightly job and the demo build them).
RELEASE_RECORDS = [AssetKey("release_records"), AssetKey("release_day_statistics")]
EXPORTS = [AssetKey("release_statistics"), AssetKey("public_release"), AssetKey("full_release")]
TABLES = (
    "raw_requests",
    "raw_message_texts",
    "quarantined_log_lines",
    "linked_conversations",
    "orphaned_requests",
)

SORT_KEYS = {
    "raw_requests": ["turn_id"],
    "raw_message_texts": ["partition_day", "text_sha256"],
    "quarantined_log_lines": ["source_file", "line_number"],
    "linked_conversations": ["conversation_id"],
    "orphaned_requests": ["turn_id", "partition_day"],
    "pii_candidates": ["partition_day", "content_sha256", "start", "end", "entity_type"],
    "pii_scanned_utterances": ["conversation_id", "utterance_index"],
    "anonymized_conversations": ["conversation_id"],
    "pii_entity_frequency": ["entity_type", "value_key"],
    "user_turn_locations": ["conversation_id", "utterance_index"],
    "conversation_locations": ["conversation_id"],
    "utterance_languages": ["conversation_id", "utterance_index"],
    "conversation_languages": ["conversation_id"],
    "openai_moderation": ["conversation_id", "utterance_index"],
    "detoxify_moderation": ["conversation_id", "utterance_index"],
    "utterance_toxicity": ["conversation_id", "utterance_index"],
    "conversation_toxicity": ["conversation_id"],
}


class Pipeline:
    def __init__(
        self,
        log_root: Path,
        database: Path,
        rules_path: Path | None = None,
        instance: DagsterInstance | None = None,
        geoip_path: Path | None = None,
        resources: dict | None = None,
        table_checks: bool = False,
    ) -> None:
        self.log_root = log_root
        self.database = database
        self.rules_path = rules_path
        # The rules the assets below are built with, read when the pipeline is.
        self.rules: RedactionRules = load_rules(rules_path) if rules_path else load_rules()
        self.resources = build_resources(
            log_root=str(log_root),
            duckdb_path=str(database),
            geoip_path=str(geoip_path) if geoip_path else None,
        )
        self.releases = database.parent / "releases"
        self.resources["release_folder"] = ReleaseFolder(root=str(self.releases))
        # Each pipeline its own (empty) takedown ledger, never the home folder's.
        self.ledger = database.parent / "takedowns.jsonl"
        self.resources["takedowns"] = TakedownLedger(path=str(self.ledger))
        # Replacements for the embedded defaults (the moderation APIs, mostly).
        self.resources.update(resources or {})
        assets = build_assets(rules_path)
        self.defs = Definitions(
            assets=assets,
            # The checks on every table (schema, conservation, PII, quarantine), when asked for.
            asset_checks=build_table_checks(assets, self.rules) if table_checks else None,
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

    def locate(self, *partitions: str) -> None:
        for p in partitions:
            self.run(GEO, p)

    def identify_languages(self, *partitions: str) -> None:
        for p in partitions:
            self.run(LANGUAGE, p)

    def moderate(self, *partitions: str, raise_on_error: bool = True):
        """Both scorers, then the toxic flags; the last day's result."""
        result = None
        for p in partitions:
            result = self.run(MODERATION + TOXICITY, p, raise_on_error=raise_on_error)
        return result

    def release(self, *partitions: str):
        """The day's release records, then the statistics and both exports over every day."""
        for p in partitions:
            self.run(RELEASE_RECORDS, p)
        return self.run(EXPORTS, None)

    def all_steps(self, *partitions: str) -> None:
        """The spine and privacy stages, each over every day before the next, in the demo's
        order (enrichment: ``locate`` and ``identify_languages``)."""
        self.ingest(*partitions)
        self.link(*partitions)
        self.detect(*partitions)
        self.count_frequencies()
        self.anonymize(*partitions)

    def through_release(self, *partitions: str) -> None:
        """Every stage, in the demo's order, through the statistics and both exports."""
        self.all_steps(*partitions)
        self.locate(*partitions)
        self.identify_languages(*partitions)
        self.moderate(*partitions)
        self.release(*partitions)

    def table(self, name: str) -> pl.DataFrame:
        con = duckdb.connect(str(self.database), read_only=True)
        try:
            return con.sql(f"SELECT * FROM main.{name}").pl()
        finally:
            con.close()

    def requests(self) -> pl.DataFrame:
        """Every stored request with its texts put back, as ingest parsed it."""
        return with_texts(self.table("raw_requests"), self.table("raw_message_texts"))

    def snapshot(self, tables: tuple[str, ...] = TABLES) -> dict[str, pl.DataFrame]:
        """Every table, in a canonical row order, for comparing runs."""
        return {name: self.table(name).sort(SORT_KEYS[name]) for name in tables}


def partitions_of(log_root: Path) -> list[str]:
    return sorted(p.name for p in log_root.iterdir() if p.is_dir())


def write_day_with_an_email(log_root: Path, day: date, email: str) -> None:
    """One generated day with PII (20 conversations), plus a hand-made conversation giving
    ``email`` with a cue, which the rules redact."""
    from wildchat_dag.loggen.generator import FeatureRates, generate_logs
    from wildchat_dag_tests.conftest import RequestFactory

    generate_logs(
        log_root,
        start_date=day,
        days=1,
        conversations_per_day=20,
        seed=5,
        rates=FeatureRates(pii=0.3),
    )
    factory = RequestFactory()
    factory.next_id = 10_000_000
    mail = factory.first(
        f"Please send the invoice. You can reach me at {email} anytime.", "Sure.", f"{day}T08:00"
    )
    write_json_lines(log_root / day.isoformat(), [mail])


def write_json_lines(folder: Path, requests: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requests.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in requests), encoding="utf-8"
    )


def materializations(p: Pipeline, key: str) -> list:
    return [
        r.asset_materialization
        for r in p.instance.fetch_materializations(AssetKey(key), limit=1000).records
    ]


def check_results(result, name: str = RAW_IP_CHECK):
    return [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == name
    ]


def step_failure(result, step: str):
    """The user failure data of ``step``'s one STEP_FAILURE in an in-process result."""
    [failure] = [
        e.event_specific_data.user_failure_data
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE" and e.step_key == step
    ]
    return failure
