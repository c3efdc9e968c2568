"""Two runs launched together write to one DuckDB file without lock errors."""

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from wildchat_dag.defs.ingest.assets import INGEST_ASSETS
from wildchat_dag.loggen.generator import generate_logs
from wildchat_dag.resources import duckdb_io
from wildchat_dag.resources.duckdb_io import (
    DuckDBLockTimeout,
    duckdb_file_lock,
    kept_open,
    locked_connection,
)

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
INGEST = ",".join(INGEST_ASSETS)


def cli_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "WILDCHAT_LOG_ROOT": str(tmp_path / "logs"),
        "WILDCHAT_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
    }
    # The instance exists before runs are launched, as it does once `dagster dev` has started:
    # three processes creating one SQLite instance at once race in Dagster's own migrations.
    subprocess.run([DAGSTER, "instance", "migrate"], env=env, check=True, capture_output=True)
    return env


def materialize_cli(env, select: str, partition: str, *options: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "wildchat_dag.definitions",
            "--select",
            select,
            "--partition",
            partition,
            *options,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_all(processes: list[subprocess.Popen]) -> list[str]:
    outputs = []
    for process in processes:
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 0, out[-3000:]
        assert "Could not set lock" not in out and "IOException" not in out
        outputs.append(out)
    return outputs


def test_partitions_materialized_at_the_same_time_all_succeed(tmp_path):
    generate_logs(
        tmp_path / "logs", start_date=date(2024, 1, 1), days=3, conversations_per_day=60, seed=5
    )
    env = cli_env(tmp_path)
    days = ["2024-01-01", "2024-01-02", "2024-01-03"]
    wait_all([materialize_cli(env, INGEST, d) for d in days])
    wait_all([materialize_cli(env, "linked_conversations,orphaned_requests", d) for d in days])

    con = duckdb.connect(env["WILDCHAT_DUCKDB_PATH"], read_only=True)
    raw = con.sql("SELECT count(*) FROM main.raw_requests").fetchone()[0]
    placed = con.sql(
        "SELECT (SELECT count(*) FROM (SELECT unnest(own_turn_ids) FROM "
        "main.linked_conversations)) + (SELECT count(*) FROM main.orphaned_requests)"
    ).fetchone()[0]
    partitions = con.sql(
        "SELECT count(DISTINCT partition_day) FROM main.linked_conversations"
    ).fetchone()[0]
    con.close()
    assert raw > 0 and partitions == 3
    # Requests continuing into the day after the last are not in these logs' range.
    assert placed == raw


def test_a_writer_waits_for_the_lock_instead_of_failing(tmp_path):
    generate_logs(
        tmp_path / "logs", start_date=date(2024, 1, 1), days=1, conversations_per_day=20, seed=5
    )
    env = cli_env(tmp_path)
    with duckdb_file_lock(env["WILDCHAT_DUCKDB_PATH"]):
        process = materialize_cli(env, INGEST, "2024-01-01")
        time.sleep(12)
        assert process.poll() is None, "the run finished while another process held the lock"
    wait_all([process])


def hold_open(database: str, seconds: float) -> subprocess.Popen:
    """Another process (as a notebook would) opens the DuckDB file and keeps it open."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
            "c.execute('create table if not exists t as select 1 as x'); "
            "print('open', flush=True); time.sleep(float(sys.argv[2]))",
            database,
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "open"
    return holder


def test_a_process_outside_dagster_holding_the_file_is_waited_for(tmp_path):
    database = str(tmp_path / "w.duckdb")
    holder = hold_open(database, seconds=4)
    started = time.monotonic()
    with locked_connection(database, timeout_s=60) as con:
        assert con.execute("select x from t").fetchone() == (1,)
    assert time.monotonic() - started > 1
    holder.wait(timeout=30)

    holder = hold_open(database, seconds=20)
    with (
        pytest.raises(DuckDBLockTimeout, match="held open by another process"),
        locked_connection(database, timeout_s=2),
    ):
        pass
    holder.kill()
    holder.wait()


def can_open_elsewhere(database: str) -> bool:
    """Whether another process can open the file now (DuckDB lets one process at a time)."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import duckdb, sys\ntry:\n duckdb.connect(sys.argv[1]).close()\n"
            "except duckdb.IOException:\n sys.exit(3)",
            database,
        ],
        capture_output=True,
    )
    assert probe.returncode in (0, 3), probe.stderr
    return probe.returncode == 0


