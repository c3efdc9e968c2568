"""The privacy step end to end: Dagster assets over a real DuckDB file and instance."""

from __future__ import annotations

import hashlib
import re
import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterInvalidConfigError,
    Definitions,
    IdentityPartitionMapping,
    SensorResult,
    SkipReason,
    build_sensor_context,
    define_asset_job,
)
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from wildchat_dag.core.ip_addresses import SALT_ENV_VAR
from wildchat_dag.definitions import build_assets
from wildchat_dag.defs.anonymization.redaction_rules import DEFAULT_RULES_PATH, load_rules
from wildchat_dag.defs.anonymization.stale_days import (
    CARRIED_OVER,
    CHECKED_ASSETS,
    REFRESH_COMMAND,
    STALE_DAY_CHECKS,
    build_redaction_staleness_sensor,
    checked_assets,
)
from wildchat_dag.loggen.generator import generate_logs
from wildchat_dag.loggen.replay import fill_missing_turns, replay_conversations
from wildchat_dag.redaction_refresh import refresh
from wildchat_dag_tests.conftest import TEST_SALT
from wildchat_dag_tests.pipeline import (
    ANONYMIZATION,
    DETECTION,
    FREQUENCY,
    Pipeline,
    check_results,
    materializations,
    partitions_of,
    write_json_lines,
)

START = date(2024, 3, 1)
PLACEHOLDER = re.compile(r"<PRESIDIO_ANONYMIZED_[A-Z_]+>")


def days(n: int, start: date = START) -> list[str]:
    return [(start + timedelta(days=i)).isoformat() for i in range(n)]


pytestmark = pytest.mark.usefixtures("ip_salt")


@pytest.fixture
def generated(tmp_path) -> Path:
    log_root = tmp_path / "logs"
    generate_logs(log_root, start_date=START, days=2, conversations_per_day=120, seed=11)
    return log_root


def failure_message(result) -> str:
    """What the run said went wrong, from a step or from a resource's start."""
    return "\n".join(str(e.event_specific_data) for e in result.all_events if e.is_failure)


def test_release_has_hashed_ips_user_headers_only_and_redacted_text(tmp_path, generated):
    partitions = partitions_of(generated)
    p = Pipeline(generated, tmp_path / "w.duckdb")
    p.all_steps(*partitions)
    linked = p.table("linked_conversations").sort("conversation_id")
    released = p.table("anonymized_conversations").sort("conversation_id")

    # Every conversation and every utterance is there, in order; no IP column survives.
    assert released["conversation_id"].to_list() == linked["conversation_id"].to_list()
    assert "ip" not in released.columns
    b = linked.select("conversation_id", "conversation").explode("conversation")
    a = released.select("conversation_id", "conversation").explode("conversation")
    assert b.height == a.height
    b, a = b.unnest("conversation"), a.unnest("conversation")
    assert b["turn_identifier"].to_list() == a["turn_identifier"].to_list()

    def salted(ip):
        return None if ip is None else hashlib.sha256((TEST_SALT + ip).encode()).hexdigest()

    # hashed_ip = sha256(salt + ip) on user turns, null on replies; headers on user turns only.
    assert a["hashed_ip"].to_list() == [
        salted(ip) if role == "user" else None for ip, role in b.select("ip", "role").rows()
    ]
    assert all(len(h) == 64 for h in a["hashed_ip"].drop_nulls())
    assistant = a.filter(pl.col("role") == "assistant")
    assert assistant["user_agent"].null_count() == assistant.height
    assert assistant["accept_language"].null_count() == assistant.height
    assert released["hashed_ip"].to_list() == [salted(ip) for ip in linked["ip"]]

    # `redacted` says exactly which texts changed, and the conversation flag follows.
    changed = pl.Series(b["content"].to_list()) != pl.Series(a["content"].to_list())
    assert a["redacted"].to_list() == changed.to_list()
    assert changed.sum() > 10
    flags = dict(a.group_by("conversation_id").agg(pl.col("redacted").any()).rows())
    assert dict(released.select("conversation_id", "redacted").rows()) == flags

    rules_hash = load_rules().rules_hash
    assert set(released["redaction_rules_hash"]) == {rules_hash}
    for key in ("pii_candidates", "pii_scanned_utterances", "pii_entity_frequency"):
        assert all(m.metadata["rules_hash"].value == rules_hash for m in materializations(p, key))
    for m in materializations(p, "anonymized_conversations"):
        assert m.metadata["rules_hash"].value == rules_hash
        assert m.metadata["ip_salt"].value == f"environment variable {SALT_ENV_VAR}"


