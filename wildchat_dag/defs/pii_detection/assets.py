"""PII detection: Presidio's analyzer over every utterance of a day's conversations."""

from collections.abc import Iterator

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetOut,
    AssetsDefinition,
    MetadataValue,
    Output,
    multi_asset,
)

from wildchat_dag.common.metadata import STORAGE, counts_table, preview
from wildchat_dag.common.text_exit import log_warning, text_exit
from wildchat_dag.core.utterances import conversation_utterances
from wildchat_dag.defs.anonymization.redaction_rules import RedactionRules
from wildchat_dag.defs.language.resource import LanguageIdModels
from wildchat_dag.defs.pii_detection.pii_detection import (
    detection_tables,
    detection_version,
)
from wildchat_dag.defs.pii_detection.resource import PresidioDetector
from wildchat_dag.partitions import collection_days, partition_date


def build_detection_assets(rules: RedactionRules) -> list[AssetsDefinition]:
    """``pii_candidates`` and ``pii_scanned_utterances``, versioned by what decides where
    detection runs (not by thresholds or placeholders: those only re-run redaction)."""
    version = detection_version(rules)

    @multi_asset(
        outs={
            "pii_candidates": AssetOut(
                description=(
                    "Presidio's raw results on this day's utterances, user and assistant: entity "
                    "type, span, score, matched text and up to 200 characters of context, keyed "
                    "by the text's sha256. Redaction rules are applied later, so a rule change "
                    "re-uses these. Inside the privacy boundary: holds raw PII."
                ),
                metadata=STORAGE,
                group_name="pii_detection",
            ),
            "pii_scanned_utterances": AssetOut(
                description=(
                    "Every utterance of the day's conversations and how its text was scanned: "
                    "language, the entity types looked for, and scan_status (gated_out: no rule "
                    "could apply; complete; time_limit or regex_timeout: incomplete, withheld "
                    "from release)."
                ),
                metadata=STORAGE,
                group_name="pii_detection",
            ),
        },
        partitions_def=collection_days,
        code_version=f"pii-detection-{version[:16]}",
    )
    @text_exit
    def detect_pii(
        context: AssetExecutionContext,
        pii_detector: PresidioDetector,
        language_id: LanguageIdModels,
        linked_conversations: pl.DataFrame,
    ) -> Iterator[Output]:
        day = partition_date(context.partition_key)
        detector = pii_detector.detector(rules, language_id.identifier())
        result = detector.detect(conversation_utterances(linked_conversations))
        candidates, scanned = detection_tables(result, day, version)
        stats = result.stats
        if stats["languages_without_ner_model"]:
            log_warning(
                context,
                "No spaCy model installed for language(s) "
                f"{', '.join(stats['languages_without_ner_model'])} (configured: "
                f"{dict(pii_detector.spacy_models)}): their texts got pattern recognizers only.",
            )
        incomplete = scanned.filter(pl.col("scan_status").is_in(["time_limit", "regex_timeout"]))
        common = {
            "rules_hash": rules.rules_hash,
            "detection_version": version,
            "seconds": stats["seconds"],
            "characters_per_second": round(stats["characters"] / stats["seconds"])
            if stats["seconds"]
            else 0,
        }
        yield Output(
            candidates,
            output_name="pii_candidates",
            metadata={
                **common,
                "candidates": candidates.height,
                # Counts only: matched text is PII and does not belong in the event log.
                "by_entity_type": counts_table(
                    dict(candidates.group_by("entity_type").len().iter_rows()), key="entity type"
                ),
            },
        )
        yield Output(
            scanned,
            output_name="pii_scanned_utterances",
            metadata={
                **common,
                **{
                    k: v
                    for k, v in stats.items()
                    if isinstance(v, int) and k not in ("candidates", "workers")
                },
                "workers": stats["workers"],
                "incomplete_utterances": incomplete.height,
                "scan_status": counts_table(stats["scan_status"], key="scan status"),
                "spacy_models": MetadataValue.json(dict(pii_detector.spacy_models)),
                "spacy_models_missing": MetadataValue.json(stats["spacy_models_missing"]),
                "languages_without_ner_model": MetadataValue.json(
                    stats["languages_without_ner_model"]
                ),
                "incomplete": preview(
                    incomplete.select(
                        "conversation_id",
                        "utterance_index",
                        "characters",
                        "scan_status",
                        "scan_detail",
                    ),
                    raw_layer=True,
                ),
            },
        )

    return [detect_pii]
