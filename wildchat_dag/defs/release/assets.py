"""The release: WildChat-1M records per day, the paper's statistics, and the two exports."""

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import polars as pl
import pyarrow as pa
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    DagsterEventType,
    DagsterInstance,
    Failure,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
)

from wildchat_dag.common.metadata import STORAGE, counts_table, preview
from wildchat_dag.common.pools import WAREHOUSE_TABLES_POOL
from wildchat_dag.common.text_exit import text_exit
from wildchat_dag.core.markdown import share_markdown
from wildchat_dag.defs.geo.assets import GEOIP_NAMES_KEY
from wildchat_dag.defs.language.resource import LanguageIdModels
from wildchat_dag.defs.release.day_statistics import (
    build_day_statistics,
    merge_days,
    require_current,
)
from wildchat_dag.defs.release.gate import (
    CHUNK,
    GATE_DESCRIPTION,
    enforce_release_gate,
    gate_metadata,
    partition_key_of,
)
from wildchat_dag.defs.release.release import ReleasePolicy, release_records
from wildchat_dag.defs.release.release_card import (
    NAMES_NOT_RECORDED,
    dataset_card,
    release_facts,
    table_1_values,
)
from wildchat_dag.defs.release.release_export import staging_folder, swap_in, write_shards
from wildchat_dag.defs.release.release_history import (
    EXCLUDED_SQL,
    INDEX_SQL,
    MODERATION_MODELS_SQL,
    moderation_models,
    plan_cut,
    version_manifest,
)
from wildchat_dag.defs.release.release_schema import RELEASE_SCHEMA, RELEASES
from wildchat_dag.defs.release.release_statistics import section
from wildchat_dag.defs.release.release_versions import (
    conversation_index,
    file_entries,
    history_root_of,
    write_version,
)
from wildchat_dag.defs.release.resource import ReleaseFolder
from wildchat_dag.defs.takedowns.application import describe_named, named_records
from wildchat_dag.defs.takedowns.ledger import ledger_frame
from wildchat_dag.defs.takedowns.resource import TakedownLedger
from wildchat_dag.partitions import collection_days, partition_date
from wildchat_dag.resources.warehouse import Warehouse

GROUP = "release"
# The metadata key of the ledger version a day's records applied.
TAKEDOWN_LEDGER_VERSION = "takedown_ledger_version"
LOCATIONS = AssetKey("user_turn_locations")


def geoip_names_of(instance: DagsterInstance, days: list[str]) -> dict[str, int]:
    """Which GeoIP snapshot named country and state on ``days`` (partition keys), as each
    day's latest user_turn_locations materialization recorded it: description -> days."""
    storage = instance.event_log_storage
    latest: dict[str, int] = {}
    for start in range(0, len(days), CHUNK):
        latest.update(
            storage.get_latest_storage_id_by_partition(
                LOCATIONS, DagsterEventType.ASSET_MATERIALIZATION, set(days[start : start + CHUNK])
            )
        )
    named: Counter[str] = Counter()
    ids = sorted(set(latest.values()))
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=LOCATIONS, storage_ids=chunk), limit=len(chunk)
        ).records
        for record in records:
            materialization = record.asset_materialization
            value = materialization.metadata.get(GEOIP_NAMES_KEY) if materialization else None
            named[str(value.value) if value is not None else NAMES_NOT_RECORDED] += 1
    if missing := len(set(days)) - len(latest):
        named[NAMES_NOT_RECORDED] += missing
    return dict(named.most_common())


