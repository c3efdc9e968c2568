"""The code location loads in a real Dagster webserver, and the UI's GraphQL API sees it."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEBSERVER = str(Path(sys.executable).with_name("dagster-webserver"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_webserver_serves_the_asset_graph(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "WILDCHAT_HOME": str(tmp_path)}
    port = free_port()
    server = subprocess.Popen(
        [WEBSERVER, "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                assert server.poll() is None, "the webserver exited"
                assert time.monotonic() < deadline, "the webserver did not start in 120 s"
                time.sleep(1)
        data = graphql(
            port,
            "{ assetNodes { assetKey { path } description groupName isPartitioned "
            "partitionDefinition { description } } }",
        )["data"]["assetNodes"]
        nodes = {tuple(n["assetKey"]["path"]): n for n in data}
        assert set(nodes) == {
            ("raw_requests",),
            ("quarantined_log_lines",),
            ("linked_conversations",),
            ("orphaned_requests",),
        }
        assert all(n["isPartitioned"] and n["description"] for n in nodes.values())
        assert nodes[("raw_requests",)]["groupName"] == "ingest"
        assert "Daily" in nodes[("linked_conversations",)]["partitionDefinition"]["description"]
        errors = graphql(
            port,
            "{ workspaceOrError { ... on Workspace { locationEntries { name "
            "locationOrLoadError { __typename } } } } }",
        )["data"]["workspaceOrError"]["locationEntries"]
        assert [e["locationOrLoadError"]["__typename"] for e in errors] == ["RepositoryLocation"]
    finally:
        server.terminate()
        server.wait(timeout=30)
