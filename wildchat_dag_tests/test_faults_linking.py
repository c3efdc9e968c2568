"""Fault injection for linking: a turn_id that comes back on another day.

Ingest keeps a turn_id unique within a day; across days only linking can tell. The first copy in
(partition_day, source_file, line_number) order is linked, each later copy within the duplicate
horizon is set aside in ``orphaned_requests`` (``duplicate_turn_id``, naming the first copy), and
every window that holds both copies decides alike. Most cases run the pure core on stored-shape
frames built here (no ingest, so the file and line of each copy are chosen by the test); one runs
the real assets on a DuckDB file and checks placement and conservation there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from wildchat_dag.core.hashing import history_hashes
from wildchat_dag.core.schema import PARTITION_COLUMN, REQUESTS_SCHEMA, partition_day_value
from wildchat_dag.defs.linking.linking import (
    COPY_COLUMNS,
    DuplicateTurnIdError,
    LinkResult,
    OrphanReason,
    duplicate_horizon_days,
    horizon_days,
    link_window,
    window_days,
)
from wildchat_dag_tests.conftest import RequestFactory

# Linking marks the day's withdrawn conversations, matching hashed IPs: it needs the salt.
pytestmark = pytest.mark.usefixtures("salt_only")

N = 1  # the lookahead the cases are written for
D0 = date(2024, 1, 1)
DAYS = [D0 + timedelta(days=i) for i in range(8)]
SECRET = "my password is hunter2"  # message text that must never reach a detail
CLIENT_IP = "203.0.113.77"


def day(i: int) -> date:
    return DAYS[i]


def at(i: int, clock: str) -> str:
    return f"{day(i).isoformat()}T{clock}"


@dataclass(frozen=True)
class Copy:
    """A request as it lies in the logs: the file (under its day folder) and line."""

    request: dict[str, Any]
    file: str = "a.jsonl"
    line: int = 0  # 0: the next free line of the file


def stored(copies: list[Copy | dict[str, Any]]) -> pl.DataFrame:
    """Requests as ingest parses them (``REQUESTS_SCHEMA``). Built here, not through ingest: a
    test picks each copy's file and line, which decide which copy is first."""
    rows = []
    next_line: dict[str, int] = {}
    for item in copies:
        c = item if isinstance(item, Copy) else Copy(item)
        r = c.request
        stamp = datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
        source = f"{stamp.date().isoformat()}/{c.file}"
        line = c.line or next_line.get(source, 1)
        next_line[source] = line + 1
        prev, current = history_hashes(r["messages"], r["response"])
        rows.append(
            {
                PARTITION_COLUMN: partition_day_value(stamp.date()),
                "turn_id": r["turn_id"],
                "timestamp": stamp,
                "response_timestamp": datetime.fromisoformat(
                    r["response_timestamp"].replace("Z", "+00:00")
                ),
                "model": r["model"],
                "ip": r["headers"]["x-forwarded-for"],
                "ip_valid": True,
                "user_agent": r["headers"]["user-agent"],
                "accept_language": r["headers"]["accept-language"],
                "messages": r["messages"],
                "response": r["response"],
                "prev_hash": prev,
                "current_hash": current,
                "source_file": source,
                "line_number": line,
            }
        )
    return pl.DataFrame(rows, schema=REQUESTS_SCHEMA)


def link(frame: pl.DataFrame, d: date, with_horizon: bool = True) -> LinkResult:
    """Link ``d`` as the asset does: the window's days, and the turn ids of the horizon."""
    first, last = window_days(d, N)
    h_first, h_last = horizon_days(d, N)
    days = pl.col(PARTITION_COLUMN).dt.date()
    window = frame.filter(days.is_between(first, last))
    earlier = frame.filter(days.is_between(h_first, h_last)).select(COPY_COLUMNS)
    return link_window(window, d, lookahead_days=N, earlier=earlier if with_horizon else None)


def link_days(frame: pl.DataFrame, days: list[date] | None = None) -> dict[date, LinkResult]:
    return {d: link(frame, d) for d in days or DAYS}


def placements(results: dict[date, LinkResult]) -> list[tuple[int, str]]:
    """Every placed request as (turn_id, where), over all partitions: conversation turns by
    turn id, orphan rows by turn id and file:line (a set-aside copy has its own line)."""
    placed = []
    for d, r in results.items():
        for ids in r.conversations["own_turn_ids"].to_list():
            placed += [(t, f"conversation of {d}") for t in ids]
        for t, f, n, reason in r.orphans.select(
            "turn_id", "source_file", "line_number", "reason"
        ).iter_rows():
            placed.append((t, f"{f}:{n} {reason}"))
    return sorted(placed)


