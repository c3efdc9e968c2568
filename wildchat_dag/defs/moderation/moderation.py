"""Moderation scores in WildChat's released shapes, the results cache, and the toxic rule.

Both scorers (OpenAI Moderation, ``openai_moderation.py``; Detoxify, ``detoxify_scoring.py``)
score each distinct non-empty text of a day once. Their results are cached in the warehouse by
(scorer, model, sha256 of the text), as they arrive, so a partition that fails halfway and is
re-run pays for nothing twice, and a text seen on an earlier day is not scored again.

The spec (WildChat-1M's dataset card) stores each utterance's OpenAI result as ``categories`` and
``category_scores`` with every category under two names, the API's (``self-harm/intent``) and an
underscore one (``self_harm_intent``), plus ``flagged``; and Detoxify's as seven scores. An empty
utterance gets the spec's empty result: every field null.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Protocol

import duckdb
import polars as pl

from wildchat_dag.core.hashing import sha256_column
from wildchat_dag.core.schema import (
    CONVERSATION_TOXICITY_SCHEMA,
    DETOXIFY_FIELDS,
    DETOXIFY_MODERATION_SCHEMA,
    OPENAI_CATEGORIES,
    OPENAI_MODERATION_SCHEMA,
    SPEC_CATEGORY_KEYS,
    UTTERANCE_TOXICITY_SCHEMA,
    partition_day_value,
)
from wildchat_dag.core.sql import query
from wildchat_dag.core.utterances import (
    EnrichedDay,
    check_conserved,
    conversation_table,
    counts_of,
    day_table,
    linked_utterances,
)

Scorer = Literal["openai", "detoxify"]
Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]

# WildChat's rule: Detoxify's toxicity above this makes an utterance toxic.
TOXICITY_THRESHOLD = 0.1

# Per-utterance status of a scorer's result. Only SCORED carries a result: every other status
# of a non-empty text is "not scored by this scorer", which can never clear it (toxic_flags).
SCORED = "scored"
EMPTY = "empty"
# The API refused the text for good, even in parts: final, cached, never re-sent.
REJECTED = "rejected"
# The API's answers for the text stayed invalid (not JSON, wrong shape, missing categories,
# scores out of range) through every attempt: not cached, so the next run sends it again.
INVALID_ANSWER = "invalid_answer"
NOT_CONFIGURED = "not_configured"
# The statuses the cache holds: a result, or the API's final refusal.
CACHED_STATUSES = (SCORED, REJECTED)

UTTERANCE_KEY = ["conversation_id", "utterance_index"]


# -- the scorers' common interface ------------------------------------------------------------


@dataclass(frozen=True)
class ScoredText:
    """A scorer's result for one text, as cached. ``result``: for OpenAI, the API's result
    object (``flagged``, ``categories``, ``category_scores``, API names); for Detoxify, the
    seven scores. ``parts``: OpenAI's split parts, or Detoxify's windows."""

    content_sha256: str
    result: Mapping[str, Any]
    parts: int = 1
    model_version: str | None = None
    # SCORED, or REJECTED (``result`` empty, ``detail`` the API's reason): both are final.
    status: str = SCORED
    detail: str | None = None


@dataclass
class ScoringReport:
    """What one scoring pass did, for the materialization's metadata."""

    # content_sha256 -> why the scorer gave no result (the API refused the text for good).
    rejected: dict[str, str] = field(default_factory=dict)
    # content_sha256 -> why the API's answers for the text were unusable (not cached).
    invalid: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


class TextScorer(Protocol):
    name: Scorer
    # The cache key's model: what, if changed, changes the scores.
    model: str

    def score(self, texts: pl.DataFrame, save: Callable[[list[ScoredText]], None]) -> ScoringReport:
        """Score ``texts`` (``content_sha256``, ``content``), handing results to ``save`` as they
        arrive; raise if it cannot finish, after saving what it has."""
        ...


class ScoringFailed(RuntimeError):
    """A scorer stopped partway; what it scored before is cached."""


@dataclass(frozen=True)
class Unconfigured:
    """A scorer that cannot run here, and what would enable it."""

    name: Scorer
    reason: str


