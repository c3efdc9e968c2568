"""The release gate (wildchat_dag/defs/release/gate.py): an export, run on its own, refuses a
day whose blocking checks did not pass on its latest materialization, and writes nothing.

The pipeline runs once over two generated days with the table checks on, its warehouse, its
release folders and its Dagster instance (SQLite, in a folder) kept; each test that damages
something works on a copy of all three."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance

from wildchat_dag.core.ip_addresses import SALT_ENV_VAR
from wildchat_dag.core.schema import ANONYMIZED_CONVERSATIONS_SCHEMA, partition_day_value
from wildchat_dag.defs.release.gate import (
    GATED_ASSETS,
    TABLE_ROWS,
    CheckHistory,
    Evaluation,
    GatedCheck,
    GateStatus,
    decide,
    gated_checks,
    judge,
    partition_key_of,
    read_gate,
)
from wildchat_dag.loggen.generator import generate_logs
from wildchat_dag_tests.conftest import TEST_SALT
from wildchat_dag_tests.pipeline import (
    ANONYMIZATION,
    EXPORTS,
    RELEASE_RECORDS,
    Pipeline,
    check_results,
    materializations,
    partitions_of,
    step_failure,
)

START = date(2024, 6, 3)
EXPECTED_CHECKS = {
    ("anonymized_conversations", "no_raw_ip_addresses"),
    ("anonymized_conversations", "schema_matches"),
    ("release_records", "counts_conserved_from_raw_lines"),
    ("release_records", "no_raw_ip_addresses"),
    ("release_records", "no_raw_values_in_instance"),
    ("release_records", "no_rule_matching_pii"),
    ("release_records", "schema_matches"),
}
PUBLIC = [AssetKey("public_release")]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Two generated days through both exports, the table checks on; the instance closed."""
    tmp = tmp_path_factory.mktemp("release_gate")
    generate_logs(tmp / "logs", start_date=START, days=2, conversations_per_day=6, seed=11)
    (tmp / "dagster").mkdir()
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SALT_ENV_VAR, TEST_SALT)
        env.delenv("WILDCHAT_MODE", raising=False)
        with DagsterInstance.local_temp(str(tmp / "dagster")) as instance:
            p = Pipeline(tmp / "logs", tmp / "w.duckdb", instance=instance, table_checks=True)
            p.through_release(*partitions_of(tmp / "logs"))
    return tmp


@pytest.fixture
def pipeline(built, tmp_path, monkeypatch) -> Iterator[Pipeline]:
    """A copy of the built warehouse, release folders and instance."""
    monkeypatch.setenv(SALT_ENV_VAR, TEST_SALT)
    monkeypatch.delenv("WILDCHAT_MODE", raising=False)
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    with DagsterInstance.local_temp(str(copy / "dagster")) as instance:
        yield Pipeline(copy / "logs", copy / "w.duckdb", instance=instance, table_checks=True)


def days_of(p: Pipeline) -> list[str]:
    days = p.table("release_records")["partition_day"].unique().sort().to_list()
    return [partition_key_of(d) for d in days]