def rows_of(frame: pl.DataFrame) -> list[tuple[int, str]]:
    """Each stored request as (turn_id, file:line)."""
    return sorted(
        (t, f"{f}:{n}")
        for t, f, n in frame.select("turn_id", "source_file", "line_number").iter_rows()
    )


def assert_conserved(frame: pl.DataFrame, results: dict[date, LinkResult]) -> None:
    """Every stored request placed exactly once: a set-aside copy by its own line, any other
    by its turn id (the one copy of it that is linked)."""
    orphan_at = {}
    in_conversations: dict[int, int] = {}
    for r in results.values():
        for t, f, n in r.orphans.select("turn_id", "source_file", "line_number").iter_rows():
            key = (t, f, n)
            assert key not in orphan_at, f"{key} is an orphan twice"
            orphan_at[key] = True
        for ids in r.conversations["own_turn_ids"].to_list():
            for t in ids:
                in_conversations[t] = in_conversations.get(t, 0) + 1
    set_aside = {
        (t, f, n)
        for r in results.values()
        for t, f, n, reason in r.orphans.select(
            "turn_id", "source_file", "line_number", "reason"
        ).iter_rows()
        if reason == OrphanReason.DUPLICATE_TURN_ID
    }
    for t, f, n in frame.select("turn_id", "source_file", "line_number").iter_rows():
        times = int((t, f, n) in orphan_at)
        if (t, f, n) not in set_aside:
            times += in_conversations.get(t, 0)
        assert times == 1, f"turn {t} at {f}:{n} placed {times} times"
    assert len(orphan_at) + sum(in_conversations.values()) == frame.height


def set_aside_rows(results: dict[date, LinkResult]) -> pl.DataFrame:
    return pl.concat([r.orphans for r in results.values()]).filter(
        pl.col("reason") == OrphanReason.DUPLICATE_TURN_ID
    )


# -- the cases ------------------------------------------------------------------------------------


def test_a_copy_on_the_next_day_is_set_aside_naming_the_first(requests_factory: RequestFactory):
    f = requests_factory
    first = f.first("hi", "hello", at(2, "10:00:00"), turn_id=7)
    again = f.first(SECRET, "ok", at(3, "09:00:00"), turn_id=7, ip=CLIENT_IP)
    other = f.first("hey", "hi", at(3, "11:00:00"))
    frame = stored([Copy(first, line=17), again, other])
    results = link_days(frame)
    [row] = set_aside_rows(results).iter_rows(named=True)
    assert row[PARTITION_COLUMN].date() == day(3) and row["turn_id"] == 7
    assert row["source_file"] == f"{day(3)}/a.jsonl" and row["line_number"] == 1
    assert row["detail"] == f"first seen at {day(2)}/a.jsonl:17"
    assert row["parent_turn_id"] is None and row["chain_root_turn_id"] is None
    # Its content stays whole in the row: set aside, not lost.
    assert row["messages"][-1]["content"] == SECRET and row["ip"] == CLIENT_IP
    assert results[day(2)].conversations["own_turn_ids"].to_list() == [[7]]
    assert results[day(3)].conversations["own_turn_ids"].to_list() == [[other["turn_id"]]]
    assert results[day(3)].stats["duplicate_turn_ids_set_aside"] == 1
    assert_conserved(frame, results)


def test_a_copy_on_the_previous_day_in_the_file_order_wins(requests_factory: RequestFactory):
    """The copy logged on the earlier day is first even when its timestamp, file name or line
    would sort after the other: the day decides before the file and line."""
    f = requests_factory
    late = f.first("hi", "hello", at(3, "00:00:01"), turn_id=7)
    early = f.first("yo", "hello", at(2, "23:59:59"), turn_id=7)
    frame = stored([Copy(late, file="a.jsonl", line=1), Copy(early, file="z.jsonl", line=900)])
    results = link_days(frame)
    [row] = set_aside_rows(results).iter_rows(named=True)
    assert (row["source_file"], row["detail"]) == (
        f"{day(3)}/a.jsonl",
        f"first seen at {day(2)}/z.jsonl:900",
    )
    assert results[day(2)].conversations["own_turn_ids"].to_list() == [[7]]
    assert_conserved(frame, results)


