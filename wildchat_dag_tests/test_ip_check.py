"""The raw-IP check's scan (``defs/checks/raw_ip_scan.py::scan_raw_ips``) on a real DuckDB file,
queried as
the asset check queries it (``Warehouse.query``).

The warehouse is made by hand, small, so that each case is one planted value: client addresses
in every notation in nested and plain text columns, in a table no code names and in a view, the
next day's clients, another day's client, and the look-alikes that must stay findings-free (an
address inside a longer one, a tutorial's resolver, a raw-layer table that holds raw IPs by
design). The naive reference (``checks_reference``) is run on the same file: the new scan finds
everything it finds.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from wildchat_dag.defs.checks import raw_ip_scan_reference as checks_reference
from wildchat_dag.defs.checks.raw_ip_scan import raw_ips_outside_raw_layer, scan_raw_ips
from wildchat_dag.resources.warehouse import Warehouse

DAY = datetime(2024, 6, 3)
NEXT_DAY = DAY + timedelta(days=1)
LATER_DAY = DAY + timedelta(days=5)

CLIENT = "81.2.69.109"
CLIENT_INT = int(ipaddress.IPv4Address(CLIENT))
CLIENT_V6 = "2001:db8:85a3::8a2e:370:7334"
SHORT_CLIENT = "1.2.3.4"
NEXT_DAY_CLIENT = "198.51.100.23"
LATER_CLIENT = "203.0.113.77"  # a client of another day, outside the lookahead

# (conversation_id, text of its first utterance, whether it writes out a client IP)
CONVERSATION_TEXTS = [
    (1, f"My IP is {CLIENT}, why am I blocked?", True),
    (2, "ip 081.002.069.109 here", True),
    (3, f"my address as a number: {CLIENT_INT}", True),
    (4, f"hex 0x{CLIENT_INT:08X}", True),
    (5, "全角８１．２．６９．１０９です", True),
    (6, "ip 81.\u200b2.69.\u200b109", True),
    (7, "ip: 81. 2. 69 .109", True),
    (8, "from ::ffff:5102:456d today", True),
    (9, "0x51.0x2.0x45.0x6d", True),
    (10, f"v6 {ipaddress.IPv6Address(CLIENT_V6).exploded.upper()}", True),
    (11, f"ssh [{CLIENT_V6}%25eth0]:22", True),
    (12, f"我的IP是{CLIENT}谢谢", True),
    (13, f"tomorrow I'll be on {int(ipaddress.IPv4Address(NEXT_DAY_CLIENT))}", True),
    (14, f"my office is {LATER_CLIENT}", True),
    # Look-alikes and allowed mentions.
    (20, "server 11.2.3.45 answers", False),  # holds 1.2.3.4 as a substring
    (21, "version 1.2.3.4.5 is out", False),
    (22, "Use the resolver 8.8.8.8 or 2001:4860:4860::8888", False),
    (23, f"order number {CLIENT_INT}7", False),
    (24, f"a hash a{CLIENT_INT}f", False),
    (25, "std::vector<int> v; at 12:30:45", False),
    (26, f"ticket {int(ipaddress.IPv4Address(LATER_CLIENT))}", False),  # see the test below
    (27, "", False),
]


def utterances(text: str) -> list[dict]:
    return [
        {"role": "user", "content": text, "hashed_ip": "ab" * 32},
        {"role": "assistant", "content": "Sure, here is how.", "hashed_ip": None},
    ]


def create(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    con.register("frame", frame.to_arrow())
    con.execute(f"CREATE TABLE main.{name} AS SELECT * FROM frame")
    con.unregister("frame")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Warehouse:
    path = tmp_path_factory.mktemp("ip_check") / "w.duckdb"
    con = duckdb.connect(str(path))
    try:
        create(
            con,
            "raw_requests",
            pl.DataFrame(
                {
                    "partition_day": [DAY, DAY, DAY, DAY, NEXT_DAY, LATER_DAY],
                    "turn_id": [1, 2, 3, 4, 5, 6],
                    "ip": [CLIENT, CLIENT_V6, SHORT_CLIENT, None, NEXT_DAY_CLIENT, LATER_CLIENT],
                    "messages": [[{"role": "user", "content": f"raw {CLIENT}"}]] * 6,
                }
            ),
        )
        # Raw layer: holds raw IPs by design, never read by the check.
        create(
            con,
            "linked_conversations",
            pl.DataFrame({"partition_day": [DAY], "conversation_id": [1], "ip": [CLIENT]}),
        )
        day_ids = [cid for cid, _, _ in CONVERSATION_TEXTS]
        create(
            con,
            "anonymized_conversations",
            pl.DataFrame(
                {
                    "partition_day": [DAY] * len(day_ids) + [LATER_DAY],
                    "conversation_id": [*day_ids, 99],
                    "model": ["gpt-4"] * (len(day_ids) + 1),
                    "conversation": [utterances(t) for _, t, _ in CONVERSATION_TEXTS]
                    # Another day's partition is not read for this day.
                    + [utterances(f"later day {CLIENT}")],
                }
            ),
        )
        # A plain text column of an enrichment-like table.
        create(
            con,
            "user_turn_locations",
            pl.DataFrame(
                {
                    "partition_day": [DAY, DAY],
                    "conversation_id": [30, 31],
                    "utterance_index": [0, 0],
                    "country": ["Germany", "France"],
                    "state": [f"debug {CLIENT}", None],
                }
            ),
        )
        # Tables that no code names: partitioned with a plain column, unpartitioned with a map
        # and a struct of lists, without conversation ids.
        create(
            con,
            "release_notes",
            pl.DataFrame(
                {
                    "partition_day": [DAY, DAY, NEXT_DAY],
                    "conversation_id": [40, 41, 42],
                    "note": [f"traffic from {CLIENT_V6}", "all quiet", f"next {CLIENT}"],
                }
            ),
        )
        con.execute(
            "CREATE TABLE main.audit_log AS SELECT * FROM (VALUES "
            "(MAP {'host': 'ok'}, {'lines': ['start', 'peer 0x51024' || '56d']}), "
            "(MAP {'host': '8.8.4.4'}, {'lines': ['quiet']})) t(tags, detail)"
        )
        # A view outside the raw layer that exposes the raw column.
        con.execute(
            "CREATE VIEW main.requests_debug AS "
            "SELECT partition_day, turn_id, ip AS note FROM main.raw_requests"
        )
    finally:
        con.close()
    return Warehouse(database=str(path))


@pytest.fixture(scope="module")
def scan(warehouse: Warehouse):
    return scan_raw_ips(warehouse.query, DAY, lookahead_days=1)


def conversation_ids(found: pl.DataFrame) -> set[int]:
    return set(found["conversation_id"].drop_nulls().to_list())


def test_every_notation_in_a_nested_column_is_found(scan) -> None:
    expected = {cid for cid, _, leaks in CONVERSATION_TEXTS if leaks}
    assert conversation_ids(scan.findings["anonymized_conversations"]) == expected


def test_look_alikes_and_allowed_addresses_are_not_findings(scan) -> None:
    """11.2.3.45 holds the client 1.2.3.4 as a substring but is another address; a version
    string, a public resolver, numbers next to digits or letters are no client's."""
    found = conversation_ids(scan.findings["anonymized_conversations"])
    for cid, text, leaks in CONVERSATION_TEXTS:
        if not leaks:
            assert cid not in found, text
    # 8.8.8.8 and the rest are counted, not failed.
    assert scan.stats["ip_literals_not_client_ips"] >= 3
    assert scan.stats["addresses_not_client_ips"] >= 3


