"""The schedule, the new-logs sensor and the automation conditions, evaluated in-process."""

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    RunRequest,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    evaluate_automation_conditions,
)

from wildchat_dag.definitions import build_assets, build_resources
from wildchat_dag.defs.automation.automation import (
    FINGERPRINT_TAG,
    new_log_days_sensor,
    nightly_schedule,
    with_automation,
)
from wildchat_dag.defs.ingest.log_folders import changed_days, day_fingerprints
from wildchat_dag.defs.ingest.resource import RequestLogStore
from wildchat_dag.loggen.generator import generate_logs
from wildchat_dag_tests.deployment import REPO
from wildchat_dag_tests.pipeline import (
    ANONYMIZATION,
    DETECTION,
    EXPORTS,
    INGEST,
    LANGUAGE,
    LINKING,
    RELEASE_RECORDS,
    Pipeline,
)


def write(path: Path, text: str, mtime: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_a_fingerprint_changes_with_a_new_grown_or_removed_file(tmp_path):
    old = time.time() - 3600
    write(tmp_path / "2024-01-01" / "a.jsonl", "x\n", old)
    write(tmp_path / "notes" / "a.jsonl", "x\n", old)
    write(tmp_path / "2024-13-01" / "a.jsonl", "x\n", old)
    first = day_fingerprints(tmp_path)
    assert list(first) == ["2024-01-01"]
    assert changed_days({}, first) == ["2024-01-01"]
    assert changed_days(first, day_fingerprints(tmp_path)) == []

    write(tmp_path / "2024-01-01" / "b.jsonl.gz", "y\n", old)
    second = day_fingerprints(tmp_path)
    assert changed_days(first, second) == ["2024-01-01"]
    write(tmp_path / "2024-01-01" / "b.jsonl.gz", "y\nz\n", old)
    assert changed_days(second, day_fingerprints(tmp_path)) == ["2024-01-01"]
    (tmp_path / "2024-01-01" / "b.jsonl.gz").unlink()
    assert day_fingerprints(tmp_path) == first
    # Not a log file: it cannot change what ingest reads.
    write(tmp_path / "2024-01-01" / "README.txt", "notes", old)
    assert day_fingerprints(tmp_path) == first


def test_a_folder_still_being_written_waits_until_it_settles(tmp_path):
    now = time.time()
    write(tmp_path / "2024-01-01" / "a.jsonl", "x\n", now - 600)
    write(tmp_path / "2024-01-02" / "a.jsonl", "x\n", now - 600)
    write(tmp_path / "2024-01-02" / "b.jsonl", "x\n", now - 5)
    assert list(day_fingerprints(tmp_path, settle_seconds=60, now=now)) == ["2024-01-01"]
    assert list(day_fingerprints(tmp_path, settle_seconds=60, now=now + 60)) == [
        "2024-01-01",
        "2024-01-02",
    ]
    assert day_fingerprints(tmp_path / "absent") == {}


def evaluate_sensor(instance: DagsterInstance, root: Path, cursor: str | None):
    # Left through `with`: the context makes its instance Dagster's current one until then.
    with build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"log_store": RequestLogStore(root=str(root), settle_seconds=0)},
    ) as context:
        result = new_log_days_sensor(context)
    return result, result.cursor


def evaluate_schedule(instance: DagsterInstance, logs: Path, at: datetime):
    with build_schedule_context(
        instance=instance,
        scheduled_execution_time=at,
        resources={"log_store": RequestLogStore(root=str(logs))},
    ) as context:
        return nightly_schedule(context)