def test_three_copies_on_three_days_keep_the_first(requests_factory: RequestFactory):
    f = requests_factory
    copies = [f.first(f"copy {i}", "ok", at(2 + i, "12:00:00"), turn_id=7) for i in range(3)]
    frame = stored([Copy(c, line=5 + i) for i, c in enumerate(copies)])
    results = link_days(frame)
    rows = set_aside_rows(results).sort(PARTITION_COLUMN)
    assert rows.select("source_file", "detail").rows() == [
        (f"{day(3)}/a.jsonl", f"first seen at {day(2)}/a.jsonl:5"),
        (f"{day(4)}/a.jsonl", f"first seen at {day(2)}/a.jsonl:5"),
    ]
    kept = [c for r in results.values() for c in r.conversations["conversation"].to_list()]
    assert [[u["content"] for u in c] for c in kept] == [["copy 0", "ok"]]
    assert_conserved(frame, results)


def test_a_set_aside_copy_that_is_a_parent_leaves_its_continuation_an_orphan(
    requests_factory: RequestFactory,
):
    f = requests_factory
    first = f.first("hi", "hello", at(2, "10:00:00"), turn_id=7)
    again = f.first("write a poem", "roses", at(3, "10:00:00"), turn_id=7)
    child = f.follow(again, "shorter", "rose", at(3, "10:05:00"))
    grandchild = f.follow(child, "thanks", "bye", at(4, "08:00:00"))
    frame = stored([first, again, child, grandchild])
    results = link_days(frame)
    orphans = results[day(3)].orphans.select("turn_id", "reason", "chain_root_turn_id").rows()
    assert orphans == [
        (7, OrphanReason.DUPLICATE_TURN_ID, None),
        (child["turn_id"], OrphanReason.FOLLOWS_DUPLICATE_TURN_ID, child["turn_id"]),
        (grandchild["turn_id"], OrphanReason.FOLLOWS_ORPHAN, child["turn_id"]),
    ]
    assert results[day(3)].stats["orphans_follows_duplicate_turn_id"] == 1
    assert_conserved(frame, results)


def test_a_continuation_of_an_identical_later_copy_links_to_the_first(requests_factory):
    """A copy with the same history as the first (a replayed request, re-stamped) is set
    aside, and what continues it continues the first copy."""
    f = requests_factory
    first = f.first("hi", "hello", at(2, "23:00:00"), turn_id=7)
    replay = {**first, "timestamp": at(3, "00:10:00") + "Z"}
    replay["response_timestamp"] = at(3, "00:10:02") + "Z"
    child = f.follow(first, "more", "sure", at(3, "00:20:00"))
    frame = stored([first, replay, child])
    results = link_days(frame)
    assert results[day(2)].conversations["own_turn_ids"].to_list() == [[7, child["turn_id"]]]
    assert set_aside_rows(results)["turn_id"].to_list() == [7]
    assert_conserved(frame, results)


def scenario(f: RequestFactory) -> pl.DataFrame:
    """Traffic over eight days with copies at every distance up to the horizon and beyond,
    chains across midnight, a set-aside parent and a regenerated reply."""
    made: list[Copy] = []
    for i in range(8):
        a = f.first(f"day {i}", "hello", at(i, "23:50:00"))
        b = f.follow(a, "go on", "sure", at(i + 1, "00:05:00") if i < 7 else at(i, "23:55:00"))
        made += [Copy(a, "b.jsonl"), Copy(b, "b.jsonl")]
    for gap in range(1, duplicate_horizon_days(N) + 2):
        turn = 9000 + gap
        one = f.first(f"gap {gap} first", "x", at(1, "09:00:00"), turn_id=turn)
        two = f.first(f"gap {gap} later", "y", at(1 + gap, "08:00:00"), turn_id=turn)
        kid = f.follow(two, "then", "z", at(1 + gap, "08:30:00"))
        made += [
            Copy(one, "c.jsonl", 40 + gap),
            Copy(two, "c.jsonl", 10 + gap),
            Copy(kid, "c.jsonl"),
        ]
    r = f.first("poem", "roses", at(5, "10:00:00"), turn_id=9100)
    made += [Copy(r, "d.jsonl"), Copy(f.first("dup", "x", at(6, "10:00:00"), turn_id=9100))]
    made += [Copy(f.follow(r, "short", "rose", at(6, "11:00:00")))]
    made += [Copy(f.follow(r, "short", "a rose", at(6, "11:01:00")))]
    return stored(made)


def canonical(results: dict[date, LinkResult]) -> dict[date, tuple[list, list]]:
    return {
        d: (
            r.conversations.sort("conversation_id").rows(),
            r.orphans.sort("turn_id", "source_file", "line_number").rows(),
        )
        for d, r in results.items()
    }


