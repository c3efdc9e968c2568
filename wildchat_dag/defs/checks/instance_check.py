"""``no_raw_values_in_instance``: the day's raw values are nowhere in Dagster's own storage.

The warehouse checks (``no_raw_ip_addresses``, ``no_rule_matching_pii``) look at the tables.
Dagster's event log is a store of its own, outside the raw layer, kept as long as the instance
and shown by the UI: materialization and check metadata, log messages, step failures with their
errors. This check reads it back and searches it for the day's raw client IPs (every notation)
and for the PII values the redaction rules redact that day. It runs in the step of the checks
that guard a day's release records (``release_records_checks``), blocking: a value found there
stops the statistics and the exports of the run, and names the event to purge, never the value.

The search itself is ``wildchat_dag/defs/checks/instance_search.py``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetRecordsFilter,
    DagsterInstance,
    EventLogRecord,
    MetadataValue,
    RunsFilter,
)
from dagster._serdes import serialize_value

from wildchat_dag.common.metadata import counts_table
from wildchat_dag.core.markdown import markdown_table
from wildchat_dag.core.schema import partition_day_value
from wildchat_dag.core.sql import query
from wildchat_dag.defs.anonymization.pii_frequency import FrequencyStore
from wildchat_dag.defs.anonymization.redaction import Decision
from wildchat_dag.defs.anonymization.redaction_rules import RedactionRules
from wildchat_dag.defs.checks.instance_search import (
    CLIENT_IP,
    MIN_NEEDLE_CHARS,
    count_values,
    ip_needles,
    search_entries,
    text_needles,
)
from wildchat_dag.defs.checks.table_rules import (
    CANDIDATES_SQL,
    LINKED_SQL,
    RECORDS_SQL,
    SCANNED_SQL,
    redaction_decisions,
    released_utterances,
)
from wildchat_dag.partitions import LOOKAHEAD_DAYS, partition_date
from wildchat_dag.resources.warehouse import Warehouse

INSTANCE_CHECK = "no_raw_values_in_instance"
PARTITION_TAG = "dagster/partition"
CLIENT_IPS_SQL = (
    "SELECT DISTINCT ip FROM main.raw_requests WHERE partition_day = $day AND ip IS NOT NULL"
)
PAGE = 1000
SHOWN_FINDINGS = 50

INSTANCE_CHECK_DESCRIPTION = (
    "Dagster's own storage holds no raw value of this day: the event log entries of every run "
    "of this day and of the days whose linking reads it, D-{back} .. D+{ahead} (linking day E "
    "reads the raw requests of E-{window_back} .. E+{lookahead}, so those runs load this day's "
    "requests, and the steps after them its linked conversations), plus this run so far and "
    "the asset events recorded for those days outside any run. Each entry is serialized whole "
    "(messages, materialization and check metadata, errors with their causes and stacks) and "
    "searched for the day's raw client IPs in every notation (canonical, IPv4-mapped, integer, "
    "leading zeros, full-width or zero-width-split digits) and for the PII values that the "
    f"redaction rules redact on this day (at least {MIN_NEEDLE_CHARS} characters), also "
    "JSON-escaped. The metadata counts the runs, entries and values searched by kind; a "
    "finding names the event (run id, storage id, event type, step key) and the kind of "
    "value, never the value. On failure: find the code that wrote it (the step and event "
    "type say where), fix it, and delete the run (dagster run delete <run id>) or wipe the "
    "asset's events for the day."
).format(
    back=LOOKAHEAD_DAYS,
    ahead=LOOKAHEAD_DAYS + 1,
    window_back=LOOKAHEAD_DAYS + 1,
    lookahead=LOOKAHEAD_DAYS,
)


def days_reading(day: date) -> list[date]:
    """The days whose linking reads ``day``'s raw requests (its window is E-(N+1) .. E+N)."""
    return [day + timedelta(days=d) for d in range(-LOOKAHEAD_DAYS, LOOKAHEAD_DAYS + 2)]


@dataclass(frozen=True)
class Entry:
    run_id: str
    storage_id: int
    event_type: str
    step_key: str
    text: str


