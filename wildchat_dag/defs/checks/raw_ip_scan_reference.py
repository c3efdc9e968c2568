"""The naive raw-IP check, as first written: the reference for ``checks.scan_raw_ips``.

Every row of every table outside the raw layer is serialized to JSON (``to_json``) and Python's
regex looks for IP literals in the whole text; the literals found are looked up among every
client IP of the raw logs. It finds only the notations the first version knew (dotted quads and
IPv6 as ``ipaddress`` parses them), and it is kept, with the finder it used, so that the
benchmark (``benchmarks/bench_ip_check.py``) runs the old check against the new one in the same
process. Nothing in the pipeline calls it.
"""

from __future__ import annotations

import re
from datetime import datetime

import polars as pl

from wildchat_dag.core.ip_addresses import canonical_ip, notations
from wildchat_dag.core.schema import RAW_LAYER_TABLES
from wildchat_dag.defs.checks.raw_ip_scan import CLIENT_IPS_AMONG_SQL, Query

_IPV4 = r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9]|\.[0-9])"
_IPV6_RUN = r"[0-9A-Fa-f:.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*"
IP_LITERAL = re.compile(f"{_IPV4}|{_IPV6_RUN}")
IP_LITERAL_HINT = r"[0-9]\.[0-9]|[0-9A-Fa-f]*:[0-9A-Fa-f]*:"

TABLES_SQL = """
SELECT table_name,
       bool_or(column_name = 'partition_day') AS partitioned,
       bool_or(column_name = 'conversation_id') AS has_conversation_id
FROM information_schema.columns WHERE table_schema = 'main'
GROUP BY table_name ORDER BY table_name
"""


def _longest_address(run: str, first: int) -> tuple[int, int, str] | None:
    ends = [len(run)] + [i for i in range(len(run) - 1, first, -1) if run[i] == ":"]
    for end in ends:
        address = canonical_ip(run[first:end])
        if address is not None:
            return first, end, address
    return None


def _addresses_in_run(run: str) -> list[tuple[int, int, str]]:
    first = 1 if run.startswith(":") and not run.startswith("::") else 0
    found = [_longest_address(run, first)]
    colon = run.find(":", first)
    if colon > first and run[colon + 1 : colon + 2] != ":":
        found.append(_longest_address(run, colon + 1))
    return sorted({f for f in found if f is not None})


def find_ip_literals(text: str) -> list[tuple[int, int, str]]:
    found = []
    for match in IP_LITERAL.finditer(text):
        literal = match.group()
        if "." in literal and ":" not in literal:
            address = canonical_ip(literal)
            spans = [(0, len(literal), address)] if address else []
        else:
            spans = _addresses_in_run(literal.rstrip("."))
        for start, end, address in spans:
            found.extend(
                (match.start() + start, match.start() + end, a) for a in notations(address)
            )
    return found


def ip_literals_in(texts: pl.Series) -> pl.DataFrame:
    hinted = texts.str.contains(IP_LITERAL_HINT).fill_null(False)
    rows, addresses = [], []
    for row, text in zip(hinted.arg_true().to_list(), texts.filter(hinted).to_list(), strict=True):
        for address in {a for _, _, a in find_ip_literals(text)}:
            rows.append(row)
            addresses.append(address)
    return pl.DataFrame({"row": rows, "ip": addresses}, schema={"row": pl.Int64, "ip": pl.String})


def rows_as_json_sql(table: str, partitioned: bool, has_conversation_id: bool) -> str:
    key = "conversation_id" if has_conversation_id else "NULL::BIGINT"
    where = "WHERE partition_day = $day" if partitioned else ""
    return (
        f"SELECT {key} AS conversation_id, to_json(t)::VARCHAR AS row FROM main.{table} t {where}"
    )


def _client_ips_among(query: Query, addresses: pl.Series) -> set[str]:
    if addresses.is_empty():
        return set()
    frame = pl.DataFrame({"ip": addresses.unique()})
    return set(query(CLIENT_IPS_AMONG_SQL, None, {"addresses": frame})["ip"].to_list())


def _rows_with_raw_ips(rows: pl.DataFrame, raw_ips: set[str]) -> pl.DataFrame:
    found = ip_literals_in(rows["row"]).filter(pl.col("ip").is_in(list(raw_ips)))
    per_row = found.group_by("row").agg(addresses=pl.col("ip").n_unique().cast(pl.Int64))
    keys = rows.select("conversation_id").with_row_index("row").cast({"row": pl.Int64})
    return per_row.join(keys, on="row").sort("row")


def raw_ips_outside_raw_layer(query: Query, day: datetime) -> dict[str, pl.DataFrame]:
    """Rows of non-raw tables that write out a client IP of the raw logs, by table."""
    findings: dict[str, pl.DataFrame] = {}
    for table, partitioned, has_conversation_id in query(TABLES_SQL).iter_rows():
        if table in RAW_LAYER_TABLES:
            continue
        sql = rows_as_json_sql(table, partitioned, has_conversation_id)
        rows = query(sql, {"day": day} if partitioned else None)
        literals = ip_literals_in(rows["row"])
        raw = _client_ips_among(query, literals["ip"])
        if raw:
            findings[table] = _rows_with_raw_ips(rows, raw)
    return findings
