"""Geo enrichment and language ID end to end: Dagster assets over a real DuckDB file."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from wildchat_dag.core.utterances import conversation_utterances
from wildchat_dag.defs.geo.geo import GeoStatus
from wildchat_dag.loggen.generator import generate_logs
from wildchat_dag.loggen.replay import fill_missing_turns, replay_conversations
from wildchat_dag_tests.geo_databases import city, write_city_database
from wildchat_dag_tests.pipeline import (
    GEO,
    Pipeline,
    check_results,
    materializations,
    partitions_of,
    write_json_lines,
)

START = date(2024, 4, 1)
ENRICHMENT_TABLES = (
    "user_turn_locations",
    "conversation_locations",
    "utterance_languages",
    "conversation_languages",
)


pytestmark = pytest.mark.usefixtures("ip_salt")


@pytest.fixture
def generated(tmp_path) -> Path:
    log_root = tmp_path / "logs"
    generate_logs(log_root, start_date=START, days=2, conversations_per_day=150, seed=5)
    return log_root


def enrich(p: Pipeline, *partitions: str) -> None:
    p.locate(*partitions)
    p.identify_languages(*partitions)


def test_every_turn_and_conversation_is_enriched_once_and_no_ip_leaves(tmp_path, generated):
    partitions = partitions_of(generated)
    p = Pipeline(generated, tmp_path / "w.duckdb")
    p.ingest(*partitions)
    p.link(*partitions)
    enrich(p, *partitions)

    linked = p.table("linked_conversations")
    utterances = conversation_utterances(linked)
    keys = ["conversation_id", "utterance_index"]
    located = p.table("user_turn_locations")
    languages = p.table("utterance_languages")
    # Counts are conserved: every user turn located once, every utterance identified once.
    assert (
        located.select(keys)
        .sort(keys)
        .equals(utterances.filter(pl.col("role") == "user").select(keys).sort(keys))
    )
    assert languages.select(keys).sort(keys).equals(utterances.select(keys).sort(keys))
    for table in ("conversation_locations", "conversation_languages"):
        assert sorted(p.table(table)["conversation_id"]) == sorted(linked["conversation_id"])

    # No address of any kind leaves the raw layer, and the blocking check says so.
    for table in ENRICHMENT_TABLES:
        assert "ip" not in p.table(table).columns
    (check,) = check_results(p.run(GEO, partitions[0]))
    assert check.passed

    # The generator's documentation-range clients are reserved, the rest mostly located.
    joined = located.join(utterances.select(*keys, "ip"), on=keys)
    doc = joined.filter(pl.col("ip").str.starts_with("198.51.100."))
    assert doc.height and set(doc["geo_status"]) == {GeoStatus.RESERVED}
    assert (located["geo_status"] == GeoStatus.LOCATED).mean() > 0.6
    assert set(located["geoip_snapshot"]) == {date(2018, 7, 3)}
    assert languages["language"].n_unique() >= 10

    # The metadata counts every reason, and the run log says the 2018 database was used.
    (latest,) = materializations(p, "user_turn_locations")[-1:]
    meta = latest.metadata
    statuses = {k.removeprefix("status/"): v.value for k, v in meta.items() if "status/" in k}
    assert set(statuses) == {
        GeoStatus.LOCATED,
        GeoStatus.NO_COUNTRY,
        GeoStatus.NOT_IN_DATABASE,
        *GeoStatus.UNLOCATABLE,
    }
    day_turns = located.filter(
        pl.col("partition_day").dt.date().cast(pl.String) == latest.partition
    )
    assert sum(statuses.values()) == meta["user_turns"].value == day_turns.height
    assert meta["embedded_2018_database"].value is True
    assert meta["geoip_names"].value == "GeoLite2-City built 2018-07-03 (the embedded snapshot)"
    assert meta["subdivision"].value == "most_specific"
    logs = [
        e.dagster_event.message if e.dagster_event else e.user_message
        for e in p.instance.all_logs(p.instance.get_runs(limit=1)[0].run_id)
    ]
    assert any("GeoLite2-City snapshot of 2018-07-03" in (m or "") for m in logs)


def test_rematerializing_in_any_order_gives_the_same_rows(tmp_path, generated):
    partitions = partitions_of(generated)
    p = Pipeline(generated, tmp_path / "w.duckdb")
    p.ingest(*partitions)
    p.link(*partitions)
    enrich(p, *partitions)
    once = p.snapshot(ENRICHMENT_TABLES)
    for day in reversed(partitions):
        enrich(p, day, day)
    again = p.snapshot(ENRICHMENT_TABLES)
    for name in ENRICHMENT_TABLES:
        assert once[name].equals(again[name]), name


def test_a_snapshot_folder_places_each_turn_by_its_date(tmp_path, requests_factory):
    """A conversation across midnight whose address moved country overnight, by snapshot; a
    country renamed in the newer snapshot carries its new name on both days."""
    folder = tmp_path / "geoip"
    write_city_database(
        folder / "2024-04-01.mmdb",
        {
            "81.2.69.0/24": city("United Kingdom", "England"),
            "2a02:1800::/24": city("Belgium", geonames=(2802361,)),
        },
        built=date(2024, 4, 1),
    )
    write_city_database(
        folder / "2024-04-02.mmdb",
        {
            "81.2.69.0/24": city("Ireland", "Leinster"),
            "2a02:1800::/24": city("Kingdom of Belgium", geonames=(2802361,)),
        },
        built=date(2024, 4, 2),
    )
    first = requests_factory.first("Hi", "Hello!", "2024-04-01T23:58:00", ip="81.2.69.142")
    second = requests_factory.follow(first, "And now?", "Still here.", "2024-04-02T00:03:00")
    other = requests_factory.first(
        "Hallo", "Hallo!", "2024-04-01T10:00:00", ip="[2a02:1810::7]:443", ua="UA-2"
    )
    office = requests_factory.first(
        "From work", "Hi.", "2024-04-01T11:00:00", ip="10.20.30.40", ua="UA-3"
    )
    write_json_lines(tmp_path / "logs" / "2024-04-01", [first, other, office])
    write_json_lines(tmp_path / "logs" / "2024-04-02", [second])
    p = Pipeline(tmp_path / "logs", tmp_path / "w.duckdb", geoip_path=folder)
    p.ingest("2024-04-01", "2024-04-02")
    p.link("2024-04-01", "2024-04-02")
    p.locate("2024-04-01")

    turns = p.table("user_turn_locations").sort("conversation_id", "utterance_index")
    answer = ("turn_identifier", "country", "state", "geo_status", "geoip_snapshot")
    by_turn = {row[0]: row[1:] for row in turns.select(answer).iter_rows()}
    assert by_turn == {
        first["turn_id"]: ("United Kingdom", "England", "located", date(2024, 4, 1)),
        second["turn_id"]: ("Ireland", "Leinster", "located", date(2024, 4, 2)),
        # Located by the 04-01 snapshot, named by the newest.
        other["turn_id"]: ("Kingdom of Belgium", None, "located", date(2024, 4, 1)),
        office["turn_id"]: (None, None, "private", date(2024, 4, 1)),
    }
    conversations = {
        row[0]: row[1:]
        for row in p.table("conversation_locations")
        .select("conversation_id", "country", "state", "user_turns", "located_turns")
        .iter_rows()
    }
    # One turn each in two countries: the earlier turn's country wins the tie.
    assert conversations[first["turn_id"]] == ("United Kingdom", "England", 2, 2)
    assert conversations[office["turn_id"]] == (None, None, 1, 0)

    (latest,) = materializations(p, "user_turn_locations")
    assert latest.metadata["embedded_2018_database"].value is False
    assert latest.metadata["geoip_source"].value == str(folder)
    snapshots_table = latest.metadata["geoip_snapshots"].value
    assert "2024-04-01" in snapshots_table and "2024-04-02" in snapshots_table
    # Which snapshot named the values: its type and date, not its path.
    names = latest.metadata["geoip_names"].value
    assert names.startswith("GeoLite2-City built 2024-04-02 (the newest of 2 snapshots")
    assert str(tmp_path) not in names
    assert latest.metadata["geoip_names_build_date"].value == "2024-04-02"
    assert latest.metadata["geoip_names_database_type"].value == "GeoLite2-City"
    assert latest.metadata["names_from_newest"].value is True
    assert latest.metadata["turns_renamed"].value == 1


def test_a_raw_ip_written_next_to_the_locations_fails_the_blocking_check(tmp_path, generated):
    day = partitions_of(generated)[0]
    p = Pipeline(generated, tmp_path / "w.duckdb")
    p.ingest(day)
    p.link(day)
    raw_ip = p.table("raw_requests")["ip"].drop_nulls()[0]
    con = duckdb.connect(str(p.database))
    con.execute(
        "CREATE TABLE main.location_debug AS SELECT $day::TIMESTAMP AS partition_day, "
        "7::BIGINT AS conversation_id, $ip AS looked_up",
        {"day": day, "ip": raw_ip},
    )
    con.close()
    result = p.run(GEO, day, raise_on_error=False)
    (check,) = check_results(result)
    assert not check.passed
    assert check.metadata["tables_with_raw_ips"].value == ["location_debug"]
    assert raw_ip not in str(check.metadata)
    assert not result.success, "the check is blocking"


def test_a_day_without_traffic_is_enriched_with_empty_tables(tmp_path):
    (tmp_path / "logs" / START.isoformat()).mkdir(parents=True)
    p = Pipeline(tmp_path / "logs", tmp_path / "w.duckdb")
    p.ingest(START.isoformat())
    p.link(START.isoformat())
    enrich(p, START.isoformat())
    for table in ENRICHMENT_TABLES:
        assert p.table(table).is_empty(), table


def test_real_conversations_are_english_through_the_asset(tmp_path, wildchat_sample):
    conversations = [
        {**c, "conversation": fill_missing_turns(c["conversation"])} for c in wildchat_sample
    ]
    replayed = replay_conversations(conversations, tmp_path / "logs", start_date=START, days=2)
    partitions = partitions_of(tmp_path / "logs")
    p = Pipeline(tmp_path / "logs", tmp_path / "w.duckdb")
    p.ingest(*partitions)
    p.link(*partitions)
    p.identify_languages(*partitions)
    got = dict(p.table("conversation_languages").select("conversation_id", "language").iter_rows())
    agree = sum(
        got[conv.turn_ids[0]] == conversations[conv.source_index]["language"] for conv in replayed
    )
    assert len(got) == len(replayed) == 187
    assert agree / 187 >= 0.98, f"{agree} of 187 agree with WildChat's label"
