"""The warm run launcher (wildchat_dag/warm_runs.py) with a real instance and real workers.

A DagsterInstance on a temporary DAGSTER_HOME whose dagster.yaml names the WarmRunLauncher
launches runs of ``warm_jobs.probe``, whose one op writes the pid of the process it runs in and,
as its config asks, says that it started, waits for a barrier file or kills its own process.
Every wait is a poll of a file, of the run's status or of a process, with a generous deadline.

The tests share one instance and its workers (each worker loads ``wildchat_dag.definitions``
and the engines first, about ten seconds), in the order of this file:

1. run 1 starts a worker; run 2 runs in it too;
2. a run launched while that worker is held on a barrier starts a second worker;
3. ``terminate`` cancels a run held on a barrier; its worker lives on and runs the next run;
4. ``check_run_worker_health``: RUNNING while the worker lives, FAILED once it is killed;
5. a run whose op SIGKILLs its worker fails, naming the process; the next run gets a new worker;
6. a change of the redaction rules file (a copy in tmp named by WILDCHAT_REDACTION_RULES)
   changes ``code_fingerprint()``: the idle worker is retired and the next run gets a new one;
7. with ``max_workers`` (a launcher of its own, bound to one worker): a run launched while the
   worker is busy waits, then starts in that worker the moment its run is over; a waiting run
   canceled by its launcher or by another process's never starts; when the worker dies, the
   waiting run starts in a new one; a run still waiting when the launcher is disposed fails;
8. a job of a package the launcher was not told to run warm (``warm_packages``) runs in a
   process of its own, whose death the health check sees too.

The instance's launcher runs ``wildchat_dag`` and ``wildchat_dag_tests`` warm (its
``warm_packages``), so ``warm_jobs`` reaches the workers as a second package of a user's would;
test 7 uses a launcher with the default, the project alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil
import pytest
from dagster import DagsterEventType, DagsterInstance, reconstructable
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.launcher.base import LaunchRunContext, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from wildchat_dag import settings, warm_runs
from wildchat_dag.warm_runs import PID_TAG, WAITED_TAG, WarmRunLauncher, code_fingerprint
from wildchat_dag_tests.warm_jobs import probe

T = TypeVar("T")

# Generous: a worker's preload takes about ten seconds on an idle machine, several times that on
# a loaded one.
TIMEOUT_S = 180.0
WORKER_MODULE = "wildchat_dag.warm_runs"
DAGSTER_YAML = """\
telemetry:
  enabled: false
run_launcher:
  module: wildchat_dag.warm_runs
  class: WarmRunLauncher
  config:
    # Far longer than this file takes: no worker idles out under a test.
    idle_timeout_s: 900
    warm_packages: [wildchat_dag, wildchat_dag_tests]
"""


def wait_for(what: str, probe_fn: Callable[[], T], timeout_s: float = TIMEOUT_S) -> T:
    """Poll until ``probe_fn`` returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe_fn()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def _children() -> dict[int, psutil.Process]:
    """This process's live children (zombies excluded), by pid."""
    children = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                children[child.pid] = child
        except psutil.NoSuchProcess:
            continue
    return children