def test_real_sample_end_to_end_keeps_wildchat_placeholders(tmp_path, wildchat_sample):
    conversations = [
        {**c, "conversation": fill_missing_turns(c["conversation"])} for c in wildchat_sample
    ]
    log_root = tmp_path / "logs"
    replay_conversations(conversations, log_root, start_date=START, days=2)
    p = Pipeline(log_root, tmp_path / "w.duckdb")
    p.all_steps(*partitions_of(log_root))
    released = p.table("anonymized_conversations")
    assert released.height == 187
    texts = released["conversation"].explode().struct.field("content").to_list()
    originals = [u["content"] for c in conversations for u in c["conversation"]]
    expected = sorted(m for t in originals for m in PLACEHOLDER.findall(t))
    found = sorted(m for t in texts for m in PLACEHOLDER.findall(t))
    assert len(expected) >= 50
    # Every one of WildChat's placeholders is still there; new ones may be added.
    remaining = list(found)
    for placeholder in expected:
        remaining.remove(placeholder)


def test_a_client_ip_written_into_a_message_is_redacted(tmp_path, requests_factory):
    first = requests_factory.first(
        "My IP is 198.51.100.7 and the site blocks me. Why?",
        "It may be a firewall rule.",
        f"{START}T10:00:00",
        ip="198.51.100.7",
    )
    other = requests_factory.first(
        "Is 203.0.113.200 a private address?", "No.", f"{START}T11:00:00", ip="192.0.2.1"
    )
    write_json_lines(tmp_path / "logs" / START.isoformat(), [first, other])
    p = Pipeline(tmp_path / "logs", tmp_path / "w.duckdb")
    p.all_steps(START.isoformat())
    utterances = p.table("anonymized_conversations")["conversation"].explode().struct.unnest()
    texts = utterances.filter(pl.col("role") == "user")["content"].to_list()
    # The user's own address goes; an address that is nobody's client IP stays.
    assert "My IP is <PRESIDIO_ANONYMIZED_IP_ADDRESS> and the site blocks me. Why?" in texts
    assert "Is 203.0.113.200 a private address?" in texts


def test_raw_ip_check_passes_on_clean_data_and_fails_on_a_planted_ip(tmp_path, generated):
    day = partitions_of(generated)[0]
    p = Pipeline(generated, tmp_path / "w.duckdb")
    p.all_steps(*partitions_of(generated))
    (clean,) = check_results(p.run(ANONYMIZATION, day))
    assert clean.passed

    raw_ip = p.table("raw_requests").filter(pl.col("ip").str.contains(":"))["ip"][0]
    spelled_out = str(__import__("ipaddress").ip_address(raw_ip).exploded).upper()
    con = duckdb.connect(str(p.database))
    con.execute(
        "CREATE TABLE main.release_notes AS SELECT $day::TIMESTAMP AS partition_day, "
        "$note AS note, 42::BIGINT AS conversation_id",
        {"day": day, "note": f"traffic from {spelled_out} looked odd"},
    )
    con.close()
    result = p.run(ANONYMIZATION, day, raise_on_error=False)
    (planted,) = check_results(result)
    assert not planted.passed
    assert planted.metadata["tables_with_raw_ips"].value == ["release_notes"]
    assert planted.metadata["sample_conversation_ids"].value == {"release_notes": [42]}
    # The report says where to look, not the address.
    assert raw_ip not in str(planted.metadata) and spelled_out not in str(planted.metadata)
    assert not result.success, "the check is blocking"


