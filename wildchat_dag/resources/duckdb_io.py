"""The DuckDB IO manager: polars frames in, polars frames out, one writer at a time.

DuckDB lets one process at a time open a database file for writing. Dagster runs steps in
separate processes, and several runs at once, so every connection here is taken under an
exclusive ``flock`` on ``<database>.lock``. Only the short read or write holds the lock, never
the step's computation, so partitions still compute in parallel.

Each write deletes the partition's rows and inserts the new ones in one transaction, so a crash
leaves the old rows or the new ones, never neither; and an empty frame still creates its table,
so readers of an empty side table get no rows rather than a missing-table error.

Opening a DuckDB file costs 10 to 25 ms of CPU (the database instance is built anew, its catalog
read), and a day's steps take some 70 transactions: more than a second per day, whatever the
day holds. While a run executes, its process therefore keeps the file open between its own
transactions (``kept_open``, entered by the IO manager and the warehouse for the run), and
closes it once no transaction of its own has used it for ``KEEP_OPEN_IDLE_S``, or at once when
another process is waiting for it: between two of its own transactions, a process that finds
``<database>.lock`` taken by someone else hands the file over.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import duckdb
import polars as pl
from dagster import InitResourceContext, InputContext, OutputContext
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDbClient, DuckDBIOManager
from dagster_duckdb_polars import DuckDBPolarsTypeHandler
from pydantic import Field

from wildchat_dag.common.text_exit import text_exit_scope

DEFAULT_LOCK_TIMEOUT_S = 900.0
# How long a run's process keeps the file open after its last transaction. Steps use the file
# in bursts (inputs, queries, outputs, checks) a few milliseconds apart; the computation between
# bursts is what another process's transaction may wait for.
KEEP_OPEN_IDLE_S = 0.2
# How often the closing thread looks for an idle file, and for another process waiting for it
# (one non-blocking ``flock`` each). Each of a backfill's two runs spent 30% of its wall time
# waiting for the file (py-spy, 20 days of 2,500 conversations), much of it while the holder sat
# out KEEP_OPEN_IDLE_S: the waiter, holding ``.lock``, could not start, and the holder could not
# take ``.lock`` for its own next transaction either.
_CLOSER_POLL_S = 0.02
# DuckDB's own default is 80% of RAM, which a run's process may fill with the file's cached
# blocks before DuckDB evicts any. Past this limit it evicts them and spills to
# ``temp_directory``; a connection that asks for another limit (``connection_config``, the
# warehouse's ``memory_limit``) gets it.
DEFAULT_MEMORY_LIMIT = "2GB"
# For the exports' reads, which pass over the release records once: a cache would only hold memory.
STREAMING_MEMORY_LIMIT = "512MB"
# Rows per row group. Appending to a table whose last row group has room rewrites that whole
# row group at the next checkpoint: with DuckDB's 122,880, a day of raw requests (6,500 rows of
# full histories, 13 KB each) rewrote up to three weeks of them, and a run's process grew by
# 5 GB at 20 days of 2,500 conversations. At 8,192 a day of WildChat's size starts its own row
# groups, and an append rewrites at most one small one (benchmarks/bench_backfill.py: the
# largest process of a 250k-conversation backfill went from 16.3 GB to 4.0 GB). Readers need no
# setting.
ROW_GROUP_SIZE = 8192
# The name the file is attached under, made the default: SQL names tables as ``main.<table>``.
CATALOG = "warehouse"
# Connection settings that can be changed on an open instance; a connection asking for any
# other is opened on its own.
SETTABLE_WHILE_OPEN = frozenset({"memory_limit", "max_memory", "threads", "temp_directory"})
# How often a process polls for a file that a process outside Dagster holds open (each try
# builds a database instance: about 10 ms of CPU).
_OPEN_POLL_S = 0.5


class DuckDBLockTimeout(TimeoutError):
    pass


def _flock(handle, deadline: float, timeout_s: float, what: str) -> None:
    """An exclusive ``flock`` on ``handle``, polled (a failed try costs microseconds)."""
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise DuckDBLockTimeout(
                    f"Waited {timeout_s:.0f} s for the lock on {what}; another process "
                    f"is holding {handle.name}"
                ) from None
            time.sleep(0.02)


@contextmanager
def duckdb_file_lock(database: str, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
    # Named by the real path: every process finds the same lock, and a kept file (keyed by its
    # real path) sees who waits for it, whichever name each was given.
    key = _key(database)
    lock_path = _lock_path(key)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with lock_path.open("a") as handle:
        # Counted before the flock is tried: a kept file is then not handed over to one of this
        # process's own threads, from the moment it asks for the lock until it has let it go.
        with _WANTED_HERE_LOCK:
            _WANTED_HERE[key] += 1
        try:
            _flock(handle, deadline, timeout_s, database)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            with _WANTED_HERE_LOCK:
                _WANTED_HERE[key] -= 1


def _open_slot(database: str, deadline: float, timeout_s: float):
    """An exclusive ``flock`` on ``<database>.open``, held for as long as this process has the
    database open. A process whose file another one keeps open between transactions waits
    here, asleep, until that one closes it; polling ``duckdb.connect`` instead would build a
    database instance at every try."""
    handle = Path(f"{_key(database)}.open").open("a")  # noqa: SIM115 -- closed by the caller, or on the anchor's close
    try:
        _flock(handle, deadline, timeout_s, f"{database} (kept open by another run)")
    except BaseException:
        handle.close()
        raise
    return handle


def _open(database: str, config: dict) -> duckdb.DuckDBPyConnection:
    """The file attached (as ``CATALOG``, the default) with rows grouped ``ROW_GROUP_SIZE`` at
    a time; ``duckdb.connect(database)`` offers no row group size."""
    con = duckdb.connect(":memory:", config=config)
    try:
        con.execute(f"ATTACH {_literal(database)} AS {CATALOG} (ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
        con.execute(f"USE {CATALOG}")
    except BaseException:
        con.close()
        raise
    return con


def _connect_when_free(database: str, config: dict, deadline: float) -> duckdb.DuckDBPyConnection:
    """A process outside Dagster (a notebook, the duckdb CLI) may hold DuckDB's own lock."""
    while True:
        try:
            return _open(database, config)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() > deadline:
                raise DuckDBLockTimeout(
                    f"{database} is held open by another process; close it (DuckDB said: {exc})"
                ) from exc
            time.sleep(_OPEN_POLL_S)


