"""wildchat_nightly_celery runs its steps in Celery worker processes, not in the launching one.

Two workers (separate OS processes, concurrency 1 each) are started the way deploy/celery.yaml
documents, on the local Redis; one partition of the job, cut to ingest, linking and the two
enrichment steps, is launched from a third process; the steps' pids in the instance's event log
are then matched with the workers' process trees.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import date
from pathlib import Path

import duckdb
import psutil
import pytest
import redis
from celery import Celery
from dagster import DagsterEventType, DagsterInstance

from wildchat_dag.defs.automation.scale_out import BACKEND_ENV_VAR, BROKER_ENV_VAR, QUEUE_ENV_VAR
from wildchat_dag.loggen.generator import generate_logs

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAY = "2024-01-01"
# Not database 0, the job's default: a developer's own workers there must not take these steps.
# The queue, new for every test run, keeps leftovers of other runs in this database apart too.
REDIS_DB = int(os.environ.get("WILDCHAT_TEST_CELERY_REDIS_DB", "14"))
BROKER = f"redis://127.0.0.1:6379/{REDIS_DB}"
SELECTED = [
    "raw_requests",
    "raw_message_texts",
    "quarantined_log_lines",
    "linked_conversations",
    "orphaned_requests",
    "withdrawn_conversations",
    "utterance_languages",
    "conversation_languages",
    "user_turn_locations",
    "conversation_locations",
]
# Run in a process of its own, as the run worker of a launched run is: the orchestrating pid.
LAUNCHER = """
import json, sys
from dagster import AssetKey, DagsterInstance, execute_job
from dagster._core.definitions.reconstruct import ReconstructableRepository

day, *assets = sys.argv[1:]
# The pointer `dagster job execute -m wildchat_dag.definitions` gives the workers; execute_job
# takes the asset subset that the CLI has no option for.
job = ReconstructableRepository.for_module(
    "wildchat_dag.definitions", "defs"
).get_reconstructable_job("wildchat_nightly_celery")
with DagsterInstance.get() as instance:
    result = execute_job(
        job,
        instance=instance,
        tags={"dagster/partition": day},
        asset_selection=[AssetKey(a) for a in assets],
        raise_on_error=False,
    )
