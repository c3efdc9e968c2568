"""Markdown tables: the UI's metadata and the release cards draw them the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "_none_"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def share_markdown(counts: Mapping[str, int], key: str, unit: str = "count", top: int = 15) -> str:
    """The largest ``counts`` with their share of the total and a bar, the rest summed as
    "(others)": read at a glance."""
    total = sum(counts.values())
    if not total:
        return "_none_"
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ranked[:top]
    if len(ranked) > top:
        shown.append((f"(others: {len(ranked) - top})", sum(n for _, n in ranked[top:])))
    rows = "\n".join(
        f"| {name} | {n:,} | {n / total:.1%} | {'█' * max(1, round(20 * n / total))} |"
        for name, n in shown
    )
    return f"| {key} | {unit} | share | |\n|---|---:|---:|---|\n{rows}"
