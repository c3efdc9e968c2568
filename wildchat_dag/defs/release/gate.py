"""The release gate: an export writes no day whose blocking checks did not pass.

Blocking checks stop what is downstream of them *in the same run* only. The exports (and the
statistics their cards quote) run on their own (the ``wildchat_release`` job, or a
materialization from the UI), so without this gate a day whose ``release_records`` failed
``no_raw_ip_addresses`` yesterday would be released today. Before anything is written, each
day the release would include is judged on every blocking check the code location defines on
the tables a release is built from (``GATED_ASSETS``), whatever module defines it: the
``release_records_checks``, the raw-IP check ``anonymized_conversations`` yields itself, the
schema checks. A check counts for a day when its latest execution for the day *passed* and
judged the day's *latest materialization* of its asset (the evaluation's target
materialization storage id is that of the latest materialization of the partition). Anything
else refuses the day (``GateStatus``):

- ``failed``: the latest evaluation of the latest materialization did not pass;
- ``stale``: the latest evaluation judged an older materialization (the day was materialized
  again without its checks), or names none: Dagster records no target only when the partition
  had no materialization yet when the check ran, so whatever is there now came later;
- ``not_evaluated``: no evaluation for the day (the check never ran on the day; for checks
  Dagster records without a partition, see below, also one that only ran on an older
  materialization);
- ``no_result``: the latest execution was planned and never reported (its run is going on,
  failed before the check, or the check step was skipped);
- ``not_materialized``: the day has rows in the table but no materialization in the instance
  (written outside Dagster, or its history wiped).

Checks partitioned like their asset (``release_records_checks``) are recorded per day. Checks
without a partitions definition on a partitioned asset (the raw-IP check of
``anonymized_conversations``, the schema checks) run with a day's materialization, but Dagster
records their evaluation without a partition: for those, the day's evaluation is the newest
one whose target is the day's latest materialization.

A failed evaluation refuses the day whatever its severity (Dagster's own blocking ignores a
WARN; every blocking check here is ERROR). The checks are those of the code location's asset
graph: ``context.repository_def``'s, or, for a job executed in process without a repository
(the tests), the graph the job was cut from (``source_asset_graph``): a job's own graph holds
only its selection, and the release job selects no check.

The pure part (``judge``, ``decide``, ``GateDecision``) takes plain records and is what the
tests call directly; ``read_gate`` and ``enforce_release_gate`` read the instance. Reading is a
few bulk queries, not one per day: one per asset for the latest materialization of every day
(``get_latest_storage_id_by_partition``), one per partitioned check for its latest execution on
every day (``get_asset_check_partition_info``), and the unpartitioned checks' history, newest
first, only as far back as the oldest day's latest materialization.

What the gate says (the ``Failure`` description and metadata) names days, assets, checks and
statuses only: never a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    Failure,
    MetadataValue,
)
from dagster._check import CheckError
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from wildchat_dag.core.markdown import markdown_table

# The tables a release is built from: their blocking checks guard every export.
GATED_ASSETS: tuple[str, ...] = ("anonymized_conversations", "release_records")

# What an export's description says (the UI shows it).
GATE_DESCRIPTION = (
    " Refuses days whose blocking checks did not pass: before anything is written, every day "
    "it would include must have passed each blocking check on release_records and "
    "anonymized_conversations, evaluated on the day's latest materialization. A day whose "
    "check failed, never ran, or ran on an older materialization makes the step fail, listing "
    "the days and checks, and nothing is written (defs/release/gate.py)."
)

# Days listed in a Failure's description, in at most so many characters (the step exit keeps
# 2,000 of the description); all of them are in its metadata table.
DESCRIBED_DAYS = 12
DESCRIBED_CHARS = 800
# Rows of the metadata table (a day refused on every check is a handful of rows).
TABLE_ROWS = 400
# Keys per bulk query: under SQLite's bound on a statement's variables.
CHUNK = 250
# History of the unpartitioned checks, read a page at a time.
PAGE = 500
# Slack between the clocks that stamp a check's evaluation and a materialization.
CLOCK_SLACK_SECONDS = 3600.0

SUCCEEDED = AssetCheckExecutionRecordStatus.SUCCEEDED.value
FAILED = AssetCheckExecutionRecordStatus.FAILED.value
PLANNED = AssetCheckExecutionRecordStatus.PLANNED.value


class GateStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    STALE = "stale"
    NOT_EVALUATED = "not_evaluated"
    NO_RESULT = "no_result"
    NOT_MATERIALIZED = "not_materialized"


MEANING: dict[GateStatus, str] = {
    GateStatus.FAILED: "the check failed on the day's latest materialization",
    GateStatus.STALE: "the check last ran on an older materialization of the day",
    GateStatus.NOT_EVALUATED: "no evaluation of the day's latest materialization",
    GateStatus.NO_RESULT: "planned, but no result recorded (running, failed or skipped)",
    GateStatus.NOT_MATERIALIZED: "rows in the table but no materialization of the day",
}


@dataclass(frozen=True, order=True)
class GatedCheck:
    """A blocking check on one of ``GATED_ASSETS``; ``partitioned``: Dagster records its
    executions per day (the check has the asset's partitions definition)."""

    asset: str
    name: str
    partitioned: bool

    @property
    def key(self) -> AssetCheckKey:
        return AssetCheckKey(AssetKey(self.asset), self.name)


@dataclass(frozen=True)
class Evaluation:
    """One recorded execution of a check: its stored status (``SUCCEEDED``, ``FAILED`` or
    ``PLANNED``, Dagster's ``AssetCheckExecutionRecordStatus``) and the storage id of the
    materialization it judged (None: none named)."""

    status: str
    target_storage_id: int | None


@dataclass(frozen=True)
class CheckHistory:
    """What the instance holds for one check: for a partitioned check, the latest execution of
    each day; for an unpartitioned one, its executions newest first (as far back as needed)."""

    by_day: Mapping[str, Evaluation] = field(default_factory=dict)
    newest_first: Sequence[Evaluation] = ()


@dataclass(frozen=True)
class Refusal:
    day: str
    asset: str
    check: str
    status: GateStatus


@dataclass(frozen=True)
class GateDecision:
    days: tuple[str, ...]
    checks: tuple[GatedCheck, ...]
    refusals: tuple[Refusal, ...]

    @property
    def passed(self) -> bool:
        return not self.refusals

    @property
    def refused_days(self) -> list[str]:
        return sorted({r.day for r in self.refusals})

    def description(self, what: str) -> str:
        """Why ``what`` (e.g. "the public release") is refused: days, checks, statuses, and
        what to do. Holds no value."""
        by_day: dict[str, list[Refusal]] = {}
        for r in self.refusals:
            by_day.setdefault(r.day, []).append(r)
        days = sorted(by_day)
        entries: list[str] = []
        for day in days[:DESCRIBED_DAYS]:
            entry = f"{day}: " + ", ".join(f"{r.asset}.{r.check} {r.status}" for r in by_day[day])
            if entries and sum(len(e) + 2 for e in entries) + len(entry) > DESCRIBED_CHARS:
                break
            entries.append(entry)
        listed = "; ".join(entries)
        if len(days) > len(entries):
            listed += f"; and {len(days) - len(entries)} more day(s)"
        statuses = sorted({r.status for r in self.refusals})
        meanings = "; ".join(f"{s}: {MEANING[s]}" for s in statuses)
        return (
            f"Release gate: {what} refused, nothing written. {len(days)} of {len(self.days)} "
            f"day(s) have a blocking check that did not pass on their latest materialization "
            f"({listed}). ({meanings}.) To release them, fix what a failed check reports, "
            "then materialize each listed day's release_records again with its checks "
            "(its anonymized_conversations first where a check on that is listed); a day "
            "materialized again without its checks needs only its checks run. Then run the "
            "release again. The metadata's refusals table lists every day and check."
        )

    def markdown(self, limit: int = TABLE_ROWS) -> str:
        rows = [(r.day, r.asset, r.check, str(r.status)) for r in self.refusals[:limit]]
        table = markdown_table(("day", "asset", "check", "status"), rows)
        if len(self.refusals) > limit:
            table += f"\n\n_and {len(self.refusals) - limit} more rows_"
        return table


def judge(latest_materialization: int | None, evaluation: Evaluation | None) -> GateStatus:
    """One check on one day: ``evaluation`` is the execution that counts for the day (see
    ``decide``), ``latest_materialization`` the storage id of the day's latest materialization
    of the check's asset."""
    if latest_materialization is None:
        return GateStatus.NOT_MATERIALIZED
    if evaluation is None:
        return GateStatus.NOT_EVALUATED
    if evaluation.status not in (SUCCEEDED, FAILED):
        return GateStatus.NO_RESULT
    # No target: the partition had no materialization when the check ran, so the one there
    # now is newer than what the check saw.
    if evaluation.target_storage_id != latest_materialization:
        return GateStatus.STALE
    return GateStatus.PASSED if evaluation.status == SUCCEEDED else GateStatus.FAILED


def decide(
    days: Iterable[str],
    checks: Iterable[GatedCheck],
    materializations: Mapping[str, Mapping[str, int]],
    histories: Mapping[GatedCheck, CheckHistory],
) -> GateDecision:
    """Which of ``days`` (partition keys) are refused, and on which checks.

    ``materializations``: asset -> day -> storage id of the day's latest materialization;
    ``histories``: what the instance holds for each check (none: never ran). Linear in days
    times checks (plus the unpartitioned checks' history)."""
    days = tuple(sorted(set(days)))
    checks = tuple(sorted(set(checks)))
    refusals: list[Refusal] = []
    for gated in checks:
        history = histories.get(gated, CheckHistory())
        latest = materializations.get(gated.asset, {})
        if gated.partitioned:
            counted = history.by_day
        else:
            # The newest evaluation of each materialization.
            newest: dict[int, Evaluation] = {}
            for evaluation in history.newest_first:
                if evaluation.target_storage_id is not None:
                    newest.setdefault(evaluation.target_storage_id, evaluation)
            counted = {day: newest[latest[day]] for day in days if latest.get(day) in newest}
        for day in days:
            status = judge(latest.get(day), counted.get(day))
            if status is not GateStatus.PASSED:
                refusals.append(Refusal(day, gated.asset, gated.name, status))
    refusals.sort(key=lambda r: (r.day, r.asset, r.check))
    return GateDecision(days, checks, tuple(refusals))


# -- the Dagster side ----------------------------------------------------------------------------


def partition_key_of(day: date | datetime | str) -> str:
    """The partition key of a stored ``partition_day`` (a midnight timestamp, or a date)."""
    if isinstance(day, str):
        return date.fromisoformat(day[:10]).isoformat()
    if isinstance(day, datetime):
        return day.date().isoformat()
    return day.isoformat()


def code_location_graph(context: Any) -> Any:
    """The asset graph of the whole code location the step runs in: its repository's, or,
    where a job is executed in process without one (tests, scripts), the graph the job was
    cut from (a job's own graph holds only its selection, not the checks upstream)."""
    try:
        return context.repository_def.asset_graph
    except CheckError:
        graph = context.job_def.asset_layer.asset_graph
        return getattr(graph, "source_asset_graph", graph)


def gated_checks(graph: Any) -> list[GatedCheck]:
    """Every blocking check ``graph`` (a code location's asset graph) defines on
    ``GATED_ASSETS``: those of asset check definitions and those an asset declares itself (its
    ``check_specs``)."""
    found = []
    for key in graph.asset_check_keys:
        asset = key.asset_key.to_user_string()
        if asset not in GATED_ASSETS:
            continue
        node = graph.get(key)
        if node.blocking:
            found.append(GatedCheck(asset, key.name, node.partitions_def is not None))
    return sorted(found)


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield list(items[start : start + CHUNK])


def read_gate(
    instance: DagsterInstance, checks: Sequence[GatedCheck], days: Iterable[str]
) -> tuple[dict[str, dict[str, int]], dict[GatedCheck, CheckHistory]]:
    """What ``decide`` needs, read from the instance in bulk."""
    storage = instance.event_log_storage
    days = sorted(set(days))
    materializations: dict[str, dict[str, int]] = {}
    for asset in sorted({c.asset for c in checks}):
        latest: dict[str, int] = {}
        for chunk in _chunks(days):
            latest.update(
                storage.get_latest_storage_id_by_partition(
                    AssetKey(asset), DagsterEventType.ASSET_MATERIALIZATION, set(chunk)
                )
            )
        materializations[asset] = latest

    histories: dict[GatedCheck, CheckHistory] = {}
    partitioned = [c for c in checks if c.partitioned]
    by_key = {c.key: c for c in partitioned}
    by_day: dict[GatedCheck, dict[str, Evaluation]] = {c: {} for c in partitioned}
    wanted = set(days)
    for chunk in _chunks(days) if partitioned else []:
        for info in storage.get_asset_check_partition_info(
            [c.key for c in partitioned], partition_keys=chunk
        ):
            if info.check_key in by_key and info.partition_key in wanted:
                by_day[by_key[info.check_key]][info.partition_key] = Evaluation(
                    info.latest_execution_status.value,
                    info.latest_target_materialization_storage_id,
                )
    histories.update({c: CheckHistory(by_day=by_day[c]) for c in partitioned})
    for gated in checks:
        if not gated.partitioned:
            histories[gated] = CheckHistory(
                newest_first=_unpartitioned_history(
                    instance, gated, materializations.get(gated.asset, {}), days
                )
            )
    return materializations, histories


def _unpartitioned_history(
    instance: DagsterInstance, gated: GatedCheck, latest: Mapping[str, int], days: Sequence[str]
) -> list[Evaluation]:
    """The check's executions recorded without a partition, newest first: until each day's
    latest materialization has its newest evaluation, or the executions are older than the
    oldest of those materializations (they cannot have judged it)."""
    targets = {latest[d] for d in days if d in latest}
    if not targets:
        return []
    oldest_day = min((d for d in days if d in latest), key=lambda d: latest[d])
    oldest = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(gated.asset), asset_partitions=[oldest_day]), limit=1
    ).records
    not_before = oldest[0].timestamp - CLOCK_SLACK_SECONDS if oldest else None
    storage = instance.event_log_storage
    found: list[Evaluation] = []
    cursor: int | None = None
    while targets:
        records = storage.get_asset_check_execution_history(
            gated.key, limit=PAGE, cursor=cursor, partition_filter=PartitionKeyFilter(key=None)
        )
        for record in records:
            if not_before is not None and record.create_timestamp < not_before:
                return found
            evaluation = record.evaluation if record.status.value != PLANNED else None
            target = evaluation.target_materialization_data if evaluation else None
            storage_id = target.storage_id if target else None
            found.append(Evaluation(record.status.value, storage_id))
            if storage_id is not None:
                targets.discard(storage_id)
        if len(records) < PAGE:
            break
        cursor = records[-1].id
    return found


def gate(context: Any, days: Iterable[str]) -> GateDecision:
    """The decision for ``days`` under the blocking checks of the context's code location."""
    checks = gated_checks(code_location_graph(context))
    days = sorted(set(days))
    materializations, histories = read_gate(context.instance, checks, days)
    return decide(days, checks, materializations, histories)


def enforce_release_gate(context: Any, days: Iterable[str], what: str) -> GateDecision:
    """Raise ``dagster.Failure`` when a day of ``days`` is refused (before anything is
    written); else the decision, for the step's metadata."""
    decision = gate(context, days)
    if not decision.passed:
        raise Failure(
            description=decision.description(what),
            metadata={
                "refused_days": MetadataValue.json(decision.refused_days),
                "refusals": MetadataValue.md(decision.markdown()),
                "days_checked": len(decision.days),
                "gated_checks": MetadataValue.json(
                    [f"{c.asset}.{c.name}" for c in decision.checks]
                ),
            },
        )
    return decision


def gate_metadata(decision: GateDecision) -> dict[str, Any]:
    """What a release that passed the gate records about it."""
    return {
        "gate_days": len(decision.days),
        "gate_checks": MetadataValue.json([f"{c.asset}.{c.name}" for c in decision.checks]),
    }