def folder_state(p: Pipeline) -> dict[str, str]:
    """Every file under the release root, with its content's digest."""
    return {
        str(f.relative_to(p.releases)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(p.releases.rglob("*"))
        if f.is_file()
    }


def materialized(result) -> set[str]:
    return {
        e.asset_key.to_user_string()
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }


def refusal_rows(failure) -> list[tuple[str, ...]]:
    """The rows of a refusal's metadata table."""
    lines = failure.metadata["refusals"].value.splitlines()[2:]
    return [tuple(cell.strip() for cell in line.strip("|").split("|")) for line in lines]


def failure_text(failure) -> str:
    metadata = {k: str(getattr(v, "value", v)) for k, v in failure.metadata.items()}
    return failure.description + json.dumps(metadata)


def run_without_checks(p: Pipeline, keys: list[AssetKey], day: str):
    job = p.job.get_subset(asset_selection=set(keys), asset_check_selection=set())
    return job.execute_in_process(partition_key=day, instance=p.instance)


def run_checks_only(p: Pipeline, asset: str, day: str):
    keys = {AssetCheckKey(AssetKey(a), name) for a, name in EXPECTED_CHECKS if a == asset}
    job = p.job.get_subset(asset_selection=set(), asset_check_selection=keys)
    return job.execute_in_process(partition_key=day, instance=p.instance)


def plant_ip(p: Pipeline, day: str, ip: str) -> None:
    """A client IP written into one of the day's anonymized conversations (a redaction bug, or
    a hand edit): the day's release records rebuilt from it carry the IP."""
    frame = p.table("anonymized_conversations").filter(
        pl.col("partition_day") == partition_day_value(date.fromisoformat(day))
    )
    row = frame.sort("conversation_id").head(1)
    changed = row.with_columns(
        pl.col("conversation").list.eval(
            pl.element().struct.with_fields(
                pl.concat_str(
                    pl.element().struct.field("content"), pl.lit(f" my ip is {ip}")
                ).alias("content")
            )
        )
    ).select(ANONYMIZED_CONVERSATIONS_SCHEMA.names())
    con = duckdb.connect(str(p.database))
    try:
        con.execute(
            "DELETE FROM main.anonymized_conversations WHERE conversation_id = $id",
            {"id": row["conversation_id"][0]},
        )
        con.register("changed", changed.cast(ANONYMIZED_CONVERSATIONS_SCHEMA).to_arrow())
        con.execute("INSERT INTO main.anonymized_conversations BY NAME SELECT * FROM changed")
    finally:
        con.close()


# -- through Dagster ------------------------------------------------------------------------------


def test_a_clean_run_releases_after_the_gate(pipeline):
    p = pipeline
    days = days_of(p)
    assert len(days) >= 2
    for release in ("public", "full"):
        assert list((p.releases / release / "data").glob("*.parquet"))
        [export] = materializations(p, f"{release}_release")
        assert export.metadata["gate_days"].value == len(days)
        gated = {tuple(c.split(".")) for c in export.metadata["gate_checks"].value}
        assert gated == EXPECTED_CHECKS
    [statistics] = materializations(p, "release_statistics")
    assert statistics.metadata["gate_days"].value == len(days)

    # Every blocking check on the release's tables, found in the code location, passed on
    # every day's latest materialization.
    checks = gated_checks(p.defs.get_repository_def().asset_graph)
    assert {(c.asset, c.name) for c in checks} == EXPECTED_CHECKS
    assert {c.name for c in checks if c.partitioned} == {
        "counts_conserved_from_raw_lines",
        "no_raw_ip_addresses",
        "no_raw_values_in_instance",
        "no_rule_matching_pii",
    }
    assert {c.asset for c in checks if c.partitioned} == {"release_records"}
    decision = decide(days, checks, *read_gate(p.instance, checks, days))
    assert decision.passed and decision.days == tuple(days)

    # The UI says so.
    graph = p.defs.resolve_asset_graph()
    for key in EXPORTS:
        assert "Refuses days whose blocking checks did not pass" in graph.get(key).description


def test_a_failed_blocking_check_refuses_the_day_and_writes_nothing(pipeline):
    p = pipeline
    bad, good = days_of(p)[:2]
    [ip] = (
        p.table("raw_requests")
        .filter(pl.col("ip_valid") & (pl.col("partition_day") == datetime.fromisoformat(bad)))["ip"]
        .head(1)
        .to_list()
    )
    plant_ip(p, bad, ip)
    before, exports = folder_state(p), len(materializations(p, "public_release"))

    # The day's records are rebuilt from the damaged table, and their blocking check fails.
    rebuilt = p.run(RELEASE_RECORDS, bad, raise_on_error=False)
    assert not rebuilt.success
    [evaluation] = [e for e in check_results(rebuilt) if e.asset_key == AssetKey("release_records")]
    assert not evaluation.passed

    # The release, cut in a later run, refuses: the statistics first, so neither export runs.
    result = p.run(EXPORTS, None, raise_on_error=False)
    assert not result.success
    assert materialized(result) == set()
    statistics = step_failure(result, "release_statistics")
    assert "the release statistics refused" in statistics.description

    # An export run alone refuses too, naming the day, the check, and what to do.
    result = p.run(PUBLIC, None, raise_on_error=False)
    assert not result.success and materialized(result) == set()
    failure = step_failure(result, "public_release")
    assert "the public release refused, nothing written" in failure.description
    assert f"{bad}: " in failure.description
    assert "release_records.no_raw_ip_addresses failed" in failure.description
    assert "materialize each listed day's release_records again with its checks" in (
        failure.description
    )
    assert good not in failure.description
    assert failure.metadata["refused_days"].value == [bad]
    table = failure.metadata["refusals"].value
    assert "| day | asset | check | status |" in table
    assert f"| {bad} | release_records | no_raw_ip_addresses | failed |" in table
    # Days, checks and statuses only: not the address, in no notation of it.
    text = failure_text(failure) + failure_text(statistics)
    assert ip not in text

    # Not a file of either release changed, and no staging folder was left.
    assert folder_state(p) == before
    assert sorted(f.name for f in p.releases.iterdir()) == ["full", "history", "public"]

    # Repaired: anonymized again. Its own raw-IP check, which scans the day's other tables
    # too, fails on the records still holding the address; the records rebuilt clean pass.
    # The gate now refuses the day on anonymized_conversations' check.
    assert not p.run(ANONYMIZATION, bad, raise_on_error=False).success
    assert p.run(RELEASE_RECORDS, bad).success
    failure = step_failure(p.run(PUBLIC, None, raise_on_error=False), "public_release")
    assert failure.metadata["refused_days"].value == [bad]
    # Its schema check, a later step of that run, did not run.
    assert refusal_rows(failure) == [
        (bad, "anonymized_conversations", "no_raw_ip_addresses", "failed"),
        (bad, "anonymized_conversations", "schema_matches", "not_evaluated"),
    ]
    assert folder_state(p) == before
    # Anonymized once more, on clean tables, and its records rebuilt: released.
    p.anonymize(bad)
    p.release(bad)
    assert len(materializations(p, "public_release")) == exports + 1


def test_a_day_materialized_again_without_its_checks_is_refused_as_stale(pipeline):
    p = pipeline
    fresh, stale = days_of(p)[:2]
    before, exports = folder_state(p), len(materializations(p, "public_release"))
    again = run_without_checks(p, RELEASE_RECORDS, stale)
    assert again.success and check_results(again, "no_raw_ip_addresses") == []

    result = p.run(PUBLIC, None, raise_on_error=False)
    assert not result.success
    failure = step_failure(result, "public_release")
    assert failure.metadata["refused_days"].value == [stale]
    assert fresh not in failure.description
    table = failure.metadata["refusals"].value
    for name in (
        "counts_conserved_from_raw_lines",
        "no_raw_ip_addresses",
        "no_raw_values_in_instance",
        "no_rule_matching_pii",
    ):
        assert f"| {stale} | release_records | {name} | stale |" in table
    # Recorded without a partition: no evaluation of the new materialization.
    assert f"| {stale} | release_records | schema_matches | not_evaluated |" in table
    assert "anonymized_conversations" not in table
    assert folder_state(p) == before

    # Just the checks, on what is there now: the day is released.
    assert run_checks_only(p, "release_records", stale).success
    assert p.run(PUBLIC, None).success
    assert len(materializations(p, "public_release")) == exports + 1


# -- the decision, on its own ----------------------------------------------------------------------

RECORDS = GatedCheck("release_records", "no_raw_ip_addresses", partitioned=True)
SCHEMA = GatedCheck("release_records", "schema_matches", partitioned=False)
ANON_IP = GatedCheck("anonymized_conversations", "no_raw_ip_addresses", partitioned=False)


def ok(target: int | None) -> Evaluation:
    return Evaluation("SUCCEEDED", target)


def bad(target: int | None) -> Evaluation:
    return Evaluation("FAILED", target)


def test_judge_one_check_on_one_day():
    assert judge(10, ok(10)) is GateStatus.PASSED
    assert judge(10, bad(10)) is GateStatus.FAILED
    assert judge(10, ok(7)) is GateStatus.STALE
    # A failure on an older materialization: that data is gone; the new one was never judged.
    assert judge(10, bad(7)) is GateStatus.STALE
    # No target: the partition had no materialization when the check ran.
    assert judge(10, ok(None)) is GateStatus.STALE
    assert judge(10, None) is GateStatus.NOT_EVALUATED
    assert judge(10, Evaluation("PLANNED", None)) is GateStatus.NO_RESULT
    assert judge(None, ok(10)) is GateStatus.NOT_MATERIALIZED


def test_decide_lists_every_refused_day_and_check():
    days = ["2024-06-01", "2024-06-02", "2024-06-03", "2024-06-04", "2024-06-05"]
    materializations = {
        "release_records": {"2024-06-01": 11, "2024-06-02": 12, "2024-06-03": 13, "2024-06-04": 14},
        "anonymized_conversations": {d: i for i, d in enumerate(days, start=1)},
    }
    histories = {
        RECORDS: CheckHistory(
            by_day={
                "2024-06-01": ok(11),
                "2024-06-02": bad(12),
                "2024-06-03": ok(3),  # judged an older materialization
                "2024-06-05": ok(None),
            }
        ),
        # Recorded without a partition, newest first: the newest evaluation of each day's
        # latest materialization counts, an older one of the same materialization does not.
        SCHEMA: CheckHistory(newest_first=[ok(14), ok(13), ok(12), bad(11), ok(11), ok(2)]),
        ANON_IP: CheckHistory(newest_first=[ok(5), ok(4), ok(3), ok(2), ok(1)]),
    }
    decision = decide(days, [RECORDS, SCHEMA, ANON_IP], materializations, histories)
    assert not decision.passed
    assert [(r.day, r.asset, r.check, r.status) for r in decision.refusals] == [
        ("2024-06-01", "release_records", "schema_matches", GateStatus.FAILED),
        ("2024-06-02", "release_records", "no_raw_ip_addresses", GateStatus.FAILED),
        ("2024-06-03", "release_records", "no_raw_ip_addresses", GateStatus.STALE),
        ("2024-06-04", "release_records", "no_raw_ip_addresses", GateStatus.NOT_EVALUATED),
        ("2024-06-05", "release_records", "no_raw_ip_addresses", GateStatus.NOT_MATERIALIZED),
        ("2024-06-05", "release_records", "schema_matches", GateStatus.NOT_MATERIALIZED),
    ]
    assert decision.refused_days == days
    text = decision.description("the full release")
    assert text.startswith("Release gate: the full release refused, nothing written. 5 of 5")
    assert "2024-06-02: release_records.no_raw_ip_addresses failed" in text
    assert "stale: the check last ran on an older materialization of the day" in text
    assert "| 2024-06-03 | release_records | no_raw_ip_addresses | stale |" in decision.markdown()

    # All passed: nothing refused. No blocking check defined: nothing to refuse on.
    materializations["release_records"]["2024-06-05"] = 15
    latest = materializations["release_records"]
    histories[RECORDS] = CheckHistory(by_day={d: ok(m) for d, m in latest.items()})
    histories[SCHEMA] = CheckHistory(newest_first=[ok(15), bad(14), ok(14), ok(13), ok(12), ok(11)])
    assert not decide(days, [RECORDS, SCHEMA, ANON_IP], materializations, histories).passed
    histories[SCHEMA] = CheckHistory(newest_first=[ok(15), ok(14), ok(13), ok(12), ok(11)])
    assert decide(days, [RECORDS, SCHEMA, ANON_IP], materializations, histories).passed
    assert decide(days, [], {}, {}).passed
    # No history at all: every day not evaluated.
    never = decide(days[:2], [ANON_IP], materializations, {})
    assert {r.status for r in never.refusals} == {GateStatus.NOT_EVALUATED}
    assert never.refused_days == days[:2]


def test_the_description_stays_short_over_a_year_of_refused_days():
    """Every check refused on every day, on every status: the description still fits what the
    step exit keeps, and the table says it was cut."""
    days = [f"2024-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29)]
    checks = [GatedCheck(a, n, a == "release_records" and n != "schema_matches") for a, n in
              EXPECTED_CHECKS]  # fmt: skip
    latest = {d: i for i, d in enumerate(days[1:], start=100)}
    evaluations = [ok(None), bad(None), Evaluation("PLANNED", None)]
    by_day = {d: evaluations[i % 3] if i % 3 else bad(m) for i, (d, m) in enumerate(latest.items())}
    decision = decide(
        days,
        checks,
        {"release_records": latest, "anonymized_conversations": latest},
        {c: CheckHistory(by_day=by_day) for c in checks if c.partitioned},
    )
    assert {r.status for r in decision.refusals} == set(GateStatus) - {GateStatus.PASSED}
    assert len(decision.refusals) == len(checks) * len(days)
    text = decision.description("the public release")
    assert f"{len(days)} of {len(days)} day(s)" in text
    assert "more day(s)" in text and days[0] in text and days[-1] not in text
    assert len(text) < 2000  # what the step exit keeps of a description
    assert "_and " in decision.markdown()
    assert decision.markdown().count("\n| 2024-") == TABLE_ROWS


def test_partition_keys_and_gated_assets():
    assert partition_key_of(datetime(2024, 6, 3)) == "2024-06-03"
    assert partition_key_of(date(2024, 6, 3)) == "2024-06-03"
    assert partition_key_of("2024-06-03 00:00:00") == "2024-06-03"
    assert set(GATED_ASSETS) == {"release_records", "anonymized_conversations"}
