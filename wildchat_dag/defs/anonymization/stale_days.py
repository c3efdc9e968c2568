"""Which days of the redaction steps, and of everything built from them, are stale.

Dagster knows per day whether a partition was built from inputs, rules or code that changed
since (GraphQL's ``staleStatusByPartition``), but its UI marks only unpartitioned assets
"Unsynced": a partitioned asset's own status is always FRESH. After a rules edit the UI would
show nothing on the assets that hold redacted text. So each of them carries an asset check,
``no_stale_days``, that reports Dagster's own per-day staleness: a warning that names the stale
days, why they are stale, and the command that rebuilds them.

The ``redaction_staleness`` sensor keeps it current without launching anything: it records an
observation of the rules file when its content changes (so the unpartitioned assets that apply
it turn Unsynced too), and re-evaluates the check whenever the rules, the code versions or the
checked assets' materializations changed since its last evaluation.
"""

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetObservation,
    AssetRecordsFilter,
    AssetSelection,
    DagsterInstance,
    DataVersion,
    DefaultSensorStatus,
    MetadataValue,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    multi_asset_check,
    sensor,
)
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.data_version import (
    DATA_VERSION_TAG,
    CachingStaleStatusResolver,
    StaleStatus,
)
from dagster._core.definitions.temporal_context import TemporalContext
from dagster._time import get_current_datetime
from dagster_shared.check import CheckError

from wildchat_dag.common.observations import latest_observed_version
from wildchat_dag.common.text_exit import text_exit
from wildchat_dag.defs.anonymization.redaction_rules import load_rules
from wildchat_dag.partitions import collection_days

STALE_DAYS_CHECK = "no_stale_days"
RULES = AssetKey("redaction_rules")
FREQUENCY = AssetKey("pii_entity_frequency")
REFRESH_COMMAND = "bash scripts/redaction-refresh.sh"
# What a rules edit makes stale: detection (its gates come from the rules), redaction, and
# every day built from the redacted text. Not the releases' search indexes (the browse group: a
# group, unlike keys, also resolves in a job's graph that lacks them): each is built from one
# export, with no days of its own, and Dagster marks it Unsynced when its export is cut again
# (the app also says when an index is of an older release version).
RULE_BOUND = (
    AssetSelection.assets("pii_candidates", "pii_scanned_utterances")
    | AssetSelection.assets("redaction_rules").downstream()
) - AssetSelection.groups("browse")
# What RULE_BOUND resolves to, but the frequency table: Dagster itself marks it Unsynced (it
# reads the rules directly) and it has no days. Spelled out because the jobs must leave the
# check out (it judges every day at once, not a run's day); a test keeps the two in step.
CHECKED_ASSETS = tuple(
    AssetKey(name)
    for name in (
        "anonymized_conversations",
        "full_release",
        "pii_candidates",
        "pii_scanned_utterances",
        "public_release",
        "release_day_statistics",
        "release_records",
        "release_statistics",
    )
)
STALE_DAY_CHECKS = AssetSelection.checks(
    *(AssetCheckKey(key, STALE_DAYS_CHECK) for key in CHECKED_ASSETS)
)
CARRIED_OVER = " (The redaction_staleness sensor's latest judgment, carried over.)"
# Stale days named in a check's metadata; the count is always whole.
LISTED_DAYS = 100


def checked_assets(assets: Sequence) -> list[AssetKey]:
    """The assets a rules edit can make stale that Dagster's UI would not mark, in order."""
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

    graph = AssetGraph.from_assets(assets)
    keys = RULE_BOUND.resolve(graph) - {FREQUENCY}
    return sorted(key for key in keys if graph.has(key) and graph.get(key).is_materializable)


def check_specs(keys: Iterable[AssetKey]) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(
            STALE_DAYS_CHECK,
            asset=key,
            description=(
                "Warns when days of this asset (or, for a release, the days it was built from) "
                "were built from redaction rules, inputs or code that have changed since: "
                "Dagster's per-day staleness, carried down the lineage, which the asset graph "
                "does not show. Kept current by the redaction_staleness sensor. After a rules "
                f"edit, `{REFRESH_COMMAND}` rebuilds the stale days and what follows them."
            ),
        )
        for key in keys
    ]