@dataclass
class _OpenFile:
    """A database file this process keeps open between its transactions."""

    anchor: duckdb.DuckDBPyConnection
    slot: IO[str]  # the ``_open_slot`` held while it is open
    lock: IO[str]  # ``<database>.lock``, opened to see whether another process has taken it
    identity: tuple[int, int]  # (device, inode): a file replaced meanwhile is opened anew
    settings: dict = field(default_factory=dict)  # global settings set on it, by name
    in_use: int = 0
    last_used: float = 0.0


class _KeptOpen:
    """The files kept open for the runs of this process, and the thread that closes idle ones.

    Every field is guarded by ``lock``; an anchor is closed only while no transaction uses it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wanted: Counter[str] = Counter()  # runs (resources) keeping each file open
        self.open: dict[str, _OpenFile] = {}
        self._closer: threading.Thread | None = None
        self._wake = threading.Condition(self.lock)

    def want(self, path: str) -> None:
        with self.lock:
            self.wanted[path] += 1
            if self._closer is None or not self._closer.is_alive():
                self._closer = threading.Thread(
                    target=self._close_idle, name="duckdb-close-idle", daemon=True
                )
                self._closer.start()

    def unwant(self, path: str) -> None:
        with self.lock:
            self.wanted[path] -= 1
            if self.wanted[path] <= 0:
                del self.wanted[path]
                self._close(path, force=True)

    def _close(self, path: str, force: bool) -> None:
        kept = self.open.get(path)
        if kept is None or kept.in_use:
            return
        if (
            force
            or time.monotonic() - kept.last_used >= KEEP_OPEN_IDLE_S
            or (not _WANTED_HERE[path] and _taken_elsewhere(kept.lock))
        ):
            del self.open[path]
            _close_anchor(kept)

    def _close_idle(self) -> None:
        with self.lock:
            while self.wanted or self.open:
                for path in list(self.open):
                    self._close(path, force=path not in self.wanted)
                self._wake.wait(_CLOSER_POLL_S)
            self._closer = None

    @contextmanager
    def connection(
        self, path: str, config: dict, deadline: float, timeout_s: float
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection on the kept file (opened if need be); the file lock is held."""
        with self.lock:
            kept = self.open.get(path)
            identity = _identity(path)
            if kept is not None and (kept.in_use == 0 and kept.identity != identity):
                del self.open[path]
                _close_anchor(kept)
                kept = None
            if kept is None:
                slot = _open_slot(path, deadline, timeout_s)
                try:
                    # Opened with the settings already: replaying another process's log
                    # happens under the memory limit too.
                    anchor = _connect_when_free(path, config, deadline)
                except BaseException:
                    slot.close()
                    raise
                lock = _lock_path(path).open("a")  # closed with the anchor
                kept = self.open[path] = _OpenFile(
                    anchor, slot, lock, _identity(path), dict(config)
                )
            kept.in_use += 1
            try:
                con = kept.anchor.cursor()
                # A cursor is a connection of its own, on the in-memory default catalog.
                con.execute(f"USE {CATALOG}")
                # Global settings (the warehouse's memory limit) apply to the whole instance:
                # each transaction sets its own and resets those it does not ask for.
                for name in set(kept.settings) - set(config):
                    con.execute(f"RESET GLOBAL {name}")
                    del kept.settings[name]
                for name, value in config.items():
                    if kept.settings.get(name) != value:
                        con.execute(f"SET GLOBAL {name} = {_literal(value)}")
                        kept.settings[name] = value
            except BaseException:
                kept.in_use -= 1
                raise
        try:
            yield con
        finally:
            con.close()
            with self.lock:
                kept.in_use -= 1
                kept.last_used = time.monotonic()

    def is_kept(self, path: str) -> bool:
        with self.lock:
            return path in self.wanted