def test_another_days_client_is_found_where_it_looks_like_an_address(scan) -> None:
    """The IP-shaped scan checks every client of the raw logs; a bare integer counts only for
    the day's clients (and the next day's), since too many numbers would be somebody's."""
    found = conversation_ids(scan.findings["anonymized_conversations"])
    assert 14 in found  # LATER_CLIENT dotted
    assert 26 not in found  # LATER_CLIENT as an integer
    assert 13 in found  # NEXT_DAY_CLIENT as an integer: the lookahead


def test_a_plain_column_and_a_table_added_later_are_searched(scan) -> None:
    assert conversation_ids(scan.findings["user_turn_locations"]) == {30}
    # release_notes is read for the day only; its next-day row is another partition.
    assert conversation_ids(scan.findings["release_notes"]) == {40}
    # The unpartitioned table is read whole, map and nested list included; no conversation id.
    [row] = scan.findings["audit_log"].to_dicts()
    assert row["conversation_id"] is None and row["addresses"] == 1
    assert "tags.value" in " ".join(scan.stats["tables_searched"]["audit_log"])
    assert "detail.lines[]" in scan.stats["tables_searched"]["audit_log"]


def test_a_view_outside_the_raw_layer_is_searched(scan) -> None:
    assert scan.findings["requests_debug"].height == 3  # the day's non-null client IPs