def instance_result(
    context: AssetCheckExecutionContext,
    warehouse: Warehouse,
    rules: RedactionRules,
    inputs: dict[str, pl.DataFrame] | None = None,
) -> AssetCheckResult:
    """``inputs``: the day's tables as ``day_inputs`` reads them, when the caller has them."""
    day = partition_date(context.partition_key)
    values = day_values(warehouse, inputs or day_inputs(warehouse, day), rules)
    needles = pl.concat(
        [
            ip_needles(values[CLIENT_IP]),
            text_needles((v, kind) for kind, vs in values.items() if kind != CLIENT_IP for v in vs),
        ]
    )
    keys = [d.isoformat() for d in days_reading(day)]
    run_ids = runs_of_days(context.instance, keys) | {context.run.run_id}
    entries = list(instance_entries(context.instance, sorted(run_ids), keys))
    frame = pl.DataFrame(
        {"entry_id": list(range(len(entries))), "text": [e.text for e in entries]},
        schema={"entry_id": pl.Int64, "text": pl.String},
    )
    found = search_entries(frame, needles, values[CLIENT_IP])
    # One row per event and kind of value in it: where to look, never what was found.
    rows: list[tuple[str, int, str, str, str]] = []
    for i, kind in found.iter_rows():
        entry = entries[i]
        rows.append(
            (entry.run_id or "(no run)", entry.storage_id, entry.event_type, entry.step_key, kind)
        )
    described = [
        f"run {run} storage id {storage} ({event}, step {step or '-'}): {kind}"
        for run, storage, event, step, kind in rows[:10]
    ]
    events = found["entry_id"].n_unique()
    return AssetCheckResult(
        asset_key="release_records",
        check_name=INSTANCE_CHECK,
        passed=not rows,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"{events} event log entr{'y holds' if events == 1 else 'ies hold'} raw values "
            "of this day: " + "; ".join(described) + ("; ..." if len(rows) > 10 else "")
            if rows
            else None
        ),
        metadata={
            "days_searched": MetadataValue.json(keys),
            "runs_searched": len(run_ids),
            "entries_searched": len(entries),
            "values_searched_by_kind": counts_table(
                count_values(values), key="kind", value="values"
            ),
            "events_with_findings": events,
            "findings": len(rows),
            "events_with_raw_values": MetadataValue.md(
                markdown_table(
                    ("run id", "storage id", "event type", "step key", "kind"),
                    [tuple(str(c) for c in r) for r in rows[:SHOWN_FINDINGS]],
                )
            ),
        },
    )


def day_inputs(warehouse: Warehouse, day: date) -> dict[str, pl.DataFrame]:
    """What the day's release checks read, in one connection: its release records, linked
    conversations, PII candidates, scanned utterances and client IPs."""
    params = {"day": partition_day_value(day)}
    sqls = {
        "records": RECORDS_SQL,
        "linked": LINKED_SQL,
        "candidates": CANDIDATES_SQL,
        "scanned": SCANNED_SQL,
        "client_ips": CLIENT_IPS_SQL,
    }
    with warehouse.connect() as con:
        return {name: query(con, sql, params) for name, sql in sqls.items()}


def day_values(
    warehouse: Warehouse, inputs: dict[str, pl.DataFrame], rules: RedactionRules
) -> dict[str, list[str]]:
    """The raw values of the day of ``inputs`` to look for, by kind: its client IPs, and each
    PII value the rules redact (decided as anonymization decides), by entity type."""
    ips = inputs["client_ips"]["ip"].to_list()
    candidates, scanned, records = inputs["candidates"], inputs["scanned"], inputs["records"]
    decided = redaction_decisions(
        candidates, scanned, rules, FrequencyStore(warehouse.connect).frequencies_of
    )
    redacted = decided.filter(
        (pl.col("decision") == Decision.REDACT)
        & (pl.col("text").str.len_chars() >= MIN_NEEDLE_CHARS)
    )
    # A redacted value that the release still holds elsewhere (the same name written again
    # without a cue) was left there by the rules' own decision: a preview of the released text
    # may show it, and that is not a leak. Looked for in the released text as written.
    texts = released_utterances(records)["content"].drop_nulls()
    values = redacted["text"].unique()
    if texts.len() and values.len():
        found = texts.str.extract_many(values.to_list(), overlapping=True).explode().drop_nulls()
        redacted = redacted.filter(~pl.col("text").is_in(found.unique().to_list()))
    values: dict[str, list[str]] = {CLIENT_IP: sorted(set(ips))}
    for kind, texts in redacted.group_by("entity_type").agg(pl.col("text").unique()).iter_rows():
        values[kind] = sorted(texts)
    return values