def _taken_elsewhere(lock: IO[str]) -> bool:
    """Whether another process has ``<database>.lock``. Asked only between this process's
    transactions on a file it keeps open, and while none of its threads wants the lock: the
    holder is then waiting for this process to close the file."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(lock, fcntl.LOCK_UN)
    return False


def _close_anchor(kept: _OpenFile) -> None:
    try:
        kept.anchor.close()
    finally:
        kept.lock.close()
        kept.slot.close()  # releases the flock


def _literal(value: object) -> str:
    if isinstance(value, bool | int | float):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _identity(path: str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return (-1, -1)
    return (stat.st_dev, stat.st_ino)


_KEPT = _KeptOpen()
# This process's threads that want or hold each file's ``.lock``, by real path; read by the
# closing thread.
_WANTED_HERE: Counter[str] = Counter()
_WANTED_HERE_LOCK = threading.Lock()


def _lock_path(key: str) -> Path:
    """``<database>.lock`` of a file's real path (``_key``): taken for every transaction, and
    looked at by a process that keeps the file open, to hand it over."""
    return Path(f"{key}.lock")


def _key(database: str) -> str:
    return os.path.realpath(database)


@contextmanager
def kept_open(database: str) -> Iterator[None]:
    """While inside, this process keeps ``database`` open between its transactions (closed
    when idle for ``KEEP_OPEN_IDLE_S``, and on leaving)."""
    path = _key(database)
    _KEPT.want(path)
    try:
        yield
    finally:
        _KEPT.unwant(path)


@contextmanager
def locked_connection(
    database: str, config: dict | None = None, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection held under the file lock, inside one transaction."""
    deadline = time.monotonic() + timeout_s
    # The file is attached to an in-memory instance, whose spill files would otherwise go to
    # ``.tmp`` in the working directory.
    config = {
        "memory_limit": DEFAULT_MEMORY_LIMIT,
        "temp_directory": f"{database}.tmp",
        **(config or {}),
    }
    with duckdb_file_lock(database, timeout_s):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        path = _key(database)
        if _KEPT.is_kept(path) and set(config) <= SETTABLE_WHILE_OPEN:
            opened = _KEPT.connection(path, config, deadline, timeout_s)
        else:
            opened = _connect_and_close(database, config, deadline, timeout_s)
        with opened as con:
            # Arrow timestamps then come back labelled UTC, as they were written.
            con.execute("SET TimeZone = 'UTC'")
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise


@contextmanager
def _connect_and_close(
    database: str, config: dict, deadline: float, timeout_s: float
) -> Iterator[duckdb.DuckDBPyConnection]:
    with _open_slot(database, deadline, timeout_s):
        con = _connect_when_free(database, config, deadline)
        try:
            yield con
        finally:
            con.close()


class _LockingDuckDbClient(DuckDbClient):
    @staticmethod
    @contextmanager
    def connect(context, _):
        config = context.resource_config
        with locked_connection(
            config["database"], config["connection_config"], config["lock_timeout_s"]
        ) as con:
            yield con


