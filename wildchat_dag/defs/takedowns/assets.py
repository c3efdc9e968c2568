"""The takedown ledger as an observable source, the job that adds a request from the UI, and
the sensor that rebuilds the release records a new request names."""

import warnings
from collections import Counter
from datetime import UTC, datetime
from typing import Literal

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetSelection,
    BetaWarning,
    Config,
    DataVersion,
    DefaultSensorStatus,
    MetadataValue,
    ObserveResult,
    OpExecutionContext,
    Output,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    define_asset_job,
    job,
    observable_source_asset,
    op,
    sensor,
)
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from wildchat_dag.common.metadata import STORAGE, counts_table
from wildchat_dag.common.observations import latest_observed_version
from wildchat_dag.common.text_exit import text_exit
from wildchat_dag.defs.anonymization.resource import IpHasher
from wildchat_dag.defs.anonymization.stale_days import STALE_DAY_CHECKS
from wildchat_dag.defs.automation.jobs import RELEASE_CUT
from wildchat_dag.defs.release.release_versions import history_root_of
from wildchat_dag.defs.release.resource import ReleaseFolder
from wildchat_dag.defs.takedowns.application import named_days, named_records, resolve_hashes
from wildchat_dag.defs.takedowns.ledger import (
    REASONS,
    TakedownRequest,
    add_request,
    check_key,
    ledger_frame,
)
from wildchat_dag.defs.takedowns.resource import TakedownLedger
from wildchat_dag.defs.takedowns.withdrawal import withdrawn_of_day
from wildchat_dag.partitions import collection_days, partition_date
from wildchat_dag.resources.warehouse import Warehouse

LEDGER = AssetKey("takedown_ledger")
# On the runs the sensor launches: the ledger version they apply.
TAKEDOWN_TAG = "wildchat/takedown_ledger"


def ledger_metadata(requests: list[TakedownRequest]) -> dict:
    reasons = Counter(REASONS[r.reason] for r in requests)
    key_types = Counter(r.key_type for r in requests)
    return {
        "requests": len(requests),
        "keys": sum(len(r.keys) for r in requests),
        "by_reason": counts_table(dict(reasons), key="reason", value="requests"),
        "by_key_type": counts_table(dict(key_types), key="key type", value="requests"),
        "latest_request": MetadataValue.text(
            f"{requests[-1].request_id} of {requests[-1].requested_on}" if requests else "none"
        ),
    }


with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)

    @observable_source_asset(
        key=LEDGER,
        group_name="takedowns",
        description=(
            "The takedown ledger: requests to remove conversations from every release, by "
            "conversation_hash, turn_identifier or hashed_ip (all of one user's conversations, "
            "on every day), each with a date and a reason. Its data version is the file's hash; "
            "both releases depend on it and each release version's manifest records it. Add a "
            "request with the add_takedown_request job or `python -m wildchat_dag.takedown "
            "add`; the takedown_application sensor then rebuilds the release records it names, "
            "and the next cut of the releases (or `python -m wildchat_dag.takedown apply`) "
            "leaves them out, its changelog saying so."
        ),
    )
    @text_exit
    def takedown_ledger(takedowns: TakedownLedger) -> ObserveResult:
        requests, version = takedowns.snapshot()
        return ObserveResult(data_version=DataVersion(version), metadata=ledger_metadata(requests))


@asset(
    name="withdrawn_conversations",
    partitions_def=collection_days,
    metadata=STORAGE,
    group_name="takedowns",
    description=(
        "The day's conversations that a takedown request names, one row per request: by "
        "turn_identifier (also the first turn id a conversation_hash request resolved to) and "
        "by hashed_ip (every IP of the conversation hashed as anonymization hashes it). Every "
        "step after linking leaves them out (anonymization, geo, language, moderation), so "
        "they leave every table outside the raw layer and both releases; a re-ingest or a "
        "backfill rebuilds this mark from the ledger, so nothing comes back. Ids only."
    ),
)
@text_exit
def withdrawn_conversations(
    context: AssetExecutionContext,
    linked_conversations: pl.DataFrame,
    takedowns: TakedownLedger,
    ip_hasher: IpHasher,
) -> Output:
    requests, version = takedowns.snapshot()
    withdrawn = withdrawn_of_day(
        partition_date(context.partition_key),
        linked_conversations,
        ledger_frame(requests),
        ip_hasher.salt,
        version,
    )
    by_request = Counter(withdrawn["request_id"].to_list())
    return Output(
        withdrawn,
        metadata={
            "conversations": linked_conversations.height,
            "withdrawn": withdrawn["conversation_id"].n_unique(),
            "withdrawn_by_request": counts_table(
                dict(by_request), key="takedown request", value="conversations"
            ),
            "takedown_ledger_version": version,
            "takedown_requests": len(requests),
        },
    )