# -- the results cache ------------------------------------------------------------------------

_CREATE_CACHE = """
CREATE TABLE IF NOT EXISTS main.moderation_cache (
    scorer VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    content_sha256 VARCHAR NOT NULL,
    result VARCHAR NOT NULL,
    parts INTEGER NOT NULL,
    model_version VARCHAR,
    -- The collection day whose partition first paid for the result: the raw-IP check reads
    -- the cache a day at a time, like the partitioned tables.
    partition_day TIMESTAMP NOT NULL,
    scored_at TIMESTAMP WITH TIME ZONE DEFAULT current_timestamp,
    status VARCHAR,
    detail VARCHAR,
    PRIMARY KEY (scorer, model, content_sha256)
)
"""
# Caches written before refusals were cached lack these columns; null status reads as scored.
_MIGRATE_CACHE = (
    "ALTER TABLE main.moderation_cache ADD COLUMN IF NOT EXISTS status VARCHAR",
    "ALTER TABLE main.moderation_cache ADD COLUMN IF NOT EXISTS detail VARCHAR",
)


def _ensure_cache(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_CREATE_CACHE)
    for statement in _MIGRATE_CACHE:
        con.execute(statement)


CACHE_SCHEMA = pl.Schema(
    {
        "content_sha256": pl.String,
        "result": pl.String,
        "parts": pl.Int64,
        "model_version": pl.String,
        "status": pl.String,
        "detail": pl.String,
    }
)


class ResultCache:
    """Scorer results by (scorer, model, sha256 of the text) in the warehouse table
    ``moderation_cache``. It holds hashes and scores, never text. ``connect`` yields a locked
    transaction, so each ``put`` is committed before the next request goes out."""

    def __init__(self, connect: Connect) -> None:
        self.connect = connect

    def get(self, scorer: str, model: str, shas: pl.Series) -> pl.DataFrame:
        """The cached results among ``shas``: CACHE_SCHEMA."""
        with self.connect() as con:
            _ensure_cache(con)
            found = query(
                con,
                """
                SELECT c.content_sha256, c.result, c.parts::BIGINT AS parts, c.model_version,
                    coalesce(c.status, 'scored') AS status, c.detail
                FROM main.moderation_cache c
                SEMI JOIN wanted w ON c.content_sha256 = w.content_sha256
                WHERE c.scorer = $scorer AND c.model = $model
                """,
                {"scorer": scorer, "model": model},
                {"wanted": pl.DataFrame({"content_sha256": shas.unique()})},
            )
        return found.cast(CACHE_SCHEMA)  # type: ignore[arg-type]

    def put(self, scorer: str, model: str, results: Sequence[ScoredText], day: date) -> None:
        if not results:
            return
        rows = pl.DataFrame(
            {
                "content_sha256": [r.content_sha256 for r in results],
                "result": [json.dumps(r.result, sort_keys=True) for r in results],
                "parts": [r.parts for r in results],
                "model_version": [r.model_version for r in results],
                "status": [r.status for r in results],
                "detail": [r.detail for r in results],
            },
            schema=CACHE_SCHEMA,
        )
        unknown = {r.status for r in results} - set(CACHED_STATUSES)
        if unknown:
            raise ValueError(f"only final results are cached, not {sorted(unknown)}")
        with self.connect() as con:
            _ensure_cache(con)
            query(
                con,
                """
                INSERT INTO main.moderation_cache
                    (scorer, model, content_sha256, result, parts, model_version, partition_day,
                     status, detail)
                SELECT $scorer, $model, content_sha256, result, parts, model_version, $day,
                    status, detail
                FROM rows
                ON CONFLICT DO NOTHING
                """,
                {"scorer": scorer, "model": model, "day": partition_day_value(day)},
                {"rows": rows},
            )

    def forget(self, scorer: str, model: str, shas: Sequence[str]) -> None:
        """Drop cached results (ones an older version cached without validating them)."""
        if not shas:
            return
        with self.connect() as con:
            _ensure_cache(con)
            query(
                con,
                """
                DELETE FROM main.moderation_cache
                WHERE scorer = $scorer AND model = $model
                    AND content_sha256 IN (SELECT content_sha256 FROM gone)
                """,
                {"scorer": scorer, "model": model},
                {
                    "gone": pl.DataFrame(
                        {"content_sha256": list(shas)}, schema={"content_sha256": pl.String}
                    )
                },
            )

    def size(self) -> dict[str, int]:
        """Cached results per scorer and model."""
        with self.connect() as con:
            _ensure_cache(con)
            rows = con.execute(
                "SELECT scorer || ' / ' || model, count(*) FROM main.moderation_cache GROUP BY 1"
            ).fetchall()
        return {name: int(n) for name, n in rows}