def stale_day_evaluations(
    instance: DagsterInstance, graph: BaseAssetGraph, keys: Iterable[AssetKey]
) -> list[AssetCheckEvaluation]:
    """The check's result for each of ``keys`` (any of CHECKED_ASSETS)."""
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance, graph, loading_context=view)
    judged = _judge(instance, resolver, graph)
    rule_roots = {RULES, FREQUENCY, *RULE_BOUND.resolve(graph)}
    return [_evaluation(key, judged[key], rule_roots) for key in keys]


# A root cause: the asset where a change happened, and what Dagster says happened to it.
Cause = tuple[AssetKey, str]


def _judge(
    instance: DagsterInstance, resolver: CachingStaleStatusResolver, graph: BaseAssetGraph
) -> dict[AssetKey, dict[str | None, set[Cause]]]:
    """For each checked asset, each built day (None: an unpartitioned asset), and its root causes
    (empty: up to date). Dagster 1.13 calls a day stale only when its own code or one of its
    direct inputs changed; a day built from a stale day is stale too, with that day's causes."""
    judged: dict[AssetKey, dict[str | None, set[Cause]]] = {}
    for key in (k for k in graph.toposorted_asset_keys if k in CHECKED_ASSETS):
        node = graph.get(key)
        parents = [p for p in node.parent_keys if p in judged]
        if node.partitions_def:
            built: list[str | None] = sorted(
                day for day in instance.get_materialized_partitions(key) if _is_partition(day)
            )
        else:
            built = [None] if instance.get_latest_materialization_event(key) else []
        days: dict[str | None, set[Cause]] = {}
        for day in built:
            causes: set[Cause] = set()
            if resolver.get_status(key, day) == StaleStatus.STALE:
                causes |= {
                    (cause.key.asset_key, cause.reason)
                    for cause in resolver.get_stale_root_causes(key, day)
                }
            for parent in parents:
                # The rule-bound daily assets read their own day of each other (a test keeps
                # it so); an unpartitioned one reads every day.
                inputs = judged[parent].values() if day is None else [judged[parent].get(day)]
                for parent_causes in inputs:
                    causes |= parent_causes or set()
            days[day] = causes
        judged[key] = days
    return judged


def _evaluation(
    key: AssetKey, days: dict[str | None, set[Cause]], rule_roots: set[AssetKey]
) -> AssetCheckEvaluation:
    stale = [day for day, causes in days.items() if causes]
    causes: Counter[str] = Counter(
        f"{root.to_user_string()}: {reason}" for day in stale for root, reason in days[day]
    )
    # Root causes in the rules, the frequency table they count, or a rule-bound step's own
    # code (its version embeds the rules' hash) are what the refresh command rebuilds.
    rules_changed = any(root in rule_roots for day in stale for root, _ in days[day])
    unpartitioned = None in days
    if stale:
        what = (
            "Stale: it was built from days whose inputs, rules or code changed since"
            if unpartitioned
            else f"Stale: {len(stale)} of {len(days)} days were built from inputs, rules or "
            "code that changed since"
        )
        description = f"{what} ({', '.join(sorted(causes))})."
        description += (
            f" Rebuild them with `{REFRESH_COMMAND}`."
            if rules_changed
            else " Materialize these days again (a backfill of the days listed)."
        )
    elif unpartitioned:
        description = "Up to date: built from days that are all up to date."
    else:
        description = f"All {len(days)} built days are up to date."
    metadata = {
        "root_causes": MetadataValue.json(dict(sorted(causes.items()))),
        "rebuild_command": MetadataValue.text(REFRESH_COMMAND),
    }
    if not unpartitioned:
        metadata |= {
            "stale_days": len(stale),
            "built_days": len(days),
            "first_stale_days": MetadataValue.json(stale[:LISTED_DAYS]),
        }
    return AssetCheckEvaluation(
        asset_key=key,
        check_name=STALE_DAYS_CHECK,
        passed=not stale,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


def _is_partition(day: str) -> bool:
    # A day built under a wider partition range than the one loaded now is not judged here.
    return collection_days.has_partition_key(day)


def build_stale_days_check():
    """The check on every rule-bound daily asset, run on demand; the sensor below keeps it
    current."""

    @multi_asset_check(
        specs=check_specs(CHECKED_ASSETS),
        name="stale_days",
        can_subset=True,
        description="Dagster's per-day staleness of the redaction steps and what follows them.",
    )
    @text_exit
    def stale_days(context: AssetCheckExecutionContext):
        run = context.op_execution_context
        wanted = {check.asset_key for check in context.selected_asset_check_keys}
        selected = [key for key in CHECKED_ASSETS if key in wanted]
        if run.has_partition_key or run.has_partition_key_range:
            # A day's run (Materialize in the UI, a refresh) carries the checks of what it
            # builds. It does not judge: judging every day would cost each run the whole
            # history, and mid-run the instance is not yet what the run leaves behind. The
            # sensor's latest judgment stands (before its first one, there is none to carry);
            # the sensor judges again once days change.
            carried = _latest_evaluations(context.instance, selected)
            yield from (_as_result(e, carried_over=True) for e in carried.values())
            return
        graph = _whole_graph(run)
        yield from (_as_result(e) for e in stale_day_evaluations(context.instance, graph, selected))

    return stale_days


def build_redaction_staleness_sensor(rules_path: Path):
    """``rules_path``: the rules file the code location applies."""
    keys = list(CHECKED_ASSETS)

    @sensor(
        name="redaction_staleness",
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Launches nothing. Observes the redaction rules file when its content changes, so "
            "what applies the rules shows as stale, and re-evaluates the no_stale_days check "
            "of the redaction steps and everything built from them whenever the rules, the code "
            "or their days changed."
        ),
    )
    def redaction_staleness(context: SensorEvaluationContext):
        instance = context.instance
        rules = load_rules(rules_path)
        if latest_observed_version(instance, RULES) != rules.rules_hash:
            # The next tick judges the days against this observation once it is stored.
            return SensorResult(
                asset_events=[
                    AssetObservation(
                        RULES,
                        metadata={"rules_hash": rules.rules_hash, "source": rules_path.name},
                        tags={DATA_VERSION_TAG: DataVersion(rules.rules_hash).value},
                    )
                ]
            )
        graph = context.repository_def.asset_graph
        last = json.loads(context.cursor) if context.cursor else None
        now = _state(instance, graph, keys, rules.rules_hash)
        # Days built under the current rules and code are fresh, so new materializations only
        # matter while days are stale: a backfill does not re-judge every day at every tick.
        unchanged = last is not None and last["basis"] == now["basis"]
        if unchanged and (not last["stale"] or last["events"] == now["events"]):
            return SkipReason("Nothing that makes days stale changed since the last check.")
        evaluations = stale_day_evaluations(instance, graph, keys)
        now["stale"] = any(not e.passed for e in evaluations)
        context.update_cursor(json.dumps(now, sort_keys=True))
        return SensorResult(asset_events=evaluations)

    return redaction_staleness


