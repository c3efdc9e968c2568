"""WildChat's toxic rule and the spec's result shapes, on plain frames (no Dagster, no scorer)."""

from __future__ import annotations

import functools
import json
from datetime import date

import polars as pl
import pytest

from wildchat_dag.core.schema import OPENAI_MODERATION_SCHEMA, SPEC_CATEGORY_KEYS
from wildchat_dag.defs.moderation.moderation import (
    ResultCache,
    ScoredText,
    ScoringReport,
    Unconfigured,
    detoxify_moderation_table,
    extra_categories,
    merge_openai_results,
    openai_moderation_table,
    score_day,
    spec_categories,
    toxic_flags,
)
from wildchat_dag.resources.duckdb_io import locked_connection

DAY = date(2024, 5, 1)


def linked(*conversations: list[str]) -> pl.DataFrame:
    """linked_conversations rows: each conversation a list of contents, roles alternating."""
    rows = []
    for n, contents in enumerate(conversations):
        rows.append(
            {
                "conversation_id": 100 + n,
                "conversation": [
                    {
                        "turn_identifier": 100 + n,
                        "role": "user" if i % 2 == 0 else "assistant",
                        "content": text,
                    }
                    for i, text in enumerate(contents)
                ],
            }
        )
    return pl.DataFrame(rows)


class FixedScorer:
    """A scorer that answers from a table, and records what it was asked."""

    def __init__(self, name: str, answers: dict[str, dict]) -> None:
        self.name = name
        self.model = f"{name}-test"
        self.answers = answers
        self.asked: list[str] = []

    def score(self, texts: pl.DataFrame, save) -> ScoringReport:
        results = []
        for sha, text in texts.iter_rows():
            self.asked.append(text)
            results.append(ScoredText(sha, self.answers[text]))
        save(results)
        return ScoringReport()


@pytest.fixture
def cache(tmp_path) -> ResultCache:
    """The real results cache, in a DuckDB file of the test's own."""
    return ResultCache(functools.partial(locked_connection, str(tmp_path / "cache.duckdb")))


def openai_result(flagged: bool, **scores: float) -> dict:
    return {
        "flagged": flagged,
        "categories": {k: v >= 0.5 for k, v in scores.items()},
        "category_scores": scores,
    }


CASES = {
    "openai only": openai_result(True, violence=0.9),
    "detoxify only": openai_result(False, violence=0.01),
    "both": openai_result(True, harassment=0.8),
    "neither": openai_result(False, harassment=0.01),
}
TOXICITY = {"openai only": 0.05, "detoxify only": 0.35, "both": 0.9, "neither": 0.1}


def scored_tables(cache: ResultCache, conversations: pl.DataFrame, openai_scorer, detoxify_scorer):
    openai = openai_moderation_table(score_day(DAY, conversations, openai_scorer, cache)).utterances
    detoxify = detoxify_moderation_table(
        score_day(DAY, conversations, detoxify_scorer, cache)
    ).utterances
    return openai, detoxify


def test_toxic_when_either_scorer_flags_and_never_when_empty(cache):
    conversations = linked(["openai only", "detoxify only"], ["both", "neither", ""])
    openai_scorer = FixedScorer("openai", CASES)
    detoxify_scorer = FixedScorer("detoxify", {k: {"toxicity": v} for k, v in TOXICITY.items()})
    openai, detoxify = scored_tables(cache, conversations, openai_scorer, detoxify_scorer)

    flags = toxic_flags(DAY, conversations, openai, detoxify)
    by_text = dict(
        zip(
            ["openai only", "detoxify only", "both", "neither", ""],
            flags.utterances.sort("conversation_id", "utterance_index").iter_rows(named=True),
            strict=True,
        )
    )
    assert {t: r["toxic"] for t, r in by_text.items()} == {
        "openai only": True,
        "detoxify only": True,
        "both": True,
        # 0.1 is not above the threshold of 0.1.
        "neither": False,
        "": False,
    }
    assert by_text["openai only"]["flagged_by"] == ["openai"]
    assert by_text["detoxify only"]["flagged_by"] == ["detoxify"]
    assert by_text["both"]["flagged_by"] == ["openai", "detoxify"]
    assert by_text["neither"]["scored_by"] == ["openai", "detoxify"]
    assert by_text[""]["scored_by"] == [] and by_text[""]["flagged_by"] == []
    # An empty text is never sent to a scorer.
    assert "" not in openai_scorer.asked and "" not in detoxify_scorer.asked

    conversation = flags.conversations.sort("conversation_id")
    assert conversation["toxic"].to_list() == [True, True]
    assert conversation["toxic_utterances"].to_list() == [2, 1]
    assert conversation["flagged_by"].to_list() == [["detoxify", "openai"], ["detoxify", "openai"]]
    assert conversation["scored_by"].to_list() == [["openai", "detoxify"]] * 2


