"""A backfill of every per-day step over a date range, from the command line.

It submits what the UI's Materialize → date range submits: an asset backfill, which the daemon
runs in dependency order across days (linking day D waits for the ingest of D+1 when both are
targeted). `dagster job backfill` would instead start one run per day with all of that day's
steps, runs that know nothing of the days linking reads across: a day could be linked before its
neighbours are ingested. The mutation goes through ``dagster-graphql`` against the workspace and
the instance at $DAGSTER_HOME; a running daemon (`dagster-daemon run`, or `dagster dev`) then
executes it.

The backfill targets exactly the chosen days of every asset: it names each asset with its own
day ranges (``partitionsByAssets``). Given partition names and an asset selection instead (what
the UI sends), dagster picks those days of the root assets and carries them downstream through
each partition mapping; linking day D reads raw_requests D-2 .. D+1 (``link_window_mapping``),
so raw_requests D feeds the linking of D-1 .. D+2, and the target would grow by the day before
the range and the two after it: linked and released again (every step after linking), from logs
nobody asked to backfill, or from none at all. Exact, the last day of a range is linked with
whatever of the next day is ingested already; linking warns when that day is missing.

By default only days whose log folder holds at least one entry are targeted: a day without logs
would cost a run that finds nothing. Consecutive days make one range, a gap splits them.
``--include-empty-days`` targets every day of the range.

    python -m wildchat_dag.backfill 2024-01-01 2024-01-31 [--workspace workspace.yaml]
        [--assets raw_requests,raw_message_texts,quarantined_log_lines] [--log-root DIR]
        [--include-empty-days]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Collection, Iterable
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


def day_ranges(days: Iterable[str]) -> list[tuple[str, str]]:
    """``[(first, last), ...]`` of the runs of consecutive days, oldest first."""
    ranges: list[tuple[str, str]] = []
    previous: date | None = None
    for day in sorted(set(days)):
        current = date.fromisoformat(day)
        if previous is not None and current == previous + timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
        previous = current
    return ranges


def format_ranges(ranges: list[tuple[str, str]], most: int = 5) -> str:
    shown = [first if first == last else f"{first} .. {last}" for first, last in ranges[:most]]
    more = len(ranges) - most
    return ", ".join(shown) + (f" and {more} more ranges" if more > 0 else "")


def days_with_logs(days: Iterable[str], log_root: str | Path) -> list[str]:
    """The days whose log folder holds anything ingest reads or fails on."""
    from wildchat_dag.defs.ingest.resource import RequestLogStore

    store = RequestLogStore(root=str(log_root))
    return [day for day in days if store.has_logs(date.fromisoformat(day))]


def backfill_params(
    days: Iterable[str], assets: list[str], title: str, unpartitioned: Collection[str] = ()
) -> dict:
    """``LaunchBackfillParams`` targeting exactly ``days`` (as ranges of consecutive days) of
    each asset, and once each asset of ``unpartitioned``, with no downstream expansion."""
    ranges = [{"start": first, "end": last} for first, last in day_ranges(days)]
    if not ranges and set(assets) - set(unpartitioned):
        raise ValueError("a backfill needs at least one day")
    return {
        "partitionsByAssets": [
            {
                "assetKey": {"path": key.split("/")},
                "partitions": None if key in unpartitioned else {"ranges": ranges},
            }
            for key in assets
        ],
        "title": title,
    }


class BackfillRefused(RuntimeError):
    """dagster-graphql failed, or the instance refused the backfill; the message says which."""


def submit_backfill(workspace: Path, params: dict, env: dict[str, str] | None = None) -> str:
    """Launch ``params`` (``LaunchBackfillParams``) through ``dagster-graphql`` against
    ``workspace`` and the instance at $DAGSTER_HOME (of ``env``, default this process's
    environment); the backfill's id."""
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster-graphql")),
            "-w",
            str(workspace),
            "-t",
            LAUNCH,
            "-v",
            json.dumps({"params": params}),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    # dagster-graphql prints its code server's log lines around the answer.
    answers = [line for line in result.stdout.splitlines() if line.startswith('{"data"')]
    if result.returncode or not answers:
        raise BackfillRefused(result.stdout[-2000:] + result.stderr[-2000:])
    answer = json.loads(answers[-1])["data"]["launchPartitionBackfill"]
    if answer["__typename"] != "LaunchBackfillSuccess":
        raise BackfillRefused(f"the backfill was refused: {answer}")
    return answer["backfillId"]


def nightly_assets() -> list[str]:
    from wildchat_dag.definitions import defs

    job = defs.get_repository_def().get_job("wildchat_nightly")
    return sorted(key.to_user_string() for key in job.asset_layer.selected_asset_keys)


def unpartitioned_assets(assets: list[str]) -> set[str]:
    """The assets of ``assets`` without partitions; a ValueError names the unknown ones."""
    from dagster import AssetKey

    from wildchat_dag.definitions import defs

    graph = defs.get_repository_def().asset_graph
    unknown = [key for key in assets if not graph.has(AssetKey.from_user_string(key))]
    if unknown:
        raise ValueError(f"unknown assets: {', '.join(unknown)}")
    return {key for key in assets if not graph.get(AssetKey.from_user_string(key)).is_partitioned}


def main(argv: list[str] | None = None) -> int:
    from wildchat_dag import settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=date.fromisoformat, help="first day, YYYY-MM-DD")
    parser.add_argument("last", type=date.fromisoformat, help="last day, YYYY-MM-DD")
    parser.add_argument("--workspace", default="workspace.yaml", type=Path)
    parser.add_argument(
        "--assets", help="comma-separated asset keys (default: the wildchat_nightly job's)"
    )
    parser.add_argument(
        "--log-root",
        type=Path,
        help="the log root whose day folders say which days have logs "
        "(default: $WILDCHAT_LOG_ROOT, or logs/ under $WILDCHAT_HOME)",
    )
    parser.add_argument(
        "--include-empty-days",
        action="store_true",
        help="target every day of the range, with logs or not",
    )
    args = parser.parse_args(argv)
    try:
        requested = days_between(args.first, args.last)
    except ValueError as error:
        parser.error(str(error))
    assets = args.assets.split(",") if args.assets else nightly_assets()
    try:
        unpartitioned = unpartitioned_assets(assets)
    except ValueError as error:
        parser.error(str(error))
    span = f"{requested[0]} .. {requested[-1]}"
    if args.include_empty_days:
        days = requested
    else:
        log_root = args.log_root or Path(settings.default_log_root())
        days = days_with_logs(requested, log_root)
        skipped = sorted(set(requested) - set(days))
        if not days:
            print(
                f"nothing to backfill: none of the {len(requested)} days of {span} has logs "
                f"under {log_root} (--include-empty-days targets them anyway)"
            )
            return 0
        if skipped:
            print(
                f"skipped {len(skipped)} of {len(requested)} days for having no logs under "
                f"{log_root}: {format_ranges(day_ranges(skipped))}"
            )
    ranges = day_ranges(days)
    if len(ranges) > 1:
        print(f"targeted: {len(ranges)} ranges, {format_ranges(ranges)}")
    title = f"wildchat_nightly {span}"
    try:
        backfill_id = submit_backfill(
            args.workspace, backfill_params(days, assets, title, unpartitioned)
        )
    except BackfillRefused as error:
        print(error, file=sys.stderr)
        return 1
    print(
        f"backfill {backfill_id}: {len(days)} days ({days[0]} .. {days[-1]}), "
        f"{len(assets)} assets; a running daemon executes it"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