class _PolarsTableHandler(DuckDBPolarsTypeHandler):
    def handle_output(
        self, context: OutputContext, table_slice: TableSlice, obj: pl.DataFrame, connection
    ):
        table = f"{table_slice.schema}.{table_slice.table}"
        connection.register("rows", obj.to_arrow())
        connection.execute(f"create schema if not exists {table_slice.schema}")
        connection.execute(f"create table if not exists {table} as select * from rows limit 0")
        # BY NAME: a column order that changed between code versions must not shift values.
        connection.execute(f"insert into {table} by name select * from rows")
        connection.unregister("rows")
        return {"row_count": obj.height}


def add_new_columns(connection, table: str, frame: pl.DataFrame) -> list[str]:
    """Columns a newer code version writes are added (null in the partitions written before).

    A column whose type changed cannot be carried over: the error says what to do.
    """
    exists = connection.execute(
        "select count(*) from information_schema.tables "
        "where table_schema || '.' || table_name = $table",
        {"table": table},
    ).fetchone()[0]
    if not exists:
        return []
    connection.register("incoming", frame.head(0).to_arrow())
    stored = dict(
        connection.execute(f"select column_name, column_type from (describe {table})").fetchall()
    )
    written = dict(
        connection.execute("select column_name, column_type from (describe incoming)").fetchall()
    )
    connection.unregister("incoming")
    changed = [f"{c} ({stored[c]} -> {t})" for c, t in written.items() if stored.get(c, t) != t]
    if changed:
        raise TypeError(
            f"{table}: column(s) {', '.join(changed)} changed type since the table was "
            f"created. Drop the table (DROP TABLE {table}) and re-materialize its partitions."
        )
    added = [c for c in written if c not in stored]
    for column in added:
        connection.execute(f'alter table {table} add column "{column}" {written[column]}')
    return added


# (database, table, columns) written by this process since it started. A table dropped by hand
# meanwhile makes the next insert fail by name, never write silently.
_SCHEMAS_SEEN: set[tuple] = set()


class _SchemaEvolvingDbIOManager(DbIOManager):
    """Adds the columns a newer code version writes, in a transaction of its own.

    DuckDB refuses to commit an ALTER TABLE in the transaction that also replaces the
    partition's rows, and a new nullable column on its own changes no row.
    """

    def __init__(self, *, database: str, lock_timeout_s: float, **kwargs) -> None:
        super().__init__(database=database, **kwargs)
        self._path = database
        self._lock_timeout_s = lock_timeout_s

    def handle_output(self, context: OutputContext, obj) -> None:
        # A DuckDB error quotes the value it could not write: it leaves sanitized.
        with text_exit_scope():
            if isinstance(obj, pl.DataFrame):
                table = f"{self._schema}.{context.asset_key.path[-1]}"
                # A warm worker writes the same tables day after day: the columns are compared
                # once per process and schema, not with a connection of their own every time.
                key = (str(Path(self._path).resolve()), table, tuple(obj.schema.items()))
                if key not in _SCHEMAS_SEEN:
                    with locked_connection(self._path, timeout_s=self._lock_timeout_s) as con:
                        added = add_new_columns(con, table, obj)
                    if added:
                        context.add_output_metadata({"columns_added": ", ".join(added)})
            super().handle_output(context, obj)
            if isinstance(obj, pl.DataFrame):
                _SCHEMAS_SEEN.add(key)

    def load_input(self, context: InputContext) -> object:
        with text_exit_scope():
            return super().load_input(context)


class WildchatDuckDBIOManager(DuckDBIOManager):
    """Stores every asset as a DuckDB table (schema ``main``), partitions by ``partition_day``."""

    lock_timeout_s: float = Field(
        default=DEFAULT_LOCK_TIMEOUT_S,
        description="How long a step waits for another process's read or write to finish.",
    )

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [_PolarsTableHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        return pl.DataFrame

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Resources are set up once per run (the in-process executor): the file stays open
        # between the run's transactions, and is closed when the run ends.
        self._kept = kept_open(self.database)
        self._kept.__enter__()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        self._kept.__exit__(None, None, None)

    def create_io_manager(self, context) -> DbIOManager:
        return _SchemaEvolvingDbIOManager(
            lock_timeout_s=self.lock_timeout_s,
            db_client=_LockingDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="WildchatDuckDBIOManager",
        )


__all__ = ["WildchatDuckDBIOManager", "duckdb_file_lock", "kept_open", "locked_connection"]
