"""Runs of the daily job in this process, recorded in the Dagster instance at $DAGSTER_HOME.

The demo and the redaction refresh use them: no daemon is needed, and the UI shows the runs
afterwards as if launched from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dagster import AssetKey, DagsterInstance, JobDefinition


def run_stage(
    job: JobDefinition,
    name: str,
    keys: Sequence[AssetKey],
    partition_keys: Iterable[str | None],
    instance: DagsterInstance,
) -> bool:
    """Materialize ``keys`` for each partition in turn (None: the unpartitioned assets only)."""
    for key in partition_keys:
        result = job.execute_in_process(
            partition_key=key, instance=instance, asset_selection=list(keys), raise_on_error=False
        )
        print(f"  {name:<14} {key or 'all days':<10}: {'ok' if result.success else 'FAILED'}")
        if not result.success:
            for event in result.all_events:
                if event.event_type_value == "STEP_FAILURE":
                    error = event.event_specific_data.error
                    while error.cause is not None:
                        error = error.cause
                    print(f"    {error.message.strip()}")
            return False
    return True
