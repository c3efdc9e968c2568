"""The spine end to end: logs on disk -> Dagster assets -> DuckDB tables."""

import json
from datetime import date, timedelta

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from wildchat_dag.loggen.generator import generate_logs
from wildchat_dag.loggen.replay import fill_missing_turns, replay_conversations
from wildchat_dag_tests.pipeline import INGEST, LINKING, Pipeline

# Linking marks the day's withdrawn conversations, matching hashed IPs: it needs the salt.
pytestmark = pytest.mark.usefixtures("salt_only")

START = date(2024, 2, 1)


def days(n: int, start: date = START) -> list[str]:
    return [(start + timedelta(days=i)).isoformat() for i in range(n)]


def assert_conserved(p: Pipeline) -> None:
    """read = linked + orphaned + quarantined, and every request is in exactly one place."""
    raw, quarantine = p.table("raw_requests"), p.table("quarantined_log_lines")
    conversations, orphans = p.table("linked_conversations"), p.table("orphaned_requests")
    placed = conversations["own_turn_ids"].explode().drop_nulls().to_list()
    placed += orphans["turn_id"].to_list()
    assert len(placed) == len(set(placed)), "a request is in two places"
    assert sorted(placed) == sorted(raw["turn_id"].to_list())
    lines_on_disk = sum(len(path.read_bytes().splitlines()) for path in p.log_root.rglob("*.jsonl"))
    assert lines_on_disk == raw.height + quarantine.height
    assert lines_on_disk == len(placed) + quarantine.height


@pytest.fixture
def replayed_sample(tmp_path, wildchat_sample):
    conversations = [
        {**c, "conversation": fill_missing_turns(c["conversation"])} for c in wildchat_sample
    ]
    replayed = replay_conversations(conversations, tmp_path / "logs", start_date=START, days=3)
    return replayed, conversations


def test_real_conversations_are_reconstructed_exactly(tmp_path, replayed_sample):
    replayed, conversations = replayed_sample
    log_root = tmp_path / "logs"
    # A file of malformed lines beside the real ones: they are quarantined, nothing else moves.
    (log_root / START.isoformat() / "broken.jsonl").write_text(
        '{"turn_id": \n[]\n{"turn_id": 1}\n', encoding="utf-8"
    )
    partitions = sorted(path.name for path in log_root.iterdir())
    p = Pipeline(log_root, tmp_path / "warehouse.duckdb")
    p.log_root = log_root
    p.ingest(*partitions)
    p.link(*reversed(partitions))

    linked = {
        tuple(row["own_turn_ids"]): row
        for row in p.table("linked_conversations").iter_rows(named=True)
    }
    assert p.table("orphaned_requests").is_empty()
    assert len(linked) == len(conversations) == 187
    crossing = 0
    for conv in replayed:
        row = linked[tuple(conv.turn_ids)]
        got = [{"role": u["role"], "content": u["content"]} for u in row["conversation"]]
        assert got == conversations[conv.source_index]["conversation"]
        assert row["turn"] == len(conv.turn_ids)
        crossing += conv.crosses_midnight
        # The conversation belongs to the day of its first turn, and appears once.
        assert row["partition_day"].date() == row["first_turn_timestamp"].date()
    assert crossing > 0
    assert sum(c.ip_changed for c in replayed) > 0 and sum(c.shared_ip for c in replayed) > 0
    assert p.table("quarantined_log_lines")["reason"].to_list() == [
        "invalid_json",
        "not_an_object",
        "missing_field",
    ]
    assert_conserved(p)


def test_rematerializing_in_any_order_gives_identical_tables(tmp_path):
    log_root = tmp_path / "logs"
    summary = generate_logs(
        log_root, start_date=START, days=4, conversations_per_day=120, seed=11, gzip=False
    )
    assert summary is not None
    partitions = sorted(path.name for path in log_root.iterdir())

    in_order = Pipeline(log_root, tmp_path / "a.duckdb")
    in_order.log_root = log_root
    in_order.ingest(*partitions)
    in_order.link(*partitions)
    expected = in_order.snapshot()

    shuffled = Pipeline(log_root, tmp_path / "b.duckdb")
    shuffled.log_root = log_root
    order = [partitions[i] for i in (2, 0, 3, 1)] + partitions[len(partitions) - 1 :]
    shuffled.ingest(*order)
    shuffled.link(*order, partitions[1])
    shuffled.ingest(partitions[2])  # a re-ingest of a day changes nothing downstream
    shuffled.link(partitions[2], partitions[1])
    got = shuffled.snapshot()

    for name, frame in expected.items():
        assert frame.height > 0 or name == "quarantined_log_lines", name
        assert_frame_equal(got[name], frame, check_row_order=True)
    assert_conserved(shuffled)
    conversations = expected["linked_conversations"]
    assert (conversations["branch_of_turn_id"].is_not_null()).sum() > 0
    crossing = conversations.filter(
        pl.col("timestamp").dt.date() != pl.col("first_turn_timestamp").dt.date()
    )
    assert crossing.height > 0


