"""Anonymization: the redaction rules, the corpus PII frequencies, and the anonymized conversations.

The rules file is an observable source asset whose data version is its content hash, and that
hash is also in the code version of every asset that applies it: after an edit, the UI shows the
rules as changed and everything downstream of them as stale, while detection stays fresh.
"""

import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    BetaWarning,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    ObserveResult,
    Output,
    SourceAsset,
    asset,
    observable_source_asset,
)

from wildchat_dag.common.metadata import STORAGE, counts_table, preview
from wildchat_dag.common.pools import WAREHOUSE_TABLES_POOL
from wildchat_dag.common.text_exit import text_exit
from wildchat_dag.core.schema import partition_day_value
from wildchat_dag.defs.anonymization.anonymization import anonymize_day
from wildchat_dag.defs.anonymization.pii_frequency import (
    FrequencyStore,
    skip_list_version,
    values_left_alone,
)
from wildchat_dag.defs.anonymization.redaction import decision_counts
from wildchat_dag.defs.anonymization.redaction_rules import RedactionRules, load_rules
from wildchat_dag.defs.anonymization.resource import IpHasher
from wildchat_dag.defs.checks.raw_ip_check import raw_ip_check, raw_ip_check_spec
from wildchat_dag.defs.checks.raw_ip_scan import client_ips_among
from wildchat_dag.defs.takedowns.withdrawal import without_withdrawn
from wildchat_dag.partitions import collection_days, partition_date
from wildchat_dag.resources.warehouse import Warehouse


def rules_metadata(rules: RedactionRules) -> dict:
    thresholds = {
        r.entity: f"{r.skip_if_in_conversations}+" if r.skip_if_in_conversations else "none"
        for r in rules.rules
    }
    return {
        "rules_hash": rules.rules_hash,
        "rules_file": MetadataValue.path(rules.source),
        "redacted_entities": MetadataValue.json(rules.redacted_entities),
        "detected_not_redacted": MetadataValue.json(list(rules.detect_also)),
        "skip_thresholds": counts_table(
            thresholds, key="entity type", value="skipped when in conversations"
        ),
    }


