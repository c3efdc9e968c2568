"""The production topology as processes: a gRPC code server, the webserver and the daemon, on a
Dagster instance in the local PostgreSQL (deploy/dagster.postgres.yaml)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres"}
PSQL = ("psql", "-h", PG["host"], "-p", PG["port"], "-U", PG["user"], "-d", "postgres")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise AssertionError(f"GraphQL {error.code}: {error.read()[:2000]!r}") from error
    assert "errors" not in body, body["errors"]
    return body["data"]


def wait_for(what: str, probe: Callable[[], object], timeout_s: float, every_s: float = 2.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
        time.sleep(every_s)


def psql(sql: str) -> None:
    subprocess.run(
        [*PSQL, "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        capture_output=True,
    )


def postgres_or_skip() -> None:
    try:
        psql("SELECT 1")
    except (OSError, subprocess.CalledProcessError) as error:
        message = f"PostgreSQL at {PG['host']}:{PG['port']} (user {PG['user']}) is needed: {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def fresh_database() -> Iterator[str]:
    name = f"wildchat_test_{uuid.uuid4().hex[:12]}"
    psql(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Deployment:
    """Started processes and the ports they listen on; stopped, process groups and all."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.processes: dict[str, subprocess.Popen] = {}
        self.webserver_port = free_port()

    def start(self, name: str, *command: str) -> None:
        log = (self.logs / f"{name}.log").open("w")
        self.processes[name] = subprocess.Popen(
            [str(BIN / command[0]), *command[1:]],
            cwd=self.env["WILDCHAT_HOME"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # The run workers are children of the gRPC server: stopping the group stops them.
            start_new_session=True,
        )

    def assert_alive(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} exited: {self.log_tail(name)}"

    def log_tail(self, name: str, chars: int = 3000) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)

    def query(self, query: str, variables: dict | None = None) -> dict:
        return graphql(self.webserver_port, query, variables)


@contextmanager
def production_deployment(home: Path, database: str, **env_vars: str) -> Iterator[Deployment]:
    """gRPC server, webserver and daemon, loaded through deploy/workspace.grpc.yaml."""
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "dagster.postgres.yaml", dagster_home / "dagster.yaml")
    grpc_port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "WILDCHAT_HOME": str(home),
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_PORT": PG["port"],
        "DAGSTER_PG_USERNAME": PG["user"],
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": database,
        "DAGSTER_GRPC_HOST": "127.0.0.1",
        "DAGSTER_GRPC_PORT": str(grpc_port),
        "PYTHONPATH": str(REPO),
        **env_vars,
    }
    subprocess.run(
        [str(BIN / "dagster"), "instance", "migrate"], env=env, check=True, capture_output=True
    )
    deployment = Deployment(env, home)
    workspace = str(REPO / "deploy" / "workspace.grpc.yaml")
    try:
        deployment.start(
            "grpc",
            "dagster",
            "api",
            "grpc",
            "-m",
            "wildchat_dag.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(grpc_port),
        )
        wait_for("the gRPC server", lambda: _grpc_healthy(env, grpc_port, deployment), 180, 3)
        deployment.start(
            "webserver",
            "dagster-webserver",
            "-w",
            workspace,
            "-h",
            "127.0.0.1",
            "-p",
            str(deployment.webserver_port),
        )
        deployment.start("daemon", "dagster-daemon", "run", "-w", workspace)
        wait_for("the webserver", lambda: _serving(deployment), 180, 2)
        yield deployment
    finally:
        deployment.stop()


def _grpc_healthy(env: dict[str, str], port: int, deployment: Deployment) -> bool:
    deployment.assert_alive()
    check = subprocess.run(
        [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)],
        env=env,
        capture_output=True,
    )
    return check.returncode == 0


def _serving(deployment: Deployment) -> bool:
    deployment.assert_alive()
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{deployment.webserver_port}/server_info", timeout=5
        ):
            return True
    except OSError:
        return False


@contextmanager
def webserver_process(
    args: list[str], env: dict[str, str], cwd: Path = REPO, timeout_s: float = 120
) -> Iterator[int]:
    """``dagster-webserver`` with ``args`` (which must not set the host or port), listening on a
    free loopback port; yields the port once ``/server_info`` answers."""
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "dagster-webserver"), *args, "-h", "127.0.0.1", "-p", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def serving() -> bool:
        assert server.poll() is None, f"the webserver exited ({server.returncode})"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                return True
        except OSError:
            return False

    try:
        wait_for("the webserver", serving, timeout_s, 0.5)
        yield port
    finally:
        # The whole group: the webserver and the code server it started for workspace.yaml.
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
