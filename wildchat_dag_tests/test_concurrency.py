"""Two runs launched together write to one DuckDB file without lock errors."""

import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest

from wildchat_dag.loggen.generator import generate_logs
from wildchat_dag.resources.duckdb_io import (
    DuckDBLockTimeout,
    duckdb_file_lock,
    locked_connection,
)

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


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
    wait_all([materialize_cli(env, "raw_requests,quarantined_log_lines", d) for d in days])
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
        process = materialize_cli(env, "raw_requests,quarantined_log_lines", "2024-01-01")
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
