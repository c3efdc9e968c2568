"""Moderation scoring: OpenAI Moderation and Detoxify for every utterance, and the toxic flags.

Both scorers read the text as logged (``linked_conversations``), as the chatbot itself sent it to
OpenAI, so a redaction-rule change leaves the scores fresh. Their results are cached in the
warehouse (``moderation_cache``) by sha256 of the text and model: a re-run, or a later day with
the same text, costs nothing.
"""

import time
from collections.abc import Iterator, Mapping
from typing import Any

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetOut,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)

from wildchat_dag.common.metadata import STORAGE, counts_table, preview, share_table
from wildchat_dag.common.pools import DETOXIFY_POOL, OPENAI_POOL
from wildchat_dag.common.text_exit import log_warning, text_exit
from wildchat_dag.defs.moderation.moderation import (
    DayScores,
    ResultCache,
    TextScorer,
    Unconfigured,
    detoxify_moderation_table,
    openai_moderation_table,
    score_day,
    toxic_flags,
)
from wildchat_dag.defs.moderation.resource import DetoxifyResource, OpenAIModerationResource
from wildchat_dag.defs.takedowns.withdrawal import without_withdrawn
from wildchat_dag.partitions import collection_days, partition_date
from wildchat_dag.resources.warehouse import Warehouse

GROUP = "moderation"
SCORE_COLUMNS = ["conversation_id", "utterance_index", "role", "status"]


def scoring_metadata(stats: Mapping[str, Any], cache: ResultCache) -> dict[str, Any]:
    """A scoring step's numbers as metadata: counts as numbers, breakdowns as tables."""
    metadata: dict[str, Any] = {}
    for name, value in stats.items():
        if value is None:
            continue
        if isinstance(value, dict):
            metadata[name] = counts_table(value, key=name.removeprefix("by_"))
        elif name == "not_configured":
            metadata["not_configured"] = MetadataValue.md(f"**Did not run**: {value}")
        else:
            metadata[name] = value
    metadata["cached_results"] = counts_table(cache.size(), key="scorer / model")
    return metadata


def score_partition(
    context: AssetExecutionContext,
    scorer: TextScorer | Unconfigured,
    warehouse: Warehouse,
    linked_conversations: pl.DataFrame,
) -> tuple[DayScores, ResultCache]:
    if isinstance(scorer, Unconfigured):
        log_warning(
            context,
            f"{scorer.name} moderation did not run for {context.partition_key}: {scorer.reason}. "
            "Its scores are null, and the toxic flags record that it did not contribute.",
        )
    cache = ResultCache(warehouse.connect)
    day = partition_date(context.partition_key)
    return score_day(day, linked_conversations, scorer, cache), cache


@asset(
    partitions_def=collection_days,
    metadata=STORAGE,
    group_name=GROUP,
    # v2: answers validated before they are kept; refusals cached; status invalid_answer.
    code_version="openai-moderation-v2",
    pool=OPENAI_POOL,
    description=(
        "OpenAI Moderation of every utterance, user and assistant, in WildChat's shape: "
        "flagged, categories and category_scores (each category under the API's name, "
        "self-harm/intent, and an underscore one, self_harm_intent); categories beyond "
        "WildChat's list in extra_categories. status: scored, empty (the spec's empty result), "
        "rejected (refused by the API even in parts, for good; detail says why), "
        "invalid_answer (the API's answers stayed malformed through every attempt; sent again "
        "by the next run) or not_configured (no API key). Only scored rows carry scores, and "
        "only they can clear a text. A text the API refuses whole is scored in halves, merged "
        "(split). Validated results and refusals are cached by sha256 of the text and model: "
        "re-runs are not billed twice."
    ),
)
@text_exit
def openai_moderation(
    context: AssetExecutionContext,
    openai: OpenAIModerationResource,
    warehouse: Warehouse,
    linked_conversations: pl.DataFrame,
    withdrawn_conversations: pl.DataFrame,
) -> Output:
    linked_conversations = without_withdrawn(linked_conversations, withdrawn_conversations)
    scores, cache = score_partition(context, openai.scorer(), warehouse, linked_conversations)
    result = openai_moderation_table(scores)
    stats = dict(result.stats)
    by_category = stats.pop("flagged_by_category")
    return Output(
        result.utterances,
        metadata={
            **scoring_metadata(stats, cache),
            "flagged_by_category": share_table(by_category, key="category"),
            "preview": preview(
                result.utterances.filter(pl.col("flagged")).select(
                    *SCORE_COLUMNS, "split", "extra_categories"
                )
            ),
        },
    )