print(json.dumps({"run_id": result.run_id, "success": result.success}))
"""


def broker_or_skip() -> None:
    try:
        redis.Redis.from_url(BROKER, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        message = f"no Redis broker at {BROKER}: {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: the Celery test must run; start Redis)")
        pytest.skip(message)


def run_env(tmp_path: Path, queue: str) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(home),
        "WILDCHAT_LOG_ROOT": str(tmp_path / "logs"),
        "WILDCHAT_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "WILDCHAT_IP_SALT": "celery-test-salt-5b0c2f7e9a1d4c3b8e6f",
        BROKER_ENV_VAR: BROKER,
        BACKEND_ENV_VAR: BROKER,
        QUEUE_ENV_VAR: queue,
    }
    env.pop("WILDCHAT_MODE", None)
    # Launcher and workers share this SQLite instance: migrated once before any of them starts.
    subprocess.run(
        [str(BIN / "dagster"), "instance", "migrate"], env=env, check=True, capture_output=True
    )
    return env


def start_worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`dagster-celery worker start` runs `celery worker` as its child: a session of its own
    lets the test stop the wrapper, the worker and its pool together."""
    return subprocess.Popen(
        [
            str(BIN / "dagster-celery"),
            "worker",
            "start",
            "-A",
            "dagster_celery.app",
            "-y",
            str(REPO / "deploy" / "celery.yaml"),
            "-q",
            env[QUEUE_ENV_VAR],
            "-n",
            name,
            "--",
            "--concurrency=1",
            # Two lone workers: no start-up sync with (or event traffic from) other workers.
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@contextmanager
def celery_workers(names: list[str], env: dict[str, str], logs: Path) -> Iterator[dict]:
    workers: dict[str, subprocess.Popen] = {}
    try:
        for name in names:
            workers[name] = start_worker(name, env, logs / f"{name}.log")
        yield workers
    finally:
        for process in workers.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in workers.values():
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            # The celery child may outlive its wrapper: the whole group goes.
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)
        # The queue's list and kombu's bindings go; task results expire on their own (a day).
        broker = redis.Redis.from_url(BROKER)
        for key in broker.scan_iter(f"*{env[QUEUE_ENV_VAR]}*"):
            broker.delete(key)


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def wait_until_ready(app: Celery, nodes: list[str], workers: dict, logs: Path) -> None:
    deadline = time.monotonic() + 120
    answered: set[str] = set()
    while time.monotonic() < deadline:
        for name, process in workers.items():
            log = (logs / f"{name}.log").read_text()
            assert process.poll() is None, f"worker {name} exited:\n{log[-3000:]}"
        for reply in app.control.ping(destination=nodes, timeout=1.0):
            answered.update(reply)
        if answered >= set(nodes):
            return
    pytest.fail(f"workers not ready after 120 s; answered: {sorted(answered)}")


def process_tree(pid: int) -> set[int]:
    root = psutil.Process(pid)
    return {pid, *(child.pid for child in root.children(recursive=True))}


@pytest.mark.slow
def test_steps_run_in_two_celery_workers(tmp_path: Path) -> None:
    broker_or_skip()
    started = time.monotonic()
    generate_logs(
        tmp_path / "logs",
        start_date=date.fromisoformat(DAY),
        days=1,
        conversations_per_day=40,
        seed=11,
    )
    token = uuid.uuid4().hex[:8]
    queue = f"wildchat-test-{token}"
    env = run_env(tmp_path, queue)
    logs = tmp_path / "worker_logs"
    logs.mkdir()
    names = [f"worker1-{token}", f"worker2-{token}"]
    # Celery names a node <name>@<hostname> (the %h that dagster-celery appends).
    nodes = [f"{name}@{socket.gethostname()}" for name in names]

    app = Celery(broker=BROKER)
    # A fresh queue has nothing in it; purged all the same, as a reused name would need.
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)

    with celery_workers(names, env, logs) as workers:
        wait_until_ready(app, nodes, workers, logs)
        trees_before = {name: process_tree(p.pid) for name, p in workers.items()}
        launch = subprocess.run(
            [sys.executable, "-c", LAUNCHER, DAY, *SELECTED],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        # Pool children are read while the workers run: the ones that ran the steps.
        trees = {name: trees_before[name] | process_tree(p.pid) for name, p in workers.items()}
    worker_logs = {name: (logs / f"{name}.log").read_text() for name in names}
    assert launch.returncode == 0, launch.stdout[-3000:] + launch.stderr[-5000:]
    outcome = json.loads(launch.stdout.strip().splitlines()[-1])
    assert outcome["success"], launch.stderr[-8000:] + "\n".join(
        log[-3000:] for log in worker_logs.values()
    )

    # (a) the day's rows are in the warehouse.
    tables = [
        "raw_requests",
        "linked_conversations",
        "conversation_languages",
        "conversation_locations",
    ]
    with duckdb.connect(env["WILDCHAT_DUCKDB_PATH"], read_only=True) as con:
        counts = {
            table: con.sql(
                f"SELECT count(*) FROM main.{table} WHERE partition_day = DATE '{DAY}'"
            ).fetchone()[0]
            for table in tables
        }
    print(f"\nrows of {DAY}: {counts}")
    assert all(n > 0 for n in counts.values()), counts
    # One language and one location row per conversation of the day.
    assert (
        counts["conversation_languages"]
        == counts["conversation_locations"]
        == counts["linked_conversations"]
    ), counts

    # (b) every step started in a worker's process tree, none in the launcher's.
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        records = instance.all_logs(outcome["run_id"])
    step_pids = {
        r.dagster_event.step_key: r.dagster_event.pid
        for r in records
        if r.dagster_event and r.dagster_event.event_type == DagsterEventType.STEP_START
    }
    run_pid = next(
        r.dagster_event.pid
        for r in records
        if r.dagster_event and r.dagster_event.event_type == DagsterEventType.RUN_START
    )
    ran_by = {
        step: next((name for name, pids in trees.items() if pid in pids), None)
        for step, pid in step_pids.items()
    }
    print(f"run {outcome['run_id']} orchestrated in pid {run_pid}; steps:")
    for step, pid in sorted(step_pids.items()):
        print(f"  {step:45s} pid {pid:>7d}  {ran_by[step]}")
    print(f"  worker trees: { {n: sorted(p) for n, p in trees.items()} }")
    assert {"ingest_logs", "link_turns", "identify_languages", "locate_turns"} <= set(step_pids)
    assert not {run_pid, os.getpid()} & set(step_pids.values())
    assert not any(run_pid in pids for pids in trees.values())
    assert None not in ran_by.values(), f"steps outside the workers: {ran_by}"
    # The worker's own word: dagster-celery's engine event names the Celery node of each step.
    nodes_said = {
        r.dagster_event.step_key: r.dagster_event.engine_event_data.metadata["Celery worker"].value
        for r in records
        if r.dagster_event
        and r.dagster_event.event_type == DagsterEventType.ENGINE_EVENT
        and "Celery worker" in r.dagster_event.engine_event_data.metadata
    }
    assert {step: node.split("@")[0] for step, node in nodes_said.items()} == ran_by

    # (c) both workers took part. Steps become ready several at a time (the two enrichment
    # steps after linking, the table checks after each step), and with deploy/celery.yaml's
    # worker_disable_prefetch a worker busy with one step does not reserve the next.
    distribution = Counter(ran_by.values())
    print(f"  distribution: {dict(distribution)}; {time.monotonic() - started:.0f} s in all")
    assert set(distribution) == set(names), distribution
