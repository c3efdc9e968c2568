"""Geo enrichment: the country and state of each user turn, from its client IP."""

from collections.abc import Iterator

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetOut,
    MetadataValue,
    Output,
    multi_asset,
)

from wildchat_dag.common.metadata import STORAGE, counts_table, preview, share_table
from wildchat_dag.common.text_exit import log_warning, text_exit
from wildchat_dag.core.schema import partition_day_value
from wildchat_dag.core.utterances import counts_of
from wildchat_dag.defs.checks.raw_ip_check import raw_ip_check, raw_ip_check_spec
from wildchat_dag.defs.geo.geo import GeoSnapshots, locate_day
from wildchat_dag.defs.geo.resource import GeoIpDatabase
from wildchat_dag.defs.takedowns.withdrawal import without_withdrawn
from wildchat_dag.partitions import collection_days, partition_date
from wildchat_dag.resources.warehouse import Warehouse

# The release card reads this key of each day's latest user_turn_locations materialization.
GEOIP_NAMES_KEY = "geoip_names"


def names_metadata(snapshots: GeoSnapshots, newest_names: bool) -> dict[str, object]:
    """Which snapshot named country and state: its type and build date, never its path."""
    renames = snapshots.renames(newest_names)
    single = renames or len(snapshots.snapshots) == 1
    naming = snapshots.naming
    return {
        GEOIP_NAMES_KEY: snapshots.names_description(newest_names),
        "names_from_newest": newest_names,
        # One snapshot named every turn, or (names_from_newest off) each turn's own did.
        "geoip_names_build_date": str(naming.build_date) if single else "per turn",
        "geoip_names_database_type": naming.database_type if single else "per turn",
    }


@multi_asset(
    outs={
        "user_turn_locations": AssetOut(
            description=(
                'Country and state of each user turn, as WildChat names them ("United '
                'States", "California", "Province of Messina"), from a GeoLite2/GeoIP2 City '
                "lookup of the turn's client IP in the snapshot current on the turn's date; "
                "state is the most specific subdivision (WildChat's level) unless the geoip "
                "resource says top_level, and the names are the newest configured snapshot's "
                "(metadata geoip_names says which) unless names_from_newest is off. geo_status "
                "says why a turn has no country (invalid, loopback, private, reserved, "
                "not_in_database, no_country). The IP is read from linked_conversations and "
                "goes no further: no address, network or coordinates are stored."
            ),
            metadata=STORAGE,
            group_name="geo",
        ),
        "conversation_locations": AssetOut(
            description=(
                "Country and state of each conversation: the most frequent country over its "
                "user turns, and the most frequent state within that country (ties to the "
                "earliest turn; turns without a country do not count)."
            ),
            metadata=STORAGE,
            group_name="geo",
        ),
    },
    partitions_def=collection_days,
    code_version="geo-v2",
    check_specs=[
        raw_ip_check_spec(
            "user_turn_locations",
            "Run when the day is located: this step reads raw IPs and must write none.",
        )
    ],
)
@text_exit
def locate_turns(
    context: AssetExecutionContext,
    geoip: GeoIpDatabase,
    warehouse: Warehouse,
    linked_conversations: pl.DataFrame,
    withdrawn_conversations: pl.DataFrame,
) -> Iterator[Output | AssetCheckResult]:
    day = partition_date(context.partition_key)
    linked_conversations = without_withdrawn(linked_conversations, withdrawn_conversations)
    snapshots = geoip.snapshots()
    if snapshots.warning:
        log_warning(context, snapshots.warning)
    result = locate_day(
        day, linked_conversations, snapshots, geoip.subdivision, geoip.names_from_newest
    )
    stats = result.stats
    by_status = stats.pop("by_status")
    countries = stats.pop("countries")
    by_snapshot = stats.pop("turns_by_snapshot")
    if stats["ipv6_turns_in_ipv4_only_database"]:
        log_warning(
            context,
            f"{stats['ipv6_turns_in_ipv4_only_database']} IPv6 turn(s) could not be located: "
            "the GeoIP database is IPv4-only.",
        )
    common = {
        **stats,
        "geoip_source": snapshots.source,
        "geoip_snapshots": MetadataValue.md(
            "| build date | type | file |\n|---|---|---|\n"
            + "\n".join(
                f"| {s.build_date} | {s.database_type} | {s.path} |" for s in snapshots.snapshots
            )
        ),
        "turns_by_snapshot": counts_table(by_snapshot, key="snapshot built", value="turns"),
        "subdivision": geoip.subdivision,
        "embedded_2018_database": snapshots.embedded,
        **names_metadata(snapshots, geoip.names_from_newest),
    }
    yield Output(
        result.utterances,
        output_name="user_turn_locations",
        metadata={
            **common,
            "by_status": counts_table(by_status, key="geo_status", value="turns"),
            **{f"status/{name}": n for name, n in by_status.items()},
            "countries": share_table(countries, key="country"),
            # This step reads raw IPs: its preview names the columns it shows (no address).
            "preview": preview(
                result.utterances.select(
                    "conversation_id",
                    "utterance_index",
                    "turn_identifier",
                    "country",
                    "state",
                    "geo_status",
                    "geoip_snapshot",
                )
            ),
        },
    )
    conversations = result.conversations
    yield Output(
        conversations,
        output_name="conversation_locations",
        metadata={
            **common,
            "countries": share_table(counts_of(conversations["country"]), key="country"),
            "preview": preview(
                conversations.select(
                    "conversation_id", "country", "state", "user_turns", "located_turns"
                )
            ),
        },
    )
    # Both tables are written by now, so the check sees what this step wrote.
    yield raw_ip_check(warehouse, partition_day_value(day), "user_turn_locations")
