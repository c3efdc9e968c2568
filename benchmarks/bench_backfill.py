"""A WildChat-shaped backfill through the daemon: per-step cost, fixed cost per day, cost per
conversation at two sizes, and the projection to WildChat's size.

Each scenario gets a fresh Dagster instance (the project's dagster.yaml), a fresh DuckDB file
and its own logs, then runs what a user runs:
1. ``python -m wildchat_dag.backfill FIRST LAST`` (the asset backfill of every per-day step);
2. ``dagster dev`` (its daemon, webserver and code server) until the backfill is done. Not a
   bare ``dagster-daemon run -w workspace.yaml``: that daemon replaces its code server with a
   new process every 60 s (Dagster's workspace refresh; some 7 CPU-s to import the code each
   time), where ``dagster dev``, like the production deployment's gRPC server, keeps one;
3. ``dagster job launch -j wildchat_release`` (the release statistics and both exports), which
   the same daemon dequeues and runs.

CPU is the sum, over every process of the tree (daemon, code server, run workers, step
processes, the two CLIs), of its user + system time, sampled every 0.2 s; a process is counted
at its last sample (one that lives under 0.2 s may be missed). Peak RSS is the largest sum over
the tree at one sample, and the largest single process. Moderation is off (no OpenAI key, no
Detoxify checkpoint), as the issue's budget excludes the remote API and Detoxify inference.

The floor is one vectorised pass over the same logs, in this process: read every file, hash
every message (sha256) and run one IPv4 regex over all of the text.

    .venv/bin/python benchmarks/bench_backfill.py                      # 2 sizes + empty days
    .venv/bin/python benchmarks/bench_backfill.py --days 100 --conversations 250000 --only large
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO.parent / "shared" / "data" / "wildchat-sample" / "conversations.jsonl"
START = date(2024, 1, 1)
WILDCHAT_CONVERSATIONS = 1_000_000
WILDCHAT_DAYS = 390
IPV4 = r"\b(?:\d{1,3}\.){3}\d{1,3}\b"


def real_utterances() -> list[str] | None:
    """Every utterance of the real sample in ../shared, in order; None where it is absent."""
    if not SAMPLE.is_file():
        return None
    return [
        turn["content"]
        for line in SAMPLE.open(encoding="utf-8")
        for turn in json.loads(line)["conversation"]
    ]


def wildchat_mean_message_chars() -> tuple[int, str]:
    """The mean utterance length of the real sample in ../shared, or WildChat's published ~1,000."""
    texts = real_utterances()
    if texts is None:
        return 1000, "WildChat's published mean (../shared absent)"
    lengths = [len(text) for text in texts]
    return round(statistics.fmean(lengths)), f"mean of {len(lengths):,} real utterances"


def calibration_cpu_s() -> float:
    """CPU-seconds of ``import dagster`` in a fresh interpreter (0.6 on an idle 2-core VM)."""
    before = os.times()
    subprocess.run([sys.executable, "-c", "import dagster"], check=True)
    after = os.times()
    return (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )


Proc = tuple[int, float]  # a process: its pid and its start time


