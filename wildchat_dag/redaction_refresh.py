"""Re-apply the redaction rules to every day, after a rule changed, re-using stored detections.

    python -m wildchat_dag.redaction_refresh      (or: bash scripts/redaction-refresh.sh)

It observes the rules file, re-counts the PII frequencies from the stored candidates, then
materializes anonymized_conversations for every day that has detections, and again everything
built from it before (the release records of those days, the statistics and the exports), in
this process, recorded in the Dagster instance at $DAGSTER_HOME.

Detection is re-run only for days whose detections were made under other gates: a change to a
rule's languages, pattern or cues changes which texts are analyzed at all, and redacting with
candidates found under the old gates would miss PII. Thresholds, skip patterns, placeholders and
enabling a `detect_also` entity type never need it.
"""

from __future__ import annotations

import sys

import duckdb
from dagster import AssetKey, AssetSelection, DagsterInstance, Definitions

from wildchat_dag import settings
from wildchat_dag.defs.anonymization.redaction_rules import RedactionRules, load_rules
from wildchat_dag.defs.pii_detection.pii_detection import detection_version
from wildchat_dag.local_runs import run_stage

DETECTION = [AssetKey("pii_candidates"), AssetKey("pii_scanned_utterances")]
FREQUENCY = [AssetKey("redaction_rules"), AssetKey("pii_entity_frequency")]
ANONYMIZED = AssetKey("anonymized_conversations")


def redaction_and_downstream(definitions: Definitions) -> list[AssetKey]:
    selection = AssetSelection.assets("anonymized_conversations").downstream()
    return sorted(selection.resolve(definitions.resolve_asset_graph()))


def days_detected_under_other_gates(database: str, version: str) -> list[str]:
    con = duckdb.connect(database, read_only=True)
    try:
        rows = con.execute(
            """
            SELECT DISTINCT strftime(partition_day, '%Y-%m-%d') FROM main.pii_scanned_utterances
            WHERE detection_version IS DISTINCT FROM $version ORDER BY 1
            """,
            {"version": version},
        ).fetchall()
    finally:
        con.close()
    return [day for (day,) in rows]


def refresh(
    instance: DagsterInstance, definitions: Definitions, rules: RedactionRules, database: str
) -> int:
    """``rules``: the rules ``definitions`` were built with; ``database``: their DuckDB file."""
    job = definitions.resolve_job_def("wildchat_daily")
    days = sorted(instance.get_materialized_partitions(AssetKey("pii_scanned_utterances")))
    if not days:
        print("No day has PII detections yet: nothing to re-redact.")
        return 0
    print(f"Redaction rules {rules.rules_hash[:12]} ({rules.source}), {len(days)} day(s).")
    redetect = days_detected_under_other_gates(database, detection_version(rules))
    if redetect:
        print(f"Detection ran under other gates for {len(redetect)} day(s): detecting again.")
        if not run_stage(job, "detection", DETECTION, redetect, instance):
            return 1
    if not run_stage(job, "frequency", FREQUENCY, [None], instance):
        return 1
    if not run_stage(job, "redaction", [ANONYMIZED], days, instance):
        return 1
    # Then what was built from the redacted text before: the release records of those days,
    # and the statistics and exports once. What was never built is not built now.
    graph = definitions.resolve_asset_graph()
    # In dependency order, not by name: a day's statistics come after its records.
    downstream = set(redaction_and_downstream(definitions)) - {ANONYMIZED}
    later = [k for k in graph.toposorted_asset_keys if k in downstream]
    for key in (k for k in later if graph.get(k).partitions_def):
        built = sorted(set(days) & instance.get_materialized_partitions(key))
        if not run_stage(job, key.to_user_string(), [key], built, instance):
            return 1
    once = [k for k in later if not graph.get(k).partitions_def and _materialized(instance, k)]
    if once and not run_stage(job, "release", once, [None], instance):
        return 1
    return 0


def _materialized(instance: DagsterInstance, key: AssetKey) -> bool:
    return instance.get_latest_materialization_event(key) is not None


def main() -> int:
    from wildchat_dag.definitions import defs

    return refresh(
        DagsterInstance.get(),
        defs,
        load_rules(settings.redaction_rules_path()),
        settings.default_duckdb_path(),
    )


if __name__ == "__main__":
    sys.exit(main())
