"""A run launcher whose runs start warm: in a long-lived worker process that has already
imported the code and loaded the engines.

Dagster's default launcher starts every run in a fresh interpreter: it imports dagster and the
code location again (about 1.5 CPU-seconds), and each step loads Presidio and spaCy, fastText
and the GeoIP reader again (about 10 CPU-seconds for detection alone). A backfill of a year is
three runs per day, so that start-up, not the data, was most of the cost of a small day.

Here the launcher keeps a few worker processes (``python -m wildchat_dag.warm_runs``). Each
imports ``wildchat_dag.definitions`` and builds the engines once, then executes the runs it is
handed one after another, each exactly as ``dagster api execute_run`` would, with the code's
in-process executor. Per-day runs stay what they were: a day keeps its own run, its own lineage
and its own failure in the UI. The workers do not fork per run: polars' thread pool, which the
code starts on import, does not survive a fork.

- **No stale code.** A worker is started with a fingerprint of the package's source files, the
  redaction rules file and the interpreter. Before each launch the launcher computes it again;
  on a change, idle workers are retired and new ones start.
- **A crash fails its run.** A worker that dies during a run (a native crash, the OOM killer)
  has its run reported failed, naming the process and its exit status; the next launch starts
  a new worker. Cancelling a run from the UI interrupts it in its worker, which lives on.
- **Bounded.** One run at a time per worker; a launch while every worker is busy starts one
  more, up to ``max_workers``. Past it the run waits in the launcher (starting, in the UI) and
  begins in the first worker to finish, the moment it does: the queue's next dequeue, up to a
  second later, is not waited for. A waiting run canceled from the UI never starts; one still
  waiting when the daemon stops fails, saying so. A worker idle for ``idle_timeout_s`` exits.

Configured in dagster.yaml::

    run_launcher:
      module: wildchat_dag.warm_runs
      class: WarmRunLauncher
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import importlib.util
import json
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

from dagster import _check as check
from dagster._core.launcher.base import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value
from dagster_shared.serdes import deserialize_value

PID_TAG = "wildchat/run_worker_pid"
# On a run launched while max_workers were busy: it waited in the launcher for a free worker.
WAITED_TAG = "wildchat/waited_for_worker"
NEVER_STARTED = "Canceled while it waited for a free warm worker: it never started."
SOURCES = {".py", ".yaml"}
PACKAGE = Path(__file__).resolve().parent


def package_files(package: str) -> list[Path]:
    """The source files of an importable package (nothing if it is not installed)."""
    spec = importlib.util.find_spec(package)
    roots = list(spec.submodule_search_locations or []) if spec else []
    return sorted(f for root in roots for f in Path(root).rglob("*") if f.suffix in SOURCES)


def code_fingerprint(packages: tuple[str, ...] = (PACKAGE.name,)) -> str:
    """What a worker's imported code depends on: every source file of ``packages`` (name, size,
    mtime), the redaction rules file and the interpreter."""
    from wildchat_dag import settings

    digest = hashlib.sha256(sys.executable.encode())
    files = [f for package in packages for f in package_files(package)]
    for path in [*files, settings.redaction_rules_path()]:
        try:
            stat = path.stat()
        except FileNotFoundError:
            digest.update(f"{path}:absent".encode())
            continue
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def is_warm_code(origin, packages: tuple[str, ...] = (PACKAGE.name,)) -> bool:
    """Only code of ``packages`` (the ones the fingerprint covers), in this interpreter, runs in
    a warm worker; any other code location of the workspace runs as dagster would run it."""
    pointer = origin.repository_origin.code_pointer
    module = getattr(pointer, "module", None) or getattr(pointer, "python_package", None) or ""
    return origin.executable_path == sys.executable and module.split(".")[0] in packages


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits for its parent to reap it (Linux's /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _start_cold(args: ExecuteRunArgs) -> int:
    """What dagster's own launcher runs: a new interpreter for the run."""
    process = subprocess.Popen(
        [
            args.job_origin.executable_path,
            "-m",
            "dagster",
            "api",
            "execute_run",
            serialize_value(args),
        ],
        start_new_session=True,
    )
    return process.pid


