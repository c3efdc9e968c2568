"""The production deployment files agree with each other, with the project and with Dagster.

Docker cannot run here, so docker-compose.yml and the Dockerfile are checked as files: what the
containers run exists in the installed packages, what they read was copied into the image, and
the names that tie the services together (hosts, ports, credentials, volumes) match. The
PostgreSQL instance config is loaded for real against a local server.
"""

import copy
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatch
from importlib.util import find_spec
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from dagster import DagsterInstance
from dagster._core.workspace.load import location_origins_from_yaml_paths
from sqlalchemy.pool import QueuePool

from wildchat_dag.instance import WildchatInstance
from wildchat_dag.instance.postgres import PostgresEventLogStorage as AtomicPoolLimitsStorage
from wildchat_dag.warm_runs import WarmRunLauncher

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
POSTGRES_INSTANCE = REPO / "deploy" / "dagster.postgres.yaml"
LOCAL_INSTANCE = REPO / "dagster.yaml"
README = REPO / "README.md"
BIN = Path(sys.executable).parent

SERVICES = {"postgres", "user_code", "webserver", "viewer", "daemon", "proxy"}
DAGSTER_SERVICES = ("user_code", "webserver", "viewer", "daemon")
# The services that load the code location from user_code's gRPC server.
GRPC_CLIENTS = ("webserver", "viewer", "daemon")
ENTRYPOINT = REPO / "deploy" / "entrypoint.sh"
PG_VARS = (
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_USERNAME",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_DB",
)
BACKFILL_LIMIT = {
    "key": "dagster/backfill",
    "value": {"applyLimitPerUniqueValue": True},
    "limit": 2,
}