def test_without_the_rule_a_typed_client_ip_fails_the_blocking_check(tmp_path, requests_factory):
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(
        DEFAULT_RULES_PATH.read_text().replace(
            "redact_client_ips: true", "redact_client_ips: false"
        )
    )
    assert "redact_client_ips: false" in rules_path.read_text()
    request = requests_factory.first(
        "My IP is 198.51.100.7, is that a problem?", "No.", f"{START}T10:00:00", ip="198.51.100.7"
    )
    write_json_lines(tmp_path / "logs" / START.isoformat(), [request])
    p = Pipeline(tmp_path / "logs", tmp_path / "w.duckdb", rules_path=rules_path)
    p.ingest(START.isoformat())
    p.link(START.isoformat())
    p.detect(START.isoformat())
    p.count_frequencies()
    (check,) = check_results(p.run(ANONYMIZATION, START.isoformat(), raise_on_error=False))
    assert not check.passed
    assert check.metadata["tables_with_raw_ips"].value == ["anonymized_conversations"]


def test_a_run_without_a_salt_refuses_to_start(tmp_path, generated, monkeypatch):
    p = Pipeline(generated, tmp_path / "w.duckdb")
    monkeypatch.delenv(SALT_ENV_VAR)
    with pytest.raises(DagsterInvalidConfigError, match=SALT_ENV_VAR):
        p.run(ANONYMIZATION, partitions_of(generated)[0])
    assert not p.instance.get_runs(), "the run did not start"


def test_a_short_salt_is_refused_with_the_reason(tmp_path, generated, monkeypatch):
    p = Pipeline(generated, tmp_path / "w.duckdb")
    day = partitions_of(generated)[0]
    p.ingest(day)
    p.link(day)
    p.detect(day)
    p.count_frequencies()
    monkeypatch.setenv(SALT_ENV_VAR, "short")
    result = p.run(ANONYMIZATION, day, raise_on_error=False)
    assert not result.success
    assert "at least 16" in failure_message(result)
    assert not materializations(p, "anonymized_conversations")


def released_then_rules_edited(
    tmp_path: Path, log_root: Path, old: str, new: str
) -> tuple[Pipeline, Pipeline]:
    """Every step run under a copy of the default rules; then the copy edited, and the
    pipeline as the reloaded code location builds it (same instance, same DuckDB file)."""
    rules_path = tmp_path / "rules.yaml"
    shutil.copy(DEFAULT_RULES_PATH, rules_path)
    before = Pipeline(log_root, tmp_path / "w.duckdb", rules_path=rules_path)
    before.all_steps(*partitions_of(log_root))
    text = rules_path.read_text()
    assert old in text
    rules_path.write_text(text.replace(old, new))
    after = Pipeline(
        log_root, tmp_path / "w.duckdb", rules_path=rules_path, instance=before.instance
    )
    assert after.rules.rules_hash != before.rules.rules_hash
    return before, after


def test_rule_change_reruns_only_redaction_and_shows_it_in_lineage(tmp_path, generated):
    partitions = partitions_of(generated)
    # A rule edit that changes the released text but not where detection runs.
    before, after = released_then_rules_edited(
        tmp_path,
        generated,
        'placeholder: "<PRESIDIO_ANONYMIZED_{entity}>"',
        'placeholder: "[{entity}]"',
    )
    instance = after.instance
    upstream = ("pii_candidates", "linked_conversations")
    detected = {k: len(materializations(before, k)) for k in upstream}
    after.run([AssetKey("redaction_rules")], None)  # the UI's "Observe"
    assets = list(after.defs.resolve_asset_graph().assets_defs)
    resolver = get_stale_status_resolver(instance, assets)
    for day in partitions:
        assert resolver.get_status(AssetKey("anonymized_conversations"), day) == StaleStatus.STALE
        assert resolver.get_status(AssetKey("pii_candidates"), day) == StaleStatus.FRESH
    assert resolver.get_status(AssetKey("pii_entity_frequency")) == StaleStatus.STALE

    assert refresh(instance, after.defs, after.rules, str(after.database)) == 0
    assert {k: len(materializations(after, k)) for k in upstream} == detected, (
        "detection and linking were not re-run"
    )
    latest = materializations(after, "anonymized_conversations")
    assert {m.partition for m in latest[: len(partitions)]} == set(partitions)
    assert all(m.metadata["rules_hash"].value == after.rules.rules_hash for m in latest[:2])
    released = after.table("anonymized_conversations")
    assert set(released["redaction_rules_hash"]) == {after.rules.rules_hash}
    texts = released["conversation"].explode().struct.field("content")
    assert texts.str.contains(r"\[(PERSON|EMAIL_ADDRESS|PHONE_NUMBER)\]").any()
    assert not texts.str.contains("<PRESIDIO_ANONYMIZED_").any()
    resolver = get_stale_status_resolver(instance, assets)
    for day in partitions:
        assert resolver.get_status(AssetKey("anonymized_conversations"), day) == StaleStatus.FRESH