def test_the_raw_layer_is_not_searched(scan) -> None:
    assert "raw_requests" not in scan.stats["tables_searched"]
    assert "linked_conversations" not in scan.stats["tables_searched"]
    assert not {"raw_requests", "linked_conversations"} & set(scan.findings)


def test_findings_have_the_old_shape_and_no_addresses(scan) -> None:
    written = [CLIENT, CLIENT_V6, str(CLIENT_INT), "81.2.69.109", "5102:456d"]
    for table, found in scan.findings.items():
        assert found.schema == pl.Schema(
            {"row": pl.Int64, "conversation_id": pl.Int64, "addresses": pl.Int64}
        ), table
        assert found["row"].is_unique().all() and (found["addresses"] >= 1).all()
        text = json.dumps(found.to_dicts())
        assert not any(ip in text for ip in written), table
    stats_text = json.dumps(scan.stats)
    assert not any(ip in stats_text for ip in written)
    assert "conversation[].content" in scan.stats["tables_searched"]["anonymized_conversations"]
    assert scan.stats["day_client_ips"] == 4  # three of the day, one of the next
    assert scan.stats["values_confirmed"] <= scan.stats["values_hinted"]


def test_raw_ips_outside_raw_layer_returns_the_findings(warehouse: Warehouse, scan) -> None:
    findings = raw_ips_outside_raw_layer(warehouse.query, DAY)
    assert {t: f.to_dicts() for t, f in findings.items()} == {
        t: f.to_dicts() for t, f in scan.findings.items()
    }


def test_the_new_scan_finds_everything_the_naive_one_does(warehouse: Warehouse, scan) -> None:
    naive = checks_reference.raw_ips_outside_raw_layer(warehouse.query, DAY)
    for table, found in naive.items():
        assert conversation_ids(found) <= conversation_ids(scan.findings[table]), table
    # And more: the notations the naive one cannot read.
    assert conversation_ids(naive["anonymized_conversations"]) < conversation_ids(
        scan.findings["anonymized_conversations"]
    )


def test_a_clean_day_passes(tmp_path: Path) -> None:
    path = tmp_path / "clean.duckdb"
    con = duckdb.connect(str(path))
    try:
        create(
            con,
            "raw_requests",
            pl.DataFrame({"partition_day": [DAY], "turn_id": [1], "ip": [CLIENT]}),
        )
        create(
            con,
            "anonymized_conversations",
            pl.DataFrame(
                {
                    "partition_day": [DAY],
                    "conversation_id": [1],
                    "conversation": [utterances("My IP is <PRESIDIO_ANONYMIZED_IP_ADDRESS>")],
                }
            ),
        )
    finally:
        con.close()
    scan = scan_raw_ips(Warehouse(database=str(path)).query, DAY)
    assert scan.findings == {}
    assert scan.stats["text_values_searched"] == 5  # two contents, two roles, one hash


def test_an_empty_warehouse_passes(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE main.raw_requests (partition_day TIMESTAMP, ip VARCHAR)")
    con.close()
    assert scan_raw_ips(Warehouse(database=str(path)).query, DAY).findings == {}