def wait_until(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_run_keeps_the_file_open_between_its_transactions_and_closes_it_when_idle(tmp_path):
    database = str(tmp_path / "w.duckdb")
    path = os.path.realpath(database)
    with kept_open(database):
        with locked_connection(database) as con:
            con.execute("create table t as select 1 as x")
            anchor = duckdb_io._KEPT.open[path].anchor
        with locked_connection(database) as con:
            assert con.execute("select x from t").fetchone() == (1,)
        # The same instance served both transactions (no second open).
        assert duckdb_io._KEPT.open.get(path) is None or (
            duckdb_io._KEPT.open[path].anchor is anchor
        )
        # Idle, it is closed by the process itself: another process then gets the file.
        wait_until(lambda: path not in duckdb_io._KEPT.open)
        assert can_open_elsewhere(database)
        # Used again, it is opened again, and held: a holder elsewhere is refused meanwhile.
        with locked_connection(database) as con:
            con.execute("insert into t values (2)")
            assert not can_open_elsewhere(database)
    # Leaving closes it at once: this process, read-only, and others, can open it.
    assert path not in duckdb_io._KEPT.open
    con = duckdb.connect(database, read_only=True)
    assert con.execute("select sum(x) from t").fetchone() == (3,)
    con.close()


def test_a_file_replaced_between_transactions_is_opened_anew(tmp_path):
    database = str(tmp_path / "w.duckdb")
    with kept_open(database):
        with locked_connection(database) as con:
            con.execute("create table t as select 1 as x")
        os.unlink(database)
        wal = Path(f"{database}.wal")
        if wal.exists():
            wal.unlink()
        with locked_connection(database) as con:
            tables = con.execute("select table_name from information_schema.tables").fetchall()
        assert tables == []


def test_each_transaction_on_a_kept_file_gets_its_own_settings(tmp_path):
    database = str(tmp_path / "w.duckdb")
    setting = "select current_setting('memory_limit')"
    with kept_open(database):
        with locked_connection(database) as con:
            default = con.execute(setting).fetchone()[0]
        with locked_connection(database, {"memory_limit": "1GB"}) as con:
            limited = con.execute(setting).fetchone()[0]
        with locked_connection(database) as con:
            assert con.execute(setting).fetchone()[0] == default
    assert limited != default and "953" in limited  # 1 GB in DuckDB's MiB


def test_a_streaming_read_runs_under_its_own_limit_and_gives_the_cache_back(tmp_path):
    """The exports read each day's release records once: under ``streaming_memory_limit`` the
    file's cached blocks are evicted down to it, and the next transaction has the warehouse's
    own limit again."""
    from wildchat_dag.resources.warehouse import Warehouse

    assert Warehouse(database="w").streaming_memory_limit == "512MB"
    warehouse = Warehouse(database=str(tmp_path / "w.duckdb"), streaming_memory_limit="64MB")
    setting = "select current_setting('memory_limit')"
    cached_bytes = "select sum(memory_usage_bytes) from duckdb_memory()"
    hex_text = " || ".join(f"md5((i * 7 + {n})::varchar)" for n in range(16))
    with kept_open(warehouse.database):
        with warehouse.connect() as con:
            con.execute(f"create table t as select {hex_text} as s from range(600000) r(i)")
        with warehouse.connect() as con:
            con.execute("checkpoint")
        with warehouse.connect() as con:
            assert con.execute("select count(distinct s) from t").fetchone()[0] == 600_000
            cached = con.execute(cached_bytes).fetchone()[0]
            assert con.execute(setting).fetchone()[0] == "1.8 GiB"
        with warehouse.connect(streaming=True) as con:
            assert con.execute(setting).fetchone()[0] == "61.0 MiB"
            assert con.execute("select count(*) from t").fetchone()[0] == 600_000
            held = con.execute(cached_bytes).fetchone()[0]
        with warehouse.connect() as con:
            assert con.execute(setting).fetchone()[0] == "1.8 GiB"
    assert cached > 100_000_000 and held < 64_000_000


@pytest.mark.parametrize("kept", [True, False])
def test_every_connection_is_bounded_in_memory_and_spills_beside_the_file(tmp_path, kept):
    """Not DuckDB's 80% of RAM, which a run's process may fill with cached blocks. Spill files
    go beside the file, not into the working directory (the file is attached to an in-memory
    instance)."""
    database = str(tmp_path / "w.duckdb")
    with (
        kept_open(database) if kept else contextlib.nullcontext(),
        locked_connection(database) as con,
    ):
        limit, temp = con.execute(
            "select current_setting('memory_limit'), current_setting('temp_directory')"
        ).fetchone()
    assert limit == "1.8 GiB"  # DEFAULT_MEMORY_LIMIT, 2 GB, in DuckDB's GiB
    assert duckdb_io.DEFAULT_MEMORY_LIMIT == "2GB"
    assert temp == f"{database}.tmp"


def _requests_of(day: str, rows: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "partition_day": [day] * rows,
            "turn_id": list(range(rows)),
            "messages": [[{"role": "user", "content": "x" * 200}]] * rows,
        }
    ).with_columns(pl.col("partition_day").str.to_datetime())


def _append(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame) -> None:
    con.register("rows", rows.to_arrow())
    con.execute("create table if not exists t as select * from rows limit 0")
    con.execute("insert into t by name select * from rows")


