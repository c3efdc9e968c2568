"""The local instance's storage (the default of ``WildchatInstance``, which dagster.yaml names):
Dagster's SQLite files, in the same places, but each process keeps its connections to them.

Dagster's SQLite storages build a new SQLAlchemy engine and open a new connection for every read
and write, and close both after it. In WAL mode, closing the last connection to a file also
checkpoints its log. A day of a backfill does thousands of these, in the run workers, the daemon
and the webserver: some 0.6 CPU-ms each on this project's machine, close to half of a warm
worker's CPU for a day without traffic (``benchmarks/bench_steps.py --fixed-only``).

Here each file has one engine per process, which keeps one connection, and opens more for
threads that need one at the same moment (as many as Dagster's would), closed again after use.
Per-run event files are
many: the engines of the ``KEPT_RUN_FILES`` most recently used stay, the rest are closed. An
idle connection holds no lock, so other processes read and write as before. Before Dagster
deletes or migrates a file (``wipe``, ``upgrade``), its connections are closed.

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
from sqlalchemy.pool import QueuePool

# No bound on the connections opened beyond the kept one, for threads that need one at the same
# moment (the webserver's requests, the daemon's daemons), as with Dagster's own: a bound would
# be a new way to fail. Each is closed when given back.
UNBOUNDED_OVERFLOW = -1
# Per-run event files whose engines a process keeps, most recently used first.
KEPT_RUN_FILES = 16
MODULE = __name__


def kept_engine(conn_string: str, **connect_args: Any) -> Engine:
    """An engine that keeps one connection to a SQLite file, usable from any thread."""
    return create_engine(
        conn_string,
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=UNBOUNDED_OVERFLOW,
        # A pooled connection moves between threads, one at a time (the pool hands it out).
        connect_args={"check_same_thread": False, **connect_args},
    )


class _KeptEngine:
    """Run and schedule storage: one kept engine for their one file."""

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


class SqliteRunStorage(_KeptEngine, DagsterSqliteRunStorage):
    """Dagster's SQLite run storage, keeping its connection."""

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> SqliteRunStorage:
        return cls.from_local(inst_data=inst_data, **config_value)

    def upgrade(self) -> None:
        self._close_kept()
        super().upgrade()

    def dispose(self) -> None:
        super().dispose()
        self._close_kept()


class SqliteScheduleStorage(_KeptEngine, DagsterSqliteScheduleStorage):
    """Dagster's SQLite schedule storage, keeping its connection."""

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> SqliteScheduleStorage:
        return cls.from_local(inst_data=inst_data, **config_value)

    def upgrade(self) -> None:
        self._close_kept()
        super().upgrade()

    def dispose(self) -> None:
        super().dispose()
        self._close_kept()


class SqliteEventLogStorage(DagsterSqliteEventLogStorage):
    """Dagster's SQLite event log storage (an index file and a file per run), keeping its
    connections: to the index, and to the most recently used run files."""

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
                # A connection checked out now is closed when it is given back.
                self._engines.pop(old).dispose()
            return engine

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
        # Wiping deletes the run files: no connection may stay on a deleted file.
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