def test_missing_day_folder_fails_naming_the_path(tmp_path):
    p = Pipeline(tmp_path / "logs", tmp_path / "w.duckdb")
    result = p.run(INGEST, "2024-02-05", raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error
    assert str(tmp_path / "logs" / "2024-02-05") in failure.to_string()


def test_linking_refuses_a_window_with_unmaterialized_lookback(tmp_path):
    log_root = tmp_path / "logs"
    generate_logs(log_root, start_date=START, days=3, conversations_per_day=20, seed=1)
    p = Pipeline(log_root, tmp_path / "w.duckdb")
    p.ingest(days(3)[2])
    result = p.run(LINKING, days(3)[2], raise_on_error=False)
    assert not result.success
    message = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "2024-02-01, 2024-02-02" in message and "were not ingested" in message


def test_empty_day_creates_empty_tables(tmp_path):
    log_root = tmp_path / "logs"
    (log_root / "2024-02-01").mkdir(parents=True)
    p = Pipeline(log_root, tmp_path / "w.duckdb")
    p.ingest("2024-02-01")
    p.link("2024-02-01")
    for name in (
        "raw_requests",
        "raw_message_texts",
        "quarantined_log_lines",
        "linked_conversations",
        "orphaned_requests",
    ):
        assert p.table(name).is_empty()


def test_materialization_metadata_counts(tmp_path):
    log_root = tmp_path / "logs"
    generate_logs(log_root, start_date=START, days=1, conversations_per_day=30, seed=3, gzip=False)
    folder = log_root / START.isoformat()
    with (folder / "requests-00.jsonl").open("a") as handle:
        handle.write("not json\n" + json.dumps({"turn_id": 1}) + "\n")
    p = Pipeline(log_root, tmp_path / "w.duckdb")
    result = p.run(INGEST, START.isoformat())
    events = {
        e.asset_key.path[-1]: e.metadata
        for e in (
            m.event_specific_data.materialization for m in result.get_asset_materialization_events()
        )
    }
    raw, quarantine = events["raw_requests"], events["quarantined_log_lines"]
    assert raw["lines_read"].value == raw["requests_kept"].value + 2
    # Each text once: the logs resend every history, so they hold many times what is stored.
    texts = {k: v.value for k, v in events["raw_message_texts"].items()}
    assert texts["texts_stored"] == p.table("raw_message_texts").height
    assert texts["texts_logged"] > texts["texts_stored"] > raw["requests_kept"].value
    assert texts["characters_logged"] > texts["characters_stored"] > 0
    assert texts["characters_logged_per_stored"] > 1.5
    assert quarantine["reason/invalid_json"].value == 1
    assert quarantine["reason/missing_field"].value == 1


def placement_checks(result) -> list:
    return [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]


def test_placement_check_warns_until_the_owning_day_is_linked(tmp_path):
    log_root = tmp_path / "logs"
    generate_logs(log_root, start_date=START, days=2, conversations_per_day=80, seed=4, gzip=False)
    first, second = days(2)
    p = Pipeline(log_root, tmp_path / "w.duckdb")
    p.ingest(first, second)
    # The second day's requests that continue conversations of the first are owned by the
    # first day, which is not linked yet: the check says so, as a warning.
    (check,) = placement_checks(p.run(LINKING, second))
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["not_placed"].value > 0
    assert check.metadata["placed_twice_or_more"].value == 0
    (check,) = placement_checks(p.run(LINKING, first))
    assert check.passed
    (check,) = placement_checks(p.run(LINKING, second))
    assert check.passed and check.metadata["placed_once"].value == check.metadata["requests"].value


def link_failure(p: Pipeline, day: str) -> str:
    result = p.run(LINKING, day, raise_on_error=False)
    assert not result.success
    return result.get_step_failure_events()[0].event_specific_data.error.to_string()


def test_linking_refuses_a_text_that_is_not_stored_and_a_day_stored_the_old_way(tmp_path):
    """Texts are stored apart from their requests: a lost one stops linking, naming its day,
    instead of linking a conversation without that utterance; so does a day that an older
    ingest stored with full histories and no references."""
    log_root = tmp_path / "logs"
    generate_logs(log_root, start_date=START, days=2, conversations_per_day=20, seed=4)
    p = Pipeline(log_root, tmp_path / "w.duckdb")
    p.ingest(*days(2))
    p.link(*days(2))
    before = p.table("linked_conversations")
    with duckdb.connect(str(p.database)) as con:
        con.execute(
            "DELETE FROM main.raw_message_texts WHERE text_sha256 = (SELECT min(text_sha256) "
            "FROM main.raw_message_texts WHERE partition_day = '2024-02-02')"
        )
    assert "not in raw_message_texts of 2024-02-02" in link_failure(p, days(2)[1])
    p.ingest(days(2)[1])
    p.link(*days(2))
    assert (
        p.table("linked_conversations")
        .sort("conversation_id")
        .equals(before.sort("conversation_id"))
    )
    with duckdb.connect(str(p.database)) as con:
        con.execute(
            "UPDATE main.raw_requests SET message_refs = NULL WHERE partition_day = '2024-02-01'"
        )
    message = link_failure(p, days(2)[0])
    assert "raw_requests of 2024-02-01 were stored by an older ingest" in message