@asset(
    partitions_def=collection_days,
    metadata=STORAGE,
    group_name=GROUP,
    code_version="detoxify-moderation-v1",
    pool=DETOXIFY_POOL,
    description=(
        "Detoxify scores of every utterance, user and assistant: WildChat's seven fields "
        "(toxicity, severe_toxicity, obscene, threat, insult, identity_attack, "
        "sexual_explicit; null where the model has no such output). Texts longer than 512 "
        "tokens are scored in windows and each field keeps its highest score. status: scored, "
        "empty, or not_configured (no weights on this machine; detail says how to add them). "
        "Cached by sha256 of the text and the model."
    ),
)
@text_exit
def detoxify_moderation(
    context: AssetExecutionContext,
    detoxify: DetoxifyResource,
    warehouse: Warehouse,
    linked_conversations: pl.DataFrame,
    withdrawn_conversations: pl.DataFrame,
) -> Output:
    linked_conversations = without_withdrawn(linked_conversations, withdrawn_conversations)
    started = time.perf_counter()
    scorer = detoxify.scorer()
    loaded_s = time.perf_counter() - started
    scores, cache = score_partition(context, scorer, warehouse, linked_conversations)
    result = detoxify_moderation_table(scores)
    stats = dict(result.stats)
    buckets = stats.pop("toxicity_buckets")
    return Output(
        result.utterances,
        metadata={
            **scoring_metadata(stats, cache),
            "model_load_seconds": round(loaded_s, 3),
            "toxicity_distribution": share_table(buckets, key="toxicity", top=len(buckets)),
            "preview": preview(
                result.utterances.sort("toxicity", descending=True, nulls_last=True).select(
                    *SCORE_COLUMNS, "toxicity", "windows"
                )
            ),
        },
    )


def build_toxicity_assets(threshold: float) -> list:
    """The toxic flags under ``threshold`` (read where the code location loads; part of the
    code version, so a new threshold shows the flags as changed)."""

    @multi_asset(
        outs={
            "utterance_toxicity": AssetOut(
                description=(
                    "WildChat's toxic flag of every utterance: non-empty, and flagged by OpenAI "
                    f"or with Detoxify toxicity above {threshold:g}. scored_by names the "
                    "scorers that scored it and flagged_by those that flagged it; toxic is null "
                    "when no scorer scored a non-empty text (unknown, never clean)."
                ),
                metadata=STORAGE,
                group_name=GROUP,
            ),
            "conversation_toxicity": AssetOut(
                description=(
                    "A conversation is toxic when any utterance is; clean only when every "
                    "utterance is known clean; null otherwise. scored_by: the scorers that "
                    "scored every non-empty utterance, for the release card."
                ),
                metadata=STORAGE,
                group_name=GROUP,
            ),
        },
        partitions_def=collection_days,
        code_version=f"toxicity-v1-threshold-{threshold:g}",
        check_specs=[
            AssetCheckSpec(
                "every_utterance_scored",
                asset="conversation_toxicity",
                description=(
                    "Both scorers scored every non-empty utterance of the day. A warning, not "
                    "an error: a scorer may be off on purpose, but the release must say so."
                ),
            )
        ],
    )
    @text_exit
    def flag_toxic(
        context: AssetExecutionContext,
        linked_conversations: pl.DataFrame,
        withdrawn_conversations: pl.DataFrame,
        openai_moderation: pl.DataFrame,
        detoxify_moderation: pl.DataFrame,
    ) -> Iterator[Output | AssetCheckResult]:
        day = partition_date(context.partition_key)
        linked_conversations = without_withdrawn(linked_conversations, withdrawn_conversations)
        result = toxic_flags(
            day, linked_conversations, openai_moderation, detoxify_moderation, threshold
        )
        stats = dict(result.stats)
        flagged_by, scored_by = stats.pop("flagged_by"), stats.pop("scored_by")
        common = {
            **stats,
            "utterances_flagged_by": counts_table(flagged_by, key="scorer"),
            "utterances_scored_by": counts_table(scored_by, key="scorer"),
        }
        yield Output(
            result.utterances,
            output_name="utterance_toxicity",
            metadata={
                **common,
                "preview": preview(result.utterances.filter(pl.col("toxic")).drop("partition_day")),
            },
        )
        yield Output(
            result.conversations,
            output_name="conversation_toxicity",
            metadata={
                **common,
                "preview": preview(
                    result.conversations.filter(pl.col("toxic").is_null() | pl.col("toxic")).drop(
                        "partition_day"
                    )
                ),
            },
        )
        non_empty = openai_moderation.filter(pl.col("status") != "empty").height
        missing = {
            name: int(table.filter(~pl.col("status").is_in(["scored", "empty"])).height)
            for name, table in (("openai", openai_moderation), ("detoxify", detoxify_moderation))
        }
        yield AssetCheckResult(
            check_name="every_utterance_scored",
            asset_key="conversation_toxicity",
            passed=not any(missing.values()),
            severity=AssetCheckSeverity.WARN,
            metadata={
                "non_empty_utterances": non_empty,
                "not_scored": counts_table(missing, key="scorer", value="utterances not scored"),
            },
        )

    return [flag_toxic]


__all__ = [
    "build_toxicity_assets",
    "detoxify_moderation",
    "openai_moderation",
]
