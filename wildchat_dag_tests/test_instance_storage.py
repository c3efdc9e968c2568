"""The local instance (dagster.yaml): Dagster's SQLite files in Dagster's places, with each process
keeping its connections (wildchat_dag/instance/sqlite.py). Real files, real processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from dagster import DagsterInstance
from dagster._core.events.log import EventLogEntry

from wildchat_dag.instance import WildchatInstance, sqlite
from wildchat_dag.instance.sqlite import KEPT_RUN_FILES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    return tmp_path


def open_sqlite_files(under: Path) -> set[str]:
    """The SQLite files under ``under`` that this process has open."""
    return {
        str(Path(f.path).relative_to(under))
        for f in psutil.Process().open_files()
        if f.path.startswith(str(under)) and f.path.endswith(".db")
    }


def log_line(run_id: str, text: str) -> EventLogEntry:
    return EventLogEntry(
        error_info=None,
        level=20,
        user_message=text,
        run_id=run_id,
        timestamp=time.time(),
        step_key=None,
        job_name="job",
        dagster_event=None,
    )


def test_the_local_instance_keeps_its_connections_in_dagsters_own_files(home: Path):
    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance) is WildchatInstance
        for storage in (
            instance.run_storage,
            instance.event_log_storage,
            instance.schedule_storage,
        ):
            assert type(storage).__module__ == sqlite.__name__, storage
        for n in range(30):
            instance.add_dynamic_partitions("kept", [f"p{n}"])
            assert instance.get_runs(limit=1) == []
            instance.event_log_storage.store_event(log_line("run-a", f"line {n}"))
        # The files Dagster's default SQLite storage uses, each kept open by one connection.
        kept = open_sqlite_files(home)
        assert {"history/runs.db", "history/runs/index.db", "history/runs/run-a.db"} <= kept
        assert len(instance.event_log_storage.get_logs_for_run("run-a")) == 30
    # Disposed (the context's exit), nothing stays open.
    assert open_sqlite_files(home) == set()

    # Dagster's own storage reads what ours wrote, in the same files.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as stock:
        assert type(stock) is DagsterInstance
        assert type(stock.event_log_storage).__module__.startswith("dagster.")
        assert len(stock.get_dynamic_partitions("kept")) == 30
        assert len(stock.event_log_storage.get_logs_for_run("run-a")) == 30


def test_a_kept_connection_sees_what_another_process_wrote(home: Path):
    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("shared", ["ours"])
        assert "history/runs/index.db" in open_sqlite_files(home)
        # Another process (a run worker, the daemon) writes while our connection is open.
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from dagster import DagsterInstance; "
                "i = DagsterInstance.from_config(sys.argv[1]); "
                "i.add_dynamic_partitions('shared', ['theirs']); i.dispose()",
                str(home),
            ],
            check=True,
            cwd=REPO,
            timeout=120,
        )
        assert sorted(instance.get_dynamic_partitions("shared")) == ["ours", "theirs"]


def test_run_files_beyond_the_kept_number_are_closed_and_reopened(home: Path):
    with DagsterInstance.from_config(str(home)) as instance:
        runs = [f"run-{n:02d}" for n in range(KEPT_RUN_FILES + 8)]
        for run_id in runs:
            instance.event_log_storage.store_event(log_line(run_id, "first"))
        run_files = {f for f in open_sqlite_files(home) if f.startswith("history/runs/run-")}
        assert run_files == {f"history/runs/{r}.db" for r in runs[-KEPT_RUN_FILES:]}
        # The oldest run's file, closed, opens again.
        instance.event_log_storage.store_event(log_line(runs[0], "second"))
        texts = [e.user_message for e in instance.event_log_storage.get_logs_for_run(runs[0])]
        assert texts == ["first", "second"]


def test_wiping_leaves_no_connection_on_a_deleted_file(home: Path):
    with DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.store_event(log_line("run-w", "before"))
        instance.add_dynamic_partitions("wiped", ["x"])
        instance.wipe()
        assert not (home / "history" / "runs" / "run-w.db").exists()
        instance.event_log_storage.store_event(log_line("run-w", "after"))
        texts = [e.user_message for e in instance.event_log_storage.get_logs_for_run("run-w")]
        assert texts == ["after"]
        assert (home / "history" / "runs" / "run-w.db").is_file()


def test_threads_share_the_kept_connections(home: Path):
    """The webserver and the daemon call the storage from many threads at once."""
    with DagsterInstance.from_config(str(home)) as instance:
        threads_n = 8
        barrier = threading.Barrier(threads_n)
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                barrier.wait(timeout=60)
                for k in range(15):
                    instance.add_dynamic_partitions("threads", [f"t{n}-{k}"])
                    instance.event_log_storage.store_event(log_line(f"run-t{n}", str(k)))
                    instance.get_runs(limit=1)
            except BaseException as error:  # reported below: a thread cannot fail the test
                errors.append(error)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        assert len(instance.get_dynamic_partitions("threads")) == threads_n * 15
        for n in range(threads_n):
            assert len(instance.event_log_storage.get_logs_for_run(f"run-t{n}")) == 15