def test_a_cue_change_needs_new_detection_and_says_so(tmp_path, generated):
    partitions = partitions_of(generated)
    _, after = released_then_rules_edited(
        tmp_path, generated, "      - hey\n", "      - hey\n      - yo\n"
    )
    after.count_frequencies()
    result = after.run(ANONYMIZATION, partitions[0], raise_on_error=False)
    assert "detected under other redaction rules" in failure_message(result)
    assert partitions[0] in failure_message(result)
    # The documented command sees it and detects again, then redacts.
    assert refresh(after.instance, after.defs, after.rules, str(after.database)) == 0
    assert len(materializations(after, "pii_candidates")) == 2 * len(partitions)


def test_relinking_after_detection_is_caught(tmp_path, generated):
    first, second = partitions_of(generated)[:2]
    p = Pipeline(generated, tmp_path / "w.duckdb")
    p.ingest(first)
    p.link(first)
    p.detect(first)
    p.count_frequencies()
    # The next day arrives: conversations of the first day that continued are completed.
    p.ingest(second)
    p.link(first)
    result = p.run(ANONYMIZATION, first, raise_on_error=False)
    message = failure_message(result)
    assert "does not cover linked_conversations" in message and first in message
    p.detect(first)
    p.count_frequencies()
    p.anonymize(first)


def test_frequencies_refresh_incrementally(tmp_path, generated):
    first, second = partitions_of(generated)[:2]
    p = Pipeline(generated, tmp_path / "w.duckdb")
    p.ingest(first, second)
    p.link(first, second)
    p.detect(first)
    p.count_frequencies()
    p.detect(second)
    p.count_frequencies()
    latest = materializations(p, "pii_entity_frequency")[0]
    assert latest.metadata["refresh"].value == "incremental"
    assert latest.metadata["days_folded"].value == [second]
    assert latest.metadata["days_unchanged"].value == 1


def test_rematerializing_in_any_order_gives_the_same_rows(tmp_path, generated):
    partitions = partitions_of(generated)
    tables = ("pii_candidates", "pii_scanned_utterances", "anonymized_conversations")
    p = Pipeline(generated, tmp_path / "w.duckdb")
    p.all_steps(*partitions)
    once = p.snapshot(tables)
    for day in reversed(partitions):
        p.run(DETECTION, day)
    p.run(FREQUENCY, None)
    for day in reversed(partitions):
        p.run(ANONYMIZATION, day)
        p.run(ANONYMIZATION, day)
    again = p.snapshot(tables)
    for name in tables:
        assert once[name].equals(again[name]), name


def test_a_day_without_traffic_goes_through_every_step(tmp_path):
    (tmp_path / "logs" / START.isoformat()).mkdir(parents=True)
    p = Pipeline(tmp_path / "logs", tmp_path / "w.duckdb")
    p.all_steps(START.isoformat())
    assert p.table("anonymized_conversations").is_empty()
    assert p.table("pii_scanned_utterances").is_empty()
    (check,) = check_results(p.run(ANONYMIZATION, START.isoformat()))
    assert check.passed


