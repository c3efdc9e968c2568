"""The production topology end to end: `dagster api grpc`, `dagster-webserver` and
`dagster-daemon` on a Dagster instance in the local PostgreSQL, driven through the webserver's
GraphQL API as the UI drives it."""

import time
from datetime import UTC, date, datetime, timedelta

import pytest

from wildchat_dag.backfill import LAUNCH as BACKFILL
from wildchat_dag.backfill import backfill_params
from wildchat_dag.defs.ingest.assets import INGEST_ASSETS
from wildchat_dag.loggen.generator import generate_logs
from wildchat_dag.resources.duckdb_io import locked_connection
from wildchat_dag_tests.conftest import TEST_SALT
from wildchat_dag_tests.deployment import (
    Deployment,
    fresh_database,
    postgres_or_skip,
    production_deployment,
    wait_for,
)

LOCATION = {"repositoryLocationName": "wildchat_dag", "repositoryName": "__repository__"}
INGEST_AND_LINKING = [*INGEST_ASSETS, "linked_conversations", "orphaned_requests"]

LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status }
  }
}"""

RUNS = """
query Runs($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) {
    ... on Runs { results { runId status jobName tags { key value } } }
  }
}"""

RUN_ERRORS = """
query Errors($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection { events { __typename ... on MessageEvent { message } } }
  }
}"""

START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}"""

START_SCHEDULE = """
mutation Start($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}"""

TERMINATE = """
mutation Terminate($runId: String!) { terminateRun(runId: $runId) { __typename } }"""


def ui_selection(deployment: Deployment, assets: list[str]) -> tuple[str, list[dict]]:
    """The asset job and the checks the UI sends with a selection of assets."""
    nodes = deployment.query(
        "query Nodes($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) { assetKey { path } "
        "jobNames assetChecksOrError { ... on AssetChecks { checks { name } } } } }",
        {"keys": [{"path": [a]} for a in assets]},
    )["assetNodes"]
    job = next(j for j in nodes[0]["jobNames"] if j.startswith("__ASSET_JOB"))
    checks = [
        {"assetKey": {"path": n["assetKey"]["path"]}, "name": c["name"]}
        for n in nodes
        for c in n["assetChecksOrError"]["checks"]
    ]
    return job, checks


def runs_tagged(deployment: Deployment, **tags: str) -> list[dict]:
    found = deployment.query(RUNS, {"tags": [{"key": k, "value": v} for k, v in tags.items()]})
    return found["runsOrError"]["results"]


def partition_runs(deployment: Deployment, day: str) -> list[dict]:
    return runs_tagged(deployment, **{"dagster/partition": day})


def finished(deployment: Deployment, run_id: str) -> str | None:
    deployment.assert_alive()
    runs = deployment.query(RUNS, {"tags": []})["runsOrError"]["results"]
    status = next(r["status"] for r in runs if r["runId"] == run_id)
    return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None


def run_messages(deployment: Deployment, run_id: str) -> str:
    events = deployment.query(RUN_ERRORS, {"runId": run_id})["logsForRun"]["events"]
    return "\n".join(e.get("message") or "" for e in events)


def rows_by_day(database: str, table: str) -> dict[str, int]:
    with locked_connection(database) as con:
        rows = con.execute(
            f"SELECT strftime(partition_day, '%Y-%m-%d'), count(*) FROM main.{table} GROUP BY 1"
        ).fetchall()
    return dict(rows)


