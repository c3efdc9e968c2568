"""Issue 16: who can reach the deployment, and what they can do with it.

The webserver had no authentication, was published on every interface, and let anyone launch
`openai_moderation` with a run config of their own (`api_key: {env: WILDCHAT_IP_SALT}` and their
own `base_url`), which sent them the IP salt and the raw texts. Now:

- the operator webserver is published on the host's loopback interface only, and `scripts/ui.sh`
  binds 127.0.0.1 unless told otherwise;
- remote viewers reach a `dagster-webserver --read-only` only through an authenticating proxy
  (deploy/proxy/nginx.conf), the one port published beyond the loopback interface;
- the secrets are compose secrets (files), read by the image's entrypoint, and only the code
  server gets the pipeline's;
- each service mounts only what it needs, runs as a fixed non-root uid on a read-only root
  filesystem without capabilities, and every image is pinned to an exact version.

Docker does not run here, so docker-compose.yml is checked as a file. What can run is run for
real: the viewer's webserver command (refusing the hostile launch, with a listener standing in
for the attacker's base_url), the proxy's nginx config in front of it (when nginx is installed),
the image's entrypoint, and scripts/ui.sh's command line.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
import yaml

from wildchat_dag.defs.moderation.resource import API_KEY_FILE_ENV_VAR
from wildchat_dag_tests import test_deployment_files as files
from wildchat_dag_tests.deployment import free_port, graphql, wait_for, webserver_process
from wildchat_dag_tests.test_webserver import dagster_env

REPO = files.REPO
NGINX_CONF = REPO / "deploy" / "proxy" / "nginx.conf"
ENTRYPOINT = REPO / "deploy" / "entrypoint.sh"
UI_SCRIPT = REPO / "scripts" / "ui.sh"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
NGINX_INSTALL = "apt-get install -y --no-install-recommends nginx-light"

# The secrets, by the variable the code reads, and the services that may have each.
PIPELINE_SECRETS = {"WILDCHAT_IP_SALT": {"user_code"}, "OPENAI_API_KEY": {"user_code"}}
SECRET_VARIABLES = {*PIPELINE_SECRETS, "DAGSTER_PG_PASSWORD", "POSTGRES_PASSWORD"}
PROXY = "proxy"
VIEWER = "viewer"
OPERATOR = "webserver"
DATA_VOLUME = "wildchat_data"
LOCATION = {"repositoryLocationName": "wildchat_dag", "repositoryName": "__repository__"}


def services() -> dict[str, dict]:
    return files.compose()["services"]


# -- ports and networks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Port:
    address: str | None
    published: str
    target: str


def published_ports(name: str) -> list[Port]:
    ports = []
    for entry in services()[name].get("ports", []):
        if isinstance(entry, dict):
            ports.append(Port(entry.get("host_ip"), str(entry["published"]), str(entry["target"])))
            continue
        parts = default(str(entry)).rsplit("/", 1)[0].split(":")
        address = ":".join(parts[:-2]) or None if len(parts) > 2 else None
        published = parts[-2] if len(parts) > 1 else ""
        ports.append(Port(address, published, parts[-1]))
    return ports


def default(value: str) -> str:
    """A compose value with each ``${VAR:-default}`` replaced by its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_only_the_proxy_publishes_a_port_beyond_the_loopback_interface():
    for name in services():
        for port in published_ports(name):
            if name == PROXY:
                continue
            assert port.address == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    # The database and the code server are reached on the internal network only.
    for name in ("postgres", "user_code", VIEWER, "daemon"):
        assert not published_ports(name), f"{name} publishes {published_ports(name)}"
    (operator,) = published_ports(OPERATOR)
    assert operator.target == files.option(files.command(OPERATOR), "-p", "--port")
    (proxy,) = published_ports(PROXY)
    listen = nginx_directives(parse_nginx(NGINX_CONF.read_text()), "listen")
    assert [args[0] for args in listen] == [default(proxy.target)]
    assert all("ssl" in args for args in listen), "the proxy serves HTTPS only"


def networks(name: str) -> set[str]:
    found = services()[name].get("networks", ["default"])
    return set(found)  # a list, or a mapping of network -> options


