"""Language identification: each utterance's language, and each conversation's."""

from collections.abc import Iterator

import polars as pl
from dagster import AssetExecutionContext, AssetOut, MetadataValue, Output, multi_asset

from wildchat_dag.assets.metadata import STORAGE, counts_table, preview, share_table
from wildchat_dag.assets.text_exit import text_exit
from wildchat_dag.core.language import identify_day
from wildchat_dag.partitions import collection_days, partition_date
from wildchat_dag.resources.enrichment import FastTextLanguageId


@multi_asset(
    outs={
        "utterance_languages": AssetOut(
            description=(
                "The language of every utterance, user and assistant, by fastText's lid.176: "
                'WildChat\'s English name ("English", "Chinese", ...; "Nolang" for empty '
                "text), fastText's ISO code and its confidence, and language_source (fasttext; "
                "code_or_markup, where fastText was unsure of a text that is mostly code, "
                "labelled English as WildChat does; empty)."
            ),
            metadata=STORAGE,
            group_name="enrichment",
        ),
        "conversation_languages": AssetOut(
            description=(
                "The language of each conversation: the most frequent language of its "
                "utterances (ties to the earliest; Nolang only when no utterance has one)."
            ),
            metadata=STORAGE,
            group_name="enrichment",
        ),
    },
    partitions_def=collection_days,
    code_version="language-v1",
)
@text_exit
def identify_languages(
    context: AssetExecutionContext,
    language_id: FastTextLanguageId,
    linked_conversations: pl.DataFrame,
) -> Iterator[Output]:
    day = partition_date(context.partition_key)
    identifier = language_id.identifier()
    result = identify_day(
        day, linked_conversations, identifier, language_id.code_fallback_confidence
    )
    stats = result.stats
    by_language = stats.pop("by_language")
    by_conversation = stats.pop("conversations_by_language")
    by_source = stats.pop("by_source")
    common = {
        **stats,
        "model": MetadataValue.path(str(identifier.model_path)),
        "code_fallback_confidence": language_id.code_fallback_confidence,
        "by_source": counts_table(by_source, key="language_source"),
    }
    yield Output(
        result.utterances,
        output_name="utterance_languages",
        metadata={
            **common,
            "languages_of_utterances": share_table(by_language, key="language"),
            "preview": preview(result.utterances.drop("partition_day")),
        },
    )
    yield Output(
        result.conversations,
        output_name="conversation_languages",
        metadata={
            **common,
            "languages_of_conversations": share_table(by_conversation, key="language"),
            "preview": preview(result.conversations.drop("partition_day")),
        },
    )
