"""Which of a day's linked conversations the takedown ledger names, and the day without them.

Matched before anything is derived from the conversations: by turn id (a turn_identifier
request, or the first turn id a conversation_hash request resolved to) and by hashed_ip (every
IP of the conversation hashed with the deployment's salt, as anonymization will hash it). A
conversation_hash that resolved to no turn id can only be matched once the text is anonymized:
release_records matches it there, the last gate before a release.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from wildchat_dag.core.ip_addresses import hash_ips
from wildchat_dag.core.schema import WITHDRAWN_CONVERSATIONS_SCHEMA
from wildchat_dag.core.utterances import day_table
from wildchat_dag.defs.takedowns.ledger import MATCHABLE_SCHEMA, match_requests


def withdrawn_of_day(
    day: date, linked: pl.DataFrame, ledger: pl.DataFrame, salt: str, ledger_version: str
) -> pl.DataFrame:
    """``WITHDRAWN_CONVERSATIONS_SCHEMA`` rows: each conversation of ``linked`` (one day of
    linked_conversations) a request of ``ledger`` names, once per request."""
    if ledger.is_empty() or linked.is_empty():
        return day_table(
            pl.DataFrame(schema={k: v for k, v in WITHDRAWN_CONVERSATIONS_SCHEMA.items()}),
            day,
            WITHDRAWN_CONVERSATIONS_SCHEMA,
            "conversation_id",
        )
    utterances = linked.select(
        "conversation_id",
        turns=pl.col("conversation").list.eval(pl.element().struct.field("turn_identifier")),
        ips=pl.concat_list(
            pl.col("conversation").list.eval(pl.element().struct.field("ip")),
            pl.col("ip").cast(pl.String),
        ),
    )
    ips = utterances.select("conversation_id", "ips").explode("ips").drop_nulls("ips")
    hashed = (
        ips.with_columns(hashed=hash_ips(ips["ips"], salt))
        .group_by("conversation_id")
        .agg(hashed_ips=pl.col("hashed"))
    )
    matchable = (
        utterances.select("conversation_id", turn_identifiers="turns")
        .join(hashed, on="conversation_id", how="left")
        .with_columns(
            conversation_hash=pl.lit(None, pl.String),
            hashed_ips=pl.col("hashed_ips").fill_null([]),
        )
        .select(MATCHABLE_SCHEMA.names())
    )
    matched = match_requests(ledger, matchable)
    reasons = ledger.select("request_id", "reason").unique()
    return day_table(
        matched.join(reasons, on="request_id", how="left").with_columns(
            takedown_ledger_version=pl.lit(ledger_version)
        ),
        day,
        WITHDRAWN_CONVERSATIONS_SCHEMA,
        "conversation_id",
        "request_id",
    )


def without_withdrawn(conversations: pl.DataFrame, withdrawn: pl.DataFrame) -> pl.DataFrame:
    """``conversations`` (any frame with conversation_id) less those ``withdrawn`` names."""
    if withdrawn.is_empty():
        return conversations
    return conversations.join(
        withdrawn.select("conversation_id").unique(), on="conversation_id", how="anti"
    )