def test_the_proxy_reaches_the_viewer_and_nothing_else():
    declared = files.compose()["networks"]
    for name in services():
        assert networks(name) <= set(declared), f"{name}: undeclared network"
    for name in ("postgres", "user_code", OPERATOR, "daemon"):
        assert not networks(PROXY) & networks(name), f"the proxy shares a network with {name}"
    assert networks(PROXY) & networks(VIEWER)
    # The database's network has no route out; only user_code (the OpenAI API) has one.
    (backend,) = networks("postgres")
    assert declared[backend].get("internal") is True
    for shared in networks(PROXY) & networks(VIEWER):
        assert declared[shared].get("internal") is True
    (upstream,) = nginx_directives(parse_nginx(NGINX_CONF.read_text()), "server", within="upstream")
    port = files.option(files.command(VIEWER), "-p", "--port")
    assert upstream == [f"{VIEWER}:{port}"]


# -- users, privileges, mounts ---------------------------------------------------------------------


def dockerfile_user() -> str:
    users = re.findall(r"^USER\s+(\S+)", files.DOCKERFILE.read_text(), re.M)
    assert users, "the Dockerfile never leaves root"
    return users[-1]


def test_no_service_runs_as_root_or_keeps_privileges():
    image_user = dockerfile_user()
    uid = image_user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    useradd = re.search(r"useradd\b[^\n]*?--uid (\d+)", files.DOCKERFILE.read_text())
    assert useradd and useradd.group(1) == uid, "USER is not the uid the Dockerfile creates"
    for name, svc in services().items():
        user = str(svc.get("user", ""))
        assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), f"{name} runs as {user or 'the default'}"
        if name in files.DAGSTER_SERVICES:
            assert user == image_user
        assert svc.get("read_only") is True, f"{name}'s root filesystem is writable"
        assert svc.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        assert not svc.get("privileged") and not svc.get("cap_add"), name


def mounts(name: str) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of each of the service's volumes."""
    found = []
    for volume in services()[name].get("volumes", []):
        if isinstance(volume, dict):
            found.append((volume["source"], volume["target"], bool(volume.get("read_only"))))
        else:
            source, target, *mode = volume.split(":")
            found.append((source, target, "ro" in ",".join(mode).split(",")))
    return found


def test_each_service_mounts_only_what_it_needs():
    for name in services():
        for source, _target, read_only in mounts(name):
            if source.startswith((".", "/", "~")):
                assert read_only, f"{name} mounts {source} writable"
    # The raw logs and the DuckDB file: only where the runs execute.
    with_data = [n for n in services() if any(s == DATA_VOLUME for s, _, _ in mounts(n))]
    assert with_data == ["user_code"]
    data = files.dockerfile().env["WILDCHAT_HOME"]
    assert (DATA_VOLUME, data, False) in mounts("user_code")
    # The compute logs: written by the runs, shown (never written) by the operator webserver.
    logs = str(PurePosixPath(files.dockerfile().env["DAGSTER_HOME"]) / "storage")
    (written,) = [m for m in mounts("user_code") if m[1] == logs]
    assert not written[2]
    assert mounts(OPERATOR) == [(written[0], logs, True)]
    # The viewer and the daemon mount nothing; the proxy its config, read-only.
    assert mounts(VIEWER) == [] and mounts("daemon") == []
    assert mounts(PROXY) == [("./deploy/proxy/nginx.conf", "/etc/nginx/nginx.conf", True)]


# -- images ----------------------------------------------------------------------------------------

# An exact release: major.minor.patch, or major.minor for PostgreSQL (whose releases are two
# numbers), optionally followed by a variant (-slim-bookworm, -alpine); or a digest.
EXACT = re.compile(r"\d+\.\d+(\.\d+)?(-[a-z0-9.]+)*(@sha256:[0-9a-f]{64})?|.*@sha256:[0-9a-f]{64}")


def tag(image: str) -> str:
    name, _, version = image.rpartition(":") if "@" not in image else (image, "", image)
    assert name and version, f"{image} has no tag"
    return version