def test_windows_agree_and_any_order_gives_the_same_rows(requests_factory: RequestFactory):
    frame = scenario(requests_factory)
    horizon = duplicate_horizon_days(N)
    results = link_days(frame)
    # Every window that holds a copy within the horizon decides it alike.
    verdicts: dict[tuple, set] = {}
    for d, r in results.items():
        first, last = window_days(d, N)
        aside = {tuple(row[:4]): row[4] for row in r.set_aside.rows()}
        for row in frame.select(COPY_COLUMNS).iter_rows():
            if first <= row[1].date() <= last:
                verdicts.setdefault(row, set()).add(aside.get(row))
    assert all(len(v) == 1 for v in verdicts.values()), verdicts
    # The later copy at each distance: set aside up to the horizon, linked beyond it.
    later = {
        turn - 9000: next(iter(verdict)) is not None
        for (turn, partition, _, _), verdict in verdicts.items()
        if 9000 < turn < 9100 and partition.date() != day(1)
    }
    assert later == {gap: gap <= horizon for gap in range(1, horizon + 2)}
    # Linked again in other orders, and over a shuffled frame: the same rows.
    expected = canonical(results)
    for order in (list(reversed(DAYS)), DAYS[3:] + DAYS[:3]):
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=len(order[0].isoformat()))
        again = {d: link(shuffled, d) for d in order}
        assert canonical(again) == expected
    # Materializing a day again replaces its rows: the union over days is unchanged.
    assert placements({**results, day(5): link(frame, day(5))}) == placements(results)


def test_conservation_holds_but_for_copies_beyond_the_horizon(requests_factory):
    frame = scenario(requests_factory)
    results = link_days(frame)
    beyond = 9000 + duplicate_horizon_days(N) + 1
    within = frame.filter(pl.col("turn_id") != beyond)
    assert_conserved(within, link_days(within))
    # The copies farther apart never meet: each is linked in its own window, and the turn id
    # is placed twice, which the placement check reports.
    placed = [p for p in placements(results) if p[0] == beyond]
    assert len(placed) == 2 and all(p[1].startswith("conversation of") for p in placed)
    with pytest.raises(AssertionError, match=f"turn {beyond} .* placed 2 times"):
        assert_conserved(frame, results)


def test_details_and_errors_never_quote_raw_values(requests_factory: RequestFactory):
    f = requests_factory
    first = f.first(SECRET, "hello", at(2, "10:00:00"), turn_id=7, ip=CLIENT_IP)
    again = f.first(SECRET, "hello", at(3, "10:00:00"), turn_id=7, ip=CLIENT_IP)
    frame = stored([first, again])
    results = link_days(frame)
    details = set_aside_rows(results)["detail"].to_list()
    stats = json.dumps([r.stats for r in results.values()])
    for text in (*details, stats):
        assert SECRET not in text and CLIENT_IP not in text and "hello" not in text
    # The same stored line twice is a table written twice, not a copy: it fails, by file and
    # line only.
    with pytest.raises(DuplicateTurnIdError) as error:
        link(pl.concat([frame, frame.head(1)]), day(2))
    assert f"turn_id 7 at {day(2)}/a.jsonl:1" in str(error.value)
    assert SECRET not in str(error.value) and CLIENT_IP not in str(error.value)


def test_a_copy_on_the_same_day_is_set_aside_too(requests_factory: RequestFactory):
    """Ingest quarantines it; a table that holds one anyway is still linked, by the same order."""
    f = requests_factory
    first = f.first("hi", "hello", at(2, "10:00:00"), turn_id=7)
    again = f.first("yo", "hello", at(2, "09:00:00"), turn_id=7)
    frame = stored([Copy(first, "a.jsonl", 3), Copy(again, "b.jsonl", 1)])
    results = link_days(frame)
    assert set_aside_rows(results).select("source_file", "detail").rows() == [
        (f"{day(2)}/b.jsonl", f"first seen at {day(2)}/a.jsonl:3")
    ]
    assert_conserved(frame, results)


def test_without_the_horizon_a_window_edge_copy_is_linked(requests_factory: RequestFactory):
    """Why linking reads the turn ids of the horizon: the window of day 5 starts on day 3, and
    a copy there whose first copy is on day 2 is set aside only with them."""
    f = requests_factory
    first = f.first("hi", "hello", at(2, "10:00:00"), turn_id=7)
    again = f.first("yo", "hello", at(3, "10:00:00"), turn_id=7)
    frame = stored([first, again])
    assert link(frame, day(5)).set_aside.height == 1
    assert link(frame, day(5), with_horizon=False).set_aside.is_empty()


# -- the real assets ------------------------------------------------------------------------------


