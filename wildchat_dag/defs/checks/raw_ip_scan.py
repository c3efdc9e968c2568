"""Checks over the stored tables, as SQL for the DuckDB warehouse (no dagster here).

The raw-IP check (``scan_raw_ips``) reads only text: every string column of every table outside
the raw layer, strings nested in lists and structs too, found from the schema DuckDB reports, so
a table added later is covered without being named. It looks for two things, vectorised, and
confirms the few values they flag with ``find_ip_literals``:

- the day's client addresses in every notation (``ip_search_patterns`` as substrings of
  ``normalize_for_ip_search``'s reading), integers included;
- anything IP-shaped (``IP_SHAPE``), looked up among every client address of the raw logs, so
  that another day's client is found too. IP-shaped literals that are nobody's client address
  (a tutorial's 8.8.8.8) are allowed, and counted.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from wildchat_dag.core.ip_addresses import (
    INTEGER_TOKEN,
    IP_LITERAL_HINT,
    IP_SHAPE,
    find_ip_literals,
    integer_forms,
    ip_literals_in,
    normalize_for_ip_search,
)
from wildchat_dag.core.schema import RAW_LAYER_TABLES

# ``Warehouse.query``: (sql, parameters, frames) -> rows
Query = Callable[..., pl.DataFrame]

# Which of some addresses (table ``addresses``, column ``ip``) are client addresses of the raw
# logs, canonical as ingest stores them.
CLIENT_IPS_AMONG_SQL = """
SELECT DISTINCT r.ip FROM main.raw_requests r SEMI JOIN addresses a ON r.ip = a.ip
"""

# Every column of every table, with DuckDB's name of its type (nested lists and structs too).
COLUMNS_SQL = """
SELECT c.table_name, c.column_name, c.data_type, t.table_type = 'VIEW' AS is_view
FROM information_schema.columns c
JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
WHERE c.table_schema = 'main'
ORDER BY c.table_name, c.ordinal_position
"""

# The client addresses of the day's requests, and of the days after it that its conversations
# may reach into (linking's lookahead).
DAY_CLIENT_IPS_SQL = """
SELECT DISTINCT ip FROM main.raw_requests
WHERE partition_day BETWEEN $first AND $last AND ip IS NOT NULL
"""


def rows_with_raw_ips(rows: pl.DataFrame, raw_ips: set[str]) -> pl.DataFrame:
    """The rows (``conversation_id``, ``row``: one text per row) that write out one of
    ``raw_ips``.

    Returns the row's position, ``conversation_id`` and ``addresses`` (how many distinct raw IPs
    it holds); not the addresses themselves, so that a report cannot leak them.
    """
    found = ip_literals_in(rows["row"], raw_ips).filter(pl.col("ip").is_in(list(raw_ips)))
    per_row = found.group_by("row").agg(addresses=pl.col("ip").n_unique().cast(pl.Int64))
    keys = rows.select("conversation_id").with_row_index("row").cast({"row": pl.Int64})
    return per_row.join(keys, on="row").sort("row")


def client_ips_among(query: Query, addresses: pl.Series) -> set[str]:
    if addresses.is_empty():
        return set()
    frame = pl.DataFrame({"ip": addresses.unique()})
    return set(query(CLIENT_IPS_AMONG_SQL, None, {"addresses": frame})["ip"].to_list())


@dataclass
class RawIpScan:
    """``findings``: by table, the rows that write out a client IP (``row``, ``conversation_id``,
    ``addresses``: how many distinct ones), never the addresses. ``stats``: what was searched."""

    findings: dict[str, pl.DataFrame]
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _TextSource:
    """A table to search: its text leaves, each as a SQL expression of type VARCHAR[]."""

    table: str
    partitioned: bool
    has_conversation_id: bool
    is_view: bool
    leaves: tuple[tuple[str, str], ...]  # (path, expression)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def _text_lists(expr: str, dtype: duckdb.DuckDBPyType, path: str, depth: int = 0):
    """``(path, SQL of the strings inside expr, as VARCHAR[])`` for each string leaf of a value
    of type ``dtype``: lists are flattened, struct, union and map members followed."""
    kind = dtype.id
    if kind in ("varchar", "enum"):
        return [(path, f"[{expr}::VARCHAR]")]
    if kind in ("list", "array"):
        var = f"x{depth}"
        inner = _text_lists(var, dtype.children[0][1], f"{path}[]", depth + 1)
        return [(p, f"flatten(list_transform({expr}, lambda {var}: {e}))") for p, e in inner]
    if kind == "struct":
        return [
            leaf
            for name, child in dtype.children
            for leaf in _text_lists(
                f"struct_extract({expr}, {_literal(name)})", child, f"{path}.{name}", depth
            )
        ]
    if kind == "union":
        return [
            leaf
            for name, child in dtype.children[1:]  # the first member is the tag
            for leaf in _text_lists(
                f"union_extract({expr}, {_literal(name)})", child, f"{path}.{name}", depth
            )
        ]
    if kind == "map":
        (_, key), (_, value) = dtype.children
        return [
            *_text_lists(f"map_keys({expr})", duckdb.list_type(key), f"{path}.key", depth),
            *_text_lists(f"map_values({expr})", duckdb.list_type(value), f"{path}.value", depth),
        ]
    return []


def _column_texts(column: str, data_type: str) -> list[tuple[str, str]]:
    try:
        dtype = duckdb.sqltype(data_type)
    except (duckdb.Error, RuntimeError, ValueError):
        # A type this cannot take apart is read as the text DuckDB writes for it: a string
        # inside it is then still searched.
        return [(f"{column} (as text)", f"[TRY_CAST({_quoted(column)} AS VARCHAR)]")]
    return _text_lists(_quoted(column), dtype, column)


def _text_sources(columns: pl.DataFrame) -> list[_TextSource]:
    sources = []
    for (table,), rows in columns.partition_by("table_name", as_dict=True).items():
        if table in RAW_LAYER_TABLES:
            continue
        names = rows["column_name"].to_list()
        leaves = tuple(
            leaf
            for column, data_type in rows.select("column_name", "data_type").iter_rows()
            for leaf in _column_texts(column, data_type)
        )
        sources.append(
            _TextSource(
                str(table),
                partitioned="partition_day" in names,
                has_conversation_id="conversation_id" in names,
                # A view has no rowid, nor a table that names a column so.
                is_view=bool(rows["is_view"][0]) or "rowid" in names,
                leaves=leaves,
            )
        )
    return sorted(sources, key=lambda s: s.table)


# Where a string was read: the source's index in the high bits, the row below them.
_ROW_BITS = 48


def _values_sql(sources: list[_TextSource]) -> str:
    """Every distinct string of the tables: how often it occurs, the rows it is in (``pos``:
    source and row packed) and their conversation ids. A row is its ``rowid`` (a view's: its
    position among the rows read). Carrying the rows costs little and saves reading the tables
    again to say where a finding is."""
    selects = []
    for index, source in enumerate(sources):
        key = "TRY_CAST(conversation_id AS BIGINT)" if source.has_conversation_id else "NULL"
        row = "row_number() OVER () - 1" if source.is_view else "rowid"
        lists = ", ".join(expr for _, expr in source.leaves)
        where = "WHERE partition_day = $day" if source.partitioned else ""
        selects.append(
            f"SELECT unnest(flatten([{lists}])) AS text, "
            f"({index}::BIGINT << {_ROW_BITS}) | {row} AS pos, {key}::BIGINT AS cid "
            f"FROM main.{_quoted(source.table)} {where}"
        )
    union = "\nUNION ALL\n".join(selects)
    return (
        "SELECT text, count(*) AS n, list(pos) AS pos, list(cid) AS cid "
        f"FROM ({union}) WHERE text IS NOT NULL GROUP BY text"
    )


def _plausible(address: str) -> bool:
    """IPv4, or IPv6 where clients come from (2000::/3) or mapped: what counting IP-shaped
    literals is for. A C++ scope ("std::vector") reads as "d::", which is nobody's."""
    parsed = ipaddress.ip_address(address)
    return (
        parsed.version == 4
        or parsed.ipv4_mapped is not None
        or parsed in ipaddress.ip_network("2000::/3")
    )