def test_every_image_is_pinned_to_an_exact_version():
    images = {name: svc["image"] for name, svc in services().items()}
    froms = re.findall(r"^FROM\s+(\S+)", files.DOCKERFILE.read_text(), re.M)
    assert froms
    for image in [*images.values(), *froms]:
        version = tag(image)
        assert EXACT.fullmatch(version), f"{image} is not pinned to an exact version"
    assert re.fullmatch(r"python:3\.11\.\d+-.*", froms[0])
    assert re.fullmatch(r"nginxinc/nginx-unprivileged:\d+\.\d+\.\d+-.*", images[PROXY])
    # The image built here carries the project's version, and runs say which one.
    version = files.pyproject()["project"]["version"]
    for name in files.DAGSTER_SERVICES:
        assert images[name] == f"wildchat-dag:{version}"
    assert files.environment("user_code")["DAGSTER_CURRENT_IMAGE"] == images["user_code"]


# -- secrets ---------------------------------------------------------------------------------------


def entrypoint_variables() -> list[str]:
    match = re.search(r"^for name in ([\w ]+); do", ENTRYPOINT.read_text(), re.M)
    assert match, "deploy/entrypoint.sh does not list the variables it reads from files"
    return match.group(1).split()


def secret_of(name: str, path: str) -> str:
    """The compose secret that ``path`` is in the service ``name``."""
    assert path.startswith("/run/secrets/"), path
    secret = path.removeprefix("/run/secrets/")
    listed = services()[name].get("secrets", [])
    assert secret in [s if isinstance(s, str) else s["source"] for s in listed], (name, secret)
    return secret


def test_secrets_are_files_given_only_to_the_services_that_need_them():
    declared = files.compose()["secrets"]
    for secret, spec in declared.items():
        assert set(spec) == {"file"}, f"secret {secret} is not a file"
        assert spec["file"].endswith(f"/{secret}")
    # Nothing secret is interpolated from the host's environment into this file.
    assert not files.compose_variables() & SECRET_VARIABLES
    # Read from their files: by the entrypoint (exported for Dagster's env:), by the postgres
    # image, or by the openai resource itself (the key is in no environment).
    readable = {f"{var}_FILE" for var in entrypoint_variables()}
    assert readable == {"WILDCHAT_IP_SALT_FILE", "DAGSTER_PG_PASSWORD_FILE"}
    readable |= {"POSTGRES_PASSWORD_FILE", API_KEY_FILE_ENV_VAR}
    holders: dict[str, set[str]] = {}
    for name in services():
        env = files.environment(name)
        assert not set(env) & SECRET_VARIABLES, f"{name}: a secret in plain environment"
        for key, value in env.items():
            if key.endswith("_FILE"):
                secret = secret_of(name, value)
                holders.setdefault(key.removesuffix("_FILE"), set()).add(name)
                assert key in readable, f"{name}: nothing reads {key}"
                assert secret in declared
    for variable, allowed in PIPELINE_SECRETS.items():
        assert holders.get(variable) == allowed, (variable, holders.get(variable))
    # Each Dagster service logs in with the database's own password file, and that is all the
    # viewer, the operator webserver and the daemon get.
    pg = secret_of("postgres", files.environment("postgres")["POSTGRES_PASSWORD_FILE"])
    for name in files.DAGSTER_SERVICES:
        assert secret_of(name, files.environment(name)["DAGSTER_PG_PASSWORD_FILE"]) == pg
        if name != "user_code":
            assert services()[name]["secrets"] == [pg]
    assert set(services()[PROXY]["secrets"]) == {
        secret_of(PROXY, path) for path in nginx_secret_paths(parse_nginx(NGINX_CONF.read_text()))
    }


def run_entrypoint(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ENTRYPOINT), "env", "-0"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )


def exported(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return dict(item.split("=", 1) for item in result.stdout.split("\0") if item)


def test_the_entrypoint_reads_the_secret_files(tmp_path):
    salt, key, password, empty = (tmp_path / n for n in ("salt", "key", "password", "empty"))
    salt.write_text("a-salt with spaces $and 'quotes'\n")
    key.write_text("sk-test\n")
    password.write_text("pg\n")
    empty.write_text("")
    env = exported(
        run_entrypoint(
            tmp_path,
            WILDCHAT_IP_SALT_FILE=str(salt),
            OPENAI_API_KEY_FILE=str(key),
            DAGSTER_PG_PASSWORD_FILE=str(password),
        )
    )
    assert env["WILDCHAT_IP_SALT"] == "a-salt with spaces $and 'quotes'"
    assert env["DAGSTER_PG_PASSWORD"] == "pg"
    assert "WILDCHAT_IP_SALT_FILE" not in env and "DAGSTER_PG_PASSWORD_FILE" not in env
    # The key stays in its file, for the openai resource to read when a step runs.
    assert "OPENAI_API_KEY" not in env and env[API_KEY_FILE_ENV_VAR] == str(key)

    # An empty key file: OpenAI moderation off. An empty password: set, but empty.
    env = exported(
        run_entrypoint(
            tmp_path, OPENAI_API_KEY_FILE=str(empty), DAGSTER_PG_PASSWORD_FILE=str(empty)
        )
    )
    assert "OPENAI_API_KEY" not in env and API_KEY_FILE_ENV_VAR not in env
    assert env["DAGSTER_PG_PASSWORD"] == ""
    both = run_entrypoint(tmp_path, OPENAI_API_KEY="x", OPENAI_API_KEY_FILE=str(key))
    assert both.returncode == 64

    # No salt: the container stops at once (and compose starts nothing that depends on it).
    no_salt = run_entrypoint(tmp_path, WILDCHAT_IP_SALT_FILE=str(empty))
    assert no_salt.returncode == 65 and "WILDCHAT_IP_SALT" in no_salt.stderr
    both = run_entrypoint(tmp_path, WILDCHAT_IP_SALT="x", WILDCHAT_IP_SALT_FILE=str(salt))
    assert both.returncode == 64 and "only one" in both.stderr
    # What docker does with a missing secret file: a directory in its place.
    missing = run_entrypoint(tmp_path, WILDCHAT_IP_SALT_FILE=str(tmp_path))
    assert missing.returncode == 66 and "not a readable file" in missing.stderr


# -- the proxy's config ----------------------------------------------------------------------------


@dataclass
class Directive:
    name: str
    args: list[str]
    children: list[Directive] | None = None
    parents: tuple[str, ...] = field(default_factory=tuple)


def parse_nginx(text: str) -> list[Directive]:
    tokens = re.findall(
        r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[{};]|[^\s{};"\']+', re.sub(r"#.*", "", text)
    )
    stack: list[list[Directive]] = [[]]
    names: list[str] = []
    words: list[str] = []
    for token in tokens:
        if token == ";":
            stack[-1].append(Directive(words[0], words[1:], None, tuple(names)))
            words = []
        elif token == "{":
            block = Directive(words[0], words[1:], [], tuple(names))
            stack[-1].append(block)
            stack.append(block.children)  # type: ignore[arg-type]
            names.append(words[0])
            words = []
        elif token == "}":
            assert not words, f"unterminated directive {words}"
            stack.pop()
            names.pop()
        else:
            words.append(token.strip("\"'"))
    assert len(stack) == 1 and not words, "unbalanced nginx config"
    return stack[0]


def walk(directives: list[Directive]) -> Iterator[Directive]:
    for directive in directives:
        yield directive
        yield from walk(directive.children or [])


def nginx_directives(tree: list[Directive], name: str, within: str | None = None) -> list[list]:
    return [
        d.args
        for d in walk(tree)
        if d.name == name and (within is None or (d.parents and d.parents[-1] == within))
    ]


def nginx_secret_paths(tree: list[Directive]) -> set[str]:
    return {d.args[0] for d in walk(tree) if d.args and d.args[0].startswith("/run/secrets/")}


def test_the_proxy_asks_for_a_password_on_every_path():
    tree = parse_nginx(NGINX_CONF.read_text())
    servers = [d for d in walk(tree) if d.name == "server" and d.children is not None]
    assert servers
    for server in servers:
        own = {d.name: d.args for d in server.children or []}
        assert own.get("auth_basic") and own["auth_basic"] != ["off"], "no auth on the server"
        assert own.get("auth_basic_user_file") == ["/run/secrets/proxy_htpasswd"]
        locations = [d for d in walk(server.children or []) if d.name == "location"]
        assert locations, "the server proxies nothing"
    # Nothing turns it off or lets a request in another way.
    for directive in walk(tree):
        assert not (directive.name == "auth_basic" and directive.args == ["off"])
        assert directive.name not in {"satisfy", "allow", "auth_request", "return"}, directive
        if directive.name == "location":
            assert directive.parents[-1] == "server", "a location outside the checked servers"
    # Every location goes to the viewer, and none to anything else.
    passes = nginx_directives(tree, "proxy_pass")
    assert passes and all(args == ["http://dagster_viewer"] for args in passes)
    assert ["Authorization", ""] in nginx_directives(tree, "proxy_set_header")


# -- scripts/ui.sh ---------------------------------------------------------------------------------


def ui_command(tmp_path: Path, *args: str) -> list[str]:
    """The command line scripts/ui.sh runs, with a stand-in `dg` that records it."""
    scripts, stub = tmp_path / "scripts", tmp_path / "bin"
    scripts.mkdir(parents=True)
    stub.mkdir()
    shutil.copy(UI_SCRIPT, scripts / "ui.sh")
    recorded = tmp_path / "argv"
    (stub / "dg").write_text(f'#!/bin/sh\nprintf "%s\\0" "$@" > "{recorded}"\n')
    (stub / "dg").chmod(0o755)
    home = tmp_path / "dagster_home"
    home.mkdir()
    # Instead of the real _env.sh (which would install the venv): the stand-in on PATH, and
    # what the real one sets for the scripts.
    (scripts / "_env.sh").write_text(
        f'REPO="{tmp_path}"\nexport DAGSTER_HOME="{home}"\nexport PATH="{stub}:$PATH"\n'
    )
    subprocess.run(["bash", str(scripts / "ui.sh"), *args], check=True, timeout=30)
    return recorded.read_text().split("\0")[:-1]


def test_the_ui_script_listens_on_loopback_unless_told_otherwise(tmp_path):
    from dagster_webserver.cli import DEFAULT_WEBSERVER_HOST

    argv = ui_command(tmp_path / "default", "-p", "3001")
    assert argv[0] == "dev"
    assert files.option(argv, "-h", "--host") == "127.0.0.1"
    assert files.option(argv, "-p") == "3001"
    # An explicit host is the caller's choice, and is passed on alone.
    for flag in ("-h", "--host"):
        argv = ui_command(tmp_path / flag, flag, "0.0.0.0")
        assert argv.count(flag) == 1 and files.option(argv, flag) == "0.0.0.0"
        assert "127.0.0.1" not in argv
    # `dg dev`'s -h is the webserver's host, and without it the webserver's default is
    # loopback too.
    from dagster_dg_cli.cli.dev import dev_command

    [host] = [p for p in dev_command.params if "--host" in p.opts]
    assert "-h" in host.opts and host.help == "Host to use for the Dagster webserver."
    assert DEFAULT_WEBSERVER_HOST == "127.0.0.1"


# -- the viewer, for real --------------------------------------------------------------------------


class Listener:
    """A TCP server standing in for the attacker's base_url: records every connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.received.append(conn.recv(65536) or b"<connected>")
                except OSError:
                    self.received.append(b"<connected>")

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()


SALT = "issue-16-salt-that-must-never-leave-the-code-server"

HOSTILE_RESOURCES = {
    "openai": {
        "config": {"api_key": {"env": "WILDCHAT_IP_SALT"}, "base_url": "http://127.0.0.1:{port}/v1"}
    }
}

LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename ... on UnauthorizedError { message } ... on PythonError { message }
  }
}"""

LAUNCH_RUN = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename ... on UnauthorizedError { message } ... on PythonError { message }
  }
}"""

REEXECUTE = """
mutation Reexecute($executionParams: ExecutionParams!) {
  launchPipelineReexecution(executionParams: $executionParams) {
    __typename ... on UnauthorizedError { message } ... on PythonError { message }
  }
}"""

BACKFILL = """
mutation Backfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename ... on UnauthorizedError { message } ... on PythonError { message }
  }
}"""

RELOAD = """
mutation { reloadRepositoryLocation(repositoryLocationName: "wildchat_dag") {
  __typename ... on UnauthorizedError { message } } }"""

STATE = """
{ runsOrError { ... on Runs { count } }
  partitionBackfillsOrError { ... on PartitionBackfills { results { id } } } }"""


def hostile_params(listener_port: int) -> dict:
    resources = json.loads(json.dumps(HOSTILE_RESOURCES).replace("{port}", str(listener_port)))
    return {
        "selector": {
            **LOCATION,
            "pipelineName": "__ASSET_JOB",
            "assetSelection": [{"path": ["openai_moderation"]}],
        },
        "mode": "default",
        "runConfigData": {"resources": resources},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "2024-01-01"}]},
    }


def viewer_args() -> list[str]:
    """The viewer's command from docker-compose.yml, less its host, port and workspace (the test
    serves the project's workspace.yaml on a free loopback port)."""
    cmd = files.command(VIEWER)
    assert cmd[0] == "dagster-webserver"
    args, skip = [], False
    for arg in cmd[1:]:
        if skip:
            skip = False
        elif arg in ("-h", "--host", "-p", "--port", "-w", "--workspace"):
            skip = True
        else:
            args.append(arg)
    return [*args, "-w", "workspace.yaml"]


