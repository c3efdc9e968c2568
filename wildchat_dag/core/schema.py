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

# A request as ingest parses it and linking's core reads it: its whole history and its reply.
REQUESTS_SCHEMA = pl.Schema(
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

# Every request resends its whole history, so a conversation of n turns logs its first message n
# times. Stored, a request refers to its texts by sha256 (``raw_message_texts``: each distinct
# text of the day once), and the stored request holds no text at all.
MESSAGE_REF = pl.Struct({"role": pl.String, "text_sha256": pl.String})
CONTENT_COLUMNS = ("messages", "response")
RAW_REQUESTS_SCHEMA = pl.Schema(
    {
        **{c: t for c, t in REQUESTS_SCHEMA.items() if c not in CONTENT_COLUMNS},
        "message_refs": pl.List(MESSAGE_REF),
        "response_sha256": pl.String,
    }
)
RAW_MESSAGE_TEXTS_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "text_sha256": pl.String,
        "content": pl.String,
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
        # For ``duplicate_turn_id``: where the first copy of the turn id is, as file:line (the
        # file's path starts with its day folder). Null for the other reasons.
        "detail": pl.String,
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


# -- takedowns ---------------------------------------------------------------------------------

# The day's conversations that a takedown request names, one row per request: the mark that every
# step after linking reads to leave them out. Ids only, no text and no IP: outside the raw
# layer, so the raw-IP scan reads it too.
WITHDRAWN_CONVERSATIONS_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "conversation_id": pl.Int64,
        "request_id": pl.String,
        "reason": pl.String,
        "takedown_ledger_version": pl.String,
    }
)


def partition_day_value(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def days_named(frame: pl.DataFrame) -> str:
    """The distinct days of ``frame``'s rows, in order, for a message: "2024-01-01, 2024-01-02"."""
    return ", ".join(d.isoformat() for d in frame[PARTITION_COLUMN].dt.date().unique().sort())


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

# -- moderation ---------------------------------------------------------------------------------

# The OpenAI Moderation categories of WildChat's spec, as the API names them.
OPENAI_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

# The spec's keys, in its order: every category under the API's name and an underscore one
# (``self_harm_intent``), each mapped to the API's name.
SPEC_CATEGORY_KEYS = dict(
    sorted(
        {
            **{c: c for c in OPENAI_CATEGORIES},
            **{c.replace("-", "_").replace("/", "_"): c for c in OPENAI_CATEGORIES},
        }.items()
    )
)

DETOXIFY_FIELDS = (
    "identity_attack",
    "insult",
    "obscene",
    "severe_toxicity",
    "sexual_explicit",
    "threat",
    "toxicity",
)

_SCORED_UTTERANCE = {
    PARTITION_COLUMN: pl.Datetime("us"),
    "conversation_id": pl.Int64,
    "utterance_index": pl.Int64,
    "turn_identifier": pl.Int64,
    "role": pl.String,
    # sha256 of the scored text: the key of the results cache.
    "content_sha256": pl.String,
    # scored, empty (the spec's empty result), rejected (the API refused the text for good),
    # not_configured (the scorer did not run; ``detail`` says how to enable it).
    "status": pl.String,
}

OPENAI_MODERATION_SCHEMA = pl.Schema(
    {
        **_SCORED_UTTERANCE,
        "flagged": pl.Boolean,
        "categories": pl.Struct({k: pl.Boolean for k in SPEC_CATEGORY_KEYS}),
        "category_scores": pl.Struct({k: pl.Float64 for k in SPEC_CATEGORY_KEYS}),
        # Categories the API returned beyond the spec's list, as JSON objects.
        "extra_categories": pl.String,
        "extra_category_scores": pl.String,
        # Refused whole, scored in parts, merged (flags OR-ed, highest scores).
        "split": pl.Boolean,
        "parts": pl.Int64,
        "model": pl.String,
        "model_version": pl.String,
        "detail": pl.String,
    }
)

DETOXIFY_MODERATION_SCHEMA = pl.Schema(
    {
        **_SCORED_UTTERANCE,
        **{f: pl.Float64 for f in DETOXIFY_FIELDS},
        # 512-token windows the text was scored in (the highest score of each field is kept).
        "windows": pl.Int64,
        "model": pl.String,
        "detail": pl.String,
    }
)

UTTERANCE_TOXICITY_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "conversation_id": pl.Int64,
        "utterance_index": pl.Int64,
        "turn_identifier": pl.Int64,
        "role": pl.String,
        # Null when no scorer scored a non-empty text: unknown, never "clean".
        "toxic": pl.Boolean,
        "openai_flagged": pl.Boolean,
        "detoxify_toxicity": pl.Float64,
        "flagged_by": pl.List(pl.String),
        "scored_by": pl.List(pl.String),
        "toxicity_threshold": pl.Float64,
    }
)

CONVERSATION_TOXICITY_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "conversation_id": pl.Int64,
        "toxic": pl.Boolean,
        "toxic_utterances": pl.Int64,
        "unscored_utterances": pl.Int64,
        "flagged_by": pl.List(pl.String),
        # The scorers that scored every non-empty utterance of the conversation.
        "scored_by": pl.List(pl.String),
        "toxicity_threshold": pl.Float64,
    }
)

# Tables that hold raw client IPs or raw PII. Every other table in the warehouse is scanned for
# raw IP addresses (wildchat_dag/defs/checks/raw_ip_scan.py), so a new table is checked unless
# listed here.
RAW_LAYER_TABLES = frozenset(
    {
        "raw_requests",
        "raw_message_texts",
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
