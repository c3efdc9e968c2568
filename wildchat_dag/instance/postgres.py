"""The production instance's storage (deploy/dagster.postgres.yaml names it): dagster-postgres's,
keeping its connections, with pool limits that PostgreSQL can initialize.

Dagster 1.13 gives a pool its default limit (``concurrency.pools.default_limit``) the first time
a step claims a slot in it, by INSERT, and on ``IntegrityError`` an UPDATE in the same
transaction (``SqlEventLogStorage.initialize_concurrency_limit_to_default``). SQLite lets that
UPDATE run. PostgreSQL has aborted the transaction at the failed INSERT, so the UPDATE raises
``InFailedSqlTransaction`` and the step fails. That happens:

- when two runs claim a new pool at once, on a fresh database: the second INSERT finds the
  first one's row (a backfill's first two runs do this);
- on every claim, for good, after ``default_limit`` is edited: Dagster re-initializes each pool
  whose stored default differs, and its row is always there.

Upstream: dagster-io/dagster#33552, open on 1.13. This class does what the base class means to,
in one statement: INSERT ... ON CONFLICT DO UPDATE, which PostgreSQL runs atomically, racing or
not. A limit set by hand (``dagster instance concurrency set``) is not from the default, and
Dagster never calls this for it.

**Connections are kept.** dagster-postgres opens a new connection for every read and write
(``NullPool``): a TCP connection, authentication and a new server process each time, some 1.5
CPU-ms on the client and 0.5 on the server per operation, on this project's machine. A day of a
backfill does thousands of them (every event a run stores, every query of the daemon's ticks).
Here each storage keeps one connection per process, and opens more for threads that need one
at the same moment, closed again after use; the kept one is tested before reuse
(``pool_pre_ping``), so a restarted server costs a reconnect, not a failed step. At 3 storages
a process, the deployment's dozen processes hold about 40 idle connections of PostgreSQL's
default 100. Measured with ``benchmarks/bench_steps.py --fixed-only --storage postgres``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as db
from dagster._core.storage.event_log.schema import ConcurrencyLimitsTable, ConcurrencySlotsTable
from dagster._core.storage.sqlalchemy_compat import db_select
from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log.event_log import (
    PostgresEventLogStorage as DagsterPostgresEventLogStorage,
)
from dagster_postgres.run_storage.run_storage import PostgresRunStorage as DagsterPostgresRunStorage
from dagster_postgres.schedule_storage.schedule_storage import (
    PostgresScheduleStorage as DagsterPostgresScheduleStorage,
)
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

# No bound on the connections opened beyond the kept one while a process's threads (the
# webserver's requests, the daemon's daemons) need more at once, as with dagster-postgres's own:
# a bound would be a new way to fail. Each is closed when it is given back.
UNBOUNDED_OVERFLOW = -1
# A kept connection older than this is replaced: servers and proxies drop idle ones.
RECYCLE_S = 1800


class _KeptConnections:
    """Mixed into each storage, before dagster-postgres's class (which ``super()`` reaches):
    one engine that keeps its connections (see the module)."""

    postgres_url: str
    _token_provider: Any
    _engine: Engine

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> Any:
        # dagster-postgres's own build their class by name, not cls.
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # dagster-postgres's engine (NullPool) has created or checked the tables; ours keeps.
        unpooled = self._engine
        self._engine = create_pg_engine(
            self.postgres_url,
            self._token_provider,
            isolation_level="AUTOCOMMIT",
            pool_size=1,
            max_overflow=UNBOUNDED_OVERFLOW,
            pool_recycle=RECYCLE_S,
            pool_pre_ping=True,
        )
        unpooled.dispose()

    def optimize_for_webserver(self, *args: Any, **kwargs: Any) -> None:
        # dagster-webserver swaps in an engine of its own: the connections ours kept are
        # closed now, not whenever the engine is garbage-collected.
        ours = self._engine
        super().optimize_for_webserver(*args, **kwargs)  # type: ignore[misc]
        if self._engine is not ours:
            ours.dispose()

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._engine.dispose()


class PostgresRunStorage(_KeptConnections, DagsterPostgresRunStorage):
    """dagster-postgres's run storage, keeping its connections."""


class PostgresScheduleStorage(_KeptConnections, DagsterPostgresScheduleStorage):
    """dagster-postgres's schedule storage, keeping its connections."""


class PostgresEventLogStorage(_KeptConnections, DagsterPostgresEventLogStorage):
    """dagster-postgres's event log storage, keeping its connections, with atomic
    initialization of pool limits."""

    def initialize_concurrency_limit_to_default(self, concurrency_key: str) -> bool:
        if not self.has_concurrency_limits_table or not self.has_default_pool_limit_col:
            # A database not migrated since the limits table came: the base class's path for it
            # inserts and ignores a conflict, with no UPDATE after it.
            return super().initialize_concurrency_limit_to_default(concurrency_key)
        self._reconcile_concurrency_limits_from_slots()
        if not self.has_instance:
            return False
        default_limit = self._instance.global_op_concurrency_default_limit
        with self.index_transaction() as conn:
            if default_limit is None:
                conn.execute(
                    ConcurrencyLimitsTable.delete().where(
                        ConcurrencyLimitsTable.c.concurrency_key == concurrency_key
                    )
                )
                self._allocate_concurrency_slots(conn, concurrency_key, 0)
                return True
            insert = postgresql.insert(ConcurrencyLimitsTable).values(
                concurrency_key=concurrency_key, limit=default_limit, using_default_limit=True
            )
            # Only a row that still follows the default takes a new default; a limit set by hand
            # stays, as in the base class (which Dagster calls only for rows from the default).
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[ConcurrencyLimitsTable.c.concurrency_key],
                    set_={"limit": default_limit},
                    where=db.and_(
                        ConcurrencyLimitsTable.c.using_default_limit == db.true(),
                        ConcurrencyLimitsTable.c.limit != default_limit,
                    ),
                )
            )
            # The statement above locks the row until this transaction ends, so two callers
            # allocate the slots one after the other. The slots follow the row's limit, which
            # is the hand-set one where the default did not apply.
            limit = conn.execute(
                db_select([ConcurrencyLimitsTable.c.limit]).where(
                    ConcurrencyLimitsTable.c.concurrency_key == concurrency_key
                )
            ).scalar_one()
            self._allocate_concurrency_slots(conn, concurrency_key, limit)
        return True

    def _reconcile_concurrency_limits_from_slots(self) -> None:
        # The base class bulk-inserts the limits of slots kept from before the limits table; two
        # processes doing it at once would meet the same unique key.
        if not self.has_concurrency_limits_table:
            return
        if not self._has_rows(ConcurrencySlotsTable) or self._has_rows(ConcurrencyLimitsTable):
            return
        with self.index_transaction() as conn:
            rows = conn.execute(
                db_select([ConcurrencySlotsTable.c.concurrency_key, db.func.count()])
                .where(ConcurrencySlotsTable.c.deleted == db.false())
                .group_by(ConcurrencySlotsTable.c.concurrency_key)
            ).fetchall()
            if rows:
                conn.execute(
                    postgresql.insert(ConcurrencyLimitsTable)
                    .values([{"concurrency_key": key, "limit": count} for key, count in rows])
                    .on_conflict_do_nothing()
                )
