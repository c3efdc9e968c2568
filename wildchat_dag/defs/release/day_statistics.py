"""The release statistics, a day at a time: each day's partials, built with the day, and the
check a release cut makes before it merges them.

The paper's tables used to be computed when a release was cut, by tokenizing every day's text
(about 270 s at 1M conversations, paid again at every cut). ``release_day_statistics`` keeps,
per day and release, what the tables need (``release_statistics.py``: counts, sums, sums of
squares, and the distinct users and languages), computed when the day's ``release_records`` is
built; ``release_statistics`` merges them without reading any text.

A day whose partials are missing, or were computed from another materialization of its
``release_records`` than the latest, is **refused**: the cut fails naming the days, as the
release gate does, and merges nothing. Not recomputed inside the cut, because:

- what a release quotes is then always something Dagster materialized and recorded, with the
  lineage the UI shows, never numbers computed on the side by an unpartitioned step;
- the cut's cost stays what it says: a cut that quietly tokenized the stale days would be back
  to the full scan's cost (all of it, the first time after an upgrade) without anyone asking;
- the fix is one cheap per-day step (the nightly job, the automation conditions and
  ``redaction_refresh`` build it with the records; a backfill builds it for old days).

Each day's partials carry the storage id of the ``release_records`` materialization they were
computed from, looked up before the rows are read: a materialization that lands in between makes
the partials look stale (and refused), never current. The cut reads the warehouse first and the
instance after, for the same reason.
"""

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import polars as pl
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    DagsterEventType,
    DagsterInstance,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from wildchat_dag.common.metadata import STORAGE
from wildchat_dag.common.text_exit import text_exit
from wildchat_dag.core.markdown import markdown_table
from wildchat_dag.core.schema import partition_day_value
from wildchat_dag.core.sql import query as run_query
from wildchat_dag.defs.release.gate import CHUNK, DESCRIBED_DAYS, TABLE_ROWS, partition_key_of
from wildchat_dag.defs.release.release_schema import RELEASES
from wildchat_dag.defs.release.release_statistics import (
    DAY_RECORDS_SQL,
    DAY_STATISTICS_SCHEMA,
    PARTIAL_DAYS_SQL,
    RECORD_DAYS_SQL,
    UNMERGEABLE_MEANING,
    day_statistics,
    merge_day_statistics,
    unmergeable_days,
)
from wildchat_dag.partitions import collection_days, partition_date
from wildchat_dag.resources.warehouse import Warehouse

DAY_STATISTICS = "release_day_statistics"
RECORDS = AssetKey("release_records")

_TABLE_EXISTS_SQL = """
SELECT count(*) AS n FROM information_schema.tables
WHERE table_schema = 'main' AND table_name = $table
"""