def test_the_sensor_launches_each_new_or_changed_day_once(tmp_path):
    logs = tmp_path / "logs"
    write(logs / "2024-01-01" / "a.jsonl", "x\n")
    write(logs / "2024-01-02" / "a.jsonl", "x\n")
    # Today's folder is not a partition yet: it waits, and is launched once the day is over.
    today = datetime.now(UTC).date().isoformat()
    write(logs / today / "a.jsonl", "x\n")
    instance = DagsterInstance.local_temp(str(tmp_path))

    result, cursor = evaluate_sensor(instance, logs, None)
    assert [r.partition_key for r in result.run_requests] == ["2024-01-01", "2024-01-02"]
    assert all(r.tags[FINGERPRINT_TAG] and r.run_key for r in result.run_requests)
    assert today not in cursor

    again, cursor = evaluate_sensor(instance, logs, cursor)
    assert not again.run_requests
    assert f"waiting for {today}" in again.skip_reason.skip_message

    write(logs / "2024-01-02" / "late.jsonl", "y\n")
    late, cursor = evaluate_sensor(instance, logs, cursor)
    assert [r.partition_key for r in late.run_requests] == ["2024-01-02"]
    assert late.run_requests[0].run_key != result.run_requests[1].run_key
    assert not evaluate_sensor(instance, logs, cursor)[0].run_requests


def test_the_schedule_runs_yesterday_and_skips_what_the_sensor_launched(tmp_path, ip_salt):
    logs = tmp_path / "logs"
    write(logs / "2024-03-09" / "a.jsonl", "x\n")
    instance = DagsterInstance.local_temp(str(tmp_path))
    nightly = datetime(2024, 3, 10, 2, 0, tzinfo=UTC)
    request = evaluate_schedule(instance, logs, nightly)
    assert isinstance(request, RunRequest)
    assert request.partition_key == "2024-03-09"
    assert request.tags[FINGERPRINT_TAG] == day_fingerprints(logs)["2024-03-09"]

    # The sensor's run of the same files is in the instance: the schedule leaves the day alone.
    defs = Definitions(
        assets=build_assets(),
        jobs=[nightly_schedule.job],
        resources=build_resources(str(logs), str(tmp_path / "w.duckdb")),
    )
    job = defs.resolve_job_def("wildchat_nightly")
    instance.create_run_for_job(
        job,
        tags={"dagster/partition": "2024-03-09", FINGERPRINT_TAG: request.tags[FINGERPRINT_TAG]},
    )
    assert isinstance(evaluate_schedule(instance, logs, nightly), SkipReason)

    before_start = evaluate_schedule(instance, logs, datetime(2023, 6, 1, 2, 0, tzinfo=UTC))
    assert "before the first collection day" in before_start.skip_message


AFTER_THE_LAST_DAY = """
import json, sys
from datetime import UTC, datetime
from pathlib import Path
from dagster import DagsterInstance, build_schedule_context, build_sensor_context
from wildchat_dag.defs.automation.automation import new_log_days_sensor, nightly_schedule
from wildchat_dag.defs.ingest.resource import RequestLogStore

logs, home = Path(sys.argv[1]), sys.argv[2]
store = {"log_store": RequestLogStore(root=str(logs), settle_seconds=0)}
instance = DagsterInstance.local_temp(home)
with build_sensor_context(instance=instance, resources=store) as context:
    result = new_log_days_sensor(context)
at = datetime(2024, 1, 9, 2, 0, tzinfo=UTC)
with build_schedule_context(instance=instance, scheduled_execution_time=at, resources=store) as c:
    skipped = nightly_schedule(c)
print(json.dumps({
    "requested": [r.partition_key for r in result.run_requests],
    "cursor": json.loads(result.cursor),
    "schedule": skipped.skip_message,
}))
"""


def test_a_day_after_the_last_collection_day_is_left_not_awaited(tmp_path):
    """With WILDCHAT_END_DATE set, a later folder is recorded and left, never 'not over yet'."""
    logs = tmp_path / "logs"
    for day in ("2024-01-01", "2024-01-02", "2024-01-05"):
        write(logs / day / "a.jsonl", "x\n")
    env = {
        **os.environ,
        "WILDCHAT_START_DATE": "2024-01-01",
        "WILDCHAT_END_DATE": "2024-01-02",
        "WILDCHAT_HOME": str(tmp_path),
    }
    (tmp_path / "home").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", AFTER_THE_LAST_DAY, str(logs), str(tmp_path / "home")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["requested"] == ["2024-01-01", "2024-01-02"]
    assert "2024-01-05" in seen["cursor"], "recorded, so it is not re-examined every tick"
    assert "after the last collection day, 2024-01-02" in seen["schedule"]


