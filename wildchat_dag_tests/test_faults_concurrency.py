"""The global API limit holds under load: the limiter alone, then two real runs.

Nothing here asserts on timing. Holders wait on events and semaphores the test controls, so the
number in flight only changes when the test lets it; a holder beyond the limit is counted the
moment it gets in, so it cannot be missed. The waits have generous timeouts, which only a broken
limiter (or a hung process) can reach.

Run it repeatedly under load with ``pytest wildchat_dag_tests/test_faults_concurrency.py``.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from wildchat_dag.common.pools import OPENAI_POOL
from wildchat_dag.defs.moderation.inflight_limit import (
    LOCK_DIR_ENV_VAR,
    InflightLimit,
    InflightLimitTimeout,
    default_lock_dir,
)
from wildchat_dag.loggen.generator import generate_logs
from wildchat_dag_tests.inflight_probe import InflightProbe
from wildchat_dag_tests.pipeline import Pipeline
from wildchat_dag_tests.test_concurrency import DAGSTER, cli_env, materialize_cli, wait_all

# Linking marks the day's withdrawn conversations, matching hashed IPs: it needs the salt.
pytestmark = pytest.mark.usefixtures("salt_only")

WAIT_S = 60.0
# Fork: the children need the parent's test state only, and start in milliseconds under load.
MP = multiprocessing.get_context("fork")


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def drive(
    limit: int,
    holders: int,
    inside: Callable[[], int],
    peak: Callable[[], int],
    done: Callable[[], int],
    let_one_go: Callable[[], None],
) -> None:
    """Each round: wait until ``limit`` holders are inside, see that no more get in while they
    stay, then let one go. A holder beyond the limit would raise ``peak`` above ``limit``."""
    for _ in range(holders - limit):
        wait_until(lambda: inside() == limit, f"{limit} holders inside")
        # Give a would-be extra holder time to get in (it polls every 50 ms at most).
        time.sleep(0.1)
        assert peak() == limit
        let_one_go()
    for _ in range(limit):
        let_one_go()
    wait_until(lambda: done() == holders, "every holder done")
    assert peak() == limit


# -- threads of one process ---------------------------------------------------------------------


def test_threads_of_one_process_hold_at_most_limit_slots(tmp_path):
    limit, holders = 3, 12
    slots = InflightLimit("api", limit, tmp_path)
    lock = threading.Lock()
    state = {"inside": 0, "peak": 0, "done": 0}
    gate = threading.Semaphore(0)

    def hold() -> None:
        with slots.slot():
            with lock:
                state["inside"] += 1
                state["peak"] = max(state["peak"], state["inside"])
            assert gate.acquire(timeout=WAIT_S)
            with lock:
                state["inside"] -= 1
        with lock:
            state["done"] += 1

    threads = [threading.Thread(target=hold, daemon=True) for _ in range(holders)]
    for thread in threads:
        thread.start()
    drive(
        limit,
        holders,
        lambda: state["inside"],
        lambda: state["peak"],
        lambda: state["done"],
        gate.release,
    )
    for thread in threads:
        thread.join(timeout=WAIT_S)


# -- processes ----------------------------------------------------------------------------------


def _process_holder(lock_dir, limit, threads, inside, peak, done, gate) -> None:
    """A process whose threads take slots: processes and threads mixed, as in real runs."""
    slots = InflightLimit("api", limit, lock_dir)

    def hold() -> None:
        with slots.slot():
            with inside.get_lock():
                inside.value += 1
                peak.value = max(peak.value, inside.value)
            assert gate.acquire(timeout=WAIT_S)
            with inside.get_lock():
                inside.value -= 1
        with done.get_lock():
            done.value += 1

    workers = [threading.Thread(target=hold) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_processes_and_their_threads_hold_at_most_limit_slots(tmp_path):
    limit, processes, threads = 4, 4, 3
    inside, peak, done = MP.Value("i", 0), MP.Value("i", 0), MP.Value("i", 0)
    gate = MP.Semaphore(0)
    children = [
        MP.Process(
            target=_process_holder,
            args=(tmp_path, limit, threads, inside, peak, done, gate),
            daemon=True,
        )
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    try:
        drive(
            limit,
            processes * threads,
            lambda: inside.value,
            lambda: peak.value,
            lambda: done.value,
            gate.release,
        )
        for child in children:
            child.join(timeout=WAIT_S)
            assert child.exitcode == 0
    finally:
        for child in children:
            if child.is_alive():
                child.kill()


def _hold_forever(lock_dir, limit, holding) -> None:
    with InflightLimit("api", limit, lock_dir).slot():
        holding.set()
        while True:
            time.sleep(60)


def test_a_killed_holder_frees_its_slot(tmp_path):
    slots = InflightLimit("api", 1, tmp_path)
    holding = MP.Event()
    holder = MP.Process(target=_hold_forever, args=(tmp_path, 1, holding), daemon=True)
    holder.start()
    try:
        assert holding.wait(WAIT_S)
        assert slots.try_acquire() is None
        with pytest.raises(InflightLimitTimeout, match="no free slot"):
            slots.acquire(timeout_s=0.05)
    finally:
        holder.kill()  # SIGKILL: no finally, no atexit; the kernel drops the lock
        holder.join(WAIT_S)
    held = slots.try_acquire()
    assert held is not None
    slots.release(held)


def _hold_and_fork(lock_dir, child_pid) -> None:
    """Holds the only slot, forks a child that outlives it, then waits to be killed."""
    with InflightLimit("api", 1, lock_dir).slot():
        pid = os.fork()
        if pid == 0:  # the child: lives on, with a copy of the parent's descriptors
            try:
                while True:
                    time.sleep(60)
            finally:
                os._exit(0)
        child_pid.value = pid
        while True:
            time.sleep(60)


def test_a_forked_child_does_not_keep_its_parents_slot(tmp_path):
    child_pid = MP.Value("i", 0)
    parent = MP.Process(target=_hold_and_fork, args=(tmp_path, child_pid), daemon=True)
    parent.start()
    try:
        wait_until(lambda: child_pid.value != 0, "the fork")
        slots = InflightLimit("api", 1, tmp_path)
        assert slots.try_acquire() is None
        parent.kill()
        # No timeout: a join with one waits on a pipe that the living child also holds open.
        parent.join()
        # The parent is gone; its child, still alive, closed its copy at the fork.
        os.kill(child_pid.value, 0)
        held = slots.try_acquire()
        assert held is not None
        slots.release(held)
    finally:
        if parent.is_alive():
            parent.kill()
        if child_pid.value:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid.value, signal.SIGKILL)


# -- configuration ------------------------------------------------------------------------------


def test_processes_with_different_limits_stay_within_the_largest(tmp_path):
    """A process configured with 2 uses slots 0 and 1 only; one with 4 uses 0..3: together at
    most 4, and the process with 2 at most 2."""
    small, large = InflightLimit("api", 2, tmp_path), InflightLimit("api", 4, tmp_path)
    taken = [small.try_acquire(), small.try_acquire()]
    assert None not in taken
    assert small.try_acquire() is None
    taken += [large.try_acquire(), large.try_acquire()]
    assert None not in taken
    assert large.try_acquire() is None
    assert small.try_acquire() is None
    for held in taken:
        InflightLimit.release(held)
    four = [large.try_acquire() for _ in range(4)]
    assert None not in four
    assert small.try_acquire() is None
    for held in four:
        InflightLimit.release(held)


def test_limits_with_other_names_or_folders_are_independent(tmp_path):
    a = InflightLimit("a", 1, tmp_path)
    held = [a.try_acquire(), InflightLimit("b", 1, tmp_path).try_acquire()]
    held.append(InflightLimit("a", 1, tmp_path / "other").try_acquire())
    assert None not in held
    assert a.try_acquire() is None
    for h in held:
        InflightLimit.release(h)


def test_slot_is_a_request_slot_factory_and_frees_on_error(tmp_path):
    slots = InflightLimit("api", 1, tmp_path)
    request_slot: Callable[[], object] = slots.slot
    with pytest.raises(RuntimeError), request_slot():  # type: ignore[attr-defined]
        raise RuntimeError("the request failed")
    with slots():  # the instance itself works as the factory too
        assert slots.try_acquire() is None
    assert slots.folder == tmp_path / "api"
    assert sorted(p.name for p in slots.folder.iterdir()) == ["slot-0.lock"]


def test_bad_configuration_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        InflightLimit("api", 0, tmp_path)
    with pytest.raises(ValueError, match="limit name"):
        InflightLimit("../api", 1, tmp_path)


def test_the_lock_folder_defaults_to_the_wildchat_home(tmp_path, monkeypatch):
    monkeypatch.delenv(LOCK_DIR_ENV_VAR, raising=False)
    monkeypatch.setenv("WILDCHAT_HOME", str(tmp_path / "home"))
    assert default_lock_dir() == (tmp_path / "home").resolve() / "locks"
    assert InflightLimit("openai_api", 4).folder == (tmp_path / "home").resolve() / "locks" / (
        "openai_api"
    )
    monkeypatch.setenv(LOCK_DIR_ENV_VAR, str(tmp_path / "shared"))
    assert default_lock_dir() == Path(tmp_path / "shared")


def test_openai_requests_of_concurrent_runs_stay_within_the_global_limit(tmp_path):
    """Two runs score two days at once; the API limit (``InflightLimit``, a lock folder shared by
    every process) keeps the requests in flight at ``max_in_flight`` in all, where the two runs
    would otherwise double it. The Dagster pool is raised to two steps here, so only the limiter
    stands between the runs, as it does when the pool's claim races on SQLite.

    Deterministic: the server holds every request until the test releases it, so the count in
    flight only moves when the test says; a request beyond the limit is counted on arrival."""
    limit = 4
    generate_logs(
        tmp_path / "logs", start_date=date(2024, 1, 1), days=2, conversations_per_day=8, seed=8
    )
    env = cli_env(tmp_path)
    env[LOCK_DIR_ENV_VAR] = str(tmp_path / "locks")  # this test's own limit, not the checkout's
    subprocess.run(
        [DAGSTER, "instance", "concurrency", "set", OPENAI_POOL, "2"],
        env=env,
        check=True,
        capture_output=True,
    )
    days = ["2024-01-01", "2024-01-02"]
    # The days' conversations, in this process: the runs below read them from the DuckDB file.
    pipeline = Pipeline(tmp_path / "logs", Path(env["WILDCHAT_DUCKDB_PATH"]))
    pipeline.ingest(*days)
    pipeline.link(*days)
    with InflightProbe() as probe:
        scoring = {**env, "OPENAI_API_KEY": "sk-test"}
        runs = []
        for day in days:
            # Run config replaces the resource's configuration as a whole. Each run has its own
            # URL, so the server knows whose request is in flight.
            openai = {
                "api_key": {"env": "OPENAI_API_KEY"},
                "base_url": probe.base_url(day),
                "batch_size": 2,
                "max_in_flight": limit,
                # Held requests must not time out: a retry would arrive while the abandoned
                # request is still held here, and look like one request too many.
                "timeout_s": 600,
            }
            # The code location's executor runs the step in the run's own process. The runs
            # are still two processes; only the lock folder limits them together.
            config = json.dumps({"resources": {"openai": {"config": openai}}})
            runs.append(materialize_cli(scoring, "openai_moderation", day, "--config-json", config))
        try:
            rounds = 0
            # Release one request at a time, each time `limit` are held and no more came. Once a
            # run has sent its last batch, a freed slot can only go to the other run, so both
            # runs' requests are in flight together before either can finish.
            while not (probe.mixed and rounds >= 6):
                probe.wait_held(limit, timeout_s=240)
                assert probe.stays_at_most(limit, seconds=1.0 if rounds < 2 else 0.2), probe.held
                probe.release_oldest()
                rounds += 1
            probe.release_all()
            wait_all(runs)
        finally:
            probe.release_all()
            for run in runs:  # on a failure, no run is left retrying against a stopped server
                if run.poll() is None:
                    run.kill()
                    run.wait()
    assert probe.mixed, "the two runs' requests were never in flight together"
    assert probe.peak == limit
    assert min(probe.requests[day] for day in days) > limit, probe.requests
