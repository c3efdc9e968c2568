"""Utterances of stored conversations, and the per-conversation summary of a per-utterance value.

Every step that works per utterance (detection, anonymization, geo enrichment, language ID)
numbers utterances the same way, so their tables join on ``(conversation_id, utterance_index)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

from wildchat_dag.core.hashing import sha256_column
from wildchat_dag.core.schema import PARTITION_COLUMN, partition_day_value


def conversation_utterances(conversations: pl.DataFrame) -> pl.DataFrame:
    """One row per utterance of ``linked_conversations``, numbered in order within its
    conversation (``utterance_index``), with every field of the utterance; a null content is
    empty."""
    return (
        conversations.select("conversation_id", "conversation")
        .explode("conversation")
        .unnest("conversation")
        .with_columns(
            utterance_index=pl.int_range(pl.len()).over("conversation_id").cast(pl.Int64),
            content=pl.col("content").fill_null(""),
        )
    )


def linked_utterances(linked: pl.DataFrame) -> pl.DataFrame:
    """``conversation_utterances``, with each text's ``content_sha256``: the key of the
    per-text results (detection, moderation) and of their caches."""
    utterances = conversation_utterances(linked)
    return utterances.with_columns(content_sha256=sha256_column(utterances["content"]))


def most_frequent(utterances: pl.DataFrame, column: str, order: str) -> pl.DataFrame:
    """Per conversation, the most frequent non-null value of ``column``; ties go to the value
    seen first by ``order``. Conversations with no non-null value have no row."""
    return (
        utterances.filter(pl.col(column).is_not_null())
        .group_by("conversation_id", column)
        .agg(n=pl.len(), first_seen=pl.col(order).min())
        .sort("conversation_id", "n", "first_seen", descending=[False, True, False])
        .group_by("conversation_id", maintain_order=True)
        .first()
        .select("conversation_id", column)
    )


@dataclass
class EnrichedDay:
    """A per-utterance table and its per-conversation summary for one partition."""

    utterances: pl.DataFrame
    conversations: pl.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


def counts_of(values: pl.Series) -> dict[str, int]:
    """How many times each non-null value occurs, most frequent first."""
    counts = values.drop_nulls().value_counts(sort=True)
    return {str(value): int(n) for value, n in counts.iter_rows()}


def check_conserved(day: date, what: str, expected: int, got: int) -> None:
    """Every input row is in the output exactly once, or the partition fails, saying so."""
    if expected != got:
        raise RuntimeError(f"{day}: {what}: {expected} in, {got} out")


def day_table(frame: pl.DataFrame, day: date, schema: pl.Schema, *by: str) -> pl.DataFrame:
    """``frame`` as the rows of a partitioned table: the partition column, then the schema's
    columns in order and type, sorted by ``by``."""
    return (
        frame.with_columns(pl.lit(partition_day_value(day)).alias(PARTITION_COLUMN))
        .select(schema.names())
        .cast(schema)  # type: ignore[arg-type]
        .sort(*by)
    )


def conversation_table(
    linked: pl.DataFrame,
    day: date,
    schema: pl.Schema,
    summaries: list[pl.DataFrame],
    counts: list[str],
) -> pl.DataFrame:
    """One row per conversation of ``linked``, with each summary (keyed by conversation_id)
    joined on; ``counts`` are zero where a summary has no row."""
    table = linked.select("conversation_id")
    for summary in summaries:
        table = table.join(summary, on="conversation_id", how="left")
    table = day_table(
        table.with_columns(pl.col(counts).fill_null(0)), day, schema, "conversation_id"
    )
    check_conserved(day, "conversations summarized", linked.height, table.height)
    return table