@pytest.mark.slow
def test_a_late_file_for_a_day_refreshes_the_days_whose_linking_reads_it(tmp_path, ip_salt):
    """Linking day D reads D-2 .. D+1 (lookahead 1): new requests for D re-link D-1 .. D+2, and
    every step built from those days' conversations follows; nothing else is requested."""
    logs = tmp_path / "logs"
    generate_logs(logs, start_date=date(2024, 1, 1), days=6, conversations_per_day=15, seed=3)
    pipeline = Pipeline(logs, tmp_path / "w.duckdb")
    days = [f"2024-01-0{d}" for d in range(1, 7)]
    pipeline.ingest(*days)
    pipeline.link(*days)
    defs = Definitions(assets=with_automation(build_assets()), resources=pipeline.resources)
    first = evaluate_automation_conditions(defs=defs, instance=pipeline.instance)
    assert first.total_requested == 0

    # A late file lands in 2024-01-03's folder, and that day is ingested again.
    late = tmp_path / "late"
    generate_logs(
        late,
        start_date=date(2024, 1, 3),
        days=1,
        conversations_per_day=5,
        seed=9,
        first_turn_id=900_000_000,
    )
    for file in (late / "2024-01-03").iterdir():
        shutil.copy(file, logs / "2024-01-03" / f"late-{file.name}")
    pipeline.ingest("2024-01-03")

    # Tick 1: the days whose linking reads 2024-01-03, and what follows them within the day.
    after = evaluate_automation_conditions(
        defs=defs, instance=pipeline.instance, cursor=first.cursor
    )
    refreshed = {"2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"}
    for key in [*LINKING, *DETECTION, *LANGUAGE]:
        assert after.get_requested_partitions(key) == refreshed, key
    for key in [*INGEST, *EXPORTS]:
        assert after.get_num_requested(key) == 0, key
    # Redaction waits for the frequency table to count the new detections, and the release
    # records for redaction: neither would see one version of the day otherwise.
    for key in [AssetKey("pii_entity_frequency"), *ANONYMIZATION, *RELEASE_RECORDS]:
        assert after.get_num_requested(key) == 0, key
    again = evaluate_automation_conditions(
        defs=defs, instance=pipeline.instance, cursor=after.cursor
    )
    assert again.total_requested == 0, "requested twice"

    # The runs of tick 1 (what the daemon would launch), then the frequency table.
    for day in sorted(refreshed):
        pipeline.run([*LINKING, *DETECTION], day)
    counting = evaluate_automation_conditions(
        defs=defs, instance=pipeline.instance, cursor=again.cursor
    )
    assert counting.get_num_requested(AssetKey("pii_entity_frequency")) == 1
    assert counting.get_num_requested(ANONYMIZATION[0]) == 0
    pipeline.count_frequencies()
    redacting = evaluate_automation_conditions(
        defs=defs, instance=pipeline.instance, cursor=counting.cursor
    )
    assert redacting.get_requested_partitions(ANONYMIZATION[0]) == refreshed
    # Only the refreshed days: the other days' inputs did not change.
    assert redacting.get_num_requested(AssetKey("pii_entity_frequency")) == 0
    after = redacting

    # Requested once: the next tick does not request the same days again.
    again = evaluate_automation_conditions(
        defs=defs, instance=pipeline.instance, cursor=after.cursor
    )
    assert again.total_requested == 0