def test_a_threshold_is_the_rules(cache):
    conversations = linked(["detoxify only"])
    openai, detoxify = scored_tables(
        cache,
        conversations,
        FixedScorer("openai", CASES),
        FixedScorer("detoxify", {"detoxify only": {"toxicity": 0.35}}),
    )
    assert toxic_flags(DAY, conversations, openai, detoxify, 0.5).utterances["toxic"].to_list() == [
        False
    ]
    assert toxic_flags(DAY, conversations, openai, detoxify, 0.3).utterances["toxic"].to_list() == [
        True
    ]


def test_a_scorer_that_did_not_run_cannot_clear_a_text(cache):
    conversations = linked(["neither", "detoxify only"], ["neither"], [""])
    no_key = Unconfigured("openai", "no API key")
    openai, detoxify = scored_tables(
        cache,
        conversations,
        no_key,
        FixedScorer("detoxify", {k: {"toxicity": v} for k, v in TOXICITY.items()}),
    )
    assert set(openai["status"]) == {"not_configured", "empty"}
    assert openai.filter(pl.col("status") == "not_configured")["detail"].unique().to_list() == [
        "no API key"
    ]
    flags = toxic_flags(DAY, conversations, openai, detoxify)
    conversation = flags.conversations.sort("conversation_id")
    # Detoxify alone clears or flags; scored_by says OpenAI did not take part.
    assert conversation["toxic"].to_list() == [True, False, False]
    assert conversation["scored_by"].to_list() == [
        ["detoxify"],
        ["detoxify"],
        ["openai", "detoxify"],
    ]

    none_ran = scored_tables(cache, conversations, no_key, Unconfigured("detoxify", "no weights"))
    unknown = toxic_flags(DAY, conversations, *none_ran).conversations.sort("conversation_id")
    # Unknown, not clean; only the conversation with nothing to score is clean.
    assert unknown["toxic"].to_list() == [None, None, False]
    assert unknown["unscored_utterances"].to_list() == [2, 1, 0]


def test_tables_from_different_texts_are_refused(cache):
    openai, _ = scored_tables(
        cache, linked(["neither"]), FixedScorer("openai", CASES), Unconfigured("detoxify", "-")
    )
    _, detoxify = scored_tables(
        cache,
        linked(["both"]),
        Unconfigured("openai", "-"),
        FixedScorer("detoxify", {"both": {"toxicity": 1.0}}),
    )
    with pytest.raises(RuntimeError, match="disagree on 1 utterances"):
        toxic_flags(DAY, linked(["neither"]), openai, detoxify)


def test_openai_results_in_the_spec_shape_with_extras_kept(cache):
    result = {
        "flagged": True,
        "categories": {"self-harm/intent": True, "violence": False, "illicit/violent": True},
        "category_scores": {"self-harm/intent": 0.7, "violence": 0.2, "illicit/violent": 0.6},
    }
    categories = spec_categories(result["categories"])
    assert list(categories) == list(SPEC_CATEGORY_KEYS)
    assert categories["self-harm/intent"] is True and categories["self_harm_intent"] is True
    assert categories["violence_graphic"] is None
    assert json.loads(extra_categories(result["category_scores"])) == {"illicit/violent": 0.6}

    conversations = linked(["x", ""])
    scores = score_day(DAY, conversations, FixedScorer("openai", {"x": result}), cache)
    table = openai_moderation_table(scores).utterances
    assert table.schema == OPENAI_MODERATION_SCHEMA
    scored, empty = table.sort("utterance_index").iter_rows(named=True)
    assert scored["categories"]["self_harm_intent"] is True
    assert scored["category_scores"]["self-harm/intent"] == 0.7
    assert json.loads(scored["extra_categories"]) == {"illicit/violent": True}
    # The spec's empty result: every field null.
    assert empty["status"] == "empty" and empty["flagged"] is None and empty["categories"] is None


def test_split_results_or_the_flags_and_keep_the_highest_scores():
    merged = merge_openai_results(
        [
            openai_result(False, violence=0.2, hate=0.4),
            openai_result(True, violence=0.7, hate=0.1),
            {
                "flagged": False,
                "categories": {"sexual": False},
                "category_scores": {"sexual": None},
            },
        ]
    )
    assert merged["flagged"] is True
    assert merged["categories"] == {"violence": True, "hate": False, "sexual": False}
    assert merged["category_scores"] == {"violence": 0.7, "hate": 0.4}


def test_a_text_is_scored_once_a_day_and_never_again(cache):
    conversations = linked(["neither", "neither", "both"], ["neither"])
    scorer = FixedScorer("openai", CASES)
    first = score_day(DAY, conversations, scorer, cache)
    assert sorted(scorer.asked) == ["both", "neither"]
    assert first.stats["cache_hits"] == 0
    again = score_day(
        DAY, linked(["both", "new"]), FixedScorer("openai", {"new": CASES["neither"]}), cache
    )
    assert again.stats["cache_hits"] == 1 and again.utterances.height == 2