@dataclass
class Viewer:
    port: int
    listener: Listener


@pytest.fixture(scope="module")
def viewer(tmp_path_factory) -> Iterator[Viewer]:
    tmp_path = tmp_path_factory.mktemp("viewer")
    env = dagster_env(tmp_path, WILDCHAT_IP_SALT=SALT, WILDCHAT_AUTOMATION="off")
    env.pop("WILDCHAT_MODE", None)
    listener = Listener()
    try:
        with webserver_process(viewer_args(), env, timeout_s=180) as port:
            yield Viewer(port, listener)
    finally:
        listener.close()


def assert_refused(answer: dict) -> None:
    (result,) = answer.values()
    assert result["__typename"] == "UnauthorizedError", result


def test_the_read_only_viewer_refuses_the_hostile_launch(viewer):
    assert "--read-only" in files.command(VIEWER)
    assert "--read-only" not in files.command(OPERATOR)
    params = hostile_params(viewer.listener.port)
    assert_refused(graphql(viewer.port, LAUNCH, {"executionParams": params}))
    assert_refused(graphql(viewer.port, LAUNCH_RUN, {"executionParams": params}))
    reexecute = {**params, "executionMetadata": {"rootRunId": "x", "parentRunId": "x"}}
    assert_refused(graphql(viewer.port, REEXECUTE, {"executionParams": reexecute}))
    backfill = {
        "selector": {"repositorySelector": LOCATION, "partitionSetName": "x"},
        "assetSelection": [{"path": ["openai_moderation"]}],
        "partitionNames": ["2024-01-01"],
        "runConfigData": params["runConfigData"],
    }
    assert_refused(graphql(viewer.port, BACKFILL, {"backfillParams": backfill}))
    assert_refused(graphql(viewer.port, RELOAD))

    state = graphql(viewer.port, STATE)
    assert state["runsOrError"]["count"] == 0
    assert state["partitionBackfillsOrError"]["results"] == []
    # Nothing went out to the attacker's base_url.
    time.sleep(0.5)
    assert viewer.listener.received == []
    permissions = graphql(viewer.port, "{ permissions { permission value } }")["permissions"]
    assert permissions and not [p["permission"] for p in permissions if p["value"]]