def test_real_assets_set_aside_a_copy_and_conserve_counts(
    tmp_path: Path, requests_factory: RequestFactory
):
    from wildchat_dag.defs.checks.table_rules import ORPHANED_OF_DAY_SQL, PLACEMENT_SQL
    from wildchat_dag.resources.warehouse import Warehouse
    from wildchat_dag_tests.pipeline import Pipeline, materializations, write_json_lines

    f = requests_factory
    f.next_id = 100
    first = f.first("hi", "hello", "2024-01-01T10:00:00", turn_id=7)
    again = f.first(SECRET, "hello", "2024-01-02T10:00:00", turn_id=7, ip=CLIENT_IP)
    child = f.follow(again, "more", "ok", "2024-01-02T10:05:00")
    log_root = tmp_path / "logs"
    write_json_lines(log_root / "2024-01-01", [first])
    pad = f.first("pad", "x", "2024-01-02T09:00:00")
    write_json_lines(log_root / "2024-01-02", [pad, again, child])
    p = Pipeline(log_root, tmp_path / "w.duckdb")
    p.ingest("2024-01-01", "2024-01-02")
    # Linked in either order, and again: the same rows, no duplicates.
    for order in (["2024-01-02", "2024-01-01"], ["2024-01-01", "2024-01-02"]):
        p.link(*order)
        orphans = p.table("orphaned_requests").sort("partition_day", "turn_id")
        assert orphans.select("turn_id", "reason", "detail").rows() == [
            (7, "duplicate_turn_id", "first seen at 2024-01-01/requests.jsonl:1"),
            (child["turn_id"], "follows_duplicate_turn_id", None),
        ]
        conversations = p.table("linked_conversations").sort("conversation_id")
        assert conversations["own_turn_ids"].to_list() == [[7], [pad["turn_id"]]]
    warehouse = Warehouse(database=str(p.database))
    for d in (datetime(2024, 1, 1), datetime(2024, 1, 2)):
        placement = warehouse.query(PLACEMENT_SQL, {"day": d}).row(0, named=True)
        assert placement["not_placed"] == placement["placed_twice_or_more"] == 0, placement
        assert placement["duplicates_not_set_aside"] == 0
        assert placement["set_aside"] == (d.day == 2)
    side = warehouse.query(ORPHANED_OF_DAY_SQL, {"day": datetime(2024, 1, 2)})
    assert side.row(0, named=True) == {"orphaned": 1, "set_aside": 1}
    # Counted in the metadata, which shows no raw value.
    written = materializations(p, "orphaned_requests")
    by_day = {m.partition: m.metadata for m in written}
    assert by_day["2024-01-02"]["duplicate_turn_ids_set_aside"].value == 1
    assert by_day["2024-01-01"]["duplicate_turn_ids_set_aside"].value == 0
    shown = json.dumps([{k: str(v.value) for k, v in m.metadata.items()} for m in written])
    assert "duplicate_turn_id" in shown and SECRET not in shown and CLIENT_IP not in shown


def test_the_assets_light_window_gives_the_rows_of_the_whole_window(tmp_path: Path):
    """The asset reads its window without the content, then the kept rows' content, by SQL on
    the DuckDB file; the pure core given the whole stored window gives the very same rows."""
    from wildchat_dag.loggen import generate_logs
    from wildchat_dag_tests.pipeline import Pipeline

    log_root = tmp_path / "logs"
    generate_logs(log_root, start_date=D0, days=4, conversations_per_day=120, seed=5)
    days = DAYS[:4]
    p = Pipeline(log_root, tmp_path / "w.duckdb")
    p.ingest(*(d.isoformat() for d in days))
    p.link(*(d.isoformat() for d in days))
    stored = p.requests()
    tables = {name: p.table(name) for name in ("linked_conversations", "orphaned_requests")}
    kinds = {"conversations": 0, "branches": 0, "orphans": 0}
    for d in days:
        expected = link(stored, d)
        for name, frame in (
            ("linked_conversations", expected.conversations),
            ("orphaned_requests", expected.orphans),
        ):
            got = tables[name].filter(pl.col(PARTITION_COLUMN).dt.date() == d)
            keys = ["conversation_id"] if name == "linked_conversations" else ["turn_id"]
            assert got.sort(keys).to_dicts() == frame.cast(got.schema).sort(keys).to_dicts()
        kinds["conversations"] += expected.conversations.height
        kinds["branches"] += expected.conversations["branch_of_turn_id"].is_not_null().sum()
        kinds["orphans"] += expected.orphans.height
    # Branches and orphans take the content path too, not only plain conversations.
    assert all(kinds.values()), kinds