# The server the instance test creates its database on; libpq's own variables override it.
PG_HOST = os.environ.get("PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("PGPORT", "5432"))
PG_USER = os.environ.get("PGUSER", "postgres")
PG_PASSWORD = os.environ.get("PGPASSWORD", "")


# -- the files, parsed -----------------------------------------------------------------------------


@functools.cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def named_volumes(name: str) -> dict[str, str]:
    """Mount path -> named volume, for the service's volumes that are not bind mounts."""
    mounts: dict[str, str] = {}
    for volume in service(name).get("volumes", []):
        source, target = (
            (volume["source"], volume["target"])
            if isinstance(volume, dict)
            else volume.split(":")[:2]
        )
        if not source.startswith((".", "/", "~")):
            mounts[target] = source
    return mounts


@dataclass
class Dockerfile:
    env: dict[str, str] = field(default_factory=dict)
    # (sources in the build context, where each lands in the image)
    copies: list[tuple[str, PurePosixPath]] = field(default_factory=list)
    # (the RUN's shell text, its working directory)
    runs: list[tuple[str, PurePosixPath]] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def expand(text: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env[m.group(1) or m.group(2)], text)


@functools.cache
def dockerfile() -> Dockerfile:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    parsed = Dockerfile()
    workdir = PurePosixPath("/")
    for line in lines:
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                parsed.env[key] = value
        elif instruction == "WORKDIR":
            workdir = workdir / expand(args.strip(), parsed.env)
        elif instruction == "COPY":
            *sources, dest = [expand(a, parsed.env) for a in shlex.split(args)]
            assert not any(s.startswith("--from") for s in sources), "a multi-stage COPY"
            sources = [s for s in sources if not s.startswith("--")]
            target = workdir / dest
            for source in sources:
                into_folder = dest.endswith("/") or len(sources) > 1
                parsed.copies.append(
                    (source, target / PurePosixPath(source).name if into_folder else target)
                )
        elif instruction == "RUN":
            parsed.runs.append((args, workdir))
        elif instruction == "CMD":
            parsed.cmd = json.loads(args)
    return parsed


def command(name: str) -> list[str]:
    cmd = service(name).get("command", dockerfile().cmd)
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def option(cmd: list[str], *flags: str) -> str:
    for i, arg in enumerate(cmd):
        if arg in flags:
            return cmd[i + 1]
    raise AssertionError(f"{' '.join(cmd)!r} has none of {flags}")


def entrypoint_reads() -> list[str]:
    """The variables deploy/entrypoint.sh sets from the file named by ``<NAME>_FILE``."""
    match = re.search(r"^for name in ([\w ]+); do", ENTRYPOINT.read_text(), re.M)
    assert match, "deploy/entrypoint.sh does not list the variables it reads"
    return match.group(1).split()


def image_env(name: str) -> dict[str, str]:
    """What a Dagster service's processes see: the image's ENV, then the compose environment,
    then what the image's entrypoint reads from the secret files (``NAME_FILE`` -> ``NAME``)."""
    env = {**dockerfile().env, **environment(name)}
    for var in entrypoint_reads():
        if f"{var}_FILE" in env:
            env[var] = "<from " + env.pop(f"{var}_FILE") + ">"
    return env


def env_references(config: object) -> set[str]:
    """The environment variables a Dagster YAML config reads with the `env:` form."""
    if isinstance(config, dict):
        found = {config["env"]} if set(config) == {"env"} else set()
        return found.union(*(env_references(v) for v in config.values()))
    if isinstance(config, list):
        return set().union(*(env_references(v) for v in config))
    return set()


@functools.cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def compose_variables() -> set[str]:
    """Every host variable docker compose interpolates (``$VAR``, ``${VAR...}``; not ``$$``)."""
    return set(re.findall(r"(?<!\$)\$\{?([A-Za-z_]\w*)", COMPOSE.read_text()))


def compose_environment_names() -> set[str]:
    return {key for name in SERVICES for key in environment(name)}


def deployment_section(readme: str) -> str:
    match = re.search(r"^## Deployment\b.*?(?=^## |\Z)", readme, re.M | re.S)
    assert match, "README.md has no '## Deployment' section"
    return match.group(0)


def undocumented(readme: str) -> list[str]:
    section = deployment_section(readme)
    names = compose_variables() | compose_environment_names()
    return sorted(n for n in names if not re.search(rf"\b{re.escape(n)}\b", section))


# -- docker-compose.yml ----------------------------------------------------------------------------


def test_compose_has_its_services_and_builds_the_dagster_ones_from_the_repo():
    assert set(compose()["services"]) == SERVICES
    built = [name for name, s in compose()["services"].items() if "build" in s]
    assert set(built) == set(DAGSTER_SERVICES)
    assert re.findall(r"^ENTRYPOINT (.+)$", DOCKERFILE.read_text(), re.M) == [
        '["/usr/local/bin/wildchat-entrypoint"]'
    ]
    assert ("deploy/entrypoint.sh", PurePosixPath("/usr/local/bin/wildchat-entrypoint")) in (
        dockerfile().copies
    )
    for name in built:
        build = service(name)["build"]
        assert build["context"] == "."
        assert (REPO / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    assert DOCKERFILE.is_file()
    assert service("postgres")["image"].startswith("postgres:15.")
    assert "pg_isready" in " ".join(service("postgres")["healthcheck"]["test"])


def test_dagster_services_share_image_data_volume_and_instance_settings():
    builds = {json.dumps(service(n)["build"], sort_keys=True) for n in DAGSTER_SERVICES}
    images = {service(n).get("image") for n in DAGSTER_SERVICES}
    assert len(builds) == 1 and len(images) == 1 and None not in images
    (image,) = images
    assert environment("user_code")["DAGSTER_CURRENT_IMAGE"] == image

    # The data volume is where the runs execute (user_code), and nowhere else
    # (test_faults_deployment.py checks the other services' mounts).
    data = dockerfile().env["WILDCHAT_HOME"]
    assert named_volumes("user_code").get(data) == "wildchat_data"
    # Runs write their compute logs where they execute (user_code); the operator webserver
    # shows them.
    logs = str(PurePosixPath(dockerfile().env["DAGSTER_HOME"]) / "storage")
    assert named_volumes("user_code").get(logs) is not None
    assert named_volumes("user_code").get(logs) == named_volumes("webserver").get(logs)

    instance_vars = env_references(yaml.safe_load(POSTGRES_INSTANCE.read_text()))
    assert instance_vars == set(PG_VARS)
    for name in DAGSTER_SERVICES:
        env = image_env(name)
        assert instance_vars <= set(env), f"{name} lacks {instance_vars - set(env)}"
        assert env["WILDCHAT_HOME"] == data
    for var in PG_VARS:
        assert len({image_env(n)[var] for n in DAGSTER_SERVICES}) == 1, var


def test_dagster_services_log_in_to_the_postgres_service():
    pg = environment("postgres")
    for name in DAGSTER_SERVICES:
        env = environment(name)
        assert env["DAGSTER_PG_HOST"] == "postgres"
        assert env["DAGSTER_PG_USERNAME"] == pg["POSTGRES_USER"]
        assert env["DAGSTER_PG_DB"] == pg["POSTGRES_DB"]
        # The same secret file: the postgres image reads POSTGRES_PASSWORD_FILE itself, the
        # Dagster image's entrypoint exports DAGSTER_PG_PASSWORD from DAGSTER_PG_PASSWORD_FILE.
        assert env["DAGSTER_PG_PASSWORD_FILE"] == pg["POSTGRES_PASSWORD_FILE"]
        assert "DAGSTER_PG_PASSWORD" in entrypoint_reads()
        assert env["DAGSTER_PG_PORT"] == "5432"


def test_secrets_come_from_secret_files_and_only_user_code_gets_the_pipelines():
    env = environment("user_code")
    assert env["WILDCHAT_IP_SALT_FILE"] == "/run/secrets/wildchat_ip_salt"
    assert env["OPENAI_API_KEY_FILE"] == "/run/secrets/openai_api_key"
    assert {"wildchat_ip_salt", "openai_api_key"} <= set(service("user_code")["secrets"])
    assert "WILDCHAT_IP_SALT" in entrypoint_reads()
    # The openai resource reads the key file itself when a step runs.
    from wildchat_dag.defs.moderation.resource import API_KEY_FILE_ENV_VAR

    assert API_KEY_FILE_ENV_VAR == "OPENAI_API_KEY_FILE"
    # None of the others runs the pipeline's code, so they get none of its secrets.
    pipeline = {"WILDCHAT_IP_SALT", "OPENAI_API_KEY", "OPENAI_API_KEY_FILE"}
    for name in SERVICES - {"user_code"}:
        names = set(image_env(name)) if name in DAGSTER_SERVICES else set(environment(name))
        assert not pipeline & names, name
        assert not {"wildchat_ip_salt", "openai_api_key"} & set(service(name).get("secrets", []))


def test_dependencies_and_volumes_are_declared():
    declared = set(compose().get("volumes") or {})
    used: set[str] = set()
    for name in SERVICES:
        depends = service(name).get("depends_on", {})
        assert set(depends) <= SERVICES - {name}, (name, depends)
        used |= set(named_volumes(name).values())
    assert used <= declared, used - declared
    for name in GRPC_CLIENTS:
        depends = service(name)["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert "user_code" in depends
        if depends["user_code"].get("condition") == "service_healthy":
            assert "healthcheck" in service("user_code")
    assert "viewer" in service("proxy")["depends_on"]
    # The operator webserver on the host's loopback interface only.
    assert service("webserver")["ports"] == ["127.0.0.1:3000:3000"]
    assert option(command("webserver"), "-p", "--port") == "3000"
    declared_secrets = set(compose().get("secrets") or {})
    for name in SERVICES:
        assert set(service(name).get("secrets", [])) <= declared_secrets, name


# -- the commands ----------------------------------------------------------------------------------


def test_commands_name_installed_executables_and_the_code_location():
    assert dockerfile().cmd == command("user_code")
    executables = {
        "user_code": "dagster",
        "webserver": "dagster-webserver",
        "viewer": "dagster-webserver",
        "daemon": "dagster-daemon",
    }
    for name, executable in executables.items():
        cmd = command(name)
        assert cmd[0] == executable
        assert (BIN / cmd[0]).is_file(), f"{cmd[0]} is not installed"
        healthcheck = service(name).get("healthcheck", {}).get("test", [])
        if healthcheck and healthcheck[0] == "CMD":
            assert (BIN / healthcheck[1]).is_file(), f"{healthcheck[1]} is not installed"

    grpc = command("user_code")
    assert grpc[1:3] == ["api", "grpc"]
    assert option(grpc, "-h", "--host") == "0.0.0.0"
    module = option(grpc, "-m", "--module-name")
    assert module == pyproject()["tool"]["dagster"]["module_name"] == "wildchat_dag.definitions"
    assert find_spec(module) is not None
    health = service("user_code")["healthcheck"]["test"]
    assert health[1:4] == ["dagster", "api", "grpc-health-check"]
    assert option(health, "-p", "--port") == option(grpc, "-p", "--port")
    for name in GRPC_CLIENTS:
        assert option(command(name), "-w", "--workspace").endswith(".yaml")


@pytest.mark.parametrize("name", GRPC_CLIENTS)
def test_workspace_in_the_image_points_at_the_code_server(name: str, monkeypatch):
    in_image = PurePosixPath(option(command(name), "-w", "--workspace"))
    sources = [src for src, dest in dockerfile().copies if dest == in_image]
    assert sources, f"the Dockerfile copies nothing to {in_image}"
    workspace = REPO / sources[-1]
    assert workspace.is_file()

    env = image_env(name)
    needed = env_references(yaml.safe_load(workspace.read_text()))
    assert needed <= set(env), f"{name} lacks {needed - set(env)}"
    for var in needed:
        monkeypatch.setenv(var, env[var])
    (origin,) = location_origins_from_yaml_paths([str(workspace)])
    assert origin.host == "user_code"
    assert origin.port == int(option(command("user_code"), "-p", "--port"))
    assert origin.location_name == pyproject()["tool"]["dagster"]["code_location_name"]


# -- README ----------------------------------------------------------------------------------------


def test_every_compose_variable_is_documented_in_the_readme():
    assert compose_variables() >= {"WILDCHAT_SECRETS_DIR"}
    missing = undocumented(README.read_text())
    assert not missing, f"README.md's Deployment section does not mention {missing}"


# -- Dockerfile ------------------------------------------------------------------------------------


def ignored(path: str, patterns: list[str]) -> bool:
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch(prefix, pattern) or fnmatch(prefix, pattern.removeprefix("**/"))
        for pattern in patterns
        for prefix in prefixes
    )


def test_dockerfile_copies_existing_files_the_build_context_keeps():
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".venv", ".wildchat", ".git"} <= set(patterns)
    assert any("__pycache__" in p for p in patterns)
    copies = dockerfile().copies
    assert copies
    for source, _ in copies:
        assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
        assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    instance = PurePosixPath(dockerfile().env["DAGSTER_HOME"]) / "dagster.yaml"
    assert [src for src, dest in copies if dest == instance] == ["deploy/dagster.postgres.yaml"]


def test_dockerfile_installs_the_pinned_cpu_torch_before_the_project():
    pins = [d for d in pyproject()["project"]["dependencies"] if re.match(r"torch\s*==", d)]
    assert pins == ["torch==2.13.0"]
    runs = [text for text, _ in dockerfile().runs]
    torch_runs = [i for i, text in enumerate(runs) if "torch" in text]
    assert len(torch_runs) == 1
    torch_run = runs[torch_runs[0]].split()
    assert torch_run[:3] == ["pip", "install", pins[0]]
    assert option(torch_run, "--index-url") == "https://download.pytorch.org/whl/cpu"

    project = [dest.parent for src, dest in dockerfile().copies if src == "pyproject.toml"]
    assert len(project) == 1
    installs = [
        i
        for i, (text, workdir) in enumerate(dockerfile().runs)
        for arg in re.findall(r"pip install (?:-e |--editable )?(\S+)", text)
        if (workdir / arg.rstrip("/")) == project[0]
    ]
    assert installs and min(installs) > torch_runs[0], "the project is installed before torch"


def test_the_package_ships_its_data_files():
    """The image installs a wheel: the default redaction rules must be package data."""
    data = sorted(
        p.relative_to(REPO / "wildchat_dag")
        for p in (REPO / "wildchat_dag").rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    )
    assert Path("redaction_rules.yaml") in data
    patterns = pyproject()["tool"]["setuptools"]["package-data"]["wildchat_dag"]
    unshipped = [str(p) for p in data if not any(p.match(pattern) for pattern in patterns)]
    assert not unshipped, f"not package data, so not in the image: {unshipped}"


# -- the instance configs --------------------------------------------------------------------------


def test_local_and_postgres_instances_share_their_settings():
    local = yaml.safe_load(LOCAL_INSTANCE.read_text())
    postgres = yaml.safe_load(POSTGRES_INSTANCE.read_text())
    for key in ("telemetry", "nux", "instance_class"):
        assert local[key] == postgres[key], key
    # The same but for one more run of a backfill locally: it waits in the warm launcher, which
    # runs at most max_workers at once, and starts there as a worker frees.
    assert postgres["concurrency"]["runs"]["tag_concurrency_limits"] == [BACKFILL_LIMIT]
    workers = local["run_launcher"]["config"]["max_workers"]
    waiting_one_more = {**BACKFILL_LIMIT, "limit": workers + 1}
    assert BACKFILL_LIMIT["limit"] == workers
    expected = copy.deepcopy(postgres["concurrency"])
    expected["runs"]["tag_concurrency_limits"] = [waiting_one_more]
    assert local["concurrency"] == expected
    assert local["concurrency"]["pools"]["default_limit"] == 1
    assert "storage" not in local, "the local default is SQLite, Dagster's default"
    assert "deploy/dagster.postgres.yaml" in LOCAL_INSTANCE.read_text()


def assert_concurrency(instance: DagsterInstance, backfill_limit: int = 2) -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator

    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    # A backfill's run takes some 15 s: Dagster's default 5 s left its slots idle for a sixth.
    assert instance.run_coordinator.dequeue_interval_seconds == 1
    # The queue daemon reads its limits from here, not from the run coordinator's own config.
    config = instance.get_concurrency_config()
    assert config.run_queue_config is not None
    assert config.run_queue_config.max_concurrent_runs == 4
    limit = {**BACKFILL_LIMIT, "limit": backfill_limit}
    assert config.run_queue_config.tag_concurrency_limits == [limit]
    assert config.pool_config.default_pool_limit == 1


def test_local_instance_loads_with_sqlite(tmp_path):
    from dagster._core.storage.runs import SqliteRunStorage

    shutil.copy(LOCAL_INSTANCE, tmp_path / "dagster.yaml")
    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        assert isinstance(instance.run_storage, SqliteRunStorage)
        # Two warm workers, and one more run of a backfill waiting for the first free one.
        launcher = instance.run_launcher
        assert isinstance(launcher, WarmRunLauncher) and launcher._max_workers == 2
        assert_concurrency(instance, backfill_limit=3)
    finally:
        instance.dispose()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    import psycopg2
    from psycopg2 import sql

    try:
        admin = psycopg2.connect(
            host=PG_HOST,
            port=PG_PORT,
            user=PG_USER,
            password=PG_PASSWORD,
            dbname="postgres",
            connect_timeout=5,
        )
    except psycopg2.OperationalError as error:
        reason = f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} as {PG_USER}: {error}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    admin.autocommit = True
    name = f"wildchat_deploy_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        admin.close()