class _Worker:
    """One warm process. One JSON line in per run (the serialized ExecuteRunArgs); one line out
    when the run is over, and ``{"bye": ...}`` when it leaves on its idle timeout."""

    def __init__(
        self, fingerprint: str, packages: tuple[str, ...], idle_timeout_s: float, launcher
    ) -> None:
        self.fingerprint = fingerprint
        self.args: ExecuteRunArgs | None = None
        self.free = threading.Event()
        self.free.set()
        self._launcher = launcher
        self._leaving = False
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wildchat_dag.warm_runs", str(idle_timeout_s), *packages],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            # A Ctrl-C meant for the daemon must not cancel the runs in progress.
            start_new_session=True,
        )
        if self.process.stdout.readline().strip() != "ready":
            self.retire()
            self.process.wait()
            raise RuntimeError(
                "A warm run worker did not start; its error is in the daemon's output."
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def run_id(self) -> str | None:
        return self.args.run_id if self.args else None

    def idle(self) -> bool:
        return self.free.is_set() and not self._leaving and self.process.poll() is None

    def start(self, args: ExecuteRunArgs) -> None:
        self.free.clear()
        self.args = args
        self.process.stdin.write(serialize_value(args) + "\n")
        self.process.stdin.flush()

    def _read(self) -> None:
        for line in self.process.stdout:
            message = json.loads(line)
            if "bye" in message:
                self._leaving = True
            elif self.args is not None and message.get("done") == self.args.run_id:
                self.args = None
                self.free.set()
                self._launcher.start_waiting()
        status = self.process.wait()
        args, self.args = self.args, None
        if args is not None:
            if self._leaving and status == 0:
                # Handed over as it left on its idle timeout: the run never started here.
                self._launcher.relaunch(args)
            else:
                self._launcher.report_crash(args.run_id, self.pid, status)
        self.free.set()
        # A run waiting for a worker gets this one's place.
        self._launcher.start_waiting()

    def retire(self) -> None:
        """Close its input: it finishes the run in progress, if any, and exits."""
        self._leaving = True
        with contextlib.suppress(OSError):
            self.process.stdin.close()


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run in a warm worker process (see the module docstring)."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        idle_timeout_s: float = 600.0,
        warm_packages: list[str] | None = None,
        max_workers: int | None = None,
    ) -> None:
        self._inst_data = inst_data
        self._idle_timeout_s = idle_timeout_s
        self._packages = tuple(warm_packages or [PACKAGE.name])
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, not {max_workers}")
        self._max_workers = max_workers
        self._workers: list[_Worker] = []
        # Runs launched while max_workers were busy, oldest first: each starts in the first
        # worker to finish its run.
        self._waiting: collections.deque[ExecuteRunArgs] = collections.deque()
        self._lock = threading.RLock()
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        from dagster import Field

        return {
            "idle_timeout_s": Field(
                float,
                is_required=False,
                default_value=600.0,
                description="Seconds an idle worker waits for another run before it exits.",
            ),
            "warm_packages": Field(
                [str],
                is_required=False,
                default_value=[PACKAGE.name],
                description="Top-level packages whose code locations run in warm workers. "
                "Their source files make the fingerprint that retires stale workers.",
            ),
            "max_workers": Field(
                int,
                is_required=False,
                description="At most this many warm workers. A run launched while they are "
                "all busy waits, in the UI as starting, and begins in the first one to finish "
                "its run, without the queue's next dequeue. Unset: a launch while every worker "
                "is busy starts one more.",
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: dict):
        return cls(inst_data=inst_data, **config_value)

    def _idle_worker(self, *, bounded: bool = False) -> _Worker | None:
        """An idle worker of the current code, or a new one; ``bounded``: None rather than a
        worker past ``max_workers``."""
        fingerprint = code_fingerprint(self._packages)
        alive = []
        for worker in self._workers:
            if worker.process.poll() is not None:
                continue
            if worker.fingerprint != fingerprint and worker.idle():
                worker.retire()
                continue
            alive.append(worker)
        self._workers = alive
        current = [w for w in alive if w.fingerprint == fingerprint]
        for worker in current:
            if worker.idle():
                return worker
        # A run is recorded finished a moment before its worker says so: wait for that worker
        # rather than start another.
        for worker in current:
            run = self._instance.get_run_by_id(worker.run_id) if worker.run_id else None
            if run is not None and run.is_finished and worker.free.wait(10) and worker.idle():
                return worker
        if bounded and self._max_workers is not None and len(alive) >= self._max_workers:
            return None
        worker = _Worker(fingerprint, self._packages, self._idle_timeout_s, self)
        self._workers.append(worker)
        return worker

    def report_crash(self, run_id: str, pid: int, status: int) -> None:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return
        how = f"signal {-status}" if status < 0 else f"exit status {status}"
        self._instance.report_run_failed(
            run,
            f"The run's worker process {pid} ended during the run ({how}): a native crash or "
            "the out-of-memory killer. The next launch starts a new worker.",
        )

    def relaunch(self, args: ExecuteRunArgs) -> None:
        run = self._instance.get_run_by_id(args.run_id)
        if run is None or run.is_finished:
            return
        with self._lock:
            worker = self._idle_worker(bounded=True)
            if worker is None:
                self._waiting.appendleft(args)  # it was to start already: first in line
                return
            self._start(worker, run, args)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        check.inst_param(run, "run", DagsterRun)
        args = ExecuteRunArgs(
            job_origin=check.not_none(run.job_code_origin),
            run_id=run.run_id,
            instance_ref=self._instance.get_ref(),
            set_exit_code_on_failure=False,
        )
        if not is_warm_code(args.job_origin, self._packages):
            pid = _start_cold(args)
            self._instance.add_run_tags(run.run_id, {PID_TAG: str(pid)})
            self._instance.report_engine_event(
                f"Started the run in a new process {pid}: its code is not this project's, or "
                "runs in another interpreter.",
                run,
                cls=self.__class__,
            )
            return
        with self._lock:
            # Runs already waiting go first.
            worker = None if self._waiting else self._idle_worker(bounded=True)
            if worker is not None:
                self._start(worker, run, args)
                return
            self._waiting.append(args)
            self._instance.add_run_tags(run.run_id, {WAITED_TAG: "true"})
            ahead = len(self._waiting) - 1
            self._instance.report_engine_event(
                f"Waiting for a free warm worker (all {self._max_workers} are busy; {ahead} "
                f"run{'' if ahead == 1 else 's'} ahead of this one).",
                run,
                cls=self.__class__,
            )
            self.start_waiting()

    def _start(self, worker: _Worker, run: DagsterRun, args: ExecuteRunArgs) -> None:
        self._instance.add_run_tags(run.run_id, {PID_TAG: str(worker.pid)})
        worker.start(args)
        self._instance.report_engine_event(
            f"Started the run in the warm worker process {worker.pid}.", run, cls=self.__class__
        )

    def start_waiting(self) -> None:
        """Start the runs waiting for a worker while one is idle or may be added (a worker
        calls it when its run is over, or when it is gone)."""
        with self._lock:
            while self._waiting:
                run = self._instance.get_run_by_id(self._waiting[0].run_id)
                if run is None or run.is_finished:
                    self._waiting.popleft()
                    continue
                if run.status == DagsterRunStatus.CANCELING:
                    self._waiting.popleft()
                    self._instance.report_run_canceled(run, NEVER_STARTED)
                    continue
                worker = self._idle_worker(bounded=True)
                if worker is None:
                    return
                self._start(worker, run, self._waiting.popleft())

    def _pid(self, run_id: str) -> int | None:
        run = self._instance.get_run_by_id(run_id)
        value = run.tags.get(PID_TAG) if run else None
        return int(value) if value and value.isdigit() else None

    def terminate(self, run_id: str) -> bool:
        """Mark the run canceling; its worker notices within a second and interrupts it (any
        process may call this: the webserver as well as the daemon). A run still waiting for
        a worker is canceled when its turn comes, or at once by the launcher that holds it."""
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        if self._pid(run_id) is None and WAITED_TAG not in run.tags:
            return False
        self._instance.report_run_canceling(run)
        with self._lock:
            if any(args.run_id == run_id for args in self._waiting):
                self._waiting = collections.deque(a for a in self._waiting if a.run_id != run_id)
                self._instance.report_run_canceled(run, NEVER_STARTED)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid = self._pid(run.run_id)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no worker process recorded")
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"worker process {pid} is gone")
        if _zombie(pid):
            # Signal 0 still reaches a process that has exited but that its parent has not
            # reaped: a cold run's process, which nothing here waits for.
            return CheckRunHealthResult(WorkerStatus.FAILED, f"worker process {pid} has exited")
        return CheckRunHealthResult(WorkerStatus.RUNNING)

    def dispose(self) -> None:
        with self._lock:
            waiting, self._waiting = list(self._waiting), collections.deque()
            for worker in self._workers:
                worker.retire()
            self._workers = []
        for args in waiting:
            run = self._instance.get_run_by_id(args.run_id)
            if run is not None and not run.is_finished:
                self._instance.report_run_failed(
                    run,
                    "The daemon stopped while this run waited for a free warm worker: it never "
                    "started. Launch it again (a backfill: re-execute its failed partitions).",
                )