def runs_of_days(instance: DagsterInstance, partition_keys: list[str]) -> set[str]:
    run_ids: set[str] = set()
    for key in partition_keys:
        cursor = None
        while True:
            records = instance.get_run_records(
                RunsFilter(tags={PARTITION_TAG: key}), limit=PAGE, cursor=cursor
            )
            run_ids.update(r.dagster_run.run_id for r in records)
            if len(records) < PAGE:
                break
            cursor = records[-1].dagster_run.run_id
    return run_ids


def instance_entries(
    instance: DagsterInstance, run_ids: list[str], partition_keys: list[str]
) -> Iterator[Entry]:
    """Every event log entry of ``run_ids``, then the asset events of those days recorded
    outside them (reported without a run, or by a run not tagged with the day)."""
    seen: set[int] = set()
    for run_id in run_ids:
        for entry in _run_entries(instance, run_id):
            seen.add(entry.storage_id)
            yield entry
    for key in instance.get_asset_keys():
        for fetch in (instance.fetch_materializations, instance.fetch_observations):
            cursor = None
            while True:
                result = fetch(
                    AssetRecordsFilter(asset_key=key, asset_partitions=partition_keys),
                    limit=PAGE,
                    cursor=cursor,
                )
                for record in result.records:
                    if record.storage_id not in seen:
                        seen.add(record.storage_id)
                        yield _entry(record)
                if not result.has_more:
                    break
                cursor = result.cursor


# A run's entries, as read so far, and the cursor after the last: an event, once stored, never
# changes, so a warm worker checking day after day (each day's window shares three days with
# the next) reads and serializes only the entries stored since. Bounded: least recently read
# runs go first.
_RUN_ENTRIES: OrderedDict[tuple[int, str], tuple[list[Entry], str | None]] = OrderedDict()
RUNS_REMEMBERED = 128


def _run_entries(instance: DagsterInstance, run_id: str) -> list[Entry]:
    # Keyed by the storage object too: another instance may hold a run of the same id.
    key = (id(instance.event_log_storage), run_id)
    entries, cursor = _RUN_ENTRIES.pop(key, ([], None))
    entries = list(entries)
    while True:
        connection = instance.get_records_for_run(run_id, cursor=cursor, limit=PAGE)
        entries.extend(_entry(record) for record in connection.records)
        if connection.records:
            cursor = connection.cursor
        if not connection.has_more:
            break
    _RUN_ENTRIES[key] = (entries, cursor)
    while len(_RUN_ENTRIES) > RUNS_REMEMBERED:
        _RUN_ENTRIES.popitem(last=False)
    return entries


def _entry(record: EventLogRecord) -> Entry:
    entry = record.event_log_entry
    event = entry.dagster_event
    return Entry(
        run_id=entry.run_id,
        storage_id=record.storage_id,
        event_type=event.event_type_value if event else "LOG_MESSAGE",
        step_key=entry.step_key or "",
        text=entry_text(serialize_value(entry)),
    )


def entry_text(serialized: str) -> str:
    """What an entry says: every string in it, decoded (so an escaped or split value reads
    whole), then the serialized form itself (where non-ASCII text is JSON-escaped)."""
    leaves: list[str] = []
    stack = [json.loads(serialized)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            leaves.append(item)
        elif isinstance(item, dict):
            leaves.extend(k for k in item if isinstance(k, str))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return "\n".join([*leaves, serialized])
