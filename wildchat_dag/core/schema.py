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


# -- privacy: detection, frequency, anonymization ----------------------------------------------

# Raw analyzer results, one row per result, keyed by the analyzed text's sha256. Matched text and
# context are raw PII: this table stays inside the privacy boundary, like the raw layer.
PII_CANDIDATES_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "content_sha256": pl.String,
        "entity_type": pl.String,
        "start": pl.Int64,
        "end": pl.Int64,
        "score": pl.Float64,
        "text": pl.String,
        "recognizer": pl.String,
        "context_before": pl.String,
        "context_after": pl.String,
    }
)

# Every utterance of the day's conversations and how its text was scanned.
PII_SCANNED_UTTERANCES_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "conversation_id": pl.Int64,
        "utterance_index": pl.Int64,
        "role": pl.String,
        "content_sha256": pl.String,
        "characters": pl.Int64,
        "language_code": pl.String,
        "language_confidence": pl.Float64,
        "entities_scanned": pl.List(pl.String),
        "ner_model": pl.String,
        "ner_without_model": pl.Boolean,
        "scan_status": pl.String,
        "scan_detail": pl.String,
        "chunks": pl.Int64,
        "characters_scanned": pl.Int64,
        # One value for the whole partition: what decided where detection ran (the rules'
        # gates), and a digest that changes exactly when the detection output does.
        "detection_version": pl.String,
        "detection_digest": pl.String,
    }
)

PII_ENTITY_FREQUENCY_SCHEMA = pl.Schema(
    {
        "entity_type": pl.String,
        "value_key": pl.String,
        "conversations": pl.Int64,
        "days": pl.Int64,
    }
)

ANONYMIZED_UTTERANCE = pl.Struct(
    {
        "turn_identifier": pl.Int64,
        "role": pl.String,
        "content": pl.String,
        "timestamp": UTC_TIME,
        "hashed_ip": pl.String,
        "user_agent": pl.String,
        "accept_language": pl.String,
        "redacted": pl.Boolean,
    }
)

ANONYMIZED_CONVERSATIONS_SCHEMA = pl.Schema(
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
        "hashed_ip": pl.String,
        "user_agent": pl.String,
        "accept_language": pl.String,
        "conversation": pl.List(ANONYMIZED_UTTERANCE),
        "redacted": pl.Boolean,
        "withheld_utterances": pl.Int64,
        "redaction_rules_hash": pl.String,
    }
)

# -- enrichment: geo and language ---------------------------------------------------------------

# One row per user turn. Derived from the raw client IP inside the privacy boundary; holds no
# address, network or coordinates, so it is outside the raw layer (and scanned for raw IPs).
USER_TURN_LOCATIONS_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "conversation_id": pl.Int64,
        "utterance_index": pl.Int64,
        "turn_identifier": pl.Int64,
        "country": pl.String,
        "state": pl.String,
        "geo_status": pl.String,
        # Build date of the GeoIP database that answered (dated snapshots differ by turn).
        "geoip_snapshot": pl.Date,
    }
)

CONVERSATION_LOCATIONS_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "conversation_id": pl.Int64,
        "country": pl.String,
        "state": pl.String,
        "user_turns": pl.Int64,
        "located_turns": pl.Int64,
    }
)

UTTERANCE_LANGUAGES_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "conversation_id": pl.Int64,
        "utterance_index": pl.Int64,
        "turn_identifier": pl.Int64,
        "role": pl.String,
        "language": pl.String,
        "language_code": pl.String,
        "language_confidence": pl.Float64,
        "language_source": pl.String,
    }
)

CONVERSATION_LANGUAGES_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "conversation_id": pl.Int64,
        "language": pl.String,
        "utterances": pl.Int64,
        "utterances_in_language": pl.Int64,
    }
)

# Tables that hold raw client IPs or raw PII. Every other table in the warehouse is scanned for
# raw IP addresses (wildchat_dag/core/checks.py), so a new table is checked unless listed here.
RAW_LAYER_TABLES = frozenset(
    {
        "raw_requests",
        "quarantined_log_lines",
        "linked_conversations",
        "orphaned_requests",
        "pii_candidates",
        "pii_scanned_utterances",
        "pii_entity_frequency",
        "pii_entity_frequency_by_day",
        "pii_entity_frequency_folds",
    }
)