def test_postgres_instance_loads_and_migrates(postgres_database: str, tmp_path, monkeypatch):
    from dagster._core.launcher import DefaultRunLauncher
    from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(POSTGRES_INSTANCE, home / "dagster.yaml")
    pg_env = {
        "DAGSTER_PG_HOST": PG_HOST,
        "DAGSTER_PG_PORT": str(PG_PORT),
        "DAGSTER_PG_USERNAME": PG_USER,
        "DAGSTER_PG_PASSWORD": PG_PASSWORD,
        "DAGSTER_PG_DB": postgres_database,
    }
    for key, value in pg_env.items():
        monkeypatch.setenv(key, value)

    # What the webserver and daemon do on start, through the same command line.
    migrate = subprocess.run(
        [str(BIN / "dagster"), "instance", "migrate"],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    instance = DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        for storage in (
            instance.run_storage,
            instance.event_log_storage,
            instance.schedule_storage,
        ):
            # The project's, which keep their connections (wildchat_dag/instance/postgres.py).
            assert type(storage).__module__ == "wildchat_dag.instance.postgres", storage
            assert isinstance(storage._engine.pool, QueuePool)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_launcher, DefaultRunLauncher)
        assert isinstance(instance.compute_log_manager, LocalComputeLogManager)
        logs = Path(instance.compute_log_manager._base_dir)
        assert logs == home / "storage"
        assert_concurrency(instance)
        # A write and a read back, in the database just created.
        instance.add_dynamic_partitions("deployment_check", ["2024-01-01"])
        assert instance.get_dynamic_partitions("deployment_check") == ["2024-01-01"]
        assert postgres_database in instance.run_storage.postgres_url
    finally:
        instance.dispose()


