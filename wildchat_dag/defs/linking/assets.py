"""Turn linking: requests of a window of days into whole conversations owned by one day."""

import time
from collections.abc import Iterator
from datetime import date, timedelta

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetOut,
    MetadataValue,
    Output,
    multi_asset,
)

from wildchat_dag.common.metadata import STORAGE, counts_table, preview
from wildchat_dag.common.text_exit import log_warning, text_exit
from wildchat_dag.core.schema import PARTITION_COLUMN, days_named, partition_day_value
from wildchat_dag.defs.checks.table_rules import PLACEMENT_SQL
from wildchat_dag.defs.ingest.resource import RequestLogStore
from wildchat_dag.defs.linking.linking import (
    CONTENT_KEY_COLUMNS,
    COPY_COLUMNS,
    LIGHT_WINDOW_SCHEMA,
    MESSAGE_COUNT,
    ContentChangedError,
    ContentFetcher,
    horizon_days,
    link_window,
    window_days,
)
from wildchat_dag.partitions import (
    LOOKAHEAD_DAYS,
    collection_days,
    link_window_mapping,
    partition_date,
)
from wildchat_dag.resources.warehouse import Warehouse

# The copies of the window's turn ids on the days before it that linking compares them with
# (linking.py, horizon_days). Light columns only, and only the turn ids the window holds:
# these days are not loaded by the IO manager.
EARLIER_COPIES_SQL = f"""
SELECT {", ".join(COPY_COLUMNS)} FROM main.raw_requests
WHERE partition_day BETWEEN $first AND $last
  AND turn_id IN (SELECT turn_id FROM window_turn_ids)
"""


# The window without its content, which is most of its bytes: linking reads the content of the
# rows it keeps only (``_content_of``), and the window's days are read four times over.
WINDOW_SQL = f"""
SELECT * EXCLUDE (message_refs, response_sha256), len(message_refs) AS {MESSAGE_COUNT}
FROM main.raw_requests WHERE partition_day BETWEEN $first AND $last
"""

# The kept rows with their texts put back from their day's raw_message_texts (ingest's
# message_texts.py; ``with_texts`` is the same in polars). A text that is not there comes back
# as a null and is counted in ``missing_texts``: an error, never a shorter conversation.
CONTENT_SQL = f"""
WITH kept AS (
    SELECT w.position, {", ".join(f"r.{c}" for c in CONTENT_KEY_COLUMNS)},
           r.message_refs, r.response_sha256
    FROM wanted w JOIN main.raw_requests r
      ON r.partition_day = w.partition_day AND r.turn_id = w.turn_id
      AND r.source_file = w.source_file AND r.line_number = w.line_number
),
texts AS (
    SELECT partition_day, text_sha256, content FROM main.raw_message_texts
    WHERE partition_day BETWEEN $first AND $last
),
refs AS (
    SELECT position, partition_day, unnest(message_refs) AS ref,
           generate_subscripts(message_refs, 1) AS i
    FROM kept
),
messages AS (
    SELECT f.position,
           list({{'role': f.ref.role, 'content': t.content}} ORDER BY f.i) AS messages,
           count(*) FILTER (WHERE t.content IS NULL) AS missing
    FROM refs f LEFT JOIN texts t
      ON t.partition_day = f.partition_day AND t.text_sha256 = f.ref.text_sha256
    GROUP BY f.position
)
SELECT {", ".join(f"k.{c}" for c in CONTENT_KEY_COLUMNS)}, m.messages, t.content AS response,
       m.missing + CASE WHEN t.content IS NULL THEN 1 ELSE 0 END AS missing_texts
FROM kept k JOIN messages m USING (position)
LEFT JOIN texts t ON t.partition_day = k.partition_day AND t.text_sha256 = k.response_sha256
ORDER BY k.position
"""


def _window(warehouse: Warehouse, day: date) -> pl.DataFrame:
    first, last = window_days(day, LOOKAHEAD_DAYS)
    window = warehouse.query(
        WINDOW_SQL, {"first": partition_day_value(first), "last": partition_day_value(last)}
    )
    older = window.filter(pl.col(MESSAGE_COUNT).is_null())
    if not older.is_empty():
        raise RuntimeError(
            f"raw_requests of {days_named(older)} were stored by an older ingest, with full "
            "histories and no message_refs: materialize ingest of those days again (ingest-v3 "
            "stores each text once, in raw_message_texts)"
        )
    schema = LIGHT_WINDOW_SCHEMA
    return window.select(schema.names()).cast(schema)  # type: ignore[arg-type]


