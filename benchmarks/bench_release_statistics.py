"""Release statistics: the full scan against the merge of per-day partials, in the same run.

Generates ``--conversations`` conversations over ``--days`` days straight into a fresh DuckDB
file's ``main.release_records`` (``bench_release.generate``: WildChat's shape, turns and text
lengths, about 10% toxic), then times, in this one process, on the same file:

- full scan: ``release_statistics_full_scan`` for both releases, what ``release_statistics``
  computed at every release cut before: every day's text tokenized again;
- partials: ``release_day_statistics``'s work for every day (the day's columns read with
  ``DAY_RECORDS_SQL``, ``day_statistics`` on them) and the table written: paid once per day,
  when the day is built, not at the cut (summed over the days here, and per day);
- merge: ``merge_day_statistics`` for both releases over every day, what a cut now does.

Wall seconds (``time.perf_counter``) and CPU seconds (``time.process_time``: every thread of
the process, DuckDB's included). The merged rows are checked against the full scan's (1e-9
relative, nulls where it has nulls): the script fails if one differs.

    .venv/bin/python benchmarks/bench_release_statistics.py
    .venv/bin/python benchmarks/bench_release_statistics.py --conversations 1000000 --days 30 \
        --workdir /tmp/stats1m            # then --reuse to time again on the same records
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import duckdb
import polars as pl
from bench_release import generate
from report_tables import print_table

from wildchat_dag.defs.release.release_schema import RELEASES
from wildchat_dag.defs.release.release_statistics import (
    DAY_RECORDS_SQL,
    day_statistics,
    merge_day_statistics,
    release_statistics_full_scan,
)
from wildchat_dag.settings import toxicity_threshold


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def worst_difference(merged: pl.DataFrame, reference: pl.DataFrame) -> float:
    """The largest relative difference of a value; inf where the rows or the nulls differ."""
    keys = ["release", "section", "key"]
    joined = reference.join(merged, on=keys, how="full", coalesce=True, suffix="_merged")
    worst = 0.0
    for want, got in joined.select("value", "value_merged").rows():
        if want is None or got is None:
            if want is not got:
                return math.inf
            continue
        if want != got:
            worst = max(worst, abs(got - want) / max(abs(want), abs(got)))
    return worst if joined.height == reference.height == merged.height else math.inf


def benchmark(args: argparse.Namespace, work: Path) -> int:
    database = work / "statistics.duckdb"
    if database.exists():
        print(f"\nReusing the records of {database} (--reuse)")
    else:
        print(f"\nGenerating {args.conversations:,} conversations over {args.days} days ...")
        made = generate(args, database)
        print(
            f"generated: {made['utterances']:,} utterances, mean {made['mean_chars']:,.0f} "
            f"characters, {made['public']:,} public and {made['full']:,} full conversations, "
            f"{made['bytes'] / 1e9:.2f} GB, in {made['seconds']:.1f} s"
        )
    threshold = toxicity_threshold()
    # The warehouse's own setting (resources/warehouse.py).
    con = duckdb.connect(str(database), config={"memory_limit": args.memory_limit})
    con.execute("SET TimeZone = 'UTC'")

    def query(sql: str, parameters: dict | None = None) -> pl.DataFrame:
        return con.execute(sql, parameters or {}).pl()

    days = query("SELECT DISTINCT partition_day FROM main.release_records ORDER BY 1")
    days = days["partition_day"].to_list()
    [(conversations,)] = con.execute("SELECT count(*) FROM main.release_records").fetchall()

    print("full scan (both releases) ...")
    reference, scan_wall, scan_cpu = timed(
        lambda: pl.concat([release_statistics_full_scan(query, r, threshold) for r in RELEASES])
    )

    print(f"partials of {len(days)} days ...")

    def partials() -> pl.DataFrame:
        frames = []
        for day in days:
            records = con.execute(DAY_RECORDS_SQL, {"day": day}).to_arrow_table()
            frames.append(day_statistics(records, threshold))
        frame = pl.concat(frames)
        con.register("partials", frame.to_arrow())
        con.execute("CREATE OR REPLACE TABLE main.release_day_statistics AS FROM partials")
        con.unregister("partials")
        return frame

    stored, day_wall, day_cpu = timed(partials)

    print("merge (both releases) ...")
    merged, merge_wall, merge_cpu = timed(
        lambda: pl.concat([merge_day_statistics(query, r, days) for r in RELEASES])
    )
    con.close()
    worst = worst_difference(merged, reference)

    n = len(days)
    print(
        f"\nResults: {conversations:,} conversations, {n} days; partials {stored.height:,} rows\n"
    )
    print_table(
        ["path", "when", "wall s", "CPU s", "wall vs full scan", "CPU vs full scan"],
        [
            ["full scan, both releases", "every cut", f"{scan_wall:.3f}", f"{scan_cpu:.3f}",
             "1.00x", "1.00x"],
            [f"partials, {n} days (summed)", "as each day is built", f"{day_wall:.3f}",
             f"{day_cpu:.3f}", f"{day_wall / scan_wall:.2f}x", f"{day_cpu / scan_cpu:.2f}x"],
            ["partials, one day (mean)", "as each day is built", f"{day_wall / n:.3f}",
             f"{day_cpu / n:.3f}", f"{day_wall / n / scan_wall:.3f}x",
             f"{day_cpu / n / scan_cpu:.3f}x"],
            [f"merge of {n} days, both releases", "every cut", f"{merge_wall:.3f}",
             f"{merge_cpu:.3f}", f"{merge_wall / scan_wall:.4f}x",
             f"{merge_cpu / scan_cpu:.4f}x"],
        ],
    )  # fmt: skip
    print(
        f"\nA cut is {scan_wall / merge_wall:,.0f}x faster (wall), {scan_cpu / merge_cpu:,.0f}x "
        f"less CPU. Merged rows against the full scan's: {merged.height} and "
        f"{reference.height}, worst relative difference {worst:.2e}"
    )
    ok = worst <= 1e-9
    print("check: " + ("ok (<= 1e-9)" if ok else "MISMATCH"))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--mean-chars", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-limit", default="2GB", help="DuckDB's, as the warehouse's")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temp dir)")
    parser.add_argument(
        "--reuse", action="store_true", help="time again on the records already in --workdir"
    )
    args = parser.parse_args(argv)
    if args.conversations < 1 or args.days < 1:
        parser.error("--conversations and --days must be at least 1")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; python "
        f"{platform.python_version()}; duckdb {version('duckdb')}, polars {version('polars')}"
    )
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        if (args.workdir / "statistics.duckdb").exists() and not args.reuse:
            raise SystemExit(
                f"{args.workdir / 'statistics.duckdb'} exists: give an empty --workdir"
            )
        return benchmark(args, args.workdir.resolve())
    with tempfile.TemporaryDirectory(prefix="bench-release-statistics-") as tmp:
        return benchmark(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
