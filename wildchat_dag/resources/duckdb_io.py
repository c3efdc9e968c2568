"""The DuckDB IO manager: polars frames in, polars frames out, one writer at a time.

DuckDB lets one process at a time open a database file for writing. Dagster runs steps in
separate processes, and several runs at once, so every connection here is taken under an
exclusive ``flock`` on ``<database>.lock``. Only the short read or write holds the lock, never
the step's computation, so partitions still compute in parallel.

Each write deletes the partition's rows and inserts the new ones in one transaction, so a crash
leaves the old rows or the new ones, never neither; and an empty frame still creates its table,
so readers of an empty side table get no rows rather than a missing-table error.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl
from dagster import InputContext, OutputContext
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDbClient, DuckDBIOManager
from dagster_duckdb_polars import DuckDBPolarsTypeHandler
from pydantic import Field

from wildchat_dag.assets.text_exit import text_exit_scope

DEFAULT_LOCK_TIMEOUT_S = 900.0


class DuckDBLockTimeout(TimeoutError):
    pass


@contextmanager
def duckdb_file_lock(database: str, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
    lock_path = Path(f"{database}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with lock_path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DuckDBLockTimeout(
                        f"Waited {timeout_s:.0f} s for the lock on {database}; another process "
                        f"is holding {lock_path}"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _connect_when_free(database: str, config: dict, deadline: float) -> duckdb.DuckDBPyConnection:
    """A process outside Dagster (a notebook, the duckdb CLI) may hold DuckDB's own lock."""
    while True:
        try:
            return duckdb.connect(database, config=config)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() > deadline:
                raise DuckDBLockTimeout(
                    f"{database} is held open by another process; close it (DuckDB said: {exc})"
                ) from exc
            time.sleep(0.5)


@contextmanager
def locked_connection(
    database: str, config: dict | None = None, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection held under the file lock, inside one transaction."""
    deadline = time.monotonic() + timeout_s
    with duckdb_file_lock(database, timeout_s):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        con = _connect_when_free(database, config or {}, deadline)
        try:
            # Arrow timestamps then come back labelled UTC, as they were written.
            con.execute("SET TimeZone = 'UTC'")
            con.execute("BEGIN TRANSACTION")
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
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


__all__ = ["WildchatDuckDBIOManager", "duckdb_file_lock", "locked_connection"]
