"""Materialization metadata shared by the asset modules."""

from __future__ import annotations

import polars as pl
from dagster import MetadataValue


def counts_table(counts: dict[str, int], key: str = "reason") -> MetadataValue:
    rows = "\n".join(f"| {name} | {n:,} |" for name, n in sorted(counts.items()))
    return MetadataValue.md(f"| {key} | count |\n|---|---:|\n{rows}" if counts else "_none_")


def preview(frame: pl.DataFrame, rows: int = 10, max_chars: int = 80) -> MetadataValue:
    """A markdown preview with long strings cut, so a huge message cannot bloat the event log."""
    head = frame.head(rows).with_columns(
        pl.col(c).cast(pl.String).str.slice(0, max_chars) for c in frame.columns
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