# -- one day ----------------------------------------------------------------------------------


@dataclass
class DayScores:
    """One day's utterances with one scorer's cached result joined on."""

    day: date
    utterances: pl.DataFrame  # linked_utterances + status, result, parts, model_version, detail
    report: ScoringReport
    stats: dict[str, Any]
    # The scorer's cache key; None when it did not run.
    model: str | None


def texts_to_score(utterances: pl.DataFrame) -> pl.DataFrame:
    """Each distinct non-empty text of ``utterances`` (``content``, ``content_sha256``) once."""
    if "content_sha256" not in utterances.columns:
        utterances = utterances.with_columns(content_sha256=sha256_column(utterances["content"]))
    return (
        utterances.filter(pl.col("content") != "")
        .unique("content_sha256", maintain_order=True)
        .select("content_sha256", "content")
    )


def score_day(
    day: date,
    linked: pl.DataFrame,
    scorer: TextScorer | Unconfigured,
    cache: ResultCache,
) -> DayScores:
    """Score every distinct non-empty text of the day that the cache lacks, and join the
    results back onto every utterance."""
    utterances = linked_utterances(linked)
    texts = texts_to_score(utterances)
    report = ScoringReport()
    stats: dict[str, Any] = {"utterances": utterances.height, "distinct_texts": texts.height}
    if isinstance(scorer, Unconfigured):
        results = pl.DataFrame(schema=CACHE_SCHEMA)
        stats.update(scorer_ran=False, not_configured=scorer.reason)
    else:
        cached = cache.get(scorer.name, scorer.model, texts["content_sha256"])
        cached, dropped = _drop_unusable(cached, scorer, cache)
        missing = texts.join(cached.select("content_sha256"), on="content_sha256", how="anti")
        stats.update(scorer_ran=True, model=scorer.model, cache_hits=cached.height)
        if dropped:
            stats["invalid_cached_results_dropped"] = dropped

        def save(batch: list[ScoredText]) -> None:
            cache.put(scorer.name, scorer.model, batch, day)

        # Cached results are progress: a scorer that gives up when the API "accepts nothing"
        # must not count a re-run whose accepted texts are all cache hits as accepting nothing.
        progress = {}
        if getattr(scorer, "counts_cache_hits", False):
            progress["cache_hits"] = int((cached["status"] == SCORED).sum())
        try:
            report = scorer.score(missing, save, **progress)
        except Exception as exc:
            raise ScoringFailed(f"partition {day}: {scorer.name} scoring failed: {exc}") from exc
        stats.update(report.stats)
        results = cache.get(scorer.name, scorer.model, texts["content_sha256"])
        answered = set(results["content_sha256"].to_list()) | set(report.invalid)
        unanswered = sum(sha not in answered for sha in texts["content_sha256"].to_list())
        if unanswered:
            raise RuntimeError(
                f"{day}: {scorer.name} returned no result and no reason for {unanswered} of "
                f"{texts.height} texts"
            )
    invalid = pl.DataFrame(
        {
            "content_sha256": list(report.invalid),
            "invalid_detail": list(report.invalid.values()),
        },
        schema={"content_sha256": pl.String, "invalid_detail": pl.String},
    )
    joined = (
        utterances.join(results, on="content_sha256", how="left")
        .join(invalid, on="content_sha256", how="left")
        .with_columns(
            status=pl.when(pl.col("content") == "")
            .then(pl.lit(EMPTY))
            .when(pl.col("status").is_not_null())
            .then(pl.col("status"))
            .when(pl.col("invalid_detail").is_not_null())
            .then(pl.lit(INVALID_ANSWER))
            .otherwise(pl.lit(NOT_CONFIGURED))
        )
        .with_columns(
            # Only a scored text has a result: a refusal's cached placeholder is not one.
            result=pl.when(pl.col("status") == SCORED).then(pl.col("result")),
            parts=pl.when(pl.col("status") == SCORED).then(pl.col("parts")),
            model_version=pl.when(pl.col("status") == SCORED).then(pl.col("model_version")),
            detail=pl.when(pl.col("status") == NOT_CONFIGURED)
            .then(pl.lit(scorer.reason if isinstance(scorer, Unconfigured) else None))
            .when(pl.col("status") == INVALID_ANSWER)
            .then(pl.col("invalid_detail"))
            .otherwise(pl.col("detail")),
        )
        .drop("invalid_detail")
    )
    check_conserved(day, f"utterances scored by {scorer.name}", utterances.height, joined.height)
    stats["by_status"] = counts_of(joined["status"])
    model = None if isinstance(scorer, Unconfigured) else scorer.model
    return DayScores(day, joined, report, stats, model)