def _row_groups(database: str) -> list[int]:
    """The rows of each row group of the table."""
    con = duckdb.connect(database, read_only=True)
    try:
        return [
            n
            for (n,) in con.execute(
                "select sum(count) from pragma_storage_info('t') where column_name = "
                "'partition_day' and segment_type <> 'VALIDITY' group by row_group_id "
                "order by row_group_id"
            ).fetchall()
        ]
    finally:
        con.close()


@pytest.mark.parametrize("kept", [True, False])
def test_a_day_appended_later_does_not_grow_an_earlier_row_group_past_the_limit(tmp_path, kept):
    """Appending to a row group with room rewrites all of it at the next checkpoint: with
    DuckDB's 122,880 rows, each day's raw requests rewrote the weeks before them. Written one
    day per open, as the runs do, every row group stays within ``ROW_GROUP_SIZE`` rows."""
    size = duckdb_io.ROW_GROUP_SIZE
    days = [f"2024-01-0{d}" for d in range(1, 5)]
    ours, plain = str(tmp_path / "ours.duckdb"), str(tmp_path / "plain.duckdb")
    for day in days:
        rows = _requests_of(day, size * 3 // 4)
        with (
            kept_open(ours) if kept else contextlib.nullcontext(),
            locked_connection(ours) as con,
        ):
            _append(con, rows)
        con = duckdb.connect(plain)
        _append(con, rows)
        con.close()
    groups = _row_groups(ours)
    assert sum(groups) == len(days) * (size * 3 // 4), groups
    assert max(groups) <= size, groups
    # The same appends through a plain connection pile into one row group: the test can fail.
    assert max(_row_groups(plain)) > size


def test_an_error_in_a_transaction_on_a_kept_file_rolls_it_back(tmp_path):
    database = str(tmp_path / "w.duckdb")
    with kept_open(database):
        with locked_connection(database) as con:
            con.execute("create table t as select 1 as x")
        with pytest.raises(ValueError), locked_connection(database) as con:
            con.execute("insert into t values (2)")
            raise ValueError("stop")
        with locked_connection(database) as con:
            assert con.execute("select count(*) from t").fetchone() == (1,)


@contextlib.contextmanager
def kept_with_a_table(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A file this process keeps open, holding ``t`` (one row, x = 1): its name, real path."""
    database = str(tmp_path / "w.duckdb")
    with kept_open(database):
        with locked_connection(database) as con:
            con.execute("create table t as select 1 as x")
        yield database, os.path.realpath(database)


def test_a_kept_file_is_not_handed_over_to_a_thread_of_its_own_process(tmp_path, monkeypatch):
    """A thread of this process that takes ``.lock`` is not another process waiting: the file
    stays open for it (a close and reopen would cost a checkpoint and an open)."""
    monkeypatch.setattr(duckdb_io, "KEEP_OPEN_IDLE_S", 3600.0)
    with kept_with_a_table(tmp_path) as (database, path):
        anchor = duckdb_io._KEPT.open[path].anchor
        with duckdb_file_lock(database):
            # Ten of the closing thread's polls with ``.lock`` held by this process.
            time.sleep(10 * duckdb_io._CLOSER_POLL_S)
            assert duckdb_io._KEPT.open[path].anchor is anchor
        with locked_connection(database) as con:
            assert con.execute("select x from t").fetchone() == (1,)
            assert duckdb_io._KEPT.open[path].anchor is anchor


@pytest.mark.parametrize(
    ("idle_s", "through_a_link"),
    [(duckdb_io.KEEP_OPEN_IDLE_S, False), (3600.0, False), (3600.0, True)],
)
def test_another_run_waits_for_a_kept_file_asleep_and_it_is_handed_over(
    tmp_path, monkeypatch, idle_s, through_a_link
):
    """The other process waits on ``<database>.open`` (no DuckDB open attempts) until this one
    closes its idle instance, then writes. This one hands the file over as soon as the other
    holds ``<database>.lock``, not when its idle time runs out: with an hour of it, the other
    process, which gives up after 60 s, still gets the file; also when it names the file
    through a symbolic link (the locks are named by the real path)."""
    monkeypatch.setattr(duckdb_io, "KEEP_OPEN_IDLE_S", idle_s)
    writer = (
        "import sys\n"
        "from wildchat_dag.resources.duckdb_io import locked_connection\n"
        "with locked_connection(sys.argv[1], timeout_s=60) as con:\n"
        "    con.execute('insert into t values (2)')\n"
    )
    with kept_with_a_table(tmp_path) as (database, path):
        name = database
        if through_a_link:
            name = str(tmp_path / "link.duckdb")
            os.symlink(database, name)
        other = subprocess.run(
            [sys.executable, "-c", writer, name], capture_output=True, text=True, timeout=120
        )
        assert other.returncode == 0, other.stderr
        assert path not in duckdb_io._KEPT.open
        with locked_connection(database) as con:
            assert con.execute("select sum(x) from t").fetchone() == (3,)
