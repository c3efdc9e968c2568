"""Materialization metadata shared by the asset modules."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from dagster import MetadataValue

from wildchat_dag.core.markdown import share_markdown
from wildchat_dag.core.schema import PARTITION_COLUMN

# Every partitioned table: the IO manager replaces a partition's rows by this column.
STORAGE = {"partition_expr": PARTITION_COLUMN}


def counts_table(
    counts: Mapping[str, int | str], key: str = "reason", value: str = "count"
) -> MetadataValue:
    rows = "\n".join(
        f"| {name} | {n:,} |" if isinstance(n, int) else f"| {name} | {n} |"
        for name, n in sorted(counts.items())
    )
    return MetadataValue.md(f"| {key} | {value} |\n|---|---:|\n{rows}" if counts else "_none_")


def preview(frame: pl.DataFrame, rows: int = 10, max_chars: int = 80) -> MetadataValue:
    """A markdown preview with long strings cut, so a huge message cannot bloat the event log."""
    head = frame.head(rows).with_columns(
        _as_text(c, frame.schema[c]).str.slice(0, max_chars) for c in frame.columns
    )
    if head.is_empty():
        return MetadataValue.md("_no rows_")
    lines = [
        "| " + " | ".join(head.columns) + " |",
        "|" + "---|" * len(head.columns),
    ]
    for row in head.iter_rows():
        cells = ("" if v is None else str(v).replace("|", "\\|").replace("\n", " ") for v in row)
        lines.append("| " + " | ".join(cells) + " |")
    return MetadataValue.md("\n".join(lines))


def _as_text(column: str, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.List):
        return pl.col(column).list.eval(pl.element().cast(pl.String)).list.join(", ")
    if isinstance(dtype, pl.Struct):
        return pl.col(column).struct.json_encode()
    return pl.col(column).cast(pl.String)


def share_table(counts: Mapping[str, int], key: str, top: int = 15) -> MetadataValue:
    return MetadataValue.md(share_markdown(counts, key, top=top))