class TreeSampler:
    """CPU and memory of a process tree, sampled on a thread."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.every_s = every_s
        self.roots: list[psutil.Process] = []
        # Each process by (pid, start time): the kernel reuses a pid (32,768 of them here)
        # within a long run, and a new process under an old pid is not the old one.
        self.cpu: dict[Proc, float] = {}
        self.series: dict[Proc, list[tuple[float, float]]] = defaultdict(list)
        self.rss_series: dict[Proc, list[tuple[float, int]]] = defaultdict(list)
        self.kind: dict[Proc, str] = {}
        self.peak_tree_rss = 0
        # At the sample of the tree's peak: RSS by kind of process, and the tree's PSS (shared
        # pages, the libraries' code above all, divided among the processes that map them).
        self.peak_tree_by_kind: dict[str, int] = {}
        self.peak_tree_pss = 0
        self.peak_process_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, pid: int) -> None:
        self.roots.append(psutil.Process(pid))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def _sample(self) -> None:
        seen: dict[Proc, psutil.Process] = {}
        for root in list(self.roots):
            try:
                if not root.is_running():  # gone, or its pid taken by another process
                    continue
                for proc in [root, *root.children(recursive=True)]:
                    seen[(proc.pid, proc.create_time())] = proc
            except psutil.NoSuchProcess:
                continue
        tree_rss = 0
        by_kind: Counter[str] = Counter()
        alive: list[psutil.Process] = []
        for key, proc in seen.items():
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    rss = proc.memory_info().rss
                    if key not in self.kind:
                        self.kind[key] = classify(proc.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            self.cpu[key] = times.user + times.system
            now = time.time()
            self.series[key].append((now, self.cpu[key]))
            self.rss_series[key].append((now, rss))
            tree_rss += rss
            by_kind[self.kind[key]] += rss
            alive.append(proc)
            self.peak_process_rss = max(self.peak_process_rss, rss)
        if tree_rss > self.peak_tree_rss:
            self.peak_tree_rss = tree_rss
            self.peak_tree_by_kind = dict(by_kind)
            self.peak_tree_pss = sum(_pss(proc) for proc in alive)

    def _process(self, pid: int, start: float) -> Proc | None:
        """The process that had ``pid`` at ``start``: the last one started by then."""
        started = [key for key in self.series if key[0] == pid and key[1] <= start + 1]
        return max(started, key=lambda key: key[1]) if started else None

    def cpu_between(self, pid: int, start: float, end: float) -> float:
        """CPU the process used from ``start`` to ``end`` (wall clock), interpolated."""
        series = self.series.get(self._process(pid, start), [])

        def at(moment: float) -> float:
            before = [(t, c) for t, c in series if t <= moment]
            after = [(t, c) for t, c in series if t >= moment]
            if not before:
                return 0.0
            if not after:
                return before[-1][1]
            (t0, c0), (t1, c1) = before[-1], after[0]
            return c0 if t1 == t0 else c0 + (c1 - c0) * (moment - t0) / (t1 - t0)

        return max(0.0, at(end) - at(start))

    def rss_during(self, pid: int, start: float, end: float) -> tuple[int, int]:
        """The process's largest RSS from ``start`` to ``end``, and how far it grew over its RSS
        at ``start`` (memory a step keeps is still there in the steps after it: the growth
        names the step that took it)."""
        series = self.rss_series.get(self._process(pid, start), [])
        before = [rss for t, rss in series if t <= start]
        during = [rss for t, rss in series if start <= t <= end]
        if not during:
            return 0, 0
        base = before[-1] if before else during[0]
        return max(during), max(0, max(during) - base)

    def cpu_by_kind(self) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for key, seconds in self.cpu.items():
            totals[self.kind.get(key, "other")] += seconds
        return dict(totals)


def _pss(proc: psutil.Process) -> int:
    """The process's proportional set size (its RSS with each shared page divided among the
    processes that map it); 0 once it has exited."""
    try:
        return proc.memory_full_info().pss
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0


def classify(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    # The daemon and webserver that `dagster dev` starts name `--code-server-log-level`.
    if "dagster-daemon" in text or "dagster._daemon" in text:
        return "daemon"
    if "dagster-webserver" in text or "dagster_webserver" in text:
        return "webserver"
    if "api grpc" in text or "code_server" in text or "code-server start" in text:
        return "code server"
    if "wildchat_dag.warm_runs" in text:
        return "warm worker"
    if "dagster dev" in text:
        return "dagster dev"
    if "execute_run" in text or "execute_run_with_structured_logs" in text:
        return "run worker"
    if "execute_step" in text or "multiprocessing" in text or "forkserver" in text:
        return "step process"
    if "wildchat_dag.backfill" in text or "job launch" in text or "dagster-graphql" in text:
        return "CLI"
    return "other"


@dataclass
class Scenario:
    name: str
    days: int
    conversations: int
    empty_days: int = 0
    result: dict = field(default_factory=dict)


def generate(root: Path, scenario: Scenario, mean_chars: int) -> dict:
    from wildchat_dag.loggen.generator import generate_logs

    logs = root / "logs"
    if scenario.conversations:
        summary = generate_logs(
            logs,
            start_date=START,
            days=scenario.days,
            conversations_per_day=max(1, scenario.conversations // scenario.days),
            seed=17,
            mean_message_chars=mean_chars,
        )
        return {"conversations": summary.conversations, "requests": summary.requests}
    # A day that had no traffic: its folder is there and empty (ingest fails on a missing one).
    for n in range(scenario.empty_days):
        (logs / (START + timedelta(days=n)).isoformat()).mkdir(parents=True, exist_ok=True)
    return {"conversations": 0, "requests": 0}


POSTGRES = {
    "DAGSTER_PG_HOST": "127.0.0.1",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USERNAME": "postgres",
    "DAGSTER_PG_PASSWORD": "",
}


def fresh_postgres_database(name: str) -> str:
    """An empty PostgreSQL database ``bench_<name>`` for an instance (the production storage)."""
    database = f"bench_{name.replace('-', '_')}"
    drop_postgres_database(database)
    _postgres_admin(f"CREATE DATABASE {database}")
    return database


def drop_postgres_database(database: str) -> None:
    _postgres_admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def _postgres_admin(sql: str) -> None:
    import psycopg2

    con = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    con.autocommit = True
    try:
        with con.cursor() as cursor:
            cursor.execute(sql)
    finally:
        con.close()


def instance_yaml(postgres: bool) -> str:
    """The project's dagster.yaml; with ``postgres``, its storage replaced by the production
    file's (deploy/dagster.postgres.yaml), everything else (launcher, limits) kept."""
    import yaml

    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    if postgres:
        production = yaml.safe_load((REPO / "deploy" / "dagster.postgres.yaml").read_text())
        for key in ("run_storage", "event_log_storage", "schedule_storage", "instance_class"):
            config[key] = production[key]
    return yaml.safe_dump(config)