def child_workers() -> dict[int, psutil.Process]:
    """This process's live warm workers, by pid."""
    workers = {}
    for pid, child in _children().items():
        try:
            if WORKER_MODULE in child.cmdline():
                workers[pid] = child
        except psutil.NoSuchProcess:
            continue
    return workers


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass
class Pool:
    instance: DagsterInstance
    launcher: WarmRunLauncher
    tmp: Path
    rules: Path
    # Every process a run was launched in (the pid tags), for the fixture's clean-up.
    pids: set[int] = field(default_factory=set)

    def launch(self, name: str, launcher: WarmRunLauncher | None = None, **config: object) -> str:
        """Create a run of ``probe`` that writes its pid to ``<name>.pid`` and launch it (with
        the instance's launcher, or ``launcher``)."""
        config = {"pid_file": str(self.pid_file(name)), **config}
        recon = reconstructable(probe)
        run = self.instance.create_run_for_job(
            job_def=probe,
            run_config={"ops": {"record_pid": {"config": config}}},
            job_code_origin=recon.get_python_origin(),
        )
        if launcher is None:
            self.instance.launch_run(run.run_id, workspace=None)
        else:
            launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        pid = self.instance.get_run_by_id(run.run_id).tags.get(PID_TAG)
        if pid is not None:  # None: it waits for a free worker (max_workers)
            self.pids.add(int(pid))
        return run.run_id

    def pid_file(self, name: str) -> Path:
        return self.tmp / f"{name}.pid"

    def started_file(self, name: str) -> Path:
        return self.tmp / f"{name}.started"

    def launch_held(self, name: str, launcher: WarmRunLauncher | None = None) -> tuple[str, int]:
        """Launch a run whose op waits for ``<name>.barrier``; return it once the op waits."""
        run_id = self.launch(
            name,
            launcher,
            started_file=str(self.started_file(name)),
            barrier=str(self.barrier(name)),
        )
        wait_for(f"the op of {name} to start", self.started_file(name).exists)
        return run_id, self.op_pid(name)

    def barrier(self, name: str) -> Path:
        return self.tmp / f"{name}.barrier"

    def op_pid(self, name: str) -> int:
        path = self.pid_file(name)
        wait_for(f"{path.name}", path.exists)
        return int(path.read_text())

    def finished(self, run_id: str) -> DagsterRun:
        def done() -> DagsterRun | None:
            run = self.instance.get_run_by_id(run_id)
            return run if run is not None and run.is_finished else None

        return wait_for(f"run {run_id} to finish", done)

    def succeeded(self, run_id: str, name: str) -> int:
        """Wait for the run; it succeeded, and its op ran in the pid of its tag: that pid."""
        run = self.finished(run_id)
        assert run.status == DagsterRunStatus.SUCCESS, self.story(run_id)
        pid = self.op_pid(name)
        assert run.tags[PID_TAG] == str(pid)
        return pid

    def story(self, run_id: str) -> str:
        """The run's event log, for an assertion's message."""
        return "\n".join(
            f"{entry.dagster_event.event_type_value if entry.dagster_event else 'log'}: "
            f"{entry.message}"
            for entry in self.instance.all_logs(run_id)
        )

    def settled(self) -> None:
        """Wait until every worker of the launcher has said that its run is over (a run is
        finished in storage a moment before its worker says so and takes another)."""
        wait_for(
            "the warm workers to be idle",
            lambda: all(w.idle() or w.process.poll() is not None for w in self.launcher._workers),
        )


def assert_warm_worker(pid: int) -> None:
    """``pid`` is a warm worker of this test process, not the test process or a fresh run."""
    assert pid != os.getpid()
    workers = child_workers()
    assert pid in workers, f"{pid} is not one of this process's warm workers {sorted(workers)}"


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Iterator[Pool]:
    tmp = tmp_path_factory.mktemp("warm_runs")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    rules = tmp / "redaction_rules.yaml"
    shutil.copy(settings.redaction_rules_path(), rules)
    instance = pool = None
    with pytest.MonkeyPatch.context() as env:
        # Workers inherit this environment: demo mode makes up the IP salt, in tmp.
        env.setenv("DAGSTER_HOME", str(home))
        env.setenv("WILDCHAT_HOME", str(tmp / "wildchat_home"))
        env.setenv("WILDCHAT_MODE", "demo")
        env.setenv("WILDCHAT_REDACTION_RULES", str(rules))
        try:
            instance = DagsterInstance.from_config(str(home))
            launcher = instance.run_launcher
            assert isinstance(launcher, WarmRunLauncher)
            pool = Pool(instance, launcher, tmp, rules)
            yield pool
        finally:
            if instance is not None:
                instance.dispose()  # closes the workers' input: each exits after its run
            # Whatever is left (a worker held on a barrier by a failed test): the processes
            # this module's runs were launched in, each ended by its pid.
            ours = set(pool.pids if pool else ()) | set(child_workers())
            leftovers = [p for pid, p in _children().items() if pid in ours]
            _, running = psutil.wait_procs(leftovers, timeout=15)
            for child in running:
                child.kill()
            psutil.wait_procs(running, timeout=15)
    assert not child_workers(), "a warm worker outlived the instance"


def test_a_second_run_reuses_the_warm_worker(pool: Pool) -> None:
    pool.settled()
    fingerprint = code_fingerprint()

    first = pool.succeeded(pool.launch("reuse-1"), "reuse-1")
    assert_warm_worker(first)
    pool.settled()
    second = pool.succeeded(pool.launch("reuse-2"), "reuse-2")

    assert code_fingerprint() == fingerprint, "the package was edited while the test ran"
    assert second == first
    assert_warm_worker(second)


