"""Unattended operation: the nightly schedule, the new-logs sensor, and the automation
conditions that carry an update of one day to the days whose steps read it.

Who launches what:
- The nightly schedule runs ``wildchat_nightly`` for yesterday, once its logs have landed.
- The new-logs sensor runs it for a day folder that is new or whose files changed (a late file,
  a re-delivered log), once the files have settled.
- Neither launches a day again from files a run already started from: every run they launch
  carries the day's log fingerprint as a tag, and both look for it first.
- Automation conditions then follow the update downstream. Linking day D reads the raw
  requests of D-(N+1) .. D+N, so new raw requests for D re-link the days around it, and
  everything built from those days' conversations follows.
"""

from __future__ import annotations

import json
from datetime import timedelta

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)

from wildchat_dag import settings
from wildchat_dag.defs.automation.jobs import wildchat_nightly_job
from wildchat_dag.defs.ingest.assets import INGEST_ASSETS
from wildchat_dag.defs.ingest.log_folders import LOG_FINGERPRINT, changed_days, folder_fingerprint
from wildchat_dag.defs.ingest.resource import RequestLogStore
from wildchat_dag.partitions import FIRST_DAY, LAST_DAY, collection_days, partition_date

FINGERPRINT_TAG = "wildchat/log_fingerprint"
TRIGGER_TAG = "wildchat/trigger"
PARTITION_TAG = "dagster/partition"

# A day launched from these files is not launched again while such a run is alive or done.
_LIVE_OR_DONE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.SUCCESS,
]

# Ingest is launched by the schedule and the sensor, never by a condition; the rules file is
# a deliberate change with a command of its own (redaction_refresh), and the frequency table's
# update re-decides every day, which is that command's job too.
_RULES = AssetSelection.assets("redaction_rules")
_FREQUENCY = AssetSelection.assets("pii_entity_frequency")
_NOT_FOLLOWED = _RULES | _FREQUENCY
ROOTS = frozenset(AssetKey(name) for name in INGEST_ASSETS)
RELEASE_CUT = frozenset(
    AssetKey(name)
    for name in (
        "release_statistics",
        "public_release",
        "full_release",
        "public_search_index",
        "full_search_index",
    )
)


def follows_upstream(every_day: bool = False, counted_first: bool = False) -> AutomationCondition:
    """Like ``eager()``, but for every day, not only the latest: a late file updates an old day.

    - It ignores an input updated by a run that also wrote this asset (the nightly run writes
      the whole day itself).
    - It waits while an input is missing (a table of every day, ``every_day``, counts the days
      there are), being written, or itself waiting to follow its own inputs: a day's steps see
      one version of the day.
    - ``counted_first``: redaction also waits until the PII frequency table has counted the
      day's new detections, which happens in a run of its own (it is not partitioned).
    """
    changed = _inputs_changed()
    waiting = (
        AutomationCondition.any_deps_in_progress()
        | AutomationCondition.in_progress()
        | AutomationCondition.any_deps_match(
            (_inputs_changed() & ~AutomationCondition.will_be_requested()).with_label(
                "waiting to follow its inputs"
            )
        ).with_label("an input is waiting to follow its inputs")
    )
    if not every_day:
        # The rules file is a source asset: it is observed on demand, never materialized.
        waiting = waiting | AutomationCondition.any_deps_missing().ignore(_RULES)
    condition = changed & ~waiting
    if counted_first:
        counted = (
            AutomationCondition.any_deps_match(AutomationCondition.newly_updated())
            .allow(_FREQUENCY)
            .with_label("the PII frequency table was counted")
        )
        condition = condition & counted.since(_own_day_updated()).with_label(
            "counted after the day's inputs changed"
        )
    return condition.with_label("follows upstream updates")


def _inputs_changed() -> AutomationCondition:
    return (
        AutomationCondition.any_deps_updated()
        .ignore(_NOT_FOLLOWED)
        .since_last_handled()
        .with_label("inputs changed since last handled")
    )


def _own_day_updated() -> AutomationCondition:
    return AutomationCondition.any_deps_updated().ignore(_NOT_FOLLOWED)


def with_automation(assets: list) -> list:
    """Every derived step follows its inputs, but for the release cut (a deliberate act)."""
    followed = []
    for item in assets:
        if isinstance(item, AssetsDefinition) and item.is_executable:
            keys = [k for k in item.keys if k not in ROOTS and k not in RELEASE_CUT]
            if keys:
                condition = follows_upstream(
                    every_day=not item.partitions_def,
                    counted_first=any(
                        AssetKey("pii_entity_frequency") in item.asset_deps[k] for k in keys
                    ),
                )
                item = item.with_attributes(automation_condition=dict.fromkeys(keys, condition))
        followed.append(item)
    return followed