def build_release_assets(policy: ReleasePolicy, threshold: float) -> list[AssetsDefinition]:
    """The release assets under ``policy`` and the toxicity ``threshold`` (both read where the
    code location loads, and part of the code versions)."""

    @asset(
        name="release_records",
        partitions_def=collection_days,
        metadata=STORAGE,
        group_name=GROUP,
        code_version=f"release-records-v1-{policy.version}",
        description=(
            "Every conversation of the day in WildChat-1M's released shape (conversation_hash, "
            "the utterances with hashed_ip, header, country, state, language, toxic and "
            "redacted; both moderation results per utterance; the conversation's fields), with "
            "whether each release takes it: in_public / in_full, and public_exclusion / "
            "full_exclusion saying why not (sexual_minors, not_screened, toxic, "
            "toxicity_unknown). A conversation the takedown ledger names has no record at all "
            "(withdrawn_by_request in the metadata, with the ledger version applied)."
        ),
    )
    @text_exit
    def release_records_of_day(
        context: AssetExecutionContext,
        anonymized_conversations: pl.DataFrame,
        user_turn_locations: pl.DataFrame,
        conversation_locations: pl.DataFrame,
        utterance_languages: pl.DataFrame,
        conversation_languages: pl.DataFrame,
        openai_moderation: pl.DataFrame,
        detoxify_moderation: pl.DataFrame,
        utterance_toxicity: pl.DataFrame,
        conversation_toxicity: pl.DataFrame,
        takedowns: TakedownLedger,
    ) -> Output:
        # Read once: the version recorded is the one applied.
        requests, ledger_version = takedowns.snapshot()
        ledger = ledger_frame(requests)
        result = release_records(
            partition_date(context.partition_key),
            anonymized_conversations,
            user_turn_locations,
            conversation_locations,
            utterance_languages,
            conversation_languages,
            openai_moderation,
            detoxify_moderation,
            utterance_toxicity,
            conversation_toxicity,
            policy,
            ledger,
        )
        stats = dict(result.stats)
        return Output(
            result.utterances,
            metadata={
                **{k: v for k, v in stats.items() if not isinstance(v, dict)},
                "public_exclusions": counts_table(stats["public_exclusions"]),
                "full_exclusions": counts_table(stats["full_exclusions"]),
                "withdrawn_by_request": counts_table(
                    stats["withdrawn_by_request"], key="takedown request", value="conversations"
                ),
                TAKEDOWN_LEDGER_VERSION: ledger_version,
                "preview": preview(
                    result.utterances.select(
                        "conversation_id",
                        "conversation_hash",
                        "model",
                        "turn",
                        "language",
                        "country",
                        "toxic",
                        "redacted",
                        "public_exclusion",
                        "full_exclusion",
                    )
                ),
            },
        )

    release_day_statistics = build_day_statistics(release_records_of_day, threshold)

    @asset(
        name="release_statistics",
        deps=[AssetDep(release_records_of_day), AssetDep(release_day_statistics)],
        group_name=GROUP,
        code_version=f"release-statistics-v2-threshold-{threshold:g}",
        pool=WAREHOUSE_TABLES_POOL,
        description=(
            "The WildChat paper's tables on each release (public, full): conversations, users "
            "(distinct hashed_ip), mean turns, user and chatbot tokens (mean and standard "
            "deviation; word-and-punctuation tokens), languages; the shares of languages (of "
            "user turns), countries and models (of conversations); the share of user and "
            "chatbot turns flagged by Detoxify, OpenAI, either and both; the top flagged "
            "categories. The release cards quote them. Merged from every day's "
            "release_day_statistics, reading no text; a day whose partials are missing or were "
            "built from an older release_records makes the step fail, naming the days, and "
            "nothing is merged." + GATE_DESCRIPTION
        ),
    )
    @text_exit
    def release_statistics_table(context: AssetExecutionContext, warehouse: Warehouse) -> Output:
        started = time.perf_counter()
        merged = merge_days(warehouse)
        decision = enforce_release_gate(context, merged.keys.values(), "the release statistics")
        frame = require_current(context.instance, merged)
        metadata: dict = {
            **gate_metadata(decision),
            "rows": frame.height,
            "days_merged": len(merged.keys),
            "seconds": round(time.perf_counter() - started, 3),
        }
        for release in RELEASES:
            summary = section(frame, release, "summary")
            metadata[f"{release}/table_1"] = counts_table(
                table_1_values(summary), key="statistic", value="value"
            )
            for name, unit, label in (
                ("language", "user turns", "languages"),
                ("country", "conversations", "countries"),
                ("model", "conversations", "models"),
                ("category", "utterances", "flagged_categories"),
            ):
                counts = {k: int(v) for k, v in section(frame, release, name).items()}
                metadata[f"{release}/{label}"] = MetadataValue.md(
                    share_markdown(counts, name, unit)
                )
            metadata[f"{release}/toxicity"] = counts_table(
                {k: f"{v:.2%}" for k, v in section(frame, release, "toxicity").items()
                 if not k.endswith("/turns")},
                key="turns/flagged by", value="share",
            )  # fmt: skip
        return Output(frame, metadata=metadata)

    return [
        release_records_of_day,
        release_day_statistics,
        release_statistics_table,
        *(build_export(release, policy, threshold) for release in RELEASES),
    ]


