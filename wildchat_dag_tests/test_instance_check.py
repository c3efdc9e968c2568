"""``no_raw_values_in_instance`` (wildchat_dag/defs/checks/instance_check.py): a day materialized
through its release records on a real instance passes; a client IP or a redacted e-mail planted
in the instance, in a notation of its own, makes it fail naming the event, and the value is
nowhere in the check's own result. The search (wildchat_dag/defs/checks/instance_search.py) is also
tested alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import polars as pl
import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetObservation,
    DagsterEventType,
    DagsterInstance,
    MetadataValue,
    job,
    op,
)
from dagster._serdes import serialize_value

from wildchat_dag.defs.checks.instance_check import INSTANCE_CHECK, days_reading, entry_text
from wildchat_dag.defs.checks.instance_search import (
    CLIENT_IP,
    FOUND_SCHEMA,
    ip_needles,
    search_entries,
    text_needles,
)
from wildchat_dag_tests.conftest import TEST_SALT
from wildchat_dag_tests.pipeline import (
    Pipeline,
    check_results,
    partitions_of,
    write_day_with_an_email,
)

DAY = date(2024, 6, 3)
EMAIL = "maria.lopez77@gmail.com"
CHECK = AssetCheckKey(AssetKey("release_records"), INSTANCE_CHECK)

# -- the search alone ----------------------------------------------------------------------------


def entries(*texts: str) -> pl.DataFrame:
    return pl.DataFrame({"entry_id": list(range(len(texts))), "text": list(texts)})


def test_every_notation_of_an_address_is_found_and_only_the_address():
    ip = "81.2.69.109"
    found = search_entries(
        entries(
            "client 081.002.069.109 said",
            "client ８１．２．６９．１０９ said",
            "client 8\u200b1.2.69.109 said",
            "client 81 . 2 . 69 . 109 said",
            "mapped ::ffff:81.2.69.109 and ::FFFF:5102:456D",
            "as one number 1359103341 here",
            # Not the address: inside a longer one, a version, another address, a longer number.
            "181.2.69.109 and 81.2.69.1090 and 81.2.69.10 and 21359103341",
            "nothing here",
        ),
        ip_needles([ip]),
        [ip],
    )
    assert found.schema == FOUND_SCHEMA  # entry ids and kinds: never a value
    assert found["entry_id"].to_list() == [0, 1, 2, 3, 4, 5]
    assert set(found["kind"]) == {CLIENT_IP}


def test_pii_values_are_found_normalized_escaped_and_by_their_digits():
    needles = text_needles(
        [
            ("José Núñez", "PERSON"),
            (EMAIL, "EMAIL_ADDRESS"),
            ("+1 (415) 555-0100", "PHONE_NUMBER"),
            ("abc", "PERSON"),  # too short to search for
        ]
    )
    found = search_entries(
        entries(
            json.dumps({"message": "dear José Núñez"}),  # JSON-escaped
            "dear JOSÉ NÚÑEZ",  # upper case
            "mail MARIA.lopez77@gmail\u200b.com",  # case and a zero-width space
            "call +1 415 555 0100",  # the phone's digits, written otherwise
            "call 1-415-555-01-00",
            # Not the phone: too short a value, inside a longer number, another number.
            "abc 14155550100999 and 415.555.0100 at 2024-01-05 10:00",
        ),
        needles,
    )
    assert dict(found.iter_rows()) == {
        0: "PERSON",
        1: "PERSON",
        2: "EMAIL_ADDRESS",
        3: "PHONE_NUMBER",
        4: "PHONE_NUMBER",
    }


def test_entry_text_reads_every_string_decoded_and_as_stored():
    stored = json.dumps({"a": ["dear Jos\u00e9", {"b": "x\u200by"}], "n": 5})
    text = entry_text(stored)
    assert "dear José" in text and "dear Jos\\u00e9" in text and "x\u200by" in text


def test_the_days_searched_are_those_whose_linking_reads_the_day():
    assert days_reading(DAY) == [date(2024, 6, d) for d in (2, 3, 4, 5)]


# -- a real instance -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Iterator[Pipeline]:
    """One generated day with PII, and a conversation giving an e-mail address the rules
    redact, through the release records with the table checks on, on a temp-dir instance."""
    tmp = tmp_path_factory.mktemp("instance_check")
    log_root = tmp / "logs"
    write_day_with_an_email(log_root, DAY, EMAIL)
    home = tmp / "dagster_home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WILDCHAT_IP_SALT", TEST_SALT)
        env.delenv("WILDCHAT_MODE", raising=False)
        instance = DagsterInstance.local_temp(tempdir=str(home))
        p = Pipeline(log_root, tmp / "w.duckdb", instance=instance, table_checks=True)
        p.through_release(*partitions_of(log_root))
        yield p


def run_check(p: Pipeline):
    job_def = p.job.get_subset(asset_selection=set(), asset_check_selection={CHECK})
    return job_def.execute_in_process(
        partition_key=DAY.isoformat(), instance=p.instance, raise_on_error=False
    )


def evaluation_events(p: Pipeline, run_id: str) -> list:
    return [
        e
        for e in p.instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.dagster_event.event_specific_data.check_name == INSTANCE_CHECK
    ]


def client_ip(p: Pipeline) -> str:
    ips = p.table("raw_requests").filter(pl.col("ip_valid"))["ip"].unique().sort().to_list()
    return next(ip for ip in ips if ip.count(".") == 3)


def assert_nowhere(p: Pipeline, run_id: str, *values: str) -> None:
    """None of ``values`` (nor their JSON-escaped forms) in any event of the run."""
    forms = {f for v in values for f in (v, v.lower(), json.dumps(v)[1:-1])}
    for entry in p.instance.all_logs(run_id):
        stored = serialize_value(entry)
        assert not [f for f in forms if f in stored], entry.dagster_event_type


def test_a_clean_day_passes(released):
    graph = released.defs.resolve_asset_graph()
    assert graph.get(CHECK).blocking
    # The first run that evaluated it: the day's release records, before anything is planted.
    release_run = next(
        r for r in reversed(released.instance.get_runs()) if evaluation_events(released, r.run_id)
    )
    assert release_run.tags["dagster/partition"] == DAY.isoformat()
    [entry] = evaluation_events(released, release_run.run_id)
    evaluation = entry.dagster_event.event_specific_data
    # It ran with the other release checks, in their step.
    assert entry.step_key == "release_records_checks"
    assert evaluation.passed, evaluation.description
    metadata = {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}
    assert metadata["findings"] == 0
    assert metadata["days_searched"] == [d.isoformat() for d in days_reading(DAY)]
    # Ingest, linking, detection, redaction, geo, language, moderation, records: every run.
    assert metadata["runs_searched"] >= 8 and metadata["entries_searched"] > 100
    for kind in (CLIENT_IP, "EMAIL_ADDRESS"):
        assert f"| {kind} |" in metadata["values_searched_by_kind"]


def test_a_planted_client_ip_fails_the_check_naming_the_event(released):
    ip = client_ip(released)
    planted = ".".join(f"{int(o):03d}" for o in ip.split("."))  # leading zeros
    assert planted != ip

    @op
    def says_the_address(context) -> None:
        context.log.info(f"request from {planted}")

    @job
    def leaky() -> None:
        says_the_address()

    leak = leaky.execute_in_process(
        instance=released.instance, tags={"dagster/partition": DAY.isoformat()}
    )
    result = run_check(released)
    [evaluation] = check_results(result, INSTANCE_CHECK)
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
    assert leak.run_id in evaluation.description and CLIENT_IP in evaluation.description
    assert "says_the_address" in evaluation.description  # the step key
    table = evaluation.metadata["events_with_raw_values"].value
    assert leak.run_id in table and f"| {CLIENT_IP} |" in table
    assert_nowhere(released, result.run_id, ip, planted)


def test_a_planted_redacted_email_fails_the_check_naming_the_event(released):
    planted = "MARIA.LOPEZ77@gmail\u200b.com"  # upper case, a zero-width space inside
    released.instance.report_runless_asset_event(
        AssetObservation(
            asset_key="release_records",
            partition=DAY.isoformat(),
            metadata={"note": MetadataValue.json({"reply_to": planted})},
        )
    )
    [observation] = released.instance.fetch_observations(
        AssetKey("release_records"), limit=1
    ).records
    result = run_check(released)
    [evaluation] = check_results(result, INSTANCE_CHECK)
    assert not evaluation.passed
    assert f"storage id {observation.storage_id} (ASSET_OBSERVATION" in evaluation.description
    assert "EMAIL_ADDRESS" in evaluation.description
    assert_nowhere(released, result.run_id, EMAIL, planted, "lopez77")