# -- pool limits on PostgreSQL ------------------------------------------------------------------


def postgres_instance(
    home: Path, database: str, *, default_limit: int = 1, event_log_module: str | None = None
) -> DagsterInstance:
    """An instance from deploy/dagster.postgres.yaml on ``database``, with the pools' default
    limit (and, to show what it replaces, the event log storage's module) changed."""
    config = yaml.safe_load(POSTGRES_INSTANCE.read_text())
    config["concurrency"]["pools"]["default_limit"] = default_limit
    if event_log_module:
        config["event_log_storage"]["module"] = event_log_module
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    env = {
        "DAGSTER_PG_HOST": PG_HOST,
        "DAGSTER_PG_PORT": str(PG_PORT),
        "DAGSTER_PG_USERNAME": PG_USER,
        "DAGSTER_PG_PASSWORD": PG_PASSWORD,
        "DAGSTER_PG_DB": database,
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        return DagsterInstance.from_config(str(home))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def pool_state(instance: DagsterInstance, pool: str) -> tuple[int, bool, int]:
    """(limit, from the default, slots) of a pool, as the storage holds it."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    [limit] = [p for p in instance.event_log_storage.get_pool_limits() if p.name == pool]
    return limit.limit, limit.from_default, info.slot_count


def test_dagster_postgres_alone_fails_a_pool_whose_limit_row_exists(postgres_database, tmp_path):
    """Why deploy/dagster.postgres.yaml names our event log storage: dagster-postgres 1.13's
    fails the second initialization of a pool (dagster-io/dagster#33552). When this test
    fails, Dagster has fixed it: drop the override of initialize_concurrency_limit_to_default in
    wildchat_dag/instance/postgres.py."""
    import sqlalchemy

    upstream = postgres_instance(
        tmp_path / "upstream", postgres_database, event_log_module="dagster_postgres.event_log"
    )
    try:
        assert not isinstance(upstream.event_log_storage, AtomicPoolLimitsStorage)
        assert upstream.event_log_storage.initialize_concurrency_limit_to_default("openai_api")
        # A second run claiming the new pool in the same instant finds the first one's row.
        with pytest.raises(sqlalchemy.exc.InternalError, match="InFailedSqlTransaction"):
            upstream.event_log_storage.initialize_concurrency_limit_to_default("openai_api")
    finally:
        upstream.dispose()


def test_pool_limits_initialize_on_postgres_racing_and_after_the_default_changes(
    postgres_database, tmp_path
):
    import threading

    from wildchat_dag.common.pools import DETOXIFY_POOL, OPENAI_POOL, WAREHOUSE_TABLES_POOL

    pools = (OPENAI_POOL, DETOXIFY_POOL, WAREHOUSE_TABLES_POOL)
    # Eight processes' worth of storages (each its own connections), released at one barrier
    # onto the same new pools, each twice: the first-claim race of a backfill's first runs.
    instances = [postgres_instance(tmp_path / f"home{i}", postgres_database) for i in range(8)]
    barrier = threading.Barrier(len(instances))
    errors: list[BaseException] = []

    def claim_new_pools(instance: DagsterInstance) -> None:
        try:
            barrier.wait(timeout=60)
            for pool in pools * 2:
                assert instance.event_log_storage.initialize_concurrency_limit_to_default(pool)
        except BaseException as error:  # reported below: a thread cannot fail the test itself
            errors.append(error)

    threads = [threading.Thread(target=claim_new_pools, args=(i,)) for i in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert not errors, errors
        for pool in pools:
            assert pool_state(instances[0], pool) == (1, True, 1)

        # The deployment's default limit edited to 2: Dagster re-initializes each pool that
        # follows the default, at its next claim.
        raised = postgres_instance(tmp_path / "raised", postgres_database, default_limit=2)
        try:
            for _ in range(2):
                assert raised.event_log_storage.initialize_concurrency_limit_to_default(
                    WAREHOUSE_TABLES_POOL
                )
            assert pool_state(raised, WAREHOUSE_TABLES_POOL) == (2, True, 2)
            # A limit set by hand (`dagster instance concurrency set`) is the operator's: a new
            # default does not overwrite it.
            raised.event_log_storage.set_concurrency_slots(OPENAI_POOL, 3)
            assert raised.event_log_storage.initialize_concurrency_limit_to_default(OPENAI_POOL)
            assert pool_state(raised, OPENAI_POOL) == (3, False, 3)
        finally:
            raised.dispose()
    finally:
        for instance in instances:
            instance.dispose()


def admin_query(sql: str, *params: object) -> int:
    """One number from the server, asked on the ``postgres`` database."""
    import psycopg2

    admin = psycopg2.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, dbname="postgres"
    )
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]
    finally:
        admin.close()


def backends(database: str) -> int:
    """Connections the server has open to ``database``, from any process."""
    return admin_query("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", database)


def no_backends_left(database: str, timeout_s: float = 60.0) -> bool:
    """Whether every connection to ``database`` ends. A closed connection's server process
    leaves ``pg_stat_activity`` a moment after the client has closed it; one still open stays."""
    deadline = time.monotonic() + timeout_s
    while backends(database):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_postgres_instance_keeps_its_connections_and_survives_their_loss(
    postgres_database, tmp_path
):
    instance = postgres_instance(tmp_path / "home", postgres_database)
    try:
        assert type(instance) is WildchatInstance
        for n in range(40):
            instance.add_dynamic_partitions("kept_connections", [f"p{n}"])
            assert instance.get_runs(limit=1) == []
            assert instance.all_instigator_state() == []
        # One kept connection per storage that was used, not one per call.
        assert 1 <= backends(postgres_database) <= 3
        assert len(instance.get_dynamic_partitions("kept_connections")) == 40

        # The server ends every connection (a restart, a proxy's idle timeout): the next calls
        # reconnect instead of failing.
        ended = admin_query(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            postgres_database,
        )
        assert ended >= 1
        instance.add_dynamic_partitions("kept_connections", ["after"])
        assert "after" in instance.get_dynamic_partitions("kept_connections")
        assert instance.get_runs(limit=1) == []
    finally:
        instance.dispose()
    # Disposed, the instance closes what it kept.
    assert no_backends_left(postgres_database)


def test_the_webservers_engines_replace_ours_and_ours_are_closed_at_once(
    postgres_database, tmp_path
):
    """``dagster-webserver`` swaps each storage's engine for its own (statement timeout, pool
    sizes). The connections ours kept are closed then, not whenever the engine is collected."""
    instance = postgres_instance(tmp_path / "home", postgres_database)
    try:
        instance.add_dynamic_partitions("kept_connections", ["p"])
        assert instance.get_runs(limit=1) == []
        assert instance.all_instigator_state() == []
        ours = [
            instance.run_storage._engine,
            instance.event_log_storage._engine,
            instance.schedule_storage._engine,
        ]
        assert backends(postgres_database) >= 1
        instance.optimize_for_webserver(statement_timeout=5000, pool_recycle=3600, max_overflow=2)
        # `ours` holds the engines: only disposing of them closes their connections here.
        assert all(engine.pool.checkedin() == 0 for engine in ours)
        assert no_backends_left(postgres_database)
        # The webserver's engines serve from here on, and are closed on dispose.
        assert instance.get_dynamic_partitions("kept_connections") == ["p"]
        assert backends(postgres_database) >= 1
    finally:
        instance.dispose()
    assert no_backends_left(postgres_database)
