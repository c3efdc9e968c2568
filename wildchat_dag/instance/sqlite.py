"""The local instance's storage (the default of ``WildchatInstance``, which dagster.yaml names):
Dagster's SQLite storages, in Dagster's files, but each process builds a file's SQLAlchemy engine
once instead of for every read and write.

Dagster's SQLite storages create an engine for every operation and dispose of it after, so that
SQLAlchemy's dialect set-up and the compilation of every statement (its cache lives in the
engine) are paid each time. A day of a backfill does thousands of operations, in the run
workers, the daemon and the webserver. Here each file's engine is kept for the process (for
per-run event files, those of the ``KEPT_RUN_FILES`` most recently used), with the same
``NullPool``: a connection is still opened for each operation and closed after it, as in
Dagster's, so that closing it checkpoints the WAL into the file, whose change Dagster's file
watcher streams to the UI. (Keeping the connections too would save more, but writes would then
stay in the WAL, out of the watcher's sight.) Before Dagster deletes or migrates a file
(``wipe``, ``upgrade``), its engine is disposed of.

``WildchatInstance`` (this package's ``__init__``) is how the configuration gets there: an
instance class's ``config_defaults`` receives the instance's folder, which a ``storage:`` entry of
dagster.yaml cannot name (it cannot join ``$DAGSTER_HOME`` with a subfolder).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import yaml
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SqliteEventLogStorage as DagsterSqliteEventLogStorage,
)
from dagster._core.storage.runs.sqlite.sqlite_run_storage import (
    SqliteRunStorage as DagsterSqliteRunStorage,
)
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import (
    SqliteScheduleStorage as DagsterSqliteScheduleStorage,
)
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

# Per-run event files whose engines a process keeps, most recently used first.
KEPT_RUN_FILES = 16
MODULE = __name__


def kept_engine(conn_string: str, **connect_args: Any) -> Engine:
    """An engine for a SQLite file, kept for the process, whose connections are not."""
    return create_engine(conn_string, poolclass=NullPool, connect_args=connect_args)


class _KeptEngine:
    """Run and schedule storage: one kept engine for their one file. Mixed in before Dagster's
    class, whose methods ``super()`` reaches."""

    _conn_string: str

    def __init__(self, conn_string: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._kept_lock = threading.Lock()
        self._kept_engine: Engine | None = None
        super().__init__(conn_string, inst_data)  # type: ignore[call-arg]

    def _engine(self) -> Engine:
        with self._kept_lock:
            if self._kept_engine is None:
                self._kept_engine = kept_engine(self._conn_string)
            return self._kept_engine

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self._engine().connect() as conn, conn.begin():
            yield conn

    def _close_kept(self) -> None:
        with self._kept_lock:
            if self._kept_engine is not None:
                self._kept_engine.dispose()
                self._kept_engine = None

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> Any:
        # Dagster's own build their class by name, not cls.
        return cls.from_local(inst_data=inst_data, **config_value)  # type: ignore[attr-defined]

    def upgrade(self) -> None:
        self._close_kept()
        super().upgrade()  # type: ignore[misc]

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._close_kept()


class SqliteRunStorage(_KeptEngine, DagsterSqliteRunStorage):
    """Dagster's SQLite run storage, keeping its engine."""


class SqliteScheduleStorage(_KeptEngine, DagsterSqliteScheduleStorage):
    """Dagster's SQLite schedule storage, keeping its engine."""


class SqliteEventLogStorage(DagsterSqliteEventLogStorage):
    """Dagster's SQLite event log storage (an index file and a file per run), keeping its
    engines: the index's, and those of the most recently used run files."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.RLock()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> SqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine_for(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = kept_engine(
                self.conn_string_for_shard(shard), timeout=SQLITE_BUSY_TIMEOUT_SECONDS
            )
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            self._engines[shard] = engine
            run_files = [s for s in self._engines if s != INDEX_SHARD_NAME]
            for old in run_files[: max(0, len(run_files) - KEPT_RUN_FILES)]:
                self._engines.pop(old).dispose()
            return engine

    def has_table(self, table_name: str) -> bool:
        # Asked before many operations (which columns and tables this file's version has).
        engine = self._engine_for(INDEX_SHARD_NAME)
        with engine.connect() as conn:
            return bool(engine.dialect.has_table(conn, table_name))

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # The base class's lock: one transaction at a time per process, as before.
        with self._db_lock:
            engine = self._engine_for(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _close_kept(self) -> None:
        with self._engines_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def upgrade(self) -> None:
        self._close_kept()
        super().upgrade()

    def wipe(self) -> None:
        # Wiping deletes the run files: no engine stays for a deleted file.
        self._close_kept()
        super().wipe()
        self._close_kept()

    def dispose(self) -> None:
        super().dispose()
        self._close_kept()


class SqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage, in the same folders, with the three storages above."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        # DagsterSqliteStorage.__init__ less its three storages, which it builds by name.
        self.base_dir = base_dir
        self._run_storage = SqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = SqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> SqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        return storage_data("SqliteEventLogStorage", _event_logs_directory(self.base_dir))

    @property
    def run_storage_data(self) -> ConfigurableClassData | None:
        return storage_data("SqliteRunStorage", _runs_directory(self.base_dir))

    @property
    def schedule_storage_data(self) -> ConfigurableClassData | None:
        return storage_data("SqliteScheduleStorage", _schedule_directory(self.base_dir))


def storage_data(class_name: str, base_dir: str) -> ConfigurableClassData:
    """How an instance names one of this module's storages in its ref."""
    return ConfigurableClassData(
        MODULE, class_name, yaml.dump({"base_dir": base_dir}, default_flow_style=False)
    )