def _content_of(warehouse: Warehouse) -> ContentFetcher:
    def fetch(keys: pl.DataFrame) -> pl.DataFrame:
        days = keys[PARTITION_COLUMN]
        found = warehouse.query(
            CONTENT_SQL,
            {"first": days.min(), "last": days.max()},
            frames={"wanted": keys.with_row_index("position")},
        )
        missing = found.filter(pl.col("missing_texts") > 0)
        if not missing.is_empty():
            raise ContentChangedError(
                f"{int(missing['missing_texts'].sum())} text(s) that raw_requests refers to are "
                f"not in raw_message_texts of {days_named(missing)}: materialize ingest of those "
                "days again"
            )
        return found.drop("missing_texts")

    return fetch


def _not_materialized(context: AssetExecutionContext, first: date, last: date) -> list[str]:
    """Days from ``first`` to ``last`` that are partitions whose raw_requests never were."""
    existing = set(collection_days.get_partition_keys(dynamic_partitions_store=context.instance))
    done = context.instance.get_materialized_partitions(AssetKey("raw_requests"))
    return [
        d
        for i in range((last - first).days + 1)
        if (d := (first + timedelta(days=i)).isoformat()) in existing and d not in done
    ]


def _window_status(context: AssetExecutionContext, day: date) -> tuple[list[str], list[str]]:
    """Days of the window whose raw_requests were never materialized: (lookback, lookahead)."""
    missing = _not_materialized(context, *window_days(day, LOOKAHEAD_DAYS))
    return [d for d in missing if d <= day.isoformat()], [d for d in missing if d > day.isoformat()]


def _earlier_copies(
    context: AssetExecutionContext,
    log_store: RequestLogStore,
    warehouse: Warehouse,
    day: date,
    window: pl.DataFrame,
) -> tuple[pl.DataFrame, list[str]]:
    """The horizon's copies of the window's turn ids, and the horizon days with logs that were
    not ingested (a copy there is not seen: the window links its later copy)."""
    first, last = horizon_days(day, LOOKAHEAD_DAYS)
    missing = [
        d
        for d in _not_materialized(context, first, last)
        if log_store.has_logs(date.fromisoformat(d))
    ]
    copies = warehouse.query(
        EARLIER_COPIES_SQL,
        {"first": partition_day_value(first), "last": partition_day_value(last)},
        {"window_turn_ids": window.select("turn_id")},
    )
    return copies, missing