def test_the_code_location_carries_its_jobs_automation_and_pools():
    from wildchat_dag.definitions import defs

    repository = defs.get_repository_def()
    assert {s.name for s in repository.schedule_defs} == {"nightly"}
    assert {s.name for s in repository.sensor_defs} == {
        "new_log_days",
        "follow_upstream_updates",
        "redaction_staleness",
        "takedown_application",
    }
    assert all(s.description for s in [*repository.schedule_defs, *repository.sensor_defs])
    for job in (
        "wildchat_nightly",
        "wildchat_release",
        "wildchat_nightly_celery",
        "add_takedown_request",
        "takedown_records",
    ):
        assert repository.get_job(job).description
    graph = repository.asset_graph
    nightly_job = repository.get_job("wildchat_nightly")
    nightly = {k.to_user_string() for k in nightly_job.asset_layer.selected_asset_keys}
    assert "public_release" not in nightly and "pii_entity_frequency" in nightly
    # Every day's staleness is judged by the redaction_staleness sensor, never in a day's run.
    assert any(c.name == "no_stale_days" for c in graph.asset_check_keys)
    for job in ("wildchat_daily", "wildchat_nightly", "redaction_refresh", "wildchat_release"):
        in_run = repository.get_job(job).asset_layer.asset_graph.asset_check_keys
        assert in_run and not any(c.name == "no_stale_days" for c in in_run), job
    unconditioned = {
        "raw_requests",
        "raw_message_texts",
        "quarantined_log_lines",
        "redaction_rules",
        "takedown_ledger",
        "release_statistics",
        "public_release",
        "full_release",
        # Built with their release, by the wildchat_release job.
        "public_search_index",
        "full_search_index",
    }
    for key in graph.get_all_asset_keys():
        followed = graph.get(key).automation_condition is not None
        assert followed == (key.to_user_string() not in unconditioned), key
    pools = {
        key.to_user_string(): assets.node_def.pools
        for key, assets in repository.assets_defs_by_key.items()
        if assets.is_executable
    }
    assert pools["openai_moderation"] == {"openai_api"}
    assert pools["detoxify_moderation"] == {"detoxify_model"}
    assert pools["public_release"] == pools["pii_entity_frequency"] == {"warehouse_tables"}


def test_the_backfill_command_submits_an_asset_backfill_of_exactly_the_days_asked(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    # Logs up to two days past the range: the days a downstream expansion through linking's
    # window (D-2 .. D+1) would add, which must stay out.
    for n in range(6):
        write(tmp_path / "logs" / str(date(2024, 1, 30) + timedelta(days=n)) / "a.jsonl", "{}\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "WILDCHAT_HOME": str(tmp_path)}
    env.pop("WILDCHAT_LOG_ROOT", None)
    command = [sys.executable, "-m", "wildchat_dag.backfill"]
    done = subprocess.run(
        [*command, "2024-01-30", "2024-02-02"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "4 days (2024-01-30 .. 2024-02-02)" in done.stdout
    assert "skipped" not in done.stdout
    refused = subprocess.run(
        [*command, "2024-02-02", "2024-01-30"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "ends (2024-01-30) before it starts" in refused.stderr

    days = ["2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02"]
    with DagsterInstance.from_config(str(home)) as instance:
        [backfill] = instance.get_backfills()
        assert backfill.is_asset_backfill
        target = backfill.asset_backfill_data.target_subset
        selected = {k.to_user_string() for k in backfill.asset_selection}
        assert {"raw_requests", "release_records", "pii_entity_frequency"} <= selected
        assert not selected & {"public_release", "full_release", "release_statistics"}
        # Every partitioned asset, linking and what follows it included, has the four days.
        by_asset = {
            key.to_user_string(): sorted(subset.get_partition_keys())
            for key, subset in target.partitions_subsets_by_asset_key.items()
        }
        assert by_asset["linked_conversations"] == by_asset["release_records"] == days
        assert by_asset == dict.fromkeys(selected - {"pii_entity_frequency"}, days)
        assert target.non_partitioned_asset_keys == {AssetKey("pii_entity_frequency")}
