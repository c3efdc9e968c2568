"""The local instance (dagster.yaml): Dagster's SQLite storages in Dagster's files, each process
building a file's engine once (wildchat_dag/instance/sqlite.py). Real files, real processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from dagster import DagsterInstance
from dagster._core.events.log import EventLogEntry
from sqlalchemy import event
from sqlalchemy.engine import Engine

from wildchat_dag.instance import WildchatInstance, sqlite
from wildchat_dag.instance.sqlite import KEPT_RUN_FILES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    return tmp_path


class EnginesBuilt:
    """SQLAlchemy engines that connect for the first time, by the file they are for."""

    def __init__(self) -> None:
        self.files: list[str] = []

    def __call__(self, dbapi_connection: object, record: object) -> None:
        [(_, _, path)] = dbapi_connection.execute("PRAGMA database_list").fetchall()[:1]
        self.files.append(Path(path).name)


@pytest.fixture
def engines_built() -> Iterator[EnginesBuilt]:
    counter = EnginesBuilt()
    event.listen(Engine, "first_connect", counter)
    try:
        yield counter
    finally:
        event.remove(Engine, "first_connect", counter)


def open_sqlite_files(under: Path) -> set[str]:
    """The SQLite files under ``under`` that this process has open."""
    return {
        str(Path(f.path).relative_to(under))
        for f in psutil.Process().open_files()
        if f.path.startswith(str(under)) and ".db" in f.path
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


def thirty_operations(instance: DagsterInstance) -> None:
    for n in range(30):
        instance.add_dynamic_partitions("kept", [f"p{n}"])
        assert instance.get_runs(limit=1) == []
        assert instance.all_instigator_state() == []
        instance.event_log_storage.store_event(log_line("run-a", f"line {n}"))


def test_the_local_instance_builds_each_files_engine_once(home: Path, engines_built):
    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance) is WildchatInstance
        for storage in (
            instance.run_storage,
            instance.event_log_storage,
            instance.schedule_storage,
        ):
            assert type(storage).__module__ == sqlite.__name__, storage
        engines_built.files.clear()
        thirty_operations(instance)
        # 120 operations on four files, three of whose engines the instance built when it
        # started: one more engine, for the new run's file (Dagster's own builds one per
        # operation, below).
        assert engines_built.files == ["run-a.db"]
        # As with Dagster's own, no connection stays open between operations, and the writes are
        # in the files themselves (the UI's file watcher streams a run's events from them).
        assert open_sqlite_files(home) == set()
        wal = home / "history" / "runs" / "run-a.db-wal"
        assert not wal.exists() or wal.stat().st_size == 0
        assert len(instance.event_log_storage.get_logs_for_run("run-a")) == 30

    # Dagster's own storage reads what ours wrote, in the same files.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as stock:
        assert type(stock) is DagsterInstance
        assert type(stock.event_log_storage).__module__.startswith("dagster.")
        engines_built.files.clear()
        assert len(stock.get_dynamic_partitions("kept")) == 30
        assert len(stock.event_log_storage.get_logs_for_run("run-a")) == 30
        thirty_operations(stock)
        assert len(engines_built.files) > 100, "the baseline this saves: an engine per operation"


def test_another_process_write_is_seen(home: Path):
    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("shared", ["ours"])
        # Another process (a run worker, the daemon) writes between our operations.
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


def test_engines_of_run_files_beyond_the_kept_number_are_built_again(home: Path, engines_built):
    with DagsterInstance.from_config(str(home)) as instance:
        runs = [f"run-{n:02d}" for n in range(KEPT_RUN_FILES + 8)]
        for run_id in runs:
            instance.event_log_storage.store_event(log_line(run_id, "first"))
        engines_built.files.clear()
        for run_id in runs[-KEPT_RUN_FILES:]:
            instance.event_log_storage.store_event(log_line(run_id, "second"))
        assert engines_built.files == [], "the most recent run files' engines are kept"
        instance.event_log_storage.store_event(log_line(runs[0], "second"))
        assert engines_built.files == [f"{runs[0]}.db"]
        texts = [e.user_message for e in instance.event_log_storage.get_logs_for_run(runs[0])]
        assert texts == ["first", "second"]


def test_wiping_leaves_no_engine_for_a_deleted_file(home: Path):
    with DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.store_event(log_line("run-w", "before"))
        instance.add_dynamic_partitions("wiped", ["x"])
        instance.wipe()
        assert not (home / "history" / "runs" / "run-w.db").exists()
        instance.event_log_storage.store_event(log_line("run-w", "after"))
        texts = [e.user_message for e in instance.event_log_storage.get_logs_for_run("run-w")]
        assert texts == ["after"]
        assert instance.get_dynamic_partitions("wiped") == []


def test_threads_share_the_kept_engines(home: Path):
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