# What a takedown rebuilds on a day: the mark and every step after it, up to the release cut.
TAKEDOWN_REBUILD = (
    AssetSelection.assets("withdrawn_conversations").downstream() - RELEASE_CUT - STALE_DAY_CHECKS
)

takedown_records_job = define_asset_job(
    "takedown_records",
    selection=TAKEDOWN_REBUILD,
    partitions_def=collection_days,
    description=(
        "A day rebuilt because the takedown ledger names some of its conversations: "
        "withdrawn_conversations, then every step after it up to release_records and the day's "
        "statistics (launched by the takedown_application sensor; the release cut stays a "
        "deliberate act)."
    ),
)


@sensor(
    name="takedown_application",
    job=takedown_records_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "When the takedown ledger changes: observes it (the releases then show Unsynced) and "
        "rebuilds every day holding a conversation a request names (takedown_records: the "
        "withdrawn_conversations mark and every step after it), one run per day. It never "
        "cuts the releases: that stays a deliberate act (materialize "
        "public_release and full_release, or `python -m wildchat_dag.takedown apply`), and a "
        "cut refuses while any named conversation is left."
    ),
)
def takedown_application(
    context: SensorEvaluationContext, takedowns: TakedownLedger, warehouse: Warehouse
):
    requests, version = takedowns.snapshot()
    events = []
    if latest_observed_version(context.instance, LEDGER) != version:
        events.append(
            AssetObservation(
                LEDGER, metadata=ledger_metadata(requests), tags={DATA_VERSION_TAG: version}
            )
        )
    if context.cursor == version:
        if events:
            return SensorResult(asset_events=events)
        return SkipReason(f"the takedown ledger is unchanged (version {version})")
    days = named_days(warehouse.query, ledger_frame(requests))
    context.update_cursor(version)
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"takedown:{version}:{day}",
                partition_key=day,
                tags={TAKEDOWN_TAG: version},
            )
            for day in days
        ],
        asset_events=events,
    )


class TakedownRequestConfig(Config):
    """A request as the launchpad takes it. Only keys that are public anyway: a raw IP typed
    here would be stored in the run's configuration, in the event log; operators give one to
    `python -m wildchat_dag.takedown add --raw-ip`, which hashes it on entry."""

    reason: Literal["consent_withdrawn", "pii_found", "illegal_content", "policy"]
    key_type: Literal["conversation_hash", "turn_identifier", "hashed_ip"]
    keys: list[str]
    note: str | None = None


@op(description="Appends the request to the takedown ledger and says what it names now.")
@text_exit
def add_to_takedown_ledger(
    context: OpExecutionContext,
    config: TakedownRequestConfig,
    takedowns: TakedownLedger,
    warehouse: Warehouse,
    release_folder: ReleaseFolder,
) -> Output:
    resolved: list[int] = []
    if config.key_type == "conversation_hash":
        hashes = [check_key(config.key_type, key) for key in config.keys]
        found = resolve_hashes(warehouse.query, history_root_of(release_folder.root), hashes)
        resolved = sorted(set(found.values()))
        if missing := len(set(hashes) - set(found)):
            context.log.warning(
                f"{missing} conversation_hash(es) are in no release record and no stored "
                "release version: the request names them by hash only"
            )
    request = add_request(
        takedowns.path,
        datetime.now(UTC).date(),
        config.reason,
        config.key_type,
        config.keys,
        config.note,
        resolved,
    )
    named = named_records(warehouse.query, ledger_frame([request]))
    return Output(
        request.request_id,
        metadata={
            "request_id": request.request_id,
            "reason": REASONS[request.reason],
            "keys": len(request.keys),
            "records_named": named["conversation_id"].n_unique(),
            "days_named": named["partition_day"].n_unique(),
            "ledger_version": takedowns.version(),
        },
    )


@job(
    name="add_takedown_request",
    description=(
        "Adds a takedown request to the ledger from the launchpad (reason, key_type, keys, "
        "note). The takedown_application sensor then rebuilds the release records it names; "
        "cut the releases afterwards. Raw IPs only through `python -m wildchat_dag.takedown "
        "add --raw-ip`, never here: run configuration is kept in the event log."
    ),
)
def add_takedown_request_job() -> None:
    add_to_takedown_ledger()