def build_anonymization_assets(
    rules_path: Path, rules: RedactionRules
) -> list[AssetsDefinition | SourceAsset]:
    """The assets that apply ``rules`` (read from ``rules_path`` when the code location loaded)."""
    rules_version = f"rules-{rules.rules_hash[:16]}"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)

        @observable_source_asset(
            key="redaction_rules",
            group_name="anonymization",
            description=(
                f"The redaction rules file ({rules_path.name}): which detected PII is replaced "
                "in the release. Its data version is the hash of its parsed content. The "
                "redaction_staleness sensor observes an edit within a minute: what applies the "
                "rules then shows as stale (Unsynced, or the no_stale_days check of the daily "
                "assets), until `bash scripts/redaction-refresh.sh` rebuilds it."
            ),
        )
        @text_exit
        def redaction_rules() -> ObserveResult:
            current = load_rules(rules_path)
            return ObserveResult(
                data_version=DataVersion(current.rules_hash), metadata=rules_metadata(current)
            )

    @asset(
        key="pii_entity_frequency",
        deps=[redaction_rules, AssetKey("pii_candidates"), AssetKey("pii_scanned_utterances")],
        group_name="anonymization",
        code_version=f"pii-frequency-v1-{rules_version}",
        pool=WAREHOUSE_TABLES_POOL,
        description=(
            "For each PII value (normalized: phone and card numbers to digits, others to lower "
            "case), the number of distinct conversations in which it qualifies for redaction, "
            "over all days. Values in too many conversations (celebrities, businesses) are left "
            "alone. Refreshed incrementally: only days whose detections changed are re-counted. "
            "Holds raw PII values."
        ),
    )
    @text_exit
    def pii_entity_frequency(warehouse: Warehouse) -> MaterializeResult:
        started = time.perf_counter()
        store = FrequencyStore(warehouse.connect)
        fold = store.refresh(rules)
        table = store.table()
        skipped = values_left_alone(table, rules)
        return MaterializeResult(
            data_version=DataVersion(skip_list_version(table, rules)),
            metadata={
                "rules_hash": rules.rules_hash,
                "refresh": fold.mode,
                "days_folded": MetadataValue.json(fold.days_folded),
                "days_removed": MetadataValue.json(fold.days_removed),
                "days_unchanged": fold.days_unchanged,
                "values_touched": fold.values_touched,
                "values": table.height,
                "values_by_entity_type": counts_table(
                    dict(table.group_by("entity_type").len().iter_rows()), key="entity type"
                ),
                "values_at_or_over_threshold": counts_table(
                    dict(skipped.group_by("entity_type").len().iter_rows()), key="entity type"
                ),
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    @asset(
        key="anonymized_conversations",
        ins={
            "linked_conversations": AssetIn(),
            "withdrawn_conversations": AssetIn(),
            "pii_candidates": AssetIn(),
            "pii_scanned_utterances": AssetIn(),
        },
        deps=[redaction_rules, pii_entity_frequency],
        partitions_def=collection_days,
        metadata=STORAGE,
        group_name="anonymization",
        code_version=f"anonymization-v1-{rules_version}",
        check_specs=[
            raw_ip_check_spec(
                "anonymized_conversations",
                "Run when the day is anonymized, the first table outside the raw layer.",
            )
        ],
        description=(
            "The day's conversations with the redaction rules applied: PII replaced by "
            "<PRESIDIO_ANONYMIZED_{ENTITY}> placeholders (`redacted` on the utterance and the "
            "conversation), hashed_ip = sha256(salt + ip) instead of the IP, and only "
            "user-agent and accept-language, on user turns. A text whose detection did not "
            "finish is withheld. First table outside the raw layer. After a rules edit, its "
            "no_stale_days check lists the days built under the old rules; "
            "`bash scripts/redaction-refresh.sh` rebuilds them and what follows."
        ),
    )
    @text_exit
    def anonymized_conversations(
        context: AssetExecutionContext,
        ip_hasher: IpHasher,
        warehouse: Warehouse,
        linked_conversations: pl.DataFrame,
        withdrawn_conversations: pl.DataFrame,
        pii_candidates: pl.DataFrame,
        pii_scanned_utterances: pl.DataFrame,
    ) -> Iterator[Output | AssetCheckResult]:
        started = time.perf_counter()
        day = partition_date(context.partition_key)
        # A conversation a takedown request names leaves here, the first table outside the raw
        # layer, as it leaves every other step after linking.
        linked_conversations = without_withdrawn(linked_conversations, withdrawn_conversations)
        store = FrequencyStore(warehouse.connect)
        if pii_scanned_utterances.height:
            digest = pii_scanned_utterances["detection_digest"][0]
            store.require_current(partition_day_value(day), digest, rules)
        result = anonymize_day(
            day,
            linked_conversations,
            pii_candidates,
            pii_scanned_utterances,
            rules,
            ip_hasher.salt,
            frequencies_of=store.frequencies_of,
            client_ips_among=lambda addresses: client_ips_among(warehouse.query, addresses),
        )
        yield Output(
            result.conversations,
            metadata={
                **result.stats,
                "rules_hash": rules.rules_hash,
                "ip_salt": ip_hasher.salt_source,
                "ip_salt_fingerprint": ip_hasher.fingerprint,
                "decisions": counts_table(decision_counts(result.decided), key="entity/decision"),
                "seconds": round(time.perf_counter() - started, 3),
                "preview": redaction_preview(result.conversations, rules),
            },
        )
        yield raw_ip_check(warehouse, partition_day_value(day), "anonymized_conversations")

    return [redaction_rules, pii_entity_frequency, anonymized_conversations]


def redaction_preview(conversations: pl.DataFrame, rules: RedactionRules) -> MetadataValue:
    """Redacted conversations, each with its first placeholder in context: released text only,
    what a reviewer of the release would see."""
    around_placeholder = f"(.{{0,30}}{rules.placeholder_regex()}.{{0,20}})"
    return preview(
        conversations.filter("redacted").select(
            "conversation_id",
            "turn",
            "withheld_utterances",
            first_redaction=pl.col("conversation")
            .list.filter(pl.element().struct.field("redacted"))
            .list.first()
            .struct.field("content")
            .str.extract(around_placeholder),
        )
    )
