"""The asset checks on the tables (wildchat_dag/defs/checks/table_checks.py): a clean run passes
every one, and real damage to a real warehouse makes the right one fail, saying where. The core
rules are also tested on their own, with no Dagster instance."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey, AssetsDefinition, DagsterEventType

from wildchat_dag import settings
from wildchat_dag.core.schema import ANONYMIZED_CONVERSATIONS_SCHEMA, partition_day_value
from wildchat_dag.definitions import build_assets
from wildchat_dag.defs.anonymization.pii_frequency import FrequencyStore
from wildchat_dag.defs.anonymization.redaction import Decision
from wildchat_dag.defs.anonymization.redaction_rules import load_rules
from wildchat_dag.defs.checks.table_checks import (
    CONSERVATION_CHECK,
    PII_CHECK,
    QUARANTINE_CHECK,
    SCHEMA_CHECK,
)
from wildchat_dag.defs.checks.table_rules import (
    CANDIDATES_SQL,
    NOT_TABLES,
    SCANNED_SQL,
    STORED_COLUMNS_SQL,
    TABLES,
    compare_schema,
    conservation,
    duckdb_columns,
    quarantine_rate,
    redaction_decisions,
    rescan_released,
    rescan_rules,
    values_left,
)
from wildchat_dag.defs.pii_detection.pii_detection import DetectorSettings, PiiDetector
from wildchat_dag.defs.release.release_schema import RELEASE_RECORDS_SCHEMA
from wildchat_dag.resources.warehouse import Warehouse
from wildchat_dag_tests.conftest import TEST_SALT, RequestFactory
from wildchat_dag_tests.pipeline import (
    INGEST,
    RELEASE_RECORDS,
    Pipeline,
    check_results,
    partitions_of,
    write_day_with_an_email,
    write_json_lines,
)

DAY = date(2024, 6, 3)
EMAIL = "maria.lopez77@gmail.com"
EMAIL_PLACEHOLDER = "<PRESIDIO_ANONYMIZED_EMAIL_ADDRESS>"
MY_CHECKS = {
    SCHEMA_CHECK,
    CONSERVATION_CHECK,
    PII_CHECK,
    QUARANTINE_CHECK,
    "no_raw_ip_addresses",
    "no_raw_values_in_instance",
}


# -- a real run over generated logs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> Iterator[Pipeline]:
    """One generated day with PII, plus a hand-made conversation giving an e-mail address with
    a cue, through every step with the table checks on."""
    tmp = tmp_path_factory.mktemp("table_checks")
    log_root = tmp / "logs"
    write_day_with_an_email(log_root, DAY, EMAIL)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WILDCHAT_IP_SALT", TEST_SALT)
        env.delenv("WILDCHAT_MODE", raising=False)
        env.delenv("WILDCHAT_QUARANTINE_WARN_RATE", raising=False)
        p = Pipeline(log_root, tmp / "w.duckdb", table_checks=True)
        days = partitions_of(log_root)
        p.through_release(*days)
        yield p


def evaluations(p: Pipeline) -> list:
    """Every check evaluation the instance recorded, oldest first."""
    found = []
    for run in reversed(p.instance.get_runs()):
        entries = p.instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        found += [entry.dagster_event.event_specific_data for entry in entries]
    return found


def copy_of(p: Pipeline, tmp_path: Path) -> Pipeline:
    """The same warehouse, copied, to damage; on the same instance (ingest's line counts)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(p.database, tmp_path / "w.duckdb")
    return Pipeline(p.log_root, tmp_path / "w.duckdb", instance=p.instance, table_checks=True)


def run_checks(p: Pipeline, checks: list[tuple[str, str]], partition: str | None = DAY.isoformat()):
    """Only the named checks (asset, check), nothing materialized."""
    keys = {AssetCheckKey(AssetKey(asset), name) for asset, name in checks}
    job = p.job.get_subset(asset_selection=set(), asset_check_selection=keys)
    return job.execute_in_process(
        partition_key=partition, instance=p.instance, raise_on_error=False
    )


def only(result, name: str, asset: str):
    [evaluation] = [e for e in check_results(result, name) if e.asset_key == AssetKey(asset)]
    return evaluation


def metadata_text(evaluation) -> str:
    return json.dumps({k: str(getattr(v, "value", v)) for k, v in evaluation.metadata.items()})


def execute(con_path: Path, sql: str, parameters: dict | None = None) -> None:
    con = duckdb.connect(str(con_path))
    try:
        con.execute(sql, parameters or {})
    finally:
        con.close()


def test_every_check_runs_and_passes_on_a_clean_run(checked):
    graph = checked.defs.resolve_asset_graph()
    mine = {k for c in checked.defs.asset_checks for k in c.check_keys}
    assert {k.name for k in mine} == MY_CHECKS
    # One schema check per table, and nothing on the rules file or the export folders.
    assert {k.asset_key.to_user_string() for k in mine if k.name == SCHEMA_CHECK} == set(TABLES)
    blocking = {(k.asset_key.to_user_string(), k.name) for k in mine if graph.get(k).blocking}
    assert blocking == {
        ("anonymized_conversations", SCHEMA_CHECK),
        ("release_records", SCHEMA_CHECK),
        ("release_records", CONSERVATION_CHECK),
        ("release_records", PII_CHECK),
        ("release_records", "no_raw_ip_addresses"),
        ("release_records", "no_raw_values_in_instance"),
    }
    ran = [e for e in evaluations(checked) if AssetCheckKey(e.asset_key, e.check_name) in mine]
    assert {AssetCheckKey(e.asset_key, e.check_name) for e in ran} == mine
    assert [(e.asset_key, e.check_name) for e in ran if not e.passed] == []
    [chain] = [e for e in ran if e.check_name == CONSERVATION_CHECK]
    assert chain.partition == DAY.isoformat()
    assert chain.metadata["lines_read"].value == chain.metadata["requests_kept"].value > 20
    assert "ingest's lines_read not found" not in chain.metadata["chain"].value
    assert chain.metadata["conversations_in_release_records"].value == 21
    [pii] = [e for e in ran if e.check_name == PII_CHECK]
    assert pii.metadata["redacted_detections_checked"].value > 0
    assert pii.metadata["texts_rescanned"].value > 0


# -- real damage, real failures -------------------------------------------------------------------


def test_schema_check_lists_a_changed_type_an_extra_and_a_dropped_column(checked, tmp_path):
    p = copy_of(checked, tmp_path)
    execute(p.database, "ALTER TABLE main.conversation_languages ALTER utterances TYPE INTEGER")
    execute(p.database, "ALTER TABLE main.conversation_languages ADD COLUMN note VARCHAR")
    execute(p.database, "ALTER TABLE main.release_records DROP COLUMN geoip_snapshots")
    tables = ("conversation_languages", "release_records", "raw_requests")
    result = run_checks(p, [(t, SCHEMA_CHECK) for t in tables], partition=None)

    languages = only(result, SCHEMA_CHECK, "conversation_languages")
    assert not languages.passed and languages.severity == AssetCheckSeverity.ERROR
    assert languages.metadata["changed_types"].value == {
        "utterances": {"declared": "BIGINT", "stored": "INTEGER"}
    }
    assert languages.metadata["extra_columns"].value == {"note": "VARCHAR"}
    records = only(result, SCHEMA_CHECK, "release_records")
    assert not records.passed
    assert records.metadata["missing_columns"].value == {"geoip_snapshots": "DATE[]"}
    assert "geoip_snapshots" in records.metadata["differences"].value
    assert only(result, SCHEMA_CHECK, "raw_requests").passed


def conservation_after(checked: Pipeline, folder, table: str, key: str):
    """The conservation check on a copy of ``checked`` whose ``table`` lost the row of the
    first day with the smallest ``key``."""
    damaged = copy_of(checked, folder)
    execute(
        damaged.database,
        f"DELETE FROM main.{table} WHERE partition_day = $day AND {key} = "
        f"(SELECT min({key}) FROM main.{table} WHERE partition_day = $day)",
        {"day": partition_day_value(DAY)},
    )
    return only(
        run_checks(damaged, [("release_records", CONSERVATION_CHECK)]),
        CONSERVATION_CHECK,
        "release_records",
    )


def test_conservation_fails_naming_the_stage_that_lost_a_row(checked, tmp_path):
    evaluation = conservation_after(checked, tmp_path / "r", "release_records", "conversation_id")
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
    assert evaluation.metadata["failing_stages"].value == [
        "conversations in release_records: 1 missing"
    ]
    assert "**1**" in evaluation.metadata["chain"].value

    evaluation = conservation_after(checked, tmp_path / "q", "raw_requests", "turn_id")
    assert not evaluation.passed
    [stage] = evaluation.metadata["failing_stages"].value
    assert stage == (
        "requests kept (raw_requests, quarantined_log_lines): 1 lines read but in neither table"
    )

    assert checked_stage(copy_of(checked, tmp_path / "c"), "texts_stored") > 0
    evaluation = conservation_after(checked, tmp_path / "t", "raw_message_texts", "text_sha256")
    assert not evaluation.passed
    assert evaluation.metadata["failing_stages"].value == [
        "texts (raw_message_texts): 1 referred to but not stored"
    ]


def checked_stage(p: Pipeline, key: str) -> int:
    """A stage's count in the conservation check of the pipeline's first day."""
    evaluation = only(
        run_checks(p, [("release_records", CONSERVATION_CHECK)]),
        CONSERVATION_CHECK,
        "release_records",
    )
    assert evaluation.passed
    return evaluation.metadata[key].value


def release_row_with(p: Pipeline, table: str, text: str) -> pl.DataFrame:
    frame = p.table(table)
    return frame.filter(
        pl.col("conversation")
        .list.eval(pl.element().struct.field("content").str.contains(text))
        .list.any()
    )


def put_back(p: Pipeline, table: str, schema: pl.Schema, marker: str, placeholder: str, value: str):
    """Write ``value`` back where redaction put ``placeholder``, in the stored row whose text
    contains ``marker``: what a redaction bug, or a hand edit, would leave."""
    row = release_row_with(p, table, marker)
    assert row.height == 1 and placeholder in json.dumps(row["conversation"].to_list(), default=str)
    changed = row.with_columns(
        pl.col("conversation").list.eval(
            pl.element().struct.with_fields(
                pl.element().struct.field("content").str.replace(placeholder, value, literal=True)
            )
        )
    ).select(schema.names())
    con = duckdb.connect(str(p.database))
    try:
        con.execute(
            f"DELETE FROM main.{table} WHERE conversation_id = $id",
            {"id": row["conversation_id"][0]},
        )
        con.register("changed", changed.cast(schema).to_arrow())
        con.execute(f"INSERT INTO main.{table} BY NAME SELECT * FROM changed")
    finally:
        con.close()


def test_a_redacted_value_put_back_fails_the_pii_check_without_showing_it(checked, tmp_path):
    p = copy_of(checked, tmp_path)
    # The rules do redact the hand-made address: the decisions say so.
    warehouse = Warehouse(database=str(p.database))
    day = {"day": partition_day_value(DAY)}
    decided = redaction_decisions(
        warehouse.query(CANDIDATES_SQL, day),
        warehouse.query(SCANNED_SQL, day),
        p.rules,
        FrequencyStore(warehouse.connect).frequencies_of,
    )
    assert EMAIL in decided.filter(pl.col("decision") == Decision.REDACT)["text"].to_list()
    clean = only(run_checks(p, [("release_records", PII_CHECK)]), PII_CHECK, "release_records")
    assert clean.passed

    put_back(
        p, "release_records", RELEASE_RECORDS_SCHEMA, "Please send the invoice", EMAIL_PLACEHOLDER,
        EMAIL,
    )  # fmt: skip
    evaluation = only(run_checks(p, [("release_records", PII_CHECK)]), PII_CHECK, "release_records")
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
    assert evaluation.metadata["utterances_with_values_left"].value == 1
    # Both ways find it: the stored detection, and the scan of the released text.
    found_by = evaluation.metadata["found_by"].value
    assert "stored_candidate" in found_by and "rescan" in found_by
    assert "EMAIL_ADDRESS" in evaluation.metadata["utterances_by_entity_type"].value
    [conversation] = release_row_with(p, "release_records", EMAIL)["conversation_id"].to_list()
    assert evaluation.metadata["sample_conversation_ids"].value == [conversation]
    text = metadata_text(evaluation) + str(evaluation.description)
    assert EMAIL not in text and "maria" not in text


def test_a_client_ip_written_into_the_release_records_fails_their_ip_check(checked, tmp_path):
    """The existing raw-IP rule, run once more on release_records: its other runs come before
    the day's records exist."""
    p = copy_of(checked, tmp_path)
    [ip] = p.table("raw_requests").filter(pl.col("ip_valid"))["ip"].head(1).to_list()
    put_back(
        p, "release_records", RELEASE_RECORDS_SCHEMA, "Please send the invoice", EMAIL_PLACEHOLDER,
        f"my address is {ip}",
    )  # fmt: skip
    result = run_checks(p, [("release_records", "no_raw_ip_addresses")])
    evaluation = only(result, "no_raw_ip_addresses", "release_records")
    assert not evaluation.passed
    assert evaluation.metadata["tables_with_raw_ips"].value == ["release_records"]
    assert ip not in metadata_text(evaluation)


def test_a_failing_release_check_blocks_the_steps_after_it_in_the_run(checked, tmp_path):
    p = copy_of(checked, tmp_path)
    keys = [*RELEASE_RECORDS, AssetKey("release_statistics")]

    def materialized(result) -> set[str]:
        return {
            e.asset_key.to_user_string()
            for e in result.all_events
            if e.event_type_value == "ASSET_MATERIALIZATION"
        }

    # Undamaged, the same run goes through to the statistics.
    assert materialized(p.run(keys, DAY.isoformat())) == {
        "release_records",
        "release_day_statistics",
        "release_statistics",
    }
    # anonymized_conversations with a redacted address back in it: the records rebuilt from it
    # hold the address, the blocking check fails, and the statistics are not materialized.
    put_back(
        p, "anonymized_conversations", ANONYMIZED_CONVERSATIONS_SCHEMA, "Please send the invoice",
        EMAIL_PLACEHOLDER, EMAIL,
    )  # fmt: skip
    result = p.run(keys, DAY.isoformat(), raise_on_error=False)
    assert not result.success
    [pii] = check_results(result, PII_CHECK)
    assert not pii.passed
    assert materialized(result) == {"release_records"}


def test_quarantine_rate_warns_on_a_malformed_day_and_an_empty_day(tmp_path, monkeypatch):
    monkeypatch.setenv("WILDCHAT_IP_SALT", TEST_SALT)
    monkeypatch.delenv("WILDCHAT_QUARANTINE_WARN_RATE", raising=False)
    factory = RequestFactory()
    good = [factory.first(f"question {i}", "answer", f"{DAY}T0{i}:00:00") for i in range(8)]
    write_json_lines(tmp_path / "logs" / DAY.isoformat(), good)
    with (tmp_path / "logs" / DAY.isoformat() / "requests.jsonl").open("a") as f:
        f.write("{not json\n" * 3 + '{"turn_id": 5}\n')
    empty = date(2024, 6, 4)
    (tmp_path / "logs" / empty.isoformat()).mkdir()
    p = Pipeline(tmp_path / "logs", tmp_path / "w.duckdb", table_checks=True)

    [warned] = check_results(p.run(INGEST, DAY.isoformat()), QUARANTINE_CHECK)
    assert not warned.passed and warned.severity == AssetCheckSeverity.WARN
    assert warned.metadata["quarantine_rate"].value == pytest.approx(4 / 12, abs=1e-6)
    assert warned.metadata["threshold"].value == 0.01
    assert "invalid_json | 3" in warned.metadata["by_reason"].value
    assert "missing_field | 1" in warned.metadata["by_reason"].value

    [nothing] = check_results(p.run(INGEST, empty.isoformat()), QUARANTINE_CHECK)
    assert not nothing.passed and nothing.severity == AssetCheckSeverity.WARN
    assert nothing.description == "no log lines at all for this day"

    # The threshold is a setting, read when the check runs.
    monkeypatch.setenv("WILDCHAT_QUARANTINE_WARN_RATE", "0.5")
    [under] = check_results(p.run(INGEST, DAY.isoformat()), QUARANTINE_CHECK)
    assert under.passed


# -- the rules alone, no Dagster -----------------------------------------------------------------


def test_every_asset_is_a_declared_table_or_known_not_to_be_one():
    keys = {
        key.to_user_string()
        for item in build_assets()
        for key in (item.keys if isinstance(item, AssetsDefinition) else [item.key])
    }
    assert set(TABLES) | NOT_TABLES == keys
    assert not set(TABLES) & NOT_TABLES


def test_compare_schema_sees_a_nested_field_change_and_a_missing_table():
    declared = pl.Schema(
        {"id": pl.Int64, "items": pl.List(pl.Struct({"role": pl.String, "at": pl.Datetime("us")}))}
    )
    # DuckDB's own spelling, as information_schema gives it for a stored table.
    assert duckdb_columns(declared) == {
        "id": "BIGINT",
        "items": 'STRUCT("role" VARCHAR, "at" TIMESTAMP)[]',
    }
    con = duckdb.connect()
    con.execute('CREATE TABLE t (id BIGINT, items STRUCT(role VARCHAR, "at" DATE)[])')
    stored = con.execute(STORED_COLUMNS_SQL, {"table": "t"}).pl()
    diff = compare_schema(stored, declared)
    assert not diff.matches and list(diff.changed) == ["items"] and not diff.missing
    assert compare_schema(stored.head(0), declared).table_exists is False
    con.execute('CREATE TABLE u (id BIGINT, items STRUCT(role VARCHAR, "at" TIMESTAMP)[])')
    assert compare_schema(con.execute(STORED_COLUMNS_SQL, {"table": "u"}).pl(), declared).matches


def sizes(pairs: dict[int, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {"conversation_id": list(pairs), "utterances": list(pairs.values())},
        schema={"conversation_id": pl.Int64, "utterances": pl.Int64},
    )


def records_of(pairs: dict[int, int], public_exclusion=None, full_exclusion=None) -> pl.DataFrame:
    n = len(pairs)
    public = public_exclusion or [None] * n
    full = full_exclusion or [None] * n
    return sizes(pairs).with_columns(
        in_public=pl.Series([r is None for r in public]),
        public_exclusion=pl.Series(public, dtype=pl.String),
        in_full=pl.Series([r is None for r in full]),
        full_exclusion=pl.Series(full, dtype=pl.String),
    )


def chain(**changes):
    files = pl.DataFrame(
        {"source_file": ["d/a.jsonl"], "kept": [9], "quarantined": [1], "distinct_lines": [10]}
    ).with_columns(last_line=pl.lit(10, pl.Int64))
    inputs = {
        "lines_read": 10,
        "files": files,
        "placement": {"requests": 9, "placed_once": 9, "not_placed": 0, "placed_twice_or_more": 0},
        "orphaned": 2,
        "linked": sizes({1: 4, 2: 2}),
        "anonymized": sizes({1: 4, 2: 2}),
        "records": records_of({1: 4, 2: 2}, public_exclusion=["toxic", None]),
    }
    return conservation(**{**inputs, **changes})


def test_conservation_names_each_broken_stage():
    clean = chain()
    assert clean.conserved
    assert [s.count for s in clean.stages][:3] == [10, 9, 9]
    assert "| requests kept | `raw_requests` | 9 | `quarantined_log_lines` | 1 | 0 |  |" in (
        clean.markdown()
    )
    assert chain(lines_read=11).failures == [
        "requests kept (raw_requests, quarantined_log_lines): 1 lines read but in neither table"
    ]
    assert chain(lines_read=None).conserved
    assert chain(texts={"referred": 30, "missing": 0}).conserved
    assert chain(texts={"referred": 30, "missing": 2}).failures == [
        "texts (raw_message_texts): 2 referred to but not stored"
    ]
    placement = {"requests": 9, "placed_once": 8, "not_placed": 0, "placed_twice_or_more": 1}
    assert chain(placement=placement).failures == [
        "requests placed once (linked_conversations, orphaned_requests): 1 placed twice or more"
    ]
    doubled = pl.concat([sizes({1: 4, 2: 2}), sizes({2: 2, 3: 1})])
    assert chain(anonymized=doubled).failures == [
        "conversations in anonymized_conversations: 1 not in linked_conversations, 1 repeated"
    ]
    assert chain(records=records_of({1: 4, 2: 1}, public_exclusion=["toxic", None])).failures == [
        "utterances in release_records: "
        "1 conversation(s) with other utterances than linked_conversations"
    ]
    neither = records_of({1: 4, 2: 2}).with_columns(in_full=pl.Series([False, True]))
    assert chain(records=neither).failures == [
        "conversations in the full release: 1 neither released nor with a reason"
    ]


def test_values_left_allows_the_copies_redaction_did_not_cover():
    rules = load_rules()
    original = "My name is Ann Lee. Ann Lee is here."
    sha = "s1"
    decided = pl.DataFrame(
        {
            "content_sha256": [sha, sha],
            "start": [11, 20],
            "end": [18, 27],
            "entity_type": ["PERSON", "PERSON"],
            "text": ["Ann Lee", "Ann Lee"],
            # The second copy has no cue: not redacted, so it may stay.
            "decision": [Decision.REDACT, Decision.NO_CUE],
        }
    )
    originals = pl.DataFrame({"content_sha256": [sha], "content": [original]})
    scanned = pl.DataFrame(
        {"conversation_id": [1], "utterance_index": [0], "content_sha256": [sha]}
    )

    def released(text: str) -> pl.DataFrame:
        return pl.DataFrame({"conversation_id": [1], "utterance_index": [0], "content": [text]})

    redacted = original.replace("Ann Lee", rules.placeholder_for("PERSON"), 1)
    assert values_left(decided, originals, scanned, released(redacted)).is_empty()
    leaks = values_left(decided, originals, scanned, released(original))
    assert leaks.to_dicts() == [
        {"conversation_id": 1, "utterance_index": 0, "entity_type": "PERSON",
         "found_by": "stored_candidate"}
    ]  # fmt: skip


def test_the_rescan_finds_a_leak_without_loading_a_language_model():
    """The rescan's rules (pattern-recognized types) depend on no language: its detector must
    not pay for loading fastText, which each day's release checks did. The full rules, with
    PERSON for English only, load it for the text whose PERSON gate passes."""
    rules = load_rules()
    released = pl.DataFrame(
        {
            "conversation_id": [1, 1],
            "utterance_index": [0, 1],
            "role": ["user", "assistant"],
            "content": [f"Mail me at {EMAIL} today.", "Sure, I will."],
        }
    )

    def no_frequencies(keys: pl.DataFrame) -> pl.DataFrame:
        return pl.DataFrame(
            schema={"entity_type": pl.String, "value_key": pl.String, "conversations": pl.Int64}
        )

    rescan = PiiDetector(rescan_rules(rules), DetectorSettings(workers=1))
    leaks, stats = rescan_released(released, rules, no_frequencies, rescan)
    assert leaks.select("utterance_index", "entity_type").to_dicts() == [
        {"utterance_index": 0, "entity_type": "EMAIL_ADDRESS"}
    ]
    assert stats["texts_rescanned"] == 1
    assert rescan._languages is None

    full = PiiDetector(rules, DetectorSettings(workers=1))
    full.plan(pl.DataFrame({"content_sha256": ["a"], "content": ["Sure, I will."]}))
    assert full._languages is None
    planned = full.plan(
        pl.DataFrame({"content_sha256": ["b"], "content": ["Hi, my name is Ann Lee."]})
    )
    assert full._languages is not None
    assert planned["language_code"].to_list() == ["en"]
    assert planned["ner_entities"].to_list() == [["PERSON"]]


def test_quarantine_rate_threshold_and_empty_day(monkeypatch):
    reasons = pl.DataFrame({"reason": ["invalid_json"], "lines": [2]})
    assert quarantine_rate(198, reasons, 0.01).problem is None
    assert "1.50%" in quarantine_rate(131, reasons, 0.01).problem
    assert quarantine_rate(0, reasons.head(0), 0.01).problem == "no log lines at all for this day"
    monkeypatch.setenv("WILDCHAT_QUARANTINE_WARN_RATE", "0.05")
    assert settings.quarantine_warn_rate() == 0.05
    monkeypatch.setenv("WILDCHAT_QUARANTINE_WARN_RATE", "5")
    with pytest.raises(ValueError, match="between 0 and 1"):
        settings.quarantine_warn_rate()
