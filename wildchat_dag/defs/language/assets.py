"""Language identification: each utterance's language, and each conversation's."""

from collections.abc import Iterator

import polars as pl
from dagster import AssetExecutionContext, AssetOut, MetadataValue, Output, multi_asset

from wildchat_dag.common.metadata import STORAGE, counts_table, preview, share_table
from wildchat_dag.common.text_exit import text_exit
from wildchat_dag.defs.language.language import identify_day
from wildchat_dag.defs.language.lingua_language import lingua_version
from wildchat_dag.defs.language.resource import (
    LANGUAGE_BACKEND_ENV_VAR,
    LanguageBackend,
    LanguageIdModels,
    configured_backend,
)
from wildchat_dag.defs.takedowns.withdrawal import without_withdrawn
from wildchat_dag.partitions import collection_days, partition_date


def language_code_version(backend: LanguageBackend) -> str:
    """fastText's stays language-v1, so its days stay fresh; lingua's names its release, whose
    models are part of the labels."""
    if backend == "lingua":
        return f"language-v1-lingua-{lingua_version()}"
    return "language-v1"


# The deployment's backend, as the resource's default is: switching the variable marks every
# day labelled by the other backend stale.
BACKEND = configured_backend()


@multi_asset(
    outs={
        "utterance_languages": AssetOut(
            description=(
                "The language of every utterance, user and assistant: WildChat's English name "
                '("English", "Chinese", ...; "Nolang" for empty text), an ISO code, the '
                "detector's confidence, and language_source. The language_id resource's "
                "backend picks the detector (WILDCHAT_LANGUAGE_BACKEND, or the launchpad): "
                "fasttext, the fast default (lid.176; sources fasttext, code_or_markup where "
                "fastText was unsure of a text that is mostly code, labelled English as WildChat "
                "does, and empty), or lingua, the detector WildChat used, which reproduces its "
                "labels (ISO 639-1 code, lingua's relative confidence; sources lingua and "
                "empty). Metadata `backend` and `model` say which labelled the day."
            ),
            metadata=STORAGE,
            group_name="language",
        ),
        "conversation_languages": AssetOut(
            description=(
                "The language of each conversation, as WildChat defines it: the most frequent "
                "language of its utterances, user and assistant (ties to the earliest; Nolang "
                "only when no utterance has one), by the backend that labelled "
                "utterance_languages."
            ),
            metadata=STORAGE,
            group_name="language",
        ),
    },
    partitions_def=collection_days,
    code_version=language_code_version(BACKEND),
)
@text_exit
def identify_languages(
    context: AssetExecutionContext,
    language_id: LanguageIdModels,
    linked_conversations: pl.DataFrame,
    withdrawn_conversations: pl.DataFrame,
) -> Iterator[Output]:
    day = partition_date(context.partition_key)
    linked_conversations = without_withdrawn(linked_conversations, withdrawn_conversations)
    if language_id.backend != BACKEND:
        # The code version is fixed when the code location loads; the metadata tells the truth.
        context.log.warning(
            f"Labelling with {language_id.backend}, set for this run, while the code version "
            f"({language_code_version(BACKEND)}) names {BACKEND}: set "
            f"{LANGUAGE_BACKEND_ENV_VAR}={language_id.backend} for lineage to follow."
        )
    result = identify_day(day, linked_conversations, language_id.labeller())
    stats = result.stats
    by_language = stats.pop("by_language")
    by_conversation = stats.pop("conversations_by_language")
    by_source = stats.pop("by_source")
    fasttext = language_id.backend == "fasttext"
    common = {
        **stats,
        "backend": language_id.backend,
        "model": (
            MetadataValue.path(str(language_id.resolved_model_path()))
            if fasttext
            else language_id.model_description()
        ),
        "by_source": counts_table(by_source, key="language_source"),
    }
    if fasttext:
        common["code_fallback_confidence"] = language_id.code_fallback_confidence
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
