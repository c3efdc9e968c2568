"""Runs of the daily job in this process, recorded in the Dagster instance at $DAGSTER_HOME.

The demo and the redaction refresh use them: no daemon is needed, and the UI shows the runs
afterwards as if launched from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dagster import AssetKey, DagsterInstance, JobDefinition

# The console shows Dagster's warnings and errors only: at its default level (DEBUG) it prints
# every event of every step, hundreds of lines a day, burying the one-line progress report of
# each run printed here. The instance still records every event for the UI.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


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
            run_config=QUIET_CONSOLE,
            partition_key=key,
            instance=instance,
            asset_selection=list(keys),
            raise_on_error=False,
        )
        # Flushed: a progress report, also when the output goes to a pipe or a file.
        print(
            f"  {name:<14} {key or 'all days':<10}: {'ok' if result.success else 'FAILED'}",
            flush=True,
        )
        if not result.success:
            for event in result.all_events:
                if event.event_type_value == "STEP_FAILURE":
                    error = event.event_specific_data.error
                    while error.cause is not None:
                        error = error.cause
                    print(f"    {error.message.strip()}")
            return False
    return True
