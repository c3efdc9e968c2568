"""Where the ledger still reaches: released records that a request names.

release_records leaves out what the ledger named when the day was built; a request added since
reaches records built before it. The exports refuse to cut a release holding any (one check,
run on what is about to be published), and ``python -m wildchat_dag.takedown apply`` rebuilds
exactly the days that hold them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl

from wildchat_dag.defs.takedowns.ledger import check_key, match_requests

TABLE_EXISTS = (
    "SELECT 1 FROM information_schema.tables WHERE table_schema = 'main' AND table_name = '{table}'"
)
RELEASE_RECORDS_EXIST = TABLE_EXISTS.format(table="release_records")

# What matching needs of every conversation of a table: its hash (release_records has one;
# anonymized_conversations' would have to be computed from all its text, so a hash there is
# matched through the turn id it resolved to), every turn id it holds, every hashed_ip.
MATCHABLE_SQL = """
SELECT
    partition_day,
    conversation_id,
    {hash} AS conversation_hash,
    list_transform(conversation, u -> u.turn_identifier) AS turn_identifiers,
    list_filter(
        list_append(list_transform(conversation, u -> u.hashed_ip), hashed_ip),
        h -> h IS NOT NULL
    ) AS hashed_ips
FROM main.{table}
{where}
"""
MATCHABLE_RECORDS_SQL = MATCHABLE_SQL.replace("{hash}", "conversation_hash").replace(
    "{table}", "release_records"
)

NAMED_SCHEMA = pl.Schema(
    {"partition_day": pl.Date, "conversation_id": pl.Int64, "request_id": pl.String}
)

Query = Callable[[str], pl.DataFrame]


def named_records(query: Query, ledger: pl.DataFrame, where: str = "") -> pl.DataFrame:
    """``(partition_day, conversation_id, request_id)`` of every record of release_records
    (those ``where`` keeps, an SQL WHERE clause) that a request of ``ledger`` names; none
    before release_records exists."""
    if ledger.is_empty() or query(RELEASE_RECORDS_EXIST).is_empty():
        return pl.DataFrame(schema=NAMED_SCHEMA)
    records = query(MATCHABLE_RECORDS_SQL.format(where=where))
    matches = match_requests(ledger, records)
    return (
        matches.join(records.select("conversation_id", "partition_day"), on="conversation_id")
        .select(pl.col("partition_day").cast(pl.Date), "conversation_id", "request_id")
        .sort("partition_day", "conversation_id", "request_id")
    )


def describe_named(named: pl.DataFrame, most_days: int = 10) -> str:
    """What a refusal says: how many conversations, which requests, which days. No key and no
    conversation id: the message is read in the UI and the logs."""
    days = sorted({d.isoformat() for d in named["partition_day"].to_list()})
    requests = sorted(set(named["request_id"].to_list()))
    shown = ", ".join(days[:most_days]) + (
        f" and {len(days) - most_days} more" if len(days) > most_days else ""
    )
    return (
        f"{named['conversation_id'].n_unique()} conversation(s) on {len(days)} day(s) ({shown}) "
        f"are named by takedown request(s) {', '.join(requests)}"
    )


def resolve_hashes(query: Query | None, history_root: Path, hashes: list[str]) -> dict[str, int]:
    """The conversation_id (its first turn id) of each hash, from release_records (``query``;
    None without a warehouse) and from every stored version of both releases: a hash from a
    release published long ago, before the rules last changed, is still found."""
    from wildchat_dag.defs.release.release_schema import RELEASES
    from wildchat_dag.defs.release.release_versions import load_index, load_versions

    # Checked here, not trusted: the hashes are written into the SQL below.
    wanted = {check_key("conversation_hash", h) for h in hashes}
    found: list[pl.DataFrame] = []
    if query is not None and not query(RELEASE_RECORDS_EXIST).is_empty() and wanted:
        listed = ", ".join(f"'{h}'" for h in sorted(wanted))
        found.append(
            query(
                "SELECT conversation_hash, conversation_id FROM main.release_records "
                f"WHERE conversation_hash IN ({listed})"
            )
        )
    for release in RELEASES:
        for info in load_versions(history_root, release):
            index = load_index(info)
            found.append(
                index.filter(pl.col("conversation_hash").is_in(sorted(wanted))).select(
                    "conversation_hash", "conversation_id"
                )
            )
    resolved: dict[str, int] = {}
    for frame in found:
        for digest, conversation_id in frame.iter_rows():
            resolved.setdefault(digest, int(conversation_id))
    return resolved


def named_days(query: Query, ledger: pl.DataFrame) -> list[str]:
    """The days (partition keys) holding a conversation a request names, outside the raw
    layer: in release_records, or in anonymized_conversations (and so in the tables built
    beside it from the same linked conversations)."""
    if ledger.is_empty():
        return []
    days = set(named_records(query, ledger)["partition_day"].to_list())
    if not query(TABLE_EXISTS.format(table="anonymized_conversations")).is_empty():
        sql = MATCHABLE_SQL.format(hash="NULL::VARCHAR", table="anonymized_conversations", where="")
        anonymized = query(sql)
        matched = match_requests(ledger, anonymized)
        days |= set(
            anonymized.join(matched.select("conversation_id").unique(), on="conversation_id")[
                "partition_day"
            ]
            .cast(pl.Date)
            .to_list()
        )
    return sorted(d.isoformat() for d in days)