def build_day_statistics(records: AssetsDefinition, threshold: float) -> AssetsDefinition:
    """``release_day_statistics`` on ``records`` (the release_records asset), under the
    toxicity ``threshold`` (part of the code version: the toxicity counts depend on it)."""

    @asset(
        name=DAY_STATISTICS,
        partitions_def=collection_days,
        deps=[AssetDep(records)],
        metadata=STORAGE,
        group_name="release",
        code_version=f"release-day-statistics-v1-threshold-{threshold:g}",
        description=(
            "What the release statistics need of the day, per release (public, full): counts, "
            "sums and sums of squares of turns and tokens (so means and standard deviations "
            "merge exactly), the day's distinct users (hashed_ip) and languages (sets merge by "
            "union), and the counts behind the language, country, model, toxicity and "
            "category tables. Computed when the day's release_records is built, stamped with "
            "that materialization's storage id; release_statistics merges the days without "
            "reading any text, and refuses a day whose partials are missing or stale."
        ),
    )
    @text_exit
    def release_day_statistics(context: AssetExecutionContext, warehouse: Warehouse) -> Output:
        started = time.perf_counter()
        key = context.partition_key
        # Before the rows are read: see the module's docstring.
        source = latest_materializations(context.instance, [key]).get(key)
        # Read under the lock, tokenized after it: other steps write meanwhile.
        with warehouse.connect() as con:
            day = con.execute(
                DAY_RECORDS_SQL, {"day": partition_day_value(partition_date(key))}
            ).to_arrow_table()
        partials = day_statistics(day, threshold, source)
        conversations = partials.filter(pl.col("part") == "conversations")
        return Output(
            partials,
            metadata={
                "rows": partials.height,
                "records_materialization": source,
                **{
                    f"{release}/conversations": int(
                        conversations.filter(pl.col("release") == release)["n"].sum()
                    )
                    for release in RELEASES
                },
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    return release_day_statistics


def latest_materializations(instance: DagsterInstance, keys: Iterable[str]) -> dict[str, int]:
    """The storage id of each day's latest release_records materialization (absent: none)."""
    keys = sorted(set(keys))
    latest: dict[str, int] = {}
    for start in range(0, len(keys), CHUNK):
        latest.update(
            instance.event_log_storage.get_latest_storage_id_by_partition(
                RECORDS, DagsterEventType.ASSET_MATERIALIZATION, set(keys[start : start + CHUNK])
            )
        )
    return latest


@dataclass(frozen=True)
class MergedDays:
    """One snapshot of the warehouse: each day of release_records with its members
    (``RECORD_DAYS_SQL``), each day's partials (``PARTIAL_DAYS_SQL``), and their merge (None
    where no partials were ever written and there are days to merge)."""

    records: pl.DataFrame
    partials: pl.DataFrame
    statistics: pl.DataFrame | None

    @property
    def keys(self) -> dict[datetime, str]:
        return {day: partition_key_of(day) for day in self.records["partition_day"].to_list()}


def merge_days(warehouse: Warehouse) -> MergedDays:
    """The merged statistics of every day of release_records, read under one lock (cheap: no
    text is read), judged afterwards by ``require_current``."""
    with warehouse.connect() as con:

        def query(sql: str, parameters: dict | None = None) -> pl.DataFrame:
            return run_query(con, sql, parameters)

        records = query(RECORD_DAYS_SQL)
        days = records["partition_day"].to_list()
        if query(_TABLE_EXISTS_SQL, {"table": DAY_STATISTICS})["n"][0]:
            partials = query(PARTIAL_DAYS_SQL)
        else:
            partials = pl.DataFrame(schema=_PARTIAL_DAYS_SCHEMA)
        statistics = (
            pl.concat([merge_day_statistics(query, r, days) for r in RELEASES])
            if partials.height or not days
            else None
        )
    return MergedDays(records, partials, statistics)


def require_current(instance: DagsterInstance, merged: MergedDays) -> pl.DataFrame:
    """``merged.statistics``, when every day's partials were computed from the day's latest
    release_records materialization and agree with its counts; else ``dagster.Failure`` naming
    the days and what to do."""
    keys = merged.keys
    latest = latest_materializations(instance, keys.values())
    refused = unmergeable_days(
        merged.records, {day: latest.get(key) for day, key in keys.items()}, merged.partials
    )
    if refused or merged.statistics is None:
        raise Failure(
            description=_refusal(refused, keys),
            metadata={
                "unmerged_days": MetadataValue.json([keys[d] for d in sorted(refused)]),
                "unmerged": MetadataValue.md(_refusal_table(refused, keys)),
                "days_checked": len(keys),
            },
        )
    return merged.statistics


_PARTIAL_DAYS_SCHEMA = {
    "partition_day": DAY_STATISTICS_SCHEMA["partition_day"],
    "public_conversations": pl.Int64,
    "full_conversations": pl.Int64,
    "records_materialization": pl.Int64,
    "sources": pl.Int64,
}


def _refusal(refused: dict[datetime, str], keys: dict[datetime, str]) -> str:
    days = sorted(refused)
    listed = "; ".join(f"{keys[d]}: {refused[d]}" for d in days[:DESCRIBED_DAYS])
    if len(days) > DESCRIBED_DAYS:
        listed += f"; and {len(days) - DESCRIBED_DAYS} more day(s)"
    meanings = "; ".join(f"{s}: {UNMERGEABLE_MEANING[s]}" for s in sorted(set(refused.values())))
    first, last = keys[days[0]], keys[days[-1]]
    return (
        f"Release statistics: {len(days)} of {len(keys)} day(s) have no per-day statistics built "
        f"from their latest release_records ({listed}). ({meanings}.) Nothing was merged. "
        f"Materialize {DAY_STATISTICS} for those days, from the UI or with: "
        f"python -m wildchat_dag.backfill {first} {last} --assets {DAY_STATISTICS}. Then cut "
        "the release again. The metadata's table lists every day."
    )


def _refusal_table(refused: dict[datetime, str], keys: dict[datetime, str]) -> str:
    rows = [(keys[d], refused[d]) for d in sorted(refused)]
    table = markdown_table(("day", "status"), rows[:TABLE_ROWS])
    if len(rows) > TABLE_ROWS:
        table += f"\n\n_and {len(rows) - TABLE_ROWS} more rows_"
    return table
