"""The project as a user meets it: the code location loads, and the README's demo command runs."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import yaml
from dagster import Definitions

from wildchat_dag.definitions import defs

REPO = Path(__file__).resolve().parents[1]


def test_definitions_load_with_descriptions_and_partitions():
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {
        "raw_requests",
        "quarantined_log_lines",
        "linked_conversations",
        "orphaned_requests",
        "pii_candidates",
        "pii_scanned_utterances",
        "redaction_rules",
        "pii_entity_frequency",
        "anonymized_conversations",
        "user_turn_locations",
        "conversation_locations",
        "utterance_languages",
        "conversation_languages",
        "openai_moderation",
        "detoxify_moderation",
        "utterance_toxicity",
        "conversation_toxicity",
        "release_records",
        "release_day_statistics",
        "release_statistics",
        "public_release",
        "full_release",
    }
    # The rules file, the corpus frequencies and the releases span every day; all else is one
    # day a partition.
    unpartitioned = {
        "redaction_rules",
        "pii_entity_frequency",
        "release_statistics",
        "public_release",
        "full_release",
    }
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 60
        if key.to_user_string() in unpartitioned:
            assert node.partitions_def is None
        else:
            assert node.partitions_def.timezone == "UTC"
    assert defs.resolve_job_def("wildchat_daily")
    assert defs.resolve_job_def("redaction_refresh")


def test_dagster_cli_lists_the_assets():
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")),
            "asset",
            "list",
            "-m",
            "wildchat_dag.definitions",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == [
        "anonymized_conversations",
        "conversation_languages",
        "conversation_locations",
        "conversation_toxicity",
        "detoxify_moderation",
        "full_release",
        "linked_conversations",
        "openai_moderation",
        "orphaned_requests",
        "pii_candidates",
        "pii_entity_frequency",
        "pii_scanned_utterances",
        "public_release",
        "quarantined_log_lines",
        "raw_requests",
        "release_day_statistics",
        "release_records",
        "release_statistics",
        "user_turn_locations",
        "utterance_languages",
        "utterance_toxicity",
    ]


def test_readme_demo_command_runs_end_to_end(tmp_path):
    # A machine with no moderation set up: no API key, nothing in torch's hub cache.
    env = {**os.environ, "WILDCHAT_HOME": str(tmp_path / "home"), "TORCH_HOME": str(tmp_path)}
    for name in ("DAGSTER_HOME", "WILDCHAT_IP_SALT", "WILDCHAT_MODE", "OPENAI_API_KEY"):
        env.pop(name, None)
    result = subprocess.run(
        ["bash", "scripts/demo.sh", "--days", "2", "--conversations-per-day", "40"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "2024-01-01" in result.stdout and "2024-01-02" in result.stdout
    con = duckdb.connect(str(tmp_path / "home" / "warehouse.duckdb"), read_only=True)
    conversations = con.sql("SELECT count(*) FROM main.linked_conversations").fetchone()[0]
    anonymized = con.sql("SELECT count(*) FROM main.anonymized_conversations").fetchone()[0]
    located = con.sql("SELECT count(*) FROM main.conversation_locations").fetchone()[0]
    languages = con.sql("SELECT count(*) FROM main.conversation_languages").fetchone()[0]
    flagged = con.sql("SELECT count(*) FROM main.conversation_toxicity").fetchone()[0]
    con.close()
    assert conversations >= 70
    assert anonymized == located == languages == flagged == conversations
    # Neither scorer can run on embedded defaults; the demo says so rather than call all clean.
    assert "Moderation did not run: no API key: set OPENAI_API_KEY" in result.stdout
    assert "Moderation did not run: no Detoxify weights on this machine" in result.stdout
    # The demo ends with both releases and cards whose numbers are the files'. With no scorer,
    # the demo's policy keeps unscored conversations, and the card says not to publish.
    for release in ("public", "full"):
        folder = tmp_path / "home" / "releases" / release
        card = (folder / "README.md").read_text()
        header = yaml.safe_load(card.split("---")[1])
        rows = pq.read_table(folder / "data").num_rows
        assert header["dataset_info"]["splits"][0]["num_examples"] == rows == conversations
        assert f"{rows:,} conversations between users and chatbots" in card
        assert "Do not publish it." in card and "2018-07-03" in card
        assert f"{release} release: {rows:,} conversations" in result.stdout
    # The embedded 2018 GeoLite2 database was used, and the demo said so.
    assert "GeoLite2-City snapshot of 2018-07-03" in result.stdout + result.stderr
    assert "located" in result.stdout and "languages" in result.stdout
    # Demo mode made up a per-install salt, kept private, and said so.
    salt = tmp_path / "home" / "ip_salt"
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600
    assert f"per-install IP salt at {salt}" in result.stdout + result.stderr
    runs = list((tmp_path / "home" / "dagster_home" / "storage").iterdir())
    assert runs, "the demo's runs are in the persistent instance for `dagster dev`"