def environment(root: Path, postgres: bool = False) -> dict[str, str]:
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(instance_yaml(postgres))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WILDCHAT_", "OPENAI_")) and k != "DAGSTER_HOME"
    }
    env.update(
        DAGSTER_HOME=str(home),
        WILDCHAT_HOME=str(root),
        WILDCHAT_MODE="demo",
        WILDCHAT_START_DATE=START.isoformat(),
        WILDCHAT_RELEASE_INCLUDE_UNSCORED="1",
        WILDCHAT_AUTOMATION="off",
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    if postgres:
        env.update(POSTGRES, DAGSTER_PG_DB=fresh_postgres_database(f"backfill_{root.name}"))
    return env


def machine_cpu_s() -> float:
    times = psutil.cpu_times()
    return times.user + times.system + getattr(times, "nice", 0.0)


def free_port() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def run_cli(command: list[str], env: dict[str, str], sampler: TreeSampler) -> tuple[int, str]:
    """Run a CLI of the project, its CPU counted with the rest."""
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sampler.watch(process.pid)
    output, _ = process.communicate()
    return process.returncode, output


def run_scenario(scenario: Scenario, work: Path, mean_chars: int, postgres: bool) -> dict:
    root = work / scenario.name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    started = time.perf_counter()
    corpus = generate(root, scenario, mean_chars)
    generated_s = time.perf_counter() - started
    total_days = scenario.days + scenario.empty_days
    last = START + timedelta(days=total_days - 1)
    days = [START.isoformat(), last.isoformat()]
    env = environment(root, postgres)
    sampler = TreeSampler()
    log = (root / "daemon.log").open("w")
    port = free_port()
    daemon = subprocess.Popen(
        ["dagster", "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", port],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    sampler.watch(daemon.pid)
    sampler.start()
    machine_started = machine_cpu_s()
    wall_started = time.perf_counter()
    try:
        # The command skips days without logs; the empty scenarios price days that are
        # materialized anyway (as the nightly schedule does).
        empty = ["--include-empty-days"] if scenario.empty_days else []
        backfill = [sys.executable, "-m", "wildchat_dag.backfill", *days, *empty]
        returncode, output = run_cli(backfill, env, sampler)
        if returncode or "backfill " not in output:
            raise RuntimeError(f"the backfill command submitted nothing:\n{output}")
        backfill_status = wait_for_backfill(env)
        backfill_s = time.perf_counter() - wall_started
        launch = ["dagster", "job", "launch", "-j", "wildchat_release", "-w", "workspace.yaml"]
        returncode, output = run_cli(launch, env, sampler)
        if returncode:
            raise RuntimeError(f"the release launch failed:\n{output}")
        release_status = wait_for_runs(env, job="wildchat_release")
        wall_s = time.perf_counter() - wall_started
    finally:
        sampler.stop()
        machine_cpu = machine_cpu_s() - machine_started
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, 9)
        log.close()
    # A failed run measures a pipeline that stopped early: its numbers would flatter it.
    if backfill_status != "COMPLETED_SUCCESS" or not release_status.startswith("1/1"):
        raise RuntimeError(
            f"{scenario.name}: backfill {backfill_status}, release {release_status}; "
            f"see {root / 'daemon.log'} and the instance at {root / 'dagster_home'}"
        )
    steps = step_table(env)
    executions = executions_memory(steps, sampler)
    return {
        **corpus,
        "days": scenario.days,
        "empty_days": scenario.empty_days,
        "generate_s": generated_s,
        "backfill_status": backfill_status,
        "release_status": release_status,
        "backfill_wall_s": backfill_s,
        "wall_s": wall_s,
        "cpu_s": sum(sampler.cpu.values()),
        # Everything the machine ran meanwhile: with --postgres, the database server's work,
        # which is outside the tree; on a machine running nothing else, an upper bound.
        "machine_cpu_s": machine_cpu,
        "cpu_by_kind": sampler.cpu_by_kind(),
        "step_cpu": step_cpu(steps, sampler),
        "step_memory": step_memory(executions),
        "memory_growth": largest_growths(executions),
        "peak_tree_rss_mb": sampler.peak_tree_rss / 2**20,
        "peak_process_rss_mb": sampler.peak_process_rss / 2**20,
        "peak_tree_pss_mb": sampler.peak_tree_pss / 2**20,
        "peak_tree_by_kind_mb": {k: v / 2**20 for k, v in sampler.peak_tree_by_kind.items()},
        "steps": steps,
        "occupancy": run_occupancy(env),
        "runs": count_runs(env),
        "warehouse_mb": (root / "warehouse.duckdb").stat().st_size / 2**20
        if (root / "warehouse.duckdb").exists()
        else 0.0,
        "logs": str(root / "logs"),
    }


def _instance(env: dict[str, str]):
    from dagster import DagsterInstance

    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_")})
    return DagsterInstance.get()


def wait_for_backfill(env: dict[str, str], timeout_s: float = 6 * 3600) -> str:
    from dagster._core.execution.backfill import BulkActionStatus

    deadline = time.monotonic() + timeout_s
    with _instance(env) as instance:
        while time.monotonic() < deadline:
            backfills = instance.get_backfills()
            if backfills and backfills[0].status != BulkActionStatus.REQUESTED:
                wait_for_runs(env)
                return backfills[0].status.value
            time.sleep(1.0)
    raise TimeoutError("the backfill did not finish")


def wait_for_runs(env: dict[str, str], job: str | None = None, timeout_s: float = 3600) -> str:
    from dagster import DagsterRunStatus, RunsFilter

    finished = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + timeout_s
    with _instance(env) as instance:
        while time.monotonic() < deadline:
            runs = instance.get_runs(RunsFilter(job_name=job) if job else None)
            if runs and all(r.status in finished for r in runs):
                failed = [r.run_id for r in runs if r.status != DagsterRunStatus.SUCCESS]
                return f"{len(runs) - len(failed)}/{len(runs)} runs ok"
            time.sleep(1.0)
    raise TimeoutError("runs did not finish")


def count_runs(env: dict[str, str]) -> int:
    with _instance(env) as instance:
        return len(instance.get_runs())


def step_table(env: dict[str, str]) -> dict[str, dict]:
    """Per step: executions, wall seconds (start to end), rows written, and the pids it ran in."""
    from dagster import DagsterEventType

    table: dict[str, dict] = defaultdict(
        lambda: {"n": 0, "wall_s": 0.0, "rows": 0, "pids": set(), "spans": [], "partitions": []}
    )
    with _instance(env) as instance:
        for run in instance.get_runs():
            starts: dict[str, float] = {}
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is None or event.step_key is None:
                    continue
                row = table[event.step_key]
                if event.event_type == DagsterEventType.STEP_START:
                    starts[event.step_key] = entry.timestamp
                    row["pids"].add(event.pid)
                elif event.event_type in (
                    DagsterEventType.STEP_SUCCESS,
                    DagsterEventType.STEP_FAILURE,
                ):
                    row["n"] += 1
                    began = starts.pop(event.step_key, entry.timestamp)
                    row["wall_s"] += entry.timestamp - began
                    row["spans"].append((event.pid, began, entry.timestamp))
                    row["partitions"].append(run.tags.get("dagster/partition", "-"))
                elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                    metadata = event.event_specific_data.materialization.metadata
                    count = metadata.get("row_count")
                    if count is not None:
                        row["rows"] += int(count.value)
    return dict(table)


def run_occupancy(env: dict[str, str], slots: int = 2) -> dict[str, float]:
    """Where a backfill's wall time went, from the run records: how many runs executed on
    average, and for how long fewer than ``slots`` did while a run was queued (the queue's
    dequeue interval and launch) or while none was (waiting for the backfill daemon to submit
    the next runs, as their parents finish)."""
    with _instance(env) as instance:
        records = instance.get_run_records()
    runs = [
        (r.create_timestamp.timestamp(), r.start_time, r.end_time)
        for r in records
        if r.start_time and r.end_time and r.dagster_run.tags.get("dagster/backfill")
    ]
    if not runs:
        return {}
    events = sorted(
        [(created, "queued") for created, _, _ in runs]
        + [(started, "started") for _, started, _ in runs]
        + [(ended, "ended") for _, _, ended in runs]
    )
    queued = executing = 0
    spent = {"slot free, a run queued": 0.0, "slot free, none queued": 0.0, "all slots busy": 0.0}
    executing_s = 0.0
    last = events[0][0]
    for moment, kind in events:
        span = moment - last
        executing_s += executing * span
        if executing >= slots:
            spent["all slots busy"] += span
        elif queued:
            spent["slot free, a run queued"] += span
        else:
            spent["slot free, none queued"] += span
        last = moment
        if kind == "queued":
            queued += 1
        elif kind == "started":
            queued, executing = queued - 1, executing + 1
        else:
            executing -= 1
    total = events[-1][0] - events[0][0]
    return {
        "span_s": total,
        "mean_runs_executing": executing_s / total if total else 0.0,
        "mean_run_s": sum(e - s for _, s, e in runs) / len(runs),
        **{f"{k} s": v for k, v in spent.items()},
    }


def step_cpu(steps: dict[str, dict], sampler: TreeSampler) -> dict[str, float]:
    """CPU per step: its process's CPU from its start event to its end event (a run's steps
    share the run's process and run one after another)."""
    return {
        key: sum(sampler.cpu_between(pid, began, ended) for pid, began, ended in row["spans"])
        for key, row in steps.items()
    }


def executions_memory(steps: dict[str, dict], sampler: TreeSampler) -> list[dict[str, object]]:
    """Each step execution's partition, the largest RSS of its process while it ran and how far
    that RSS grew during it, in MB."""
    return [
        {
            "step": key,
            "partition": partition,
            "peak_mb": peak / 2**20,
            "growth_mb": growth / 2**20,
            "wall_s": round(ended - began, 1),
        }
        for key, row in steps.items()
        for (pid, began, ended), partition in zip(row["spans"], row["partitions"], strict=True)
        for peak, growth in [sampler.rss_during(pid, began, ended)]
    ]


def step_memory(executions: list[dict[str, object]]) -> dict[str, tuple[float, float]]:
    """Per step, over its executions: the largest RSS of its process while it ran, and the most
    that RSS grew during one execution, in MB."""
    memory: dict[str, tuple[float, float]] = {}
    for e in executions:
        peak, growth = memory.get(e["step"], (0.0, 0.0))
        memory[e["step"]] = (max(peak, e["peak_mb"]), max(growth, e["growth_mb"]))
    return memory


def largest_growths(executions: list[dict[str, object]], n: int = 8) -> list[dict[str, object]]:
    """The executions whose process grew most, with their partition: whether the memory goes
    with the day's volume, the table's size so far, or one day."""
    return sorted(executions, key=lambda e: -e["growth_mb"])[:n]


def floor_pass(logs: Path) -> dict:
    """Read every file, hash every message, one regex over all text: the least any pipeline
    that reads the text once must pay. File by file: the logs of a large run do not fit in
    memory as Python strings (250k conversations: over 20 GB)."""
    import polars as pl

    started_cpu, started = time.process_time(), time.perf_counter()
    texts_n = characters = hits = 0
    for path in sorted(logs.rglob("*.jsonl*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            frame = pl.read_ndjson(handle.read(), infer_schema_length=None)
        messages = frame.select(pl.col("messages").explode().struct.field("content"))
        series = pl.concat([messages.to_series(), frame["response"]]).rename("text")
        for text in series.to_list():
            hashlib.sha256(text.encode()).digest()
        texts_n += series.len()
        characters += int(series.str.len_chars().sum())
        hits += int(series.str.contains(IPV4).sum())
    return {
        "texts": texts_n,
        "characters": characters,
        "ip_hits": hits,
        "cpu_s": time.process_time() - started_cpu,
        "wall_s": time.perf_counter() - started,
    }


def print_scenario(name: str, r: dict) -> None:
    print(
        f"\n## {name}: {r['conversations']:,} conversations, {r['requests']:,} requests, "
        f"{r['days']} days with logs + {r['empty_days']} without"
    )
    print(
        f"backfill: {r['backfill_status']}; release: {r['release_status']}; {r['runs']} runs; "
        f"wall {r['wall_s']:.1f} s (backfill {r['backfill_wall_s']:.1f} s); "
        f"CPU {r['cpu_s']:.1f} s (the whole machine: {r['machine_cpu_s']:.1f} s); "
        f"peak RSS {r['peak_tree_rss_mb']:.0f} MB over the tree, "
        f"{r['peak_process_rss_mb']:.0f} MB in one process; DuckDB {r['warehouse_mb']:.0f} MB"
    )
    kinds = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["cpu_by_kind"].items()))
    print(f"CPU-s by process: {kinds}")
    at_peak = ", ".join(
        f"{k} {v:,.0f}" for k, v in sorted(r["peak_tree_by_kind_mb"].items(), key=lambda kv: -kv[1])
    )
    print(
        f"At the tree's peak, RSS MB by process: {at_peak}; the tree's PSS then "
        f"{r['peak_tree_pss_mb']:,.0f} MB"
    )
    print(
        "\n| step | runs | wall s | CPU s | rows | rows/s | peak RSS MB | RSS growth MB |"
        "\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for key, row in sorted(r["steps"].items(), key=lambda kv: -kv[1]["wall_s"]):
        cpu = r["step_cpu"].get(key)
        rate = row["rows"] / row["wall_s"] if row["wall_s"] and row["rows"] else 0
        peak, growth = r["step_memory"].get(key, (0.0, 0.0))
        print(
            f"| {key} | {row['n']} | {row['wall_s']:.1f} | "
            f"{cpu:.1f} | {row['rows']:,} | {rate:,.0f} | {peak:,.0f} | {growth:,.0f} |"
        )
    occupancy = r.get("occupancy") or {}
    if occupancy:
        spans = ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in occupancy.items() if k.endswith(" s"))
        print(
            f"\nThe backfill's runs: {occupancy['mean_runs_executing']:.2f} executing on average "
            f"over {occupancy['span_s']:.0f} s, {occupancy['mean_run_s']:.1f} s each; {spans}"
        )
    print("\nLargest RSS growth in one execution (step, partition, peak MB, growth MB, wall s):")
    for e in r["memory_growth"]:
        print(
            f"- {e['step']} {e['partition']}: "
            f"{e['peak_mb']:,.0f} / +{e['growth_mb']:,.0f}, {e['wall_s']} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=10, help="days with logs, both sizes")
    parser.add_argument(
        "--conversations",
        type=int,
        nargs=2,
        default=(2_000, 8_000),
        metavar=("SMALL", "LARGE"),
        help="conversations in all, at the two sizes",
    )
    parser.add_argument(
        "--empty-days",
        type=int,
        default=6,
        help="days without logs of the larger empty scenario; the other has a third of them",
    )
    parser.add_argument(
        "--only", choices=("small", "large", "empty-few", "empty-many"), action="append"
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="store the instance in the local PostgreSQL (the production storage) not SQLite",
    )
    parser.add_argument("--work", type=Path, help="keep the scenarios here (default: temporary)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    mean_chars, source = wildchat_mean_message_chars()
    scenarios = [
        Scenario("small", args.days, args.conversations[0]),
        Scenario("large", args.days, args.conversations[1]),
        # Two backfills of days without logs, forced (--include-empty-days): their difference
        # is the cost of a day, and what is left the one-off cost of any backfill (the
        # workers' start, the CLIs, the release cut).
        Scenario("empty-few", 0, 0, empty_days=max(1, args.empty_days // 3)),
        Scenario("empty-many", 0, 0, empty_days=args.empty_days),
    ]
    scenarios = [s for s in scenarios if not args.only or s.name in args.only]
    print(f"# bench_backfill: messages of {mean_chars:,} characters on average ({source})")
    print(f"machine: {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB")
    print(f"instance storage: {'PostgreSQL' if args.postgres else 'SQLite'}")
    # The machine is shared: a fixed piece of work, timed now, tells how fast it is today.
    print(f"calibration: `import dagster` takes {calibration_cpu_s():.2f} CPU-s")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_backfill_"))
    results: dict[str, dict] = {}
    for scenario in scenarios:
        results[scenario.name] = run_scenario(scenario, work, mean_chars, args.postgres)
        print_scenario(scenario.name, results[scenario.name])
    summarize(results, work)
    if args.json:
        args.json.write_text(json.dumps(results, default=sorted, indent=1))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


def print_volume_by_step(small: dict, large: dict) -> None:
    """Where the cost of a conversation goes: each step's CPU at the large size less at the
    small one, per conversation added."""
    added = large["conversations"] - small["conversations"]
    rows = sorted(
        (
            (key, (large["step_cpu"].get(key, 0.0) - small["step_cpu"].get(key, 0.0)) / added)
            for key in large["step_cpu"].keys() | small["step_cpu"].keys()
        ),
        key=lambda row: -row[1],
    )
    print("\n| step | ms CPU per conversation added |\n|---|---:|")
    for key, cost in rows:
        if abs(cost) >= 0.005e-3:
            print(f"| {key} | {cost * 1000:.2f} |")


def summarize(results: dict[str, dict], work: Path) -> None:
    print("\n## Summary\n")
    print("| scenario | conversations | days | runs | wall s | CPU s | CPU s / 1k conversations |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        per_k = r["cpu_s"] / r["conversations"] * 1000 if r["conversations"] else 0.0
        days = r["days"] + r["empty_days"]
        print(
            f"| {name} | {r['conversations']:,} | {days} | {r['runs']} | {r['wall_s']:.1f} | "
            f"{r['cpu_s']:.1f} | {per_k:.2f} |"
        )
    one_off = empty_day = None
    if {"empty-few", "empty-many"} <= results.keys():
        few, many = results["empty-few"], results["empty-many"]
        empty_day = (many["cpu_s"] - few["cpu_s"]) / (many["empty_days"] - few["empty_days"])
        one_off = few["cpu_s"] - empty_day * few["empty_days"]
        print(
            f"\nempty day, materialized anyway: {empty_day:.2f} CPU-s; one-off cost of a "
            f"backfill and release cut: {one_off:.1f} CPU-s. The backfill command skips days "
            "without logs: then an empty day costs nothing but a line of its output."
        )
    if {"small", "large"} <= results.keys():
        small, large = results["small"], results["large"]
        per_conv = (large["cpu_s"] - small["cpu_s"]) / (
            large["conversations"] - small["conversations"]
        )
        print(
            f"\nvolume cost: {per_conv * 1000:.2f} ms CPU per conversation (target <= 3), "
            f"from the two sizes over the same {small['days']} days"
        )
        print_volume_by_step(small, large)
        if one_off is not None:
            fixed = (small["cpu_s"] - per_conv * small["conversations"] - one_off) / small["days"]
            cpu_1m = one_off + fixed * WILDCHAT_DAYS + per_conv * WILDCHAT_CONVERSATIONS
            ratio = large["wall_s"] / large["cpu_s"]
            print(
                f"fixed cost: {fixed:.2f} CPU-s per day with logs (target <= 5)\n"
                f"projection, {WILDCHAT_CONVERSATIONS:,} conversations over {WILDCHAT_DAYS} days: "
                f"{cpu_1m:,.0f} CPU-s = {one_off:.0f} once + {fixed * WILDCHAT_DAYS:,.0f} for "
                f"the days + {per_conv * WILDCHAT_CONVERSATIONS:,.0f} for the conversations; "
                f"{cpu_1m / 2 / 60:.0f} min of wall on 2 busy cores (target < 60), "
                f"{cpu_1m * ratio / 60:.0f} min at the large run's wall/CPU ratio ({ratio:.2f})"
            )
    if "large" in results:
        large = results["large"]
        floor = floor_pass(Path(large["logs"]))
        floor_per_conv = floor["cpu_s"] / large["conversations"]
        whole_per_conv = large["cpu_s"] / large["conversations"]
        ratios = f"the whole run is {whole_per_conv / floor_per_conv:.1f}x the floor"
        if "small" in results:
            ratios = f"the pipeline's volume cost is {per_conv / floor_per_conv:.1f}x it; {ratios}"
        print(
            f"floor (read, sha256, one regex; {floor['texts']:,} texts, "
            f"{floor['characters']:,} characters, in this process): {floor['cpu_s']:.1f} CPU-s, "
            f"{floor['wall_s']:.1f} s wall, {floor_per_conv * 1000:.2f} ms per conversation; "
            f"{ratios}"
        )


if __name__ == "__main__":
    main()