def preload(packages: tuple[str, ...] = ()) -> None:
    """What every run would otherwise load for itself: the code location and the engines its
    resources build with their configured settings (each is cached per process)."""
    import importlib

    for package in packages:
        importlib.import_module(package)
    from wildchat_dag.core import text_normalization
    from wildchat_dag.definitions import defs
    from wildchat_dag.defs.pii_detection import person_names
    from wildchat_dag.defs.pii_detection.pii_detection import build_ner_engine, build_pattern_engine

    resources = defs.resources or {}
    build_pattern_engine()
    if (detector := resources.get("pii_detector")) is not None:
        for language, model in detector.spacy_models.items():
            build_ner_engine(language, model)
    person_names.preload()
    text_normalization.preload()
    if (language_id := resources.get("language_id")) is not None:
        language_id.preload()
    if (geoip := resources.get("geoip")) is not None:
        geoip.snapshots()


class _CancelWatch:
    """While a run executes, polls its status; when someone marks it canceling, interrupts the
    main thread, as dagster's own run worker does. The interrupt is sent under a lock that the
    run's end also takes, so it never lands in the next run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run_id: str | None = None

    def watch(self, instance, run_id: str) -> threading.Event:
        from dagster._core.storage.dagster_run import DagsterRunStatus
        from dagster._utils import send_interrupt

        stop = threading.Event()
        with self._lock:
            self._run_id = run_id

        def poll() -> None:
            while not stop.wait(CANCEL_POLL_S):
                run = instance.get_run_by_id(run_id)
                if run is not None and run.status == DagsterRunStatus.CANCELING:
                    with self._lock:
                        if self._run_id == run_id and not stop.is_set():
                            send_interrupt()
                    return

        threading.Thread(target=poll, name="cancel-watch", daemon=True).start()
        return stop

    def done(self, stop: threading.Event) -> None:
        with self._lock:
            stop.set()
            self._run_id = None


CANCEL_POLL_S = 1.0


def execute_run(line: str, watch: _CancelWatch) -> str:
    """Execute one run as ``dagster api execute_run`` does; returns its run id."""
    from dagster._cli.api import _execute_run_command_body
    from dagster._core.instance import DagsterInstance
    from dagster._utils.interrupts import capture_interrupts

    args = deserialize_value(line, ExecuteRunArgs)
    try:
        with capture_interrupts(), DagsterInstance.from_ref(args.instance_ref) as instance:
            stop = watch.watch(instance, args.run_id)
            try:
                _execute_run_command_body(
                    args.run_id, instance, lambda _event: None, set_exit_code_on_failure=False
                )
            finally:
                watch.done(stop)
    except BaseException:
        import traceback

        traceback.print_exc()
    return args.run_id


def serve(idle_timeout_s: float, packages: tuple[str, ...]) -> None:
    """The worker's loop: preload, say ready, run each line until stdin closes or idles out."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    # Whatever the code prints goes to the daemon's output, never into the protocol.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    preload(packages)
    protocol.write("ready\n")
    watch = _CancelWatch()
    while True:
        try:
            readable, _, _ = select.select([sys.stdin], [], [], idle_timeout_s)
            if not readable:
                # Said first: a run handed over from now on is launched again elsewhere.
                protocol.write(json.dumps({"bye": "idle"}) + "\n")
                return
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            continue  # a Ctrl-C of the terminal: runs are canceled through their status
        if not line:
            return
        protocol.write(json.dumps({"done": execute_run(line.strip(), watch)}) + "\n")


if __name__ == "__main__":
    serve(float(sys.argv[1]) if len(sys.argv) > 1 else 600.0, tuple(sys.argv[2:]))