def _as_result(evaluation: AssetCheckEvaluation, carried_over: bool = False) -> AssetCheckResult:
    description = evaluation.description or ""
    if carried_over and not description.endswith(CARRIED_OVER):
        description += CARRIED_OVER
    return AssetCheckResult(
        asset_key=evaluation.asset_key,
        check_name=evaluation.check_name,
        passed=evaluation.passed,
        severity=evaluation.severity,
        description=description,
        metadata=evaluation.metadata,
    )


def _whole_graph(run) -> BaseAssetGraph:
    try:
        return run.repository_def.asset_graph
    except CheckError:
        # Launched in process, outside a code location: no repository, only the job, whose
        # graph holds every asset of the project's jobs.
        return run.job_def.asset_layer.asset_graph


def _latest_evaluations(
    instance: DagsterInstance, keys: Iterable[AssetKey]
) -> dict[AssetKey, AssetCheckEvaluation]:
    """The latest evaluation of each key's check, where there is one (a run's own planned
    execution, still without a result, is passed over)."""
    latest = {}
    for key in keys:
        history = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(key, STALE_DAYS_CHECK), limit=5
        )
        for record in history:
            data = record.event.dagster_event.event_specific_data if record.event else None
            if isinstance(data, AssetCheckEvaluation):
                latest[key] = data
                break
    return latest


def _state(
    instance: DagsterInstance, graph: BaseAssetGraph, keys: Sequence[AssetKey], rules_hash: str
) -> dict:
    """What the check's result depends on. ``basis``: the rules and the code versions of the
    checked assets and everything upstream of them; ``events``: the latest materialization of
    each of them."""
    upstream = sorted(AssetSelection.assets(*keys).upstream().resolve(graph))
    code = {key.to_user_string(): graph.get(key).code_version for key in upstream}
    events = {}
    for key in upstream:
        if graph.get(key).is_materializable:
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=key), limit=1
            ).records
            events[key.to_user_string()] = records[0].storage_id if records else None
    return {
        "basis": _digest({"rules": rules_hash, "code": code}),
        "events": _digest(events),
    }


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