def test_a_launch_while_the_worker_is_busy_starts_another(pool: Pool) -> None:
    pool.settled()
    held, held_pid = pool.launch_held("busy-held")
    assert_warm_worker(held_pid)

    other = pool.launch("busy-other")
    other_pid = pool.succeeded(other, "busy-other")
    # The first run was still held while the second ran, in another worker.
    assert not pool.instance.get_run_by_id(held).is_finished
    assert other_pid != held_pid
    assert_warm_worker(other_pid)

    pool.barrier("busy-held").touch()
    assert pool.succeeded(held, "busy-held") == held_pid


def test_terminate_cancels_the_run_and_the_worker_lives_on(pool: Pool) -> None:
    pool.settled()
    fingerprint = code_fingerprint()
    held, pid = pool.launch_held("cancel-held")

    assert pool.launcher.terminate(held)
    run = pool.finished(held)
    assert run.status == DagsterRunStatus.CANCELED, pool.story(held)
    assert not pool.launcher.terminate(held), "a finished run cannot be terminated again"

    pool.settled()
    assert alive(pid)
    after = pool.succeeded(pool.launch("cancel-after"), "cancel-after")
    assert code_fingerprint() == fingerprint, "the package was edited while the test ran"
    assert after == pid


def test_health_check_follows_the_worker_process(pool: Pool) -> None:
    pool.settled()
    never_launched = pool.instance.create_run_for_job(
        job_def=probe,
        run_config={"ops": {"record_pid": {"config": {"pid_file": str(pool.pid_file("never"))}}}},
    )
    assert pool.launcher.check_run_worker_health(never_launched).status == WorkerStatus.UNKNOWN

    held, pid = pool.launch_held("health-held")
    run = pool.instance.get_run_by_id(held)
    health = pool.launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus.RUNNING, health.msg

    os.kill(pid, signal.SIGKILL)

    def failed():
        result = pool.launcher.check_run_worker_health(run)
        return result if result.status == WorkerStatus.FAILED else None

    health = wait_for("the health check to see the worker gone", failed)
    assert str(pid) in health.msg
    # The launcher saw its worker end under the run and failed the run.
    assert pool.finished(held).status == DagsterRunStatus.FAILURE, pool.story(held)


def test_a_worker_that_dies_fails_its_run_and_is_replaced(pool: Pool) -> None:
    pool.settled()
    crashed = pool.launch("crash-dies", die=True)
    run = pool.finished(crashed)
    pid = pool.op_pid("crash-dies")
    assert run.tags[PID_TAG] == str(pid)
    assert run.status == DagsterRunStatus.FAILURE, pool.story(crashed)
    failures = pool.instance.all_logs(crashed, of_type=DagsterEventType.RUN_FAILURE)
    assert len(failures) == 1, pool.story(crashed)
    message = failures[0].message
    assert f"worker process {pid}" in message and "signal 9" in message, message

    wait_for(f"the dead worker {pid} to be reaped", lambda: not alive(pid))
    pool.settled()
    others = set(child_workers())
    assert pid not in others
    crashed_at = time.time()
    after = pool.succeeded(pool.launch("crash-after"), "crash-after")
    assert after != pid
    assert_warm_worker(after)
    if others:
        # Another warm worker was idle (tests run alone or in another order): it takes the run.
        assert after in others
    else:
        # The dead worker was the only one: the launch started a new one.
        assert psutil.Process(after).create_time() >= crashed_at - 1


def test_a_code_change_starts_a_new_worker(pool: Pool) -> None:
    pool.settled()
    before = pool.succeeded(pool.launch("code-before"), "code-before")
    fingerprint = code_fingerprint()

    # The rules path is read from the environment at each call: a change of the file named
    # by WILDCHAT_REDACTION_RULES is a change of the code the workers loaded.
    assert settings.redaction_rules_path() == pool.rules.resolve()
    with pool.rules.open("a") as rules:
        rules.write("# edited by test_warm_runs\n")
    assert code_fingerprint() != fingerprint

    pool.settled()
    after = pool.succeeded(pool.launch("code-after"), "code-after")
    assert after != before
    assert_warm_worker(after)
    # The worker with the old code was idle: it was told to go, and went.
    wait_for(f"the stale worker {before} to exit", lambda: not alive(before))