def _candidates(distinct: pl.Series, integer_forms: list[str]) -> tuple[pl.Series, int]:
    """The values that may write an address ``find_ip_literals`` finds, and how many passed the
    first filter. Each filter is a necessary condition of the next: the hint on the text as
    written, then, on the normalized text, something IP-shaped or an integer form of a known
    address."""
    hinted = distinct.filter(distinct.str.contains(IP_LITERAL_HINT).fill_null(False))
    normalized = normalize_for_ip_search(hinted)
    flagged = normalized.str.contains(IP_SHAPE).fill_null(False)
    if integer_forms:
        tokens = (
            pl.DataFrame({"token": normalized.str.extract_all(INTEGER_TOKEN)})
            .with_row_index("index")
            .explode("token")
            .filter(pl.col("token").is_in(pl.Series(integer_forms, dtype=pl.String)))
        )
        flagged = flagged | pl.Series(range(hinted.len())).is_in(tokens["index"].implode())
    return hinted.filter(flagged), hinted.len()


def scan_raw_ips(query: Query, day: datetime, *, lookahead_days: int = 1) -> RawIpScan:
    """Rows of non-raw tables that write out a client IP of the raw logs, by table.

    Partitioned tables are read for ``day``, others whole. Every table outside
    ``RAW_LAYER_TABLES`` is read, so a table added later is covered without being named here;
    in it, every string, nested ones too. The day's clients are those of ``raw_requests`` from
    ``day`` to ``lookahead_days`` after it (a conversation's later turns), found in any notation
    (``find_ip_literals`` with them as ``known``); any other client wherever something
    IP-shaped is written (not as a bare integer: too many numbers would be some client's).
    """
    started = time.perf_counter()
    every_source = _text_sources(query(COLUMNS_SQL))
    searched = {s.table: [path for path, _ in s.leaves] for s in every_source}
    sources = [s for s in every_source if s.leaves]
    params = {"day": day} if any(s.partitioned for s in sources) else None
    distinct = (
        query(_values_sql(sources), params)
        if sources
        else pl.DataFrame(
            schema={
                "text": pl.String,
                "n": pl.Int64,
                "pos": pl.List(pl.Int64),
                "cid": pl.List(pl.Int64),
            }
        )
    )
    day_ips = set(
        query(DAY_CLIENT_IPS_SQL, {"first": day, "last": day + timedelta(days=lookahead_days)})[
            "ip"
        ].to_list()
    )
    read_at = time.perf_counter()

    candidates, hinted = _candidates(distinct["text"], integer_forms(day_ips))
    searched_at = time.perf_counter()

    literals = [(text, find_ip_literals(text, day_ips)) for text in candidates.to_list()]
    addresses = {a for _, found in literals for _, _, a in found}
    raw = (addresses & day_ips) | client_ips_among(
        query, pl.Series("ip", sorted(addresses - day_ips), dtype=pl.String)
    )
    matched: dict[str, set[str]] = {}
    not_client_literals = 0
    not_client_addresses: set[str] = set()
    for text, found in literals:
        spans: dict[tuple[int, int], set[str]] = {}
        for start, end, address in found:
            spans.setdefault((start, end), set()).add(address)
        for written in spans.values():
            if written & raw:
                matched.setdefault(text, set()).update(written & raw)
            elif any(_plausible(a) for a in written):
                not_client_literals += 1
                not_client_addresses.add(min(written, key=len))

    findings: dict[str, pl.DataFrame] = {}
    if matched:
        hits = pl.DataFrame(
            [(text, ip) for text, ips in matched.items() for ip in ips],
            schema={"text": pl.String, "ip": pl.String},
            orient="row",
        )
        per_row = (
            distinct.join(hits, on="text")
            .explode("pos", "cid")
            .group_by("pos")
            .agg(pl.col("cid").first(), addresses=pl.col("ip").n_unique().cast(pl.Int64))
            .with_columns(
                source=pl.col("pos") // (1 << _ROW_BITS), row=pl.col("pos") % (1 << _ROW_BITS)
            )
        )
        for (source,), rows in per_row.partition_by("source", as_dict=True).items():
            findings[sources[int(source)].table] = rows.select(  # type: ignore[call-overload]
                pl.col("row").cast(pl.Int64), conversation_id="cid", addresses="addresses"
            ).sort("row")
    done = time.perf_counter()
    stats = {
        "tables_searched": searched,
        "text_values_searched": int(distinct["n"].sum() or 0),
        "distinct_text_values": distinct.height,
        "bytes_searched": int(distinct["text"].str.len_bytes().sum() or 0),
        "values_hinted": hinted,
        "values_confirmed": candidates.len(),
        "day_client_ips": len(day_ips),
        "ip_literals_not_client_ips": not_client_literals,
        "addresses_not_client_ips": len(not_client_addresses),
        "read_seconds": round(read_at - started, 3),
        "search_seconds": round(searched_at - read_at, 3),
        "confirm_seconds": round(done - searched_at, 3),
        "seconds": round(done - started, 3),
    }
    return RawIpScan(findings, stats)


def raw_ips_outside_raw_layer(
    query: Query, day: datetime, *, lookahead_days: int = 1
) -> dict[str, pl.DataFrame]:
    """``scan_raw_ips``' findings: the rows, by table, never the addresses."""
    return scan_raw_ips(query, day, lookahead_days=lookahead_days).findings
