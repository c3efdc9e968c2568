"""Reading a published release: its shards, one conversation by (shard, row), and what the
conversation view shows of it. Pure: no dagster."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from wildchat_dag.core.schema import OPENAI_CATEGORIES

# The manifest an index folder carries: which release version it indexes.
INDEX_MANIFEST = "index.json"
BATCH_ROWS = 20_000
# WildChat's placeholders and ours: what the conversation view highlights.
PLACEHOLDER = re.compile(r"<PRESIDIO_ANONYMIZED_[A-Z0-9_]+>")


class ReleaseNotFound(LookupError):
    """No release, shard or row where one was asked for."""


def release_shards(folder: Path) -> list[tuple[Path, int]]:
    """The release's Parquet files in order, each with its number of rows."""
    data = Path(folder) / "data"
    paths = sorted(data.glob("*.parquet")) if data.is_dir() else []
    if not paths:
        raise ReleaseNotFound(
            f"{data} holds no Parquet files: is {folder} a release? (materialize its export)"
        )
    return [(path, pq.ParquetFile(path).metadata.num_rows) for path in paths]


def _turn_key(conversation: pl.Expr) -> pl.Expr:
    return (
        conversation.list.eval(pl.element().struct.field("turn_identifier").cast(pl.String))
        .list.join(",")
        .alias("turn_key")
    )


def locator_batches(
    shards: list[tuple[Path, int]], locators: pl.DataFrame, batch_rows: int = BATCH_ROWS
) -> Iterator[pl.DataFrame]:
    """The release's rows, a batch at a time, with where each is (``shard``, ``row``) and,
    from the version's conversation index, the pipeline's ``conversation_id`` and
    ``partition_day`` (null where a row is not in it)."""
    keyed = locators.select(
        "conversation_hash",
        "conversation_id",
        "partition_day",
        turn_key=pl.col("turn_identifiers").cast(pl.List(pl.String)).list.join(","),
    ).unique(["conversation_hash", "turn_key"], keep="first")
    for shard, (path, _) in enumerate(shards):
        offset = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            frame = frame.with_columns(
                shard=pl.lit(shard, pl.Int64),
                row=pl.int_range(offset, offset + frame.height, dtype=pl.Int64),
                turn_key=_turn_key(pl.col("conversation")),
            )
            offset += frame.height
            yield frame.join(
                keyed, on=["conversation_hash", "turn_key"], how="left", maintain_order="left"
            ).drop("turn_key")


def read_conversation(shards: list[tuple[Path, int]], shard: int, row: int) -> dict[str, Any]:
    """One released conversation as a dict of the release's columns."""
    if not 0 <= shard < len(shards):
        raise ReleaseNotFound(f"the release has no shard {shard}")
    path, rows = shards[shard]
    if not 0 <= row < rows:
        raise ReleaseNotFound(f"{path.name} has no row {row}")
    parquet = pq.ParquetFile(path)
    start = 0
    for group in range(parquet.metadata.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        if row < start + size:
            return parquet.read_row_group(group).slice(row - start, 1).to_pylist()[0]
        start += size
    raise ReleaseNotFound(f"{path.name} has no row {row}")


@dataclass
class Segment:
    text: str
    placeholder: bool


@dataclass
class TurnView:
    index: int
    role: str
    language: str | None
    country: str | None
    state: str | None
    timestamp: Any
    toxic: bool | None
    redacted: bool | None
    segments: list[Segment]
    flagged: list[tuple[str, float]] = field(default_factory=list)
    openai_scores: list[tuple[str, float]] = field(default_factory=list)
    openai_flagged: bool | None = None
    detoxify_scores: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class ConversationView:
    conversation_hash: str
    model: str
    timestamp: Any
    turn: int
    language: str | None
    country: str | None
    state: str | None
    hashed_ip: str | None
    # None: not every utterance was scored, so toxicity is unknown (never taken as clean).
    toxic: bool | None
    redacted: bool
    header: dict[str, Any]
    turns: list[TurnView]
    placeholders: int


def segments(text: str | None) -> list[Segment]:
    """``text`` cut at its placeholders, which the view highlights."""
    text = text or ""
    pieces, position = [], 0
    for match in PLACEHOLDER.finditer(text):
        if match.start() > position:
            pieces.append(Segment(text[position : match.start()], False))
        pieces.append(Segment(match.group(), True))
        position = match.end()
    if position < len(text):
        pieces.append(Segment(text[position:], False))
    return pieces


def _scores(values: dict[str, Any] | None) -> list[tuple[str, float]]:
    """Scores under the API's category names (the spec repeats each with underscores)."""
    if not values:
        return []
    return sorted(
        ((name, float(values[name])) for name in OPENAI_CATEGORIES if values.get(name) is not None),
        key=lambda item: -item[1],
    )


def conversation_view(record: dict[str, Any]) -> ConversationView:
    utterances = record.get("conversation") or []
    openai = record.get("openai_moderation") or []
    detoxify = record.get("detoxify_moderation") or []
    turns = []
    for index, utterance in enumerate(utterances):
        moderation = openai[index] if index < len(openai) and openai[index] else {}
        categories = moderation.get("categories") or {}
        scores = moderation.get("category_scores") or {}
        toxicity = detoxify[index] if index < len(detoxify) and detoxify[index] else {}
        turns.append(
            TurnView(
                index=index,
                role=utterance.get("role") or "",
                language=utterance.get("language"),
                country=utterance.get("country"),
                state=utterance.get("state"),
                timestamp=utterance.get("timestamp"),
                toxic=utterance.get("toxic"),
                redacted=utterance.get("redacted"),
                segments=segments(utterance.get("content")),
                flagged=[(n, s) for n, s in _scores(scores) if categories.get(n)],
                openai_scores=_scores(scores),
                openai_flagged=moderation.get("flagged"),
                detoxify_scores=sorted(
                    ((k, float(v)) for k, v in toxicity.items() if v is not None),
                    key=lambda item: -item[1],
                ),
            )
        )
    return ConversationView(
        conversation_hash=record.get("conversation_hash") or "",
        model=record.get("model") or "",
        timestamp=record.get("timestamp"),
        turn=int(record.get("turn") or 0),
        language=record.get("language"),
        country=record.get("country"),
        state=record.get("state"),
        hashed_ip=record.get("hashed_ip"),
        toxic=record.get("toxic"),
        redacted=bool(record.get("redacted")),
        header=record.get("header") or {},
        turns=turns,
        placeholders=sum(s.placeholder for t in turns for s in t.segments),
    )


def read_index_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / INDEX_MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReleaseNotFound(
            f"{folder} is not a search index (no {INDEX_MANIFEST}): materialize the release's "
            "search index"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} is not a JSON object")
    return manifest
