"""Materialization metadata shared by the asset modules.

Metadata is kept in the instance's event log, outside the raw layer, so every text that goes
into it passes ``sanitize_text`` (``wildchat_dag/core/sanitize.py``) where it is built here:
preview cells, table keys, and ``sanitize_metadata`` for anything else. A preview of a raw-layer
table (``preview(..., raw_layer=True)``) is refused unless it shows only ids, counts, hashes,
times and reasons.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import polars as pl
from dagster import (
    JsonMetadataValue,
    MarkdownMetadataValue,
    MetadataValue,
    PathMetadataValue,
    TextMetadataValue,
    UrlMetadataValue,
)

from wildchat_dag.core.markdown import share_markdown
from wildchat_dag.core.sanitize import sanitize_text, sanitize_value
from wildchat_dag.core.schema import PARTITION_COLUMN

# Every partitioned table: the IO manager replaces a partition's rows by this column.
STORAGE = {"partition_expr": PARTITION_COLUMN}

# Text columns a raw-layer preview may show: reasons and statuses our code writes, and where a
# line is in the log files. Any other text column of a raw table may hold raw content.
RAW_PREVIEW_TEXT_COLUMNS = frozenset(
    {
        "reason",
        "detail",
        "source_file",
        "scan_status",
        "scan_detail",
        "status",
        "entity_type",
        "decision",
    }
)
# Text columns of digests: shown when every value is lower-case hex.
HASH_COLUMN_SUFFIXES = ("_hash", "_sha256", "_digest")
_HEX = re.compile(r"[0-9a-f]{8,128}")


class RawPreviewRefused(ValueError):
    """A raw-layer preview asked for a column that may hold raw text, IPs or headers."""


def counts_table(
    counts: Mapping[str, int | str], key: str = "reason", value: str = "count"
) -> MetadataValue:
    rows = "\n".join(
        f"| {_cell(name)} | {n:,} |" if isinstance(n, int) else f"| {_cell(name)} | {_cell(n)} |"
        for name, n in sorted(counts.items())
    )
    return MetadataValue.md(f"| {key} | {value} |\n|---|---:|\n{rows}" if counts else "_none_")


def _cell(text: object) -> str:
    return sanitize_text(text, 200).replace("|", "\\|").replace("\n", " ")


def preview(
    frame: pl.DataFrame, rows: int = 10, max_chars: int = 80, *, raw_layer: bool = False
) -> MetadataValue:
    """A markdown preview with long strings cut, so a huge message cannot bloat the event log.

    Text cells are sanitized; numbers, booleans and times (ours: ids, counts) are shown as
    they are. ``raw_layer``: the frame is from a raw-layer table, and only ids, counts, hashes,
    times and reasons may be shown (``RawPreviewRefused`` otherwise).
    """
    if raw_layer:
        check_raw_preview(frame.head(rows))
    head = frame.head(rows)
    if head.is_empty():
        return MetadataValue.md("_no rows_")
    typed = {c for c in head.columns if _is_typed(head.schema[c])}
    text = head.with_columns(_as_text(c, head.schema[c]) for c in head.columns)
    lines = [
        "| " + " | ".join(head.columns) + " |",
        "|" + "---|" * len(head.columns),
    ]
    for row in text.iter_rows(named=True):
        cells = (_preview_cell(v, c in typed, max_chars) for c, v in row.items())
        lines.append("| " + " | ".join(cells) + " |")
    return MetadataValue.md("\n".join(lines))


def _preview_cell(value: str | None, typed: bool, max_chars: int) -> str:
    if value is None:
        return ""
    # Sanitized whole, then cut: a value cut first could hide from the masks.
    shown = value[:max_chars] if typed else sanitize_text(value, max_chars)
    return shown.replace("|", "\\|").replace("\n", " ")


def check_raw_preview(frame: pl.DataFrame) -> None:
    refused = []
    for column, dtype in frame.schema.items():
        if _is_typed(dtype) or column in RAW_PREVIEW_TEXT_COLUMNS:
            continue
        if column.endswith(HASH_COLUMN_SUFFIXES) and dtype == pl.String:
            values = frame[column].drop_nulls().to_list()
            if all(_HEX.fullmatch(v) for v in values):
                continue
        refused.append(column)
    if refused:
        raise RawPreviewRefused(
            "A preview of a raw-layer table shows ids, counts, hashes, times and reasons only; "
            f"not: {', '.join(refused)}"
        )


def _is_typed(dtype: pl.DataType) -> bool:
    """Numbers, booleans and times: values of ours, never raw text."""
    if isinstance(dtype, (pl.List, pl.Array)):
        return _is_typed(dtype.inner)
    return dtype.is_numeric() or dtype.is_temporal() or dtype in (pl.Boolean, pl.Null)


def _as_text(column: str, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.List):
        return pl.col(column).list.eval(pl.element().cast(pl.String)).list.join(", ")
    if isinstance(dtype, pl.Struct):
        return pl.col(column).struct.json_encode()
    return pl.col(column).cast(pl.String)


def share_table(counts: Mapping[str, int], key: str, top: int = 15) -> MetadataValue:
    safe: dict[str, int] = {}
    for name, n in counts.items():
        label = _cell(name)
        safe[label] = safe.get(label, 0) + n
    return MetadataValue.md(share_markdown(safe, key, top=top))


def sanitize_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata with every text in it sanitized: plain strings and text, markdown, JSON, path
    and URL values. Numbers, booleans and other typed values (ours: counts, ids) stay. The
    tables built above are sanitized already: passed through here again, a preview's long ids
    read as numbers and are masked, so this is for metadata of other origins (a ``Failure``'s)."""
    return {sanitize_text(k, 200): sanitize_metadata_value(v) for k, v in metadata.items()}


def sanitize_metadata_value(value: Any) -> Any:
    if isinstance(value, str):
        return sanitize_text(value)
    if isinstance(value, (dict, list)):
        return MetadataValue.json(sanitize_value(value))
    if isinstance(value, TextMetadataValue):
        return MetadataValue.text(sanitize_text(value.value))
    if isinstance(value, MarkdownMetadataValue):
        return MetadataValue.md(sanitize_text(value.value, 50_000))
    if isinstance(value, JsonMetadataValue):
        return MetadataValue.json(sanitize_value(value.value))
    if isinstance(value, PathMetadataValue):
        return MetadataValue.path(sanitize_text(value.value))
    if isinstance(value, UrlMetadataValue):
        return MetadataValue.url(sanitize_text(value.value))
    return value