# -- the proxy, for real ---------------------------------------------------------------------------


def require_nginx() -> str:
    openssl = shutil.which("openssl")
    if NGINX and openssl:
        return NGINX
    reason = (
        f"{'nginx' if not NGINX else 'openssl'} is missing: install it with `sudo {NGINX_INSTALL}`"
        " (scripts/_system_packages.sh does it)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must install nginx for this test: {reason}")
    pytest.skip(reason)


def openssl(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@dataclass
class Proxy:
    port: int
    context: ssl.SSLContext
    user: str
    password: str

    def get(
        self, path: str, auth: tuple[str, str] | None = None, body: dict | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json"}
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.port}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=60, context=self.context) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def proxy(viewer, tmp_path_factory) -> Iterator[Proxy]:
    nginx = require_nginx()
    root = tmp_path_factory.mktemp("proxy")
    secrets, tmp = root / "secrets", root / "tmp"
    secrets.mkdir()
    tmp.mkdir()
    cert, key = secrets / "proxy_tls_cert", secrets / "proxy_tls_key"
    # The README's commands: a self-signed certificate and an htpasswd line.
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    user, password = "viewer", "correct horse battery staple"
    hashed = openssl("passwd", "-6", "-stdin", stdin=password + "\n").strip()
    (secrets / "proxy_htpasswd").write_text(f"{user}:{hashed}\n")

    port = free_port()
    conf = NGINX_CONF.read_text()
    substitutions = {
        "/run/secrets/": f"{secrets}/",
        "/tmp/": f"{tmp}/",
        f"server {VIEWER}:3000;": f"server 127.0.0.1:{viewer.port};",
        "listen 8443 ssl;": f"listen 127.0.0.1:{port} ssl;",
    }
    for old in substitutions:
        assert old in conf, f"deploy/proxy/nginx.conf no longer has {old!r}"
    # In one pass: the test's folders are themselves under /tmp/.
    pattern = "|".join(re.escape(old) for old in substitutions)
    conf = re.sub(pattern, lambda m: substitutions[m.group(0)], conf)
    (root / "nginx.conf").write_text(conf)
    log = (root / "nginx.log").open("w")
    # As root, nginx's workers would run as nobody, who cannot read pytest's folders (in the
    # container, the workers are the image's unprivileged user, and the secrets are 0444).
    globals_ = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    server = subprocess.Popen(
        [nginx, "-e", "stderr", "-p", str(root), "-c", str(root / "nginx.conf"),
         "-g", globals_],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(cert))

    def listening() -> bool:
        assert server.poll() is None, (root / "nginx.log").read_text()[-3000:]
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for("nginx", listening, 30, 0.1)
        yield Proxy(port, context, user, password)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)
        log.close()