class SensorTicks:
    """The redaction_staleness sensor ticking as the daemon ticks it: each tick's cursor goes
    to the next, and the events it returns are stored in the instance."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.sensor = build_redaction_staleness_sensor(pipeline.rules_path)
        judge = define_asset_job("judge_stale_days", selection=STALE_DAY_CHECKS)
        self.defs = Definitions.merge(
            pipeline.defs, Definitions(sensors=[self.sensor], jobs=[judge])
        )
        self.instance = pipeline.instance
        self.cursor: str | None = None

    def tick(self):
        context = build_sensor_context(
            instance=self.instance,
            repository_def=self.defs.get_repository_def(),
            cursor=self.cursor,
        )
        result = self.sensor(context)
        self.cursor = context.cursor
        for event in getattr(result, "asset_events", None) or []:
            self.instance.report_runless_asset_event(event)
        return result

    def evaluations(self) -> dict[str, AssetCheckEvaluation]:
        result = self.tick()
        assert isinstance(result, SensorResult), result
        return {e.asset_key.to_user_string(): e for e in result.asset_events}


def test_the_stale_days_check_shows_a_rules_edit_until_the_refresh(tmp_path, generated):
    """Dagster's UI marks no daily asset Unsynced; the no_stale_days check shows it instead, on
    the redaction steps and on everything built from them, releases included."""
    partitions = partitions_of(generated)
    rules_path = tmp_path / "rules.yaml"
    shutil.copy(DEFAULT_RULES_PATH, rules_path)
    before = Pipeline(generated, tmp_path / "w.duckdb", rules_path=rules_path)
    before.through_release(*partitions)
    text = rules_path.read_text()
    rules_path.write_text(text.replace('"<PRESIDIO_ANONYMIZED_{entity}>"', '"[{entity}]"'))
    after = Pipeline(
        generated, tmp_path / "w.duckdb", rules_path=rules_path, instance=before.instance
    )
    ticks = SensorTicks(after)
    # The edit is observed first, without anyone pressing "Observe"...
    observed = ticks.tick()
    assert [e.asset_key for e in observed.asset_events] == [AssetKey("redaction_rules")]
    assets = list(after.defs.resolve_asset_graph().assets_defs)
    assert (
        get_stale_status_resolver(after.instance, assets).get_status(
            AssetKey("pii_entity_frequency")
        )
        == StaleStatus.STALE
    )
    # ... then every day built under the old rules is reported, with the command to run.
    judged = ticks.evaluations()
    assert set(judged) == {k.to_user_string() for k in CHECKED_ASSETS}
    assert judged["pii_candidates"].passed, "a placeholder edit keeps the detections"
    assert judged["pii_scanned_utterances"].passed
    # Dagster itself calls only the redaction's days stale (its input changed); what was built
    # from them is stale too, with the same root cause.
    for name in ("anonymized_conversations", "release_records", "release_day_statistics"):
        stale = judged[name]
        assert not stale.passed and stale.severity == AssetCheckSeverity.WARN, name
        assert stale.metadata["stale_days"].value == len(partitions), name
        assert stale.metadata["first_stale_days"].value == partitions, name
        assert "redaction_rules: has a new data version" in stale.description, name
        assert REFRESH_COMMAND in stale.description, name
    for name in ("release_statistics", "public_release", "full_release"):
        assert not judged[name].passed, name
        assert "built from days" in judged[name].description, name
    assert isinstance(ticks.tick(), SkipReason), "nothing changed: nothing re-judged"

    assert refresh(after.instance, after.defs, after.rules, str(after.database)) == 0
    # The refresh's day runs carried the sensor's judgment over (judging every day in every
    # run would cost each run the whole history); the sensor's next tick clears it.
    carried = after.instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey("anonymized_conversations"), "no_stale_days"), limit=1
    )[0].event.dagster_event.event_specific_data
    assert not carried.passed and carried.description.endswith(CARRIED_OVER)
    cleared = ticks.evaluations()
    assert all(e.passed for e in cleared.values()), {k: e.description for k, e in cleared.items()}
    assert cleared["anonymized_conversations"].metadata["built_days"].value == len(partitions)
    assert cleared["release_records"].metadata["built_days"].value == len(partitions)

    # Run on demand (the UI's "Execute"), the check says the same.
    result = ticks.defs.resolve_job_def("judge_stale_days").execute_in_process(
        instance=after.instance
    )
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == len(CHECKED_ASSETS)
    assert all(e.passed for e in evaluations)


def test_the_checked_assets_are_what_a_rules_edit_reaches_and_read_their_own_day():
    assets = build_assets()
    assert checked_assets(assets) == sorted(CHECKED_ASSETS)
    graph = AssetGraph.from_assets(assets)
    for key in CHECKED_ASSETS:
        node = graph.get(key)
        for parent in node.parent_keys:
            if parent in CHECKED_ASSETS and node.partitions_def:
                mapping = node.partition_mappings.get(parent)
                assert mapping is None or isinstance(mapping, IdentityPartitionMapping), key
