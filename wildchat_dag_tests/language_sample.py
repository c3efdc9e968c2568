"""The real WildChat sample as language identification reads it: one row per utterance, and
WildChat's own label of each conversation (the tests and benchmarks/bench_language.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl


def sample_utterances(
    conversations: Sequence[dict[str, Any]],
) -> tuple[pl.DataFrame, dict[int, str]]:
    """``conversation_id`` (the position in ``conversations``), ``utterance_index`` and
    ``content`` of every utterance; and WildChat's language of each conversation."""
    rows = [
        (cid, i, u["content"])
        for cid, c in enumerate(conversations)
        for i, u in enumerate(c["conversation"])
    ]
    frame = pl.DataFrame(
        rows, schema=["conversation_id", "utterance_index", "content"], orient="row"
    )
    return frame, {cid: c["language"] for cid, c in enumerate(conversations)}
