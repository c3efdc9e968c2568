"""Requests stored without copies of their history: each distinct text of a day once.

A chat client sends the whole conversation with every request, so a conversation of n turns
logs its first message n times, and a day's logs are mostly copies. Stored as logged, the copies
were 4.4 times the bytes of the same requests without them, and most of ingest's write (the
README's Backfill section).

Ingest therefore stores a day as two tables:

- ``raw_requests``: every request, its history as ``message_refs`` (role and the sha256 of the
  text, in order) and its reply as ``response_sha256``;
- ``raw_message_texts``: each text that the day's requests refer to, once, keyed by its sha256.

A reply is referred to by hash too: the next request of the conversation sends it back as
history. ``with_texts`` (and, in SQL, linking's content query) puts the texts back; a text that
is not there is an error, never a shorter conversation.
"""

from __future__ import annotations

import polars as pl

from wildchat_dag.core.hashing import sha256_column
from wildchat_dag.core.schema import (
    PARTITION_COLUMN,
    RAW_MESSAGE_TEXTS_SCHEMA,
    RAW_REQUESTS_SCHEMA,
    REQUESTS_SCHEMA,
    days_named,
)


class MissingTextError(ValueError):
    """A stored request refers to a text that its day's ``raw_message_texts`` does not hold."""


def _each_message(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """One row per item of the list of structs ``column``, in order: the request's row number,
    its day, and the item's fields (``role`` and ``content`` or ``text_sha256``)."""
    return (
        frame.select(pl.int_range(pl.len()).alias("row"), PARTITION_COLUMN, column)
        .explode(column)
        .unnest(column)
    )


def split_texts(requests: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``REQUESTS_SCHEMA`` rows as stored: (``raw_requests`` rows, ``raw_message_texts`` rows).

    The texts are sorted by day and hash, so that a day ingested again is stored alike."""
    empty = requests.filter(pl.col("messages").list.len().fill_null(0) == 0)
    if not empty.is_empty():
        where = ", ".join(f"{f}:{n}" for f, n in empty.select("source_file", "line_number").rows())
        raise ValueError(f"requests without messages (ingest quarantines them): {where}")
    messages = _each_message(requests, "messages")
    messages = messages.with_columns(text_sha256=sha256_column(messages["content"]))
    responses = requests.select(PARTITION_COLUMN, content="response")
    responses = responses.with_columns(text_sha256=sha256_column(responses["content"]))
    refs = messages.group_by("row", maintain_order=True).agg(
        message_refs=pl.struct("role", "text_sha256")
    )
    stored = pl.concat(
        [
            requests.drop("messages", "response"),
            refs.select("message_refs"),
            responses.select(response_sha256="text_sha256"),
        ],
        how="horizontal",
    )
    texts = (
        pl.concat(
            [
                messages.select(PARTITION_COLUMN, "text_sha256", "content"),
                responses.select(PARTITION_COLUMN, "text_sha256", "content"),
            ]
        )
        .unique([PARTITION_COLUMN, "text_sha256"])
        .sort(PARTITION_COLUMN, "text_sha256")
    )
    return (
        stored.select(RAW_REQUESTS_SCHEMA.names()).cast(RAW_REQUESTS_SCHEMA),  # type: ignore[arg-type]
        texts.select(RAW_MESSAGE_TEXTS_SCHEMA.names()).cast(RAW_MESSAGE_TEXTS_SCHEMA),  # type: ignore[arg-type]
    )


def with_texts(stored: pl.DataFrame, texts: pl.DataFrame) -> pl.DataFrame:
    """``raw_requests`` rows with their texts put back: ``REQUESTS_SCHEMA`` rows, in order.

    ``MissingTextError`` names the days whose texts are missing."""
    key = [PARTITION_COLUMN, "text_sha256"]
    lookup = texts.select(*key, "content")
    refs = _each_message(stored, "message_refs").join(
        lookup, on=key, how="left", maintain_order="left"
    )
    responses = stored.select(PARTITION_COLUMN, text_sha256="response_sha256").join(
        lookup, on=key, how="left", maintain_order="left"
    )
    missing = pl.concat([refs.select(*key, "content"), responses]).filter(
        pl.col("content").is_null()
    )
    if not missing.is_empty():
        raise MissingTextError(
            f"{missing.height} text(s) that raw_requests refers to are not in raw_message_texts "
            f"of {days_named(missing)}: materialize ingest of those days again"
        )
    messages = refs.group_by("row", maintain_order=True).agg(messages=pl.struct("role", "content"))
    full = pl.concat(
        [
            stored.drop("message_refs", "response_sha256"),
            messages.select("messages"),
            responses.select(response="content"),
        ],
        how="horizontal",
    )
    return full.select(REQUESTS_SCHEMA.names()).cast(REQUESTS_SCHEMA)  # type: ignore[arg-type]


def text_share(requests: pl.DataFrame, texts: pl.DataFrame) -> dict[str, int]:
    """What storing each text once saved: texts and characters as logged, and as stored."""
    logged = requests.select(
        texts=pl.col("messages").list.len().sum() + pl.len(),
        characters=pl.col("messages")
        .list.eval(pl.element().struct.field("content").str.len_chars())
        .list.sum()
        .sum()
        + pl.col("response").str.len_chars().sum(),
    ).row(0, named=True)
    return {
        "texts_logged": int(logged["texts"] or 0),
        "texts_stored": texts.height,
        "characters_logged": int(logged["characters"] or 0),
        "characters_stored": int(texts["content"].str.len_chars().sum() or 0),
    }