def _default_status() -> tuple[DefaultScheduleStatus, DefaultSensorStatus]:
    if settings.automation_on_by_default():
        return DefaultScheduleStatus.RUNNING, DefaultSensorStatus.RUNNING
    return DefaultScheduleStatus.STOPPED, DefaultSensorStatus.STOPPED


follow_upstream_sensor = AutomationConditionSensorDefinition(
    "follow_upstream_updates",
    target=AssetSelection.all(),
    default_status=_default_status()[1],
    minimum_interval_seconds=30,
    description=(
        "Re-runs what depends on an updated day: the linking of the days around it, and every "
        "step built from their conversations. Several days at once go out as one backfill, so "
        "the PII frequency table is counted before any day is redacted with it."
    ),
)


def already_launched(instance: DagsterInstance, day: str, fingerprint: str) -> bool:
    """Whether ``day`` was ingested from these very files, or a run that will is queued or
    running: whoever launched it (the sensor, the schedule, a backfill, the UI)."""
    runs = instance.get_run_records(
        RunsFilter(
            tags={PARTITION_TAG: day, FINGERPRINT_TAG: fingerprint},
            statuses=_LIVE_OR_DONE,
        ),
        limit=1,
    )
    if runs:
        return True
    latest = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("raw_requests"), asset_partitions=[day]), limit=1
    ).records
    if not latest:
        return False
    stored = latest[0].asset_materialization.metadata.get(LOG_FINGERPRINT)
    return stored is not None and stored.value == fingerprint


def outside_the_collection_days(day: str) -> str | None:
    """Why ``day`` is no partition, if it never will be; None for a day not over yet."""
    if partition_date(day) < FIRST_DAY:
        return f"{day} is before the first collection day, {FIRST_DAY} (WILDCHAT_START_DATE)"
    if LAST_DAY is not None and partition_date(day) > LAST_DAY:
        return f"{day} is after the last collection day, {LAST_DAY} (WILDCHAT_END_DATE)"
    return None


@schedule(
    name="nightly",
    job=wildchat_nightly_job,
    cron_schedule=settings.nightly_cron(),
    execution_timezone="UTC",
    default_status=_default_status()[0],
    description=(
        "Every night, every per-day step for yesterday (UTC). Skips a day the new-logs sensor "
        "already launched from the same files."
    ),
)
def nightly_schedule(
    context: ScheduleEvaluationContext, log_store: RequestLogStore
) -> RunRequest | SkipReason:
    day = (context.scheduled_execution_time.date() - timedelta(days=1)).isoformat()
    if not collection_days.has_partition_key(day):
        return SkipReason(outside_the_collection_days(day))
    # Yesterday's files count however recently they changed: this is the run that reads them.
    fingerprint = folder_fingerprint(log_store.folder(partition_date(day)))
    if already_launched(context.instance, day, fingerprint):
        return SkipReason(f"{day} was already launched from the same log files")
    return RunRequest(
        run_key=f"nightly:{day}:{fingerprint}",
        partition_key=day,
        tags={FINGERPRINT_TAG: fingerprint, TRIGGER_TAG: "nightly"},
    )


@sensor(
    name="new_log_days",
    job=wildchat_nightly_job,
    minimum_interval_seconds=settings.log_scan_interval_seconds(),
    default_status=_default_status()[1],
    description=(
        "Watches the log root. A day folder that is new, or whose files changed (a late or "
        "re-delivered file), launches every per-day step for that day, once its files have "
        "been left unchanged for the log store's settle_seconds. Its cursor holds each day's "
        "file fingerprint, so the same files never launch a day twice."
    ),
)
def new_log_days_sensor(context: SensorEvaluationContext, log_store: RequestLogStore):
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    now = log_store.day_fingerprints()
    requests, waiting, handled = [], [], {}
    for day in changed_days(seen, now):
        fingerprint = now[day]
        if not collection_days.has_partition_key(day):
            outside = outside_the_collection_days(day)
            if outside:
                handled[day] = fingerprint
                context.log.warning(f"{outside}: not launched")
            else:
                waiting.append(day)  # the day is not over yet
            continue
        handled[day] = fingerprint
        if already_launched(context.instance, day, fingerprint):
            continue
        requests.append(
            RunRequest(
                run_key=f"{day}:{fingerprint}",
                partition_key=day,
                tags={FINGERPRINT_TAG: fingerprint, TRIGGER_TAG: "new_log_days"},
            )
        )
    cursor = json.dumps({**seen, **handled}, sort_keys=True)
    if requests:
        return SensorResult(run_requests=requests, cursor=cursor)
    reason = f"no new or changed day folder in {log_store.root}"
    if waiting:
        reason += f" (waiting for {', '.join(waiting)} to end)"
    return SensorResult(skip_reason=reason, cursor=cursor)