def _drop_unusable(
    cached: pl.DataFrame, scorer: TextScorer, cache: ResultCache
) -> tuple[pl.DataFrame, int]:
    """Cached results the scorer says are not valid results (an older version cached answers
    without checking them, such as an empty ``categories``) are dropped from the cache, so
    the texts are scored again rather than read as clean."""
    problem = getattr(scorer, "cached_result_problem", None)
    if problem is None or cached.is_empty():
        return cached, 0
    bad = [
        sha
        for sha, status, result in cached.select("content_sha256", "status", "result").iter_rows()
        if status == SCORED and problem(json.loads(result)) is not None
    ]
    if not bad:
        return cached, 0
    cache.forget(scorer.name, scorer.model, bad)
    return cached.filter(~pl.col("content_sha256").is_in(bad)), len(bad)


# -- OpenAI's results in the spec's shape -----------------------------------------------------


def spec_categories(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """The API's categories (or scores) under both of the spec's names; null where absent."""
    values = values or {}
    return {key: values.get(api) for key, api in SPEC_CATEGORY_KEYS.items()}


def extra_categories(values: Mapping[str, Any] | None) -> str | None:
    """Categories beyond the spec's list (newer models' ``illicit``, ...), as JSON."""
    extra = {k: v for k, v in (values or {}).items() if k not in OPENAI_CATEGORIES}
    return json.dumps(extra, sort_keys=True) if extra else None


def merge_openai_results(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One result for a text scored in parts (WildChat's method for texts the API refuses
    whole): a category is flagged if it is in any part, and its score is the highest."""
    merged: dict[str, Any] = {"flagged": False, "categories": {}, "category_scores": {}}
    for part in parts:
        merged["flagged"] = merged["flagged"] or bool(part.get("flagged"))
        for name, flag in (part.get("categories") or {}).items():
            merged["categories"][name] = bool(merged["categories"].get(name)) or bool(flag)
        for name, score in (part.get("category_scores") or {}).items():
            if score is not None:
                previous = merged["category_scores"].get(name)
                merged["category_scores"][name] = (
                    score if previous is None else max(previous, score)
                )
    return merged


def _openai_columns(result_json: str | None) -> dict[str, Any]:
    result = json.loads(result_json) if result_json else None
    if result is None:
        return {
            "flagged": None,
            "categories": None,
            "category_scores": None,
            "extra_categories": None,
            "extra_category_scores": None,
        }
    return {
        "flagged": result.get("flagged"),
        "categories": spec_categories(result.get("categories")),
        "category_scores": spec_categories(result.get("category_scores")),
        "extra_categories": extra_categories(result.get("categories")),
        "extra_category_scores": extra_categories(result.get("category_scores")),
    }


def openai_moderation_table(scores: DayScores) -> EnrichedDay:
    """``openai_moderation``: one row per utterance, in the spec's shape."""
    distinct = scores.utterances.select("result").unique()
    columns = pl.DataFrame(
        [{"result": r, **_openai_columns(r)} for r in distinct["result"].to_list()],
        schema={
            "result": pl.String,
            **{c: OPENAI_MODERATION_SCHEMA[c] for c in _openai_columns(None)},
        },
    )
    utterances = scores.utterances.join(columns, on="result", how="left", nulls_equal=True)
    table = day_table(
        utterances.with_columns(split=pl.col("parts") > 1, model=pl.lit(scores.model)),
        scores.day,
        OPENAI_MODERATION_SCHEMA,
        *UTTERANCE_KEY,
    )
    flagged = table.filter(pl.col("flagged"))
    stats = {
        **{k: v for k, v in scores.stats.items() if k != "by_status"},
        "by_status": scores.stats["by_status"],
        "flagged_utterances": flagged.height,
        "split_utterances": int(table["split"].sum() or 0),
        "flagged_by_category": category_counts(flagged),
    }
    return EnrichedDay(table, pl.DataFrame(), stats)


def category_counts(table: pl.DataFrame) -> dict[str, int]:
    """Utterances flagged in each category (API names; the extra ones too)."""
    counts: dict[str, int] = {}
    if table.is_empty():
        return counts
    flags = table["categories"].struct.unnest()
    for name in OPENAI_CATEGORIES:
        n = int(flags[name].sum() or 0)
        if n:
            counts[name] = n
    for extra in table["extra_categories"].drop_nulls().to_list():
        for name, flag in json.loads(extra).items():
            if flag:
                counts[name] = counts.get(name, 0) + 1
    return counts


# -- Detoxify's results in the spec's shape ---------------------------------------------------


def detoxify_moderation_table(scores: DayScores) -> EnrichedDay:
    """``detoxify_moderation``: one row per utterance, the spec's seven scores (null where the
    model has no such output), and how many 512-token windows the text took."""
    fields = pl.Struct({f: pl.Float64 for f in DETOXIFY_FIELDS})
    table = day_table(
        scores.utterances.with_columns(
            pl.col("result").str.json_decode(fields).struct.unnest(),
            windows=pl.col("parts"),
            model=pl.lit(scores.model),
        ),
        scores.day,
        DETOXIFY_MODERATION_SCHEMA,
        *UTTERANCE_KEY,
    )
    toxicity = table["toxicity"].drop_nulls()
    stats = {
        **scores.stats,
        "windowed_utterances": int((table["windows"] > 1).sum() or 0),
        "toxicity_buckets": toxicity_buckets(toxicity),
    }
    return EnrichedDay(table, pl.DataFrame(), stats)


def toxicity_buckets(toxicity: pl.Series) -> dict[str, int]:
    edges = [0.0, 0.01, 0.1, 0.5, 0.9, 1.0]
    counts = {}
    for low, high in itertools.pairwise(edges):
        inside = (toxicity >= low) & ((toxicity < high) if high < 1.0 else (toxicity <= high))
        counts[f"{low:g}–{high:g}"] = int(inside.sum() or 0)
    return counts


# -- the toxic rule ---------------------------------------------------------------------------


def toxic_flags(
    day: date,
    linked: pl.DataFrame,
    openai: pl.DataFrame,
    detoxify: pl.DataFrame,
    threshold: float = TOXICITY_THRESHOLD,
) -> EnrichedDay:
    """WildChat's rule: an utterance is toxic when its content is non-empty and OpenAI flagged
    it or Detoxify's toxicity is above ``threshold``; a conversation, when any utterance is.

    A scorer that did not score an utterance (not configured, the API refused the text, or
    its answers were invalid: any status but ``scored``) cannot clear it: ``scored_by`` names
    the scorers that did, and ``toxic`` is null where none did. A conversation is toxic if any
    utterance is, clean only if every utterance is known clean, and null otherwise.
    """
    keys = [*UTTERANCE_KEY, "content_sha256"]
    joined = openai.select(
        *keys,
        "turn_identifier",
        "role",
        openai_status="status",
        openai_flagged="flagged",
    ).join(
        detoxify.select(*keys, detoxify_status="status", detoxify_toxicity="toxicity"),
        on=UTTERANCE_KEY,
        how="full",
        coalesce=True,
    )
    mismatched = joined.filter(
        pl.col("openai_status").is_null()
        | pl.col("detoxify_status").is_null()
        | (pl.col("content_sha256") != pl.col("content_sha256_right"))
    )
    if mismatched.height:
        raise RuntimeError(
            f"{day}: openai_moderation and detoxify_moderation disagree on {mismatched.height} "
            "utterances (missing from one, or scored from another text): one of them was "
            "materialized from an older linked_conversations. Re-materialize both for this day."
        )
    utterances = joined.with_columns(
        openai_scored=pl.col("openai_status") == SCORED,
        detoxify_scored=pl.col("detoxify_status") == SCORED,
        empty=pl.col("openai_status") == EMPTY,
        detoxify_flagged=pl.col("detoxify_toxicity") > threshold,
    ).with_columns(
        scored_by=pl.concat_list(
            pl.when("openai_scored").then(pl.lit("openai")),
            pl.when("detoxify_scored").then(pl.lit("detoxify")),
        ).list.drop_nulls(),
        flagged_by=pl.concat_list(
            pl.when(pl.col("openai_scored") & pl.col("openai_flagged")).then(pl.lit("openai")),
            pl.when(pl.col("detoxify_scored") & pl.col("detoxify_flagged")).then(
                pl.lit("detoxify")
            ),
        ).list.drop_nulls(),
    )
    utterances = utterances.with_columns(
        toxic=pl.when("empty")
        .then(False)
        .when(pl.col("flagged_by").list.len() > 0)
        .then(True)
        .when(pl.col("scored_by").list.len() > 0)
        .then(False)
        .otherwise(None),
        toxicity_threshold=pl.lit(threshold),
    )
    utterance_table = day_table(utterances, day, UTTERANCE_TOXICITY_SCHEMA, *UTTERANCE_KEY)
    check_conserved(day, "utterances flagged", openai.height, utterance_table.height)

    per_conversation = (
        utterances.group_by("conversation_id")
        .agg(
            toxic_utterances=pl.col("toxic").fill_null(False).sum().cast(pl.Int64),
            unscored_utterances=pl.col("toxic").is_null().sum().cast(pl.Int64),
            flagged_by=pl.col("flagged_by")
            .list.explode(keep_nulls=False, empty_as_null=False)
            .unique()
            .sort(),
            # The scorers that scored every non-empty utterance.
            openai_complete=(pl.col("openai_scored") | pl.col("empty")).all(),
            detoxify_complete=(pl.col("detoxify_scored") | pl.col("empty")).all(),
        )
        .with_columns(
            toxic=pl.when(pl.col("toxic_utterances") > 0)
            .then(True)
            .when(pl.col("unscored_utterances") > 0)
            .then(None)
            .otherwise(False),
            scored_by=pl.concat_list(
                pl.when("openai_complete").then(pl.lit("openai")),
                pl.when("detoxify_complete").then(pl.lit("detoxify")),
            ).list.drop_nulls(),
            toxicity_threshold=pl.lit(threshold),
        )
    )
    conversations = conversation_table(
        linked,
        day,
        CONVERSATION_TOXICITY_SCHEMA,
        [per_conversation.drop("openai_complete", "detoxify_complete")],
        ["toxic_utterances", "unscored_utterances"],
    )
    stats = {
        "utterances": utterance_table.height,
        "toxic_utterances": int(utterance_table["toxic"].fill_null(False).sum()),
        "unscored_utterances": int(utterance_table["toxic"].is_null().sum()),
        "conversations": conversations.height,
        "toxic_conversations": int(conversations["toxic"].fill_null(False).sum()),
        "unknown_conversations": int(conversations["toxic"].is_null().sum()),
        "toxicity_threshold": threshold,
        "flagged_by": counts_of(utterance_table["flagged_by"].explode()),
        "scored_by": counts_of(utterance_table["scored_by"].explode()),
    }
    return EnrichedDay(utterance_table, conversations, stats)
