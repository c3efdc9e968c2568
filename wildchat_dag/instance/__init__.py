"""The project's Dagster instance: Dagster's storages, cheaper per operation.

dagster.yaml (SQLite, local) and deploy/dagster.postgres.yaml (PostgreSQL, production) both
name ``WildchatInstance``. It differs from ``DagsterInstance`` in two ways:

- its default storage is ``sqlite.SqliteStorage``: Dagster's SQLite files in Dagster's places,
  each process building a file's engine once (``sqlite.py`` says why);
- disposing it disposes of the schedule storage too (``DagsterInstance.dispose`` leaves it),
  which on PostgreSQL keeps a connection.

The production file names its three storages from ``postgres.py``, which keep their
connections.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.sqlite_storage import (
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData

from wildchat_dag.instance.sqlite import storage_data


class WildchatInstance(DagsterInstance):
    """A Dagster instance whose default storage keeps its engines (see the module)."""

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, ConfigurableClassData | None]:
        return {
            **InstanceRef.config_defaults(base_dir),
            "storage": storage_data("SqliteStorage", base_dir),
            "run_storage": storage_data("SqliteRunStorage", _runs_directory(base_dir)),
            "event_log_storage": storage_data(
                "SqliteEventLogStorage", _event_logs_directory(base_dir)
            ),
            "schedule_storage": storage_data(
                "SqliteScheduleStorage", _schedule_directory(base_dir)
            ),
        }

    def dispose(self) -> None:
        super().dispose()
        if self._schedule_storage is not None:
            self._schedule_storage.dispose()