def test_the_proxy_refuses_without_the_password_and_forwards_with_it(proxy, viewer):
    right = (proxy.user, proxy.password)
    for path in ("/", "/server_info", "/graphql?query=%7B__typename%7D", "/runs", "/favicon.ico"):
        status, headers, _ = proxy.get(path)
        assert status == 401, path
        assert headers.get("WWW-Authenticate", "").startswith("Basic"), headers
    for wrong in [(proxy.user, "wrong"), ("operator", proxy.password), ("", "")]:
        assert proxy.get("/server_info", wrong)[0] == 401, wrong

    status, headers, body = proxy.get("/server_info", right)
    assert status == 200, body[:500]
    assert "dagster_webserver_version" in json.loads(body)
    assert headers.get("Strict-Transport-Security")

    # Through the proxy, with the password: still the read-only viewer.
    query = {"query": LAUNCH, "variables": {"executionParams": hostile_params(1)}}
    assert proxy.get("/graphql", None, query)[0] == 401
    status, _, body = proxy.get("/graphql", right, query)
    assert status == 200
    assert_refused(json.loads(body)["data"])
    assert graphql(viewer.port, STATE)["runsOrError"]["count"] == 0


def test_the_compose_file_is_plain_yaml_with_no_unknown_interpolation():
    """docker compose is not installed here: the file must at least parse, and every host
    variable it reads has a default or is documented (test_deployment_files checks the README)."""
    text = files.COMPOSE.read_text()
    assert yaml.safe_load(text)["services"]
    for variable in files.compose_variables():
        assert re.search(rf"\$\{{{variable}:-[^}}]+\}}", text), f"{variable} has no default"