def build_export(release: str, policy: ReleasePolicy, threshold: float) -> AssetsDefinition:
    @asset(
        name=f"{release}_release",
        deps=["release_records", "release_statistics", "takedown_ledger"],
        group_name=GROUP,
        code_version=f"export-v1-{policy.version}",
        pool=WAREHOUSE_TABLES_POOL,
        description=(
            f"The {release} release as Hugging Face publishes datasets: "
            "data/train-NNNNN-of-NNNNN.parquet in WildChat-1M's exact schema and a README.md "
            "dataset card (features, counts, licence, statistics, the scorers that ran, the "
            "redaction rules' hash, GeoLite2 snapshots, the language model, the days). Written "
            "a day at a time, beside the previous release, and swapped in whole. Refuses to "
            "cut a release that holds a conversation the takedown ledger names (records built "
            "before the request: `python -m wildchat_dag.takedown apply` rebuilds their days)."
            + GATE_DESCRIPTION
        ),
    )
    @text_exit
    def export(
        context: AssetExecutionContext,
        warehouse: Warehouse,
        release_folder: ReleaseFolder,
        language_id: LanguageIdModels,
        takedowns: TakedownLedger,
    ) -> MaterializeResult:
        started = time.perf_counter()
        member = f"in_{release}"
        # Every read here passes over the release records once (the index reads each
        # conversation's turns): a cache of their blocks would only hold memory, beside the
        # Arrow tables and the Parquet writer.
        query = partial(warehouse.query, streaming=True)
        requests, ledger_version = takedowns.snapshot()
        named = named_records(query, ledger_frame(requests), f"WHERE {member}")
        if named.height:
            raise Failure(
                description=(
                    f"The {release} release was not cut: {describe_named(named)}, but their "
                    "release_records were built before the requests. Run python -m "
                    "wildchat_dag.takedown apply, which rebuilds those days and cuts the releases."
                ),
                metadata={"takedown_ledger_version": ledger_version},
            )
        days = query(
            f"SELECT partition_day, count(*) FILTER (WHERE {member}) AS n "
            "FROM main.release_records GROUP BY 1 ORDER BY 1"
        )
        total = int(days["n"].sum() or 0)
        # Before anything is written: every day read below passed its blocking checks.
        decision = enforce_release_gate(
            context,
            [partition_key_of(d) for d in days["partition_day"].to_list()],
            f"the {release} release",
        )

        def day_tables() -> Iterator[pa.Table]:
            columns = ", ".join(f'"{c}"' for c in RELEASE_SCHEMA.names())
            for day in days["partition_day"].to_list():
                # Fetched under the lock, written after it: other steps go on meanwhile.
                with warehouse.connect(streaming=True) as con:
                    table = con.execute(
                        f"SELECT {columns} FROM main.release_records WHERE partition_day = $day "
                        f"AND {member} ORDER BY timestamp, conversation_id",
                        {"day": day},
                    ).to_arrow_table()
                yield table

        folder = release_folder.folder(release)
        staging = staging_folder(folder)
        written = write_shards(staging, day_tables(), total, release_folder.shard_rows)
        statistics = query(
            "SELECT * FROM main.release_statistics WHERE release = $r", {"r": release}
        )
        facts = release_facts(query, release)
        released_days = [
            partition_key_of(d) for d, n in days.select("partition_day", "n").iter_rows() if n
        ]
        facts.geoip_names = geoip_names_of(context.instance, released_days)
        built_at = datetime.now(UTC)
        history = history_root_of(Path(release_folder.root))
        index = conversation_index(query(INDEX_SQL.format(release=release)))
        cut = plan_cut(
            history,
            release,
            built_at.date(),
            index,
            requests,
            query(EXCLUDED_SQL.format(release=release)),
        )
        card = dataset_card(
            release,
            written,
            statistics,
            facts,
            policy,
            threshold,
            language_id.model_description(),
            built_at,
            version=cut.version,
            changelog=cut.changelog_section,
        )
        (staging / "README.md").write_text(card, encoding="utf-8")
        manifest = version_manifest(
            cut,
            facts,
            policy,
            threshold,
            language_id.model_description(),
            ledger_version,
            moderation_models(query(MODERATION_MODELS_SQL)),
        )
        manifest["built_at"] = built_at.isoformat()
        manifest["files"] = file_entries(staging)
        # The version is stored before the release is swapped in: a release on disk always
        # has its manifest, and a failed swap leaves a version to diff against, not a gap.
        write_version(history, release, cut.version, manifest, index, cut.removals)
        swap_in(staging, folder)
        return MaterializeResult(
            metadata={
                "path": MetadataValue.path(str(folder)),
                "conversations": written.rows,
                "shards": len(written.shards),
                "num_bytes": written.num_bytes,
                "download_size": written.download_size,
                "days": len(days),
                **gate_metadata(decision),
                "excluded": counts_table(facts.excluded),
                "scored_by": counts_table(facts.scored_by, key="scorers"),
                "redaction_rules_hashes": MetadataValue.json(facts.rules_hashes),
                "geoip_snapshots": MetadataValue.json([str(d) for d in facts.geoip_snapshots]),
                "geoip_names": counts_table(facts.geoip_names, key="named by", value="days"),
                "policy": policy.version,
                "version": cut.version,
                "previous_version": cut.previous or "none",
                "removed_by_reason": counts_table(
                    cut.diff.removed_by_reason if cut.diff else {}, value="conversations"
                ),
                "changelog_entry": MetadataValue.md(cut.changelog_entry),
                TAKEDOWN_LEDGER_VERSION: ledger_version,
                "takedown_requests": len(requests),
                "seconds": round(time.perf_counter() - started, 3),
                "card": MetadataValue.md(card.split("---", 2)[2][:20_000]),
            }
        )

    return export
