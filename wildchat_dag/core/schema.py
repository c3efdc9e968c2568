"""Column schemas of the stored tables: one home, used by the core, the assets and the checks.

Every partitioned table carries ``partition_day``: the UTC collection day that owns the row, as a
naive datetime at midnight. It is the IO manager's ``partition_expr``: a naive value compares with
the partition window exactly, whatever the session time zone.
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl

PARTITION_COLUMN = "partition_day"

UTC_TIME = pl.Datetime("us", "UTC")
MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})

RAW_REQUESTS_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "turn_id": pl.Int64,
        "timestamp": UTC_TIME,
        "response_timestamp": UTC_TIME,
        "model": pl.String,
        "ip": pl.String,
        "ip_valid": pl.Boolean,
        "user_agent": pl.String,
        "accept_language": pl.String,
        "messages": pl.List(MESSAGE),
        "response": pl.String,
        "prev_hash": pl.String,
        "current_hash": pl.String,
        "source_file": pl.String,
        "line_number": pl.Int64,
    }
)

QUARANTINE_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "source_file": pl.String,
        "line_number": pl.Int64,
        "reason": pl.String,
        "detail": pl.String,
        "raw_excerpt": pl.String,
        "line_bytes": pl.Int64,
    }
)

UTTERANCE = pl.Struct(
    {
        "turn_identifier": pl.Int64,
        "role": pl.String,
        "content": pl.String,
        "timestamp": UTC_TIME,
        "ip": pl.String,
        "user_agent": pl.String,
        "accept_language": pl.String,
    }
)

LINKED_CONVERSATIONS_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "conversation_id": pl.Int64,
        "model": pl.String,
        "first_turn_timestamp": UTC_TIME,
        "timestamp": UTC_TIME,
        "turn": pl.Int64,
        "own_turn_ids": pl.List(pl.Int64),
        "inherited_turns": pl.Int64,
        "branch_of_turn_id": pl.Int64,
        "ip": pl.String,
        "user_agent": pl.String,
        "accept_language": pl.String,
        "conversation": pl.List(UTTERANCE),
    }
)

ORPHANED_REQUESTS_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "turn_id": pl.Int64,
        "reason": pl.String,
        "chain_root_turn_id": pl.Int64,
        "parent_turn_id": pl.Int64,
        "timestamp": UTC_TIME,
        "response_timestamp": UTC_TIME,
        "model": pl.String,
        "ip": pl.String,
        "user_agent": pl.String,
        "accept_language": pl.String,
        "messages": pl.List(MESSAGE),
        "response": pl.String,
        "source_file": pl.String,
        "line_number": pl.Int64,
    }
)


def partition_day_value(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)