@pytest.mark.slow
def test_the_production_topology_runs_launches_backfills_and_automation(tmp_path):
    postgres_or_skip()
    today = datetime.now(UTC).date()
    first = today - timedelta(days=10)
    backfill_days = [(first + timedelta(days=d)).isoformat() for d in range(1, 8)]
    sensor_day = (today - timedelta(days=2)).isoformat()
    yesterday = (today - timedelta(days=1)).isoformat()
    logs = tmp_path / "logs"
    generate_logs(logs, start_date=first, days=8, conversations_per_day=12, seed=11)
    database = str(tmp_path / "warehouse.duckdb")

    with (
        fresh_database() as pg_database,
        production_deployment(
            tmp_path,
            pg_database,
            WILDCHAT_LOG_ROOT=str(logs),
            WILDCHAT_DUCKDB_PATH=database,
            WILDCHAT_START_DATE=(first - timedelta(days=5)).isoformat(),
            WILDCHAT_IP_SALT=TEST_SALT,
            # The test turns the sensor and the schedule on itself, as a user does in the UI.
            WILDCHAT_AUTOMATION="off",
            WILDCHAT_LOG_SETTLE_SECONDS="0",
            WILDCHAT_LOG_SCAN_INTERVAL_SECONDS="5",
            WILDCHAT_NIGHTLY_CRON="* * * * *",
        ) as deployment,
    ):
        # The nightly schedule, on from the start: the daemon ticks it at the next minute (the
        # cron of this test), while the steps below run. Checked at the end.
        started = deployment.query(
            START_SCHEDULE, {"selector": {**LOCATION, "scheduleName": "nightly"}}
        )["startSchedule"]
        assert started["__typename"] == "ScheduleStateResult", started

        # 1. The UI's Materialize button: one partition of the selected assets, with their checks.
        job, checks = ui_selection(deployment, INGEST_AND_LINKING)
        launched = deployment.query(
            LAUNCH,
            {
                "executionParams": {
                    "selector": {
                        **LOCATION,
                        "pipelineName": job,
                        "assetSelection": [{"path": [k]} for k in INGEST_AND_LINKING],
                        "assetCheckSelection": checks,
                    },
                    "mode": "default",
                    "executionMetadata": {
                        "tags": [{"key": "dagster/partition", "value": first.isoformat()}]
                    },
                }
            },
        )["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        status = wait_for("the launched run", lambda: finished(deployment, run_id), 300)
        assert status == "SUCCESS", run_messages(deployment, run_id)[-3000:]
        assert rows_by_day(database, "raw_requests").get(first.isoformat(), 0) > 0
        assert rows_by_day(database, "linked_conversations").get(first.isoformat(), 0) > 0

        # The schedule's tick: a run for yesterday. Its work is the sensor's run's below (a
        # whole nightly job): stop it rather than wait.
        nightly = wait_for(
            "the nightly schedule's run", lambda: partition_runs(deployment, yesterday), 150, 5
        )
        tags = {t["key"]: t["value"] for t in nightly[0]["tags"]}
        assert nightly[0]["jobName"] == "wildchat_nightly"
        assert tags["wildchat/trigger"] == "nightly" and tags["dagster/schedule_name"] == "nightly"
        deployment.query(TERMINATE, {"runId": nightly[0]["runId"]})

        # 2. A backfill of 7 days, two runs at once, all writing the one DuckDB file. Ingest
        # only: linking would add a run a day, and the days around the range (test_automation
        # shows what an asset backfill targets).
        backfill = deployment.query(
            BACKFILL,
            {"params": backfill_params(backfill_days, list(INGEST_ASSETS), "test backfill")},
        )["launchPartitionBackfill"]
        assert backfill["__typename"] == "LaunchBackfillSuccess", backfill
        backfill_id = backfill["backfillId"]

        def backfill_done() -> str | None:
            deployment.assert_alive()
            status = deployment.query(BACKFILL_STATUS, {"id": backfill_id})
            status = status["partitionBackfillOrError"]["status"]
            return status if status not in ("REQUESTED", "CANCELING") else None

        assert wait_for("the backfill", backfill_done, 600, 5) == "COMPLETED_SUCCESS"
        runs = runs_tagged(deployment, **{"dagster/backfill": backfill_id})
        assert len(runs) == 7 and {r["status"] for r in runs} == {"SUCCESS"}
        messages = "\n".join(run_messages(deployment, r["runId"]) for r in runs)
        assert "Could not set lock" not in messages and "IOException" not in messages
        assert set(backfill_days) <= set(rows_by_day(database, "raw_requests"))

        # 3. The new-logs sensor: days already ingested from their files are left alone; a new
        # day folder is launched once, however many ticks see it.
        started = deployment.query(
            START_SENSOR, {"selector": {**LOCATION, "sensorName": "new_log_days"}}
        )["startSensor"]
        assert started["__typename"] == "Sensor", started
        generate_logs(
            logs,
            start_date=date.fromisoformat(sensor_day),
            days=1,
            conversations_per_day=12,
            seed=12,
            first_turn_id=700_000_000,
        )
        sensed = wait_for("the sensor's run", lambda: partition_runs(deployment, sensor_day), 120)
        run_id = sensed[0]["runId"]
        # Four more ticks of the sensor (every 5 s) see the same folder: still one run.
        time.sleep(20)
        runs = partition_runs(deployment, sensor_day)
        assert [(r["jobName"], r["runId"]) for r in runs] == [("wildchat_nightly", run_id)]
        tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
        assert tags["wildchat/trigger"] == "new_log_days" and tags["wildchat/log_fingerprint"]
        # The whole nightly job of a day runs in the other tests; this one is about launching.
        deployment.query(TERMINATE, {"runId": run_id})
        for day in backfill_days:
            assert {r["jobName"] for r in partition_runs(deployment, day)} == {"__ASSET_JOB"}, (
                f"the sensor launched {day} again"
            )
