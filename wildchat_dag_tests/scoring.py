"""Helpers for the scorer tests: texts in the scorers' input shape, and what they saved."""

from __future__ import annotations

import polars as pl

from wildchat_dag.core.hashing import sha256_hex
from wildchat_dag.defs.moderation.moderation import ScoredText, texts_to_score


def texts(*contents: str) -> pl.DataFrame:
    return texts_to_score(pl.DataFrame({"content": list(contents)}))


class SavedResults(list):
    """The ``save`` callback of ``TextScorer.score``: keeps every result handed to it."""

    def __call__(self, batch: list[ScoredText]) -> None:
        self.extend(batch)

    def of(self, text: str) -> ScoredText:
        [result] = [r for r in self if r.content_sha256 == sha256_hex(text)]
        return result
