"""Checks over the stored tables, as SQL for the DuckDB warehouse (no dagster here)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import polars as pl

from wildchat_dag.core.ip_addresses import ip_literals_in
from wildchat_dag.core.schema import RAW_LAYER_TABLES

# ``Warehouse.query``: (sql, parameters, frames) -> rows
Query = Callable[..., pl.DataFrame]

# For the requests of one collection day: how many times each is placed, in a conversation's
# own turns or as an orphan, over every partition. Exactly once is the invariant.
PLACEMENT_SQL = """
WITH day_requests AS (
    SELECT turn_id FROM main.raw_requests WHERE partition_day = $day
),
placed AS (
    SELECT t.turn_id FROM (
        SELECT unnest(own_turn_ids) AS turn_id FROM main.linked_conversations
    ) t SEMI JOIN day_requests USING (turn_id)
    UNION ALL
    SELECT o.turn_id FROM main.orphaned_requests o SEMI JOIN day_requests USING (turn_id)
),
counts AS (
    SELECT r.turn_id, count(p.turn_id) AS times
    FROM day_requests r LEFT JOIN placed p USING (turn_id)
    GROUP BY r.turn_id
)
SELECT
    count(*) AS requests,
    count(*) FILTER (WHERE times = 1) AS placed_once,
    count(*) FILTER (WHERE times = 0) AS not_placed,
    count(*) FILTER (WHERE times > 1) AS placed_twice_or_more,
    list(turn_id ORDER BY turn_id) FILTER (WHERE times <> 1)[1:10] AS sample_turn_ids
FROM counts
"""


# Which of some addresses (table ``addresses``, column ``ip``) are client addresses of the raw
# logs, canonical as ingest stores them.
CLIENT_IPS_AMONG_SQL = """
SELECT DISTINCT r.ip FROM main.raw_requests r SEMI JOIN addresses a ON r.ip = a.ip
"""

TABLES_SQL = """
SELECT table_name,
       bool_or(column_name = 'partition_day') AS partitioned,
       bool_or(column_name = 'conversation_id') AS has_conversation_id
FROM information_schema.columns WHERE table_schema = 'main'
GROUP BY table_name ORDER BY table_name
"""


def rows_as_json_sql(table: str, partitioned: bool, has_conversation_id: bool) -> str:
    """Every value of a table's rows (nested lists and structs too) as one JSON text per row.

    A partitioned table is read for one day (``$day``); an unpartitioned one whole.
    """
    key = "conversation_id" if has_conversation_id else "NULL::BIGINT"
    where = "WHERE partition_day = $day" if partitioned else ""
    return (
        f"SELECT {key} AS conversation_id, to_json(t)::VARCHAR AS row FROM main.{table} t {where}"
    )


def rows_with_raw_ips(rows: pl.DataFrame, raw_ips: set[str]) -> pl.DataFrame:
    """The rows (``conversation_id``, ``row``) that write out one of ``raw_ips``.

    Returns the row's position, ``conversation_id`` and ``addresses`` (how many distinct raw IPs
    it holds); not the addresses themselves, so that a report cannot leak them.
    """
    found = ip_literals_in(rows["row"]).filter(pl.col("ip").is_in(list(raw_ips)))
    per_row = found.group_by("row").agg(addresses=pl.col("ip").n_unique().cast(pl.Int64))
    keys = rows.select("conversation_id").with_row_index("row").cast({"row": pl.Int64})
    return per_row.join(keys, on="row").sort("row")


def client_ips_among(query: Query, addresses: pl.Series) -> set[str]:
    if addresses.is_empty():
        return set()
    frame = pl.DataFrame({"ip": addresses.unique()})
    return set(query(CLIENT_IPS_AMONG_SQL, None, {"addresses": frame})["ip"].to_list())


def raw_ips_outside_raw_layer(query: Query, day: datetime) -> dict[str, pl.DataFrame]:
    """Rows of non-raw tables that write out a client IP of the raw logs, by table.

    Partitioned tables are read for ``day``, others whole. Every table outside
    ``RAW_LAYER_TABLES`` is read, so a table added later is covered without being named here.
    """
    findings: dict[str, pl.DataFrame] = {}
    for table, partitioned, has_conversation_id in query(TABLES_SQL).iter_rows():
        if table in RAW_LAYER_TABLES:
            continue
        sql = rows_as_json_sql(table, partitioned, has_conversation_id)
        rows = query(sql, {"day": day} if partitioned else None)
        literals = ip_literals_in(rows["row"])
        raw = client_ips_among(query, literals["ip"])
        if raw:
            findings[table] = rows_with_raw_ips(rows, raw)
    return findings
