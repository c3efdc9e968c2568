"""A backfill of every per-day step over a date range, from the command line.

It submits what the UI's Materialize → date range submits: an asset backfill, which the daemon
runs in dependency order across days (linking day D waits for the ingest of D+1). `dagster job
backfill` would instead start one run per day with all of that day's steps, runs that know
nothing of the days linking reads across: a day could be linked before its neighbours are
ingested. The mutation goes through ``dagster-graphql`` against the workspace and the instance
at $DAGSTER_HOME; a running daemon (`dagster-daemon run`, or `dagster dev`) then executes it.

    python -m wildchat_dag.backfill 2024-01-01 2024-01-31 [--workspace workspace.yaml]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

LAUNCH = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on UnauthorizedError { message }
  }
}
"""


def days_between(first: date, last: date) -> list[str]:
    if last < first:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def backfill_params(days: list[str], assets: list[str], title: str) -> dict:
    return {
        "partitionNames": days,
        "assetSelection": [{"path": [key]} for key in assets],
        "fromFailure": False,
        "title": title,
    }


def nightly_assets() -> list[str]:
    from wildchat_dag.definitions import defs

    job = defs.get_repository_def().get_job("wildchat_nightly")
    return sorted(key.to_user_string() for key in job.asset_layer.selected_asset_keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=date.fromisoformat, help="first day, YYYY-MM-DD")
    parser.add_argument("last", type=date.fromisoformat, help="last day, YYYY-MM-DD")
    parser.add_argument("--workspace", default="workspace.yaml", type=Path)
    parser.add_argument(
        "--assets", help="comma-separated asset keys (default: the wildchat_nightly job's)"
    )
    args = parser.parse_args(argv)
    try:
        days = days_between(args.first, args.last)
    except ValueError as error:
        parser.error(str(error))
    assets = args.assets.split(",") if args.assets else nightly_assets()
    title = f"wildchat_nightly {days[0]} .. {days[-1]}"
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster-graphql")),
            "-w",
            str(args.workspace),
            "-t",
            LAUNCH,
            "-v",
            json.dumps({"params": backfill_params(days, assets, title)}),
        ],
        capture_output=True,
        text=True,
    )
    # dagster-graphql prints its code server's log lines around the answer.
    answers = [line for line in result.stdout.splitlines() if line.startswith('{"data"')]
    if result.returncode or not answers:
        print(result.stdout[-2000:] + result.stderr[-2000:], file=sys.stderr)
        return 1
    answer = json.loads(answers[-1])["data"]["launchPartitionBackfill"]
    if answer["__typename"] != "LaunchBackfillSuccess":
        print(f"the backfill was refused: {answer}", file=sys.stderr)
        return 1
    print(
        f"backfill {answer['backfillId']}: {len(days)} days ({days[0]} .. {days[-1]}), "
        f"{len(assets)} assets; a running daemon executes it"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
