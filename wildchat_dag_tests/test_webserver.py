"""The code location loads in a real Dagster webserver, and the UI's GraphQL API sees it."""

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wildchat_dag.defs.anonymization.redaction_rules import DEFAULT_RULES_PATH
from wildchat_dag_tests.deployment import free_port, graphql

REPO = Path(__file__).resolve().parents[1]
WEBSERVER = str(Path(sys.executable).with_name("dagster-webserver"))


def dagster_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return {**os.environ, "DAGSTER_HOME": str(home), "WILDCHAT_HOME": str(tmp_path), **extra}


@contextmanager
def webserver(env: dict[str, str]) -> Iterator[int]:
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
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_webserver_serves_the_asset_graph(tmp_path):
    with webserver(dagster_env(tmp_path)) as port:
        data = graphql(
            port,
            "{ assetNodes { assetKey { path } description groupName isPartitioned "
            "partitionDefinition { description } } }",
        )["assetNodes"]
        nodes = {tuple(n["assetKey"]["path"]): n for n in data}
        assert set(nodes) == {
            ("raw_requests",),
            ("raw_message_texts",),
            ("quarantined_log_lines",),
            ("linked_conversations",),
            ("orphaned_requests",),
            ("withdrawn_conversations",),
            ("pii_candidates",),
            ("pii_scanned_utterances",),
            ("redaction_rules",),
            ("takedown_ledger",),
            ("pii_entity_frequency",),
            ("anonymized_conversations",),
            ("user_turn_locations",),
            ("conversation_locations",),
            ("utterance_languages",),
            ("conversation_languages",),
            ("openai_moderation",),
            ("detoxify_moderation",),
            ("utterance_toxicity",),
            ("conversation_toxicity",),
            ("release_records",),
            ("release_day_statistics",),
            ("release_statistics",),
            ("public_release",),
            ("full_release",),
            ("public_search_index",),
            ("full_search_index",),
        }
        assert all(n["description"] for n in nodes.values())
        unpartitioned = {
            ("redaction_rules",),
            ("takedown_ledger",),
            ("pii_entity_frequency",),
            ("release_statistics",),
            ("public_release",),
            ("full_release",),
            ("public_search_index",),
            ("full_search_index",),
        }
        assert all(n["isPartitioned"] == (k not in unpartitioned) for k, n in nodes.items())
        assert nodes[("raw_requests",)]["groupName"] == "ingest"
        assert nodes[("anonymized_conversations",)]["groupName"] == "anonymization"
        assert nodes[("user_turn_locations",)]["groupName"] == "geo"
        assert nodes[("conversation_toxicity",)]["groupName"] == "moderation"
        assert "Daily" in nodes[("linked_conversations",)]["partitionDefinition"]["description"]
        errors = graphql(
            port,
            "{ workspaceOrError { ... on Workspace { locationEntries { name "
            "locationOrLoadError { __typename } } } } }",
        )["workspaceOrError"]["locationEntries"]
        assert [e["locationOrLoadError"]["__typename"] for e in errors] == ["RepositoryLocation"]


STALENESS = """
{ daily: assetNodes(assetKeys: [{path: ["anonymized_conversations"]}, {path: ["pii_candidates"]}])
  { assetKey { path } dependencyKeys { path }
    staleStatus(partition: "%(day)s") staleCauses(partition: "%(day)s") { reason category } }
  whole: assetNodes(assetKeys: [{path: ["pii_entity_frequency"]}])
  { assetKey { path } dependencyKeys { path } staleStatus staleCauses { reason category } }
}
"""


def staleness(port: int, day: str) -> dict[str, dict]:
    data = graphql(port, STALENESS % {"day": day})
    return {n["assetKey"]["path"][0]: n for n in data["daily"] + data["whole"]}


def run_module(module: str, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_the_ui_flags_redaction_not_detection_after_a_rule_edit(tmp_path):
    """The lineage story a user follows when a redaction rule changes, through the UI's API."""
    rules = tmp_path / "redaction_rules.yaml"
    shutil.copy(DEFAULT_RULES_PATH, rules)
    env = dagster_env(tmp_path, WILDCHAT_REDACTION_RULES=str(rules), WILDCHAT_MODE="demo")
    env.pop("WILDCHAT_IP_SALT", None)
    run_module("wildchat_dag.demo", env, "--days", "1", "--conversations-per-day", "40")
    day = "2024-01-01"
    with webserver(env) as port:
        before = staleness(port, day)
        assert before["anonymized_conversations"]["staleStatus"] == "FRESH"
        upstream = {k["path"][0] for k in before["anonymized_conversations"]["dependencyKeys"]}
        assert {"redaction_rules", "pii_entity_frequency", "pii_candidates"} <= upstream

        # A threshold edit: what redaction decides changes, where detection runs does not.
        rules.write_text(
            rules.read_text().replace(
                "skip_if_in_conversations: 50", "skip_if_in_conversations: 20"
            )
        )
        reload = graphql(
            port,
            'mutation { reloadRepositoryLocation(repositoryLocationName: "wildchat_dag") '
            "{ __typename } }",
        )
        assert reload["reloadRepositoryLocation"]["__typename"] == "WorkspaceLocationEntry"
        after = staleness(port, day)
        assert after["anonymized_conversations"]["staleStatus"] == "STALE"
        assert after["pii_entity_frequency"]["staleStatus"] == "STALE"
        assert after["pii_candidates"]["staleStatus"] == "FRESH"
        reasons = " ".join(c["reason"] for c in after["anonymized_conversations"]["staleCauses"])
        assert "code version" in reasons

        # The documented command re-applies the rules without detecting again.
        out = run_module("wildchat_dag.redaction_refresh", env)
        assert "detection" not in out and "redaction      2024-01-01: ok" in out
        refreshed = staleness(port, day)
        assert refreshed["anonymized_conversations"]["staleStatus"] == "FRESH"
        assert refreshed["pii_entity_frequency"]["staleStatus"] == "FRESH"