@multi_asset(
    # Read by SQL, not loaded whole: see WINDOW_SQL.
    deps=[
        AssetDep("raw_requests", partition_mapping=link_window_mapping),
        AssetDep("raw_message_texts", partition_mapping=link_window_mapping),
    ],
    outs={
        "linked_conversations": AssetOut(
            description=(
                "Whole conversations, one row each, owned by the UTC day of their first turn. "
                "Turns are linked WildChat's way (prev/current history hashes, same device "
                f"fingerprint and model, same IP preferred), looking up to {LOOKAHEAD_DAYS} "
                "day(s) past midnight. `conversation` lists the utterances with turn id, time, "
                "IP and headers; conversation-level IP and headers are the most frequent. "
                "A regenerated reply starts a branch conversation (`branch_of_turn_id`). "
                "Raw layer: holds raw IPs."
            ),
            metadata=STORAGE,
            group_name="linking",
        ),
        "orphaned_requests": AssetOut(
            description=(
                "Requests owned by this day that belong to no conversation, with a reason: "
                "predecessor_not_found (its history was not seen in the linking window: lost "
                f"from the logs, or continued more than {LOOKAHEAD_DAYS + 1} days later), "
                "follows_orphan, "
                f"beyond_lookahead (more than {LOOKAHEAD_DAYS} day(s) after the "
                "conversation's first day), duplicate_turn_id (a later copy of a turn id "
                "already logged on an earlier day, set aside whole; `detail` names the first "
                "copy's file and line), or follows_duplicate_turn_id (continues such a copy)."
            ),
            metadata=STORAGE,
            group_name="linking",
        ),
    },
    check_specs=[
        AssetCheckSpec(
            "every_request_placed_once",
            asset="linked_conversations",
            description=(
                "Every request ingested on this day is in exactly one conversation or one "
                "orphan row, over all partitions (a later copy of a turn id: its own "
                "duplicate_turn_id row), and no turn id of the day is kept on another day too. "
                "WARN when some are not placed yet, or a copy on another day is not set aside "
                "yet (a day that needs re-linking); ERROR when one is placed twice (two copies "
                "of a turn id farther apart than the duplicate horizon are both linked)."
            ),
        )
    ],
    partitions_def=collection_days,
    code_version=f"linking-v2-lookahead-{LOOKAHEAD_DAYS}",
)
@text_exit
def link_turns(
    context: AssetExecutionContext,
    log_store: RequestLogStore,
    warehouse: Warehouse,
) -> Iterator[Output | AssetCheckResult]:
    day = partition_date(context.partition_key)
    missing_lookback, missing_lookahead = _window_status(context, day)
    # A lookback day with no log folder had no traffic; one with logs must be ingested first.
    unread = [d for d in missing_lookback if log_store.has_logs(date.fromisoformat(d))]
    if unread:
        raise RuntimeError(
            f"Linking {day} needs raw_requests for {', '.join(unread)}, whose logs exist but "
            "were not ingested: without them, requests continuing earlier conversations would "
            "be taken for orphans. Materialize those partitions first."
        )
    if missing_lookahead:
        log_warning(
            context,
            f"raw_requests not yet materialized for {', '.join(missing_lookahead)}: "
            f"conversations of {day} that continue then are cut short until this partition "
            "is re-materialized.",
        )
    window = _window(warehouse, day)
    earlier, missing_horizon = _earlier_copies(context, log_store, warehouse, day, window)
    if missing_horizon:
        log_warning(
            context,
            f"raw_requests not yet materialized for {', '.join(missing_horizon)}, whose logs "
            f"exist: a turn_id first logged then and again in the window of {day} is not set "
            "aside until this partition is re-materialized.",
        )
    started = time.perf_counter()
    result = link_window(
        window,
        day,
        lookahead_days=LOOKAHEAD_DAYS,
        earlier=earlier,
        fetch=_content_of(warehouse),
    )
    first, last = window_days(day, LOOKAHEAD_DAYS)
    horizon_first, _ = horizon_days(day, LOOKAHEAD_DAYS)
    common = {
        **result.stats,
        "seconds": round(time.perf_counter() - started, 3),
        "window": f"{first} .. {last}",
        "duplicate_horizon": f"{horizon_first} .. {last}",
        "lookahead_days_missing": MetadataValue.json(missing_lookahead),
        "lookback_days_without_logs": MetadataValue.json(
            [d for d in missing_lookback if d not in unread]
        ),
        "duplicate_horizon_days_missing": MetadataValue.json(missing_horizon),
    }
    conversations = result.conversations
    yield Output(
        conversations,
        output_name="linked_conversations",
        metadata={
            **common,
            "turns_histogram": counts_table(
                {
                    f"{n:>3} turns": c
                    for n, c in conversations.group_by("turn").len().sort("turn").iter_rows()
                },
                key="turns",
            ),
            # Raw layer: ids, counts and times only. Content is previewed once redacted
            # (anonymized_conversations).
            "preview": preview(
                conversations.select(
                    "conversation_id",
                    "turn",
                    "inherited_turns",
                    "branch_of_turn_id",
                    "own_turn_ids",
                    "first_turn_timestamp",
                ),
                raw_layer=True,
            ),
        },
    )
    orphans = result.orphans
    yield Output(
        orphans,
        output_name="orphaned_requests",
        metadata={
            **common,
            "by_reason": counts_table(
                dict(orphans.group_by("reason").len().iter_rows()) if orphans.height else {}
            ),
            "preview": preview(
                orphans.select("turn_id", "reason", "detail", "chain_root_turn_id", "timestamp"),
                raw_layer=True,
            ),
        },
    )
    # Both tables are written by now, so placement can be counted across all partitions.
    yield _placement_check(warehouse, day)


def _placement_check(warehouse: Warehouse, day: date) -> AssetCheckResult:
    counts = warehouse.query(PLACEMENT_SQL, {"day": partition_day_value(day)}).row(0, named=True)
    duplicated, missing = counts["placed_twice_or_more"], counts["not_placed"]
    # Kept on two days: a day not yet linked again (WARN), or two copies farther apart than the
    # duplicate horizon, which are then also placed twice (ERROR).
    kept_twice = counts["duplicates_not_set_aside"]
    return AssetCheckResult(
        check_name="every_request_placed_once",
        asset_key="linked_conversations",
        passed=duplicated == 0 and missing == 0 and kept_twice == 0,
        severity=AssetCheckSeverity.ERROR if duplicated else AssetCheckSeverity.WARN,
        metadata={
            **{k: v for k, v in counts.items() if k != "sample_turn_ids"},
            "sample_turn_ids": MetadataValue.json(counts["sample_turn_ids"] or []),
        },
    )
