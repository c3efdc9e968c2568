"""``python -m wildchat_dag.backfill``: the days it targets, checked in the backfill it stores.

The command runs as users run it, through the real ``dagster-graphql`` against the workspace;
no daemon runs, so the backfill stays as submitted.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from wildchat_dag.backfill import backfill_params, day_ranges, nightly_assets, submit_backfill
from wildchat_dag.defs.ingest.assets import INGEST_ASSETS
from wildchat_dag_tests.deployment import REPO

# 01-03 has no folder, 01-04 an empty one, 01-05 only a README (an entry ingest skips): none had
# traffic, and the command skips all three, as linking does. 01-08 is past the range asked.
LOGS = {
    "2024-01-01": ["a.jsonl"],
    "2024-01-02": ["a.jsonl", "b.jsonl.gz"],
    "2024-01-04": [],
    "2024-01-05": ["README.txt"],
    "2024-01-06": ["a.jsonl"],
    "2024-01-08": ["a.jsonl"],
}


@pytest.fixture
def workspace(tmp_path) -> tuple[Path, dict[str, str]]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    for day, names in LOGS.items():
        folder = tmp_path / "logs" / day
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text("{}\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "WILDCHAT_HOME": str(tmp_path)}
    env.pop("WILDCHAT_LOG_ROOT", None)
    return home, env


def backfill(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "wildchat_dag.backfill", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def targets(home: Path) -> list[tuple[dict[str, list[str]], set[AssetKey]]]:
    """Each stored backfill's target, oldest first: ``{asset: days}`` and unpartitioned keys."""
    with DagsterInstance.from_config(str(home)) as instance:
        found = []
        for stored in reversed(instance.get_backfills()):
            target = stored.asset_backfill_data.target_subset
            days = {
                key.to_user_string(): sorted(subset.get_partition_keys())
                for key, subset in target.partitions_subsets_by_asset_key.items()
            }
            found.append((days, set(target.non_partitioned_asset_keys)))
        return found


def test_days_make_ranges_and_the_params_name_each_asset_with_them():
    assert day_ranges([]) == []
    assert day_ranges(["2024-01-05", "2024-01-01", "2024-01-02", "2024-01-02"]) == [
        ("2024-01-01", "2024-01-02"),
        ("2024-01-05", "2024-01-05"),
    ]
    assert day_ranges(["2024-02-28", "2024-02-29", "2024-03-01"]) == [("2024-02-28", "2024-03-01")]
    params = backfill_params(
        ["2024-01-01", "2024-01-02", "2024-01-05"],
        ["raw_requests", "pii_entity_frequency"],
        "a title",
        unpartitioned={"pii_entity_frequency"},
    )
    ranges = [
        {"start": "2024-01-01", "end": "2024-01-02"},
        {"start": "2024-01-05", "end": "2024-01-05"},
    ]
    # No partitionNames nor assetSelection: with those, dagster expands the days downstream.
    assert params == {
        "partitionsByAssets": [
            {"assetKey": {"path": ["raw_requests"]}, "partitions": {"ranges": ranges}},
            {"assetKey": {"path": ["pii_entity_frequency"]}, "partitions": None},
        ],
        "title": "a title",
    }
    with pytest.raises(ValueError, match="at least one day"):
        backfill_params([], ["raw_requests"], "a title")


def test_days_without_logs_are_skipped_and_gaps_split_the_ranges(workspace):
    home, env = workspace
    done = backfill(env, "2024-01-01", "2024-01-07")
    assert "skipped 4 of 7 days for having no logs" in done.stdout
    assert "2024-01-03 .. 2024-01-05, 2024-01-07" in done.stdout
    assert "targeted: 2 ranges, 2024-01-01 .. 2024-01-02, 2024-01-06" in done.stdout
    assert "backfill " in done.stdout and "3 days (2024-01-01 .. 2024-01-06)" in done.stdout

    [(days, unpartitioned)] = targets(home)
    chosen = ["2024-01-01", "2024-01-02", "2024-01-06"]
    assert days["raw_requests"] == days["linked_conversations"] == chosen
    assert days["release_records"] == chosen
    assert all(v == chosen for v in days.values())
    assert set(days) == set(nightly_assets()) - {"pii_entity_frequency"}
    assert unpartitioned == {AssetKey("pii_entity_frequency")}


def test_include_empty_days_targets_every_day_of_the_range(workspace):
    home, env = workspace
    done = backfill(env, "2024-01-02", "2024-01-04", "--include-empty-days")
    assert "skipped" not in done.stdout and "targeted:" not in done.stdout
    assert "3 days (2024-01-02 .. 2024-01-04)" in done.stdout
    [(days, unpartitioned)] = targets(home)
    assert days["raw_requests"] == ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert all(v == days["raw_requests"] for v in days.values())
    assert unpartitioned == {AssetKey("pii_entity_frequency")}


def test_a_range_without_logs_submits_nothing(workspace, tmp_path):
    home, env = workspace
    other = tmp_path / "other_logs"
    (other / "2024-01-01" / "a.jsonl").parent.mkdir(parents=True)
    (other / "2024-01-01" / "a.jsonl").write_text("{}\n")
    done = backfill(env, "2024-01-03", "2024-01-04")
    assert "nothing to backfill: none of the 2 days of 2024-01-03 .. 2024-01-04 has logs" in (
        done.stdout
    )
    assert not any(line.startswith("backfill ") for line in done.stdout.splitlines())
    assert targets(home) == []
    # --log-root names another log root, --assets other assets.
    done = backfill(
        env,
        "2024-01-01",
        "2024-01-02",
        "--log-root",
        str(other),
        "--assets",
        ",".join(INGEST_ASSETS),
    )
    assert "skipped 1 of 2 days" in done.stdout
    assert "1 days (2024-01-01 .. 2024-01-01), 3 assets" in done.stdout
    [(days, unpartitioned)] = targets(home)
    assert days == {name: ["2024-01-01"] for name in INGEST_ASSETS}
    assert unpartitioned == set()


def test_a_ui_backfill_of_the_demos_last_day_reaches_no_day_after_it(workspace):
    """What the UI's Materialize → one day sends: partition names and an asset selection, which
    dagster carries downstream through linking's window (raw_requests D feeds the linking of
    D-1 .. D+2: each of those days reads D). In demo mode the partitions end at the last log
    folder, so a backfill of that day targets no day after it, where there are no logs."""
    home, env = workspace
    env = {**env, "WILDCHAT_MODE": "demo"}
    env.pop("WILDCHAT_END_DATE", None)
    last = max(LOGS)
    params = {
        "partitionNames": [last],
        "assetSelection": [{"path": key.split("/")} for key in nightly_assets()],
        "title": "as the UI sends it",
    }
    # What the UI's Materialize sends; submit_backfill reports a refusal as an error.
    submit_backfill(REPO / "workspace.yaml", params, env=env)

    [(days, unpartitioned)] = targets(home)
    assert max(max(v) for v in days.values()) == last
    assert days["raw_requests"] == [last]
    # Linking of the day before reads the last day's requests: dagster re-links it, rightly.
    assert days["linked_conversations"] == ["2024-01-07", last]
    assert unpartitioned == {AssetKey("pii_entity_frequency")}