def test_with_max_workers_a_run_waits_for_the_first_free_worker(pool: Pool) -> None:
    bounded = WarmRunLauncher(max_workers=1, warm_packages=["wildchat_dag", "wildchat_dag_tests"])
    bounded.register_instance(pool.instance)
    # Another process's launcher (the webserver's) holds no waiting runs of its own.
    elsewhere = WarmRunLauncher()
    elsewhere.register_instance(pool.instance)
    status = lambda run_id: pool.instance.get_run_by_id(run_id).status  # noqa: E731
    try:
        held, worker = pool.launch_held("bounded-held", bounded)
        assert_warm_worker(worker)
        canceled_elsewhere = pool.launch("bounded-canceled-elsewhere", bounded)
        waiting = pool.launch("bounded-waiting", bounded)
        canceled_here = pool.launch("bounded-canceled-here", bounded)
        for run_id in (canceled_elsewhere, waiting, canceled_here):
            run = pool.instance.get_run_by_id(run_id)
            assert PID_TAG not in run.tags and run.tags[WAITED_TAG] == "true"
            assert "Waiting for a free warm worker" in pool.story(run_id)
        assert "2 runs ahead of this one" in pool.story(canceled_here)
        # The one worker is held on its barrier, and no other may start.
        assert len(bounded._workers) == 1

        assert elsewhere.terminate(canceled_elsewhere)
        assert status(canceled_elsewhere) == DagsterRunStatus.CANCELING
        assert bounded.terminate(canceled_here)
        assert status(canceled_here) == DagsterRunStatus.CANCELED

        pool.barrier("bounded-held").touch()
        assert pool.succeeded(held, "bounded-held") == worker
        assert pool.succeeded(waiting, "bounded-waiting") == worker
        assert pool.finished(canceled_elsewhere).status == DagsterRunStatus.CANCELED
        for name in ("bounded-canceled-elsewhere", "bounded-canceled-here"):
            assert not pool.pid_file(name).exists(), f"{name} ran"

        # The worker dies under its run: the waiting run starts in a new worker.
        dying, pid = pool.launch_held("bounded-dying", bounded)
        assert pid == worker
        after_crash = pool.launch("bounded-after-crash", bounded)
        os.kill(worker, signal.SIGKILL)
        assert pool.finished(dying).status == DagsterRunStatus.FAILURE, pool.story(dying)
        replacement = pool.succeeded(after_crash, "bounded-after-crash")
        assert replacement != worker
        assert_warm_worker(replacement)

        # Disposed (the daemon stops) with a run still waiting: it fails, saying why.
        last, _ = pool.launch_held("bounded-last", bounded)
        stranded = pool.launch("bounded-stranded", bounded)
    finally:
        bounded.dispose()
    run = pool.finished(stranded)
    assert run.status == DagsterRunStatus.FAILURE
    assert "waited for a free warm worker: it never started" in pool.story(stranded)
    pool.barrier("bounded-last").touch()
    assert pool.succeeded(last, "bounded-last") == replacement
    wait_for(
        f"the disposed launcher's worker {replacement} to exit", lambda: not alive(replacement)
    )
    assert not pool.pid_file("bounded-stranded").exists()


def test_other_code_runs_in_a_process_of_its_own(pool: Pool) -> None:
    daily = (
        ReconstructableRepository.for_module("wildchat_dag.definitions", "defs")
        .get_reconstructable_job("wildchat_daily_job")
        .get_python_origin()
    )
    assert warm_runs.is_warm_code(daily)
    assert not warm_runs.is_warm_code(reconstructable(probe).get_python_origin())

    project_only = WarmRunLauncher()
    project_only.register_instance(pool.instance)
    pool.settled()
    workers = set(child_workers())
    pid = pool.succeeded(pool.launch("cold", launcher=project_only), "cold")
    assert pid != os.getpid()
    assert pid not in workers
    assert pid not in child_workers()

    # A cold run's process that dies is not reaped by anyone here: it stays a zombie, which
    # signal 0 still reaches. The health check must see it gone all the same.
    died = pool.launch("cold-dies", launcher=project_only, die=True)
    dead = pool.op_pid("cold-dies")
    run = pool.instance.get_run_by_id(died)
    assert run.tags[PID_TAG] == str(dead)

    def failed():
        result = pool.launcher.check_run_worker_health(run)
        return result if result.status == WorkerStatus.FAILED else None

    assert str(dead) in wait_for("the health check to see the cold run's process gone", failed).msg
