"""The demo: generate a few days of sample logs, then run the daily job over them.

Runs go into the Dagster instance at $DAGSTER_HOME, so `dagster dev` shows them afterwards.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
from dagster import AssetKey, DagsterInstance

from wildchat_dag import settings
from wildchat_dag.definitions import defs
from wildchat_dag.loggen.generator import generate_logs

STAGES = (
    ("ingest", [AssetKey("raw_requests"), AssetKey("quarantined_log_lines")]),
    ("linking", [AssetKey("linked_conversations"), AssetKey("orphaned_requests")]),
)


def run_demo(days: int, conversations_per_day: int, seed: int) -> int:
    start = settings.partitions_start_date()
    log_root = Path(settings.default_log_root())
    wanted = [(start + timedelta(days=i)).isoformat() for i in range(days)]
    if not all((log_root / key).is_dir() for key in wanted):
        print(f"Generating {days} days of sample logs under {log_root} ...")
        generate_logs(
            log_root,
            start_date=start,
            days=days,
            conversations_per_day=conversations_per_day,
            seed=seed,
        )
        _add_malformed_lines(log_root / wanted[0])
    # Conversations of the last day that run past midnight spill into the next day's folder.
    partition_keys = sorted(
        p.name for p in log_root.iterdir() if p.is_dir() and p.name >= wanted[0]
    )
    job = defs.resolve_job_def("wildchat_daily")
    instance = DagsterInstance.get()
    # All days are ingested before any is linked, so linking sees its lookahead days.
    for stage, keys in STAGES:
        for key in partition_keys:
            result = job.execute_in_process(
                partition_key=key, instance=instance, asset_selection=keys, raise_on_error=False
            )
            print(f"  {stage:<8} {key}: {'ok' if result.success else 'FAILED'}")
            if not result.success:
                return 1
    _print_summary(settings.default_duckdb_path(), partition_keys)
    return 0


def _add_malformed_lines(folder: Path) -> None:
    """A few broken lines, so the demo shows quarantine at work."""
    (folder / "requests-broken.jsonl").write_text(
        "\n".join(
            [
                '{"turn_id": 1, "timestamp": "2024-01-01T00:00:00Z", "model": ',
                '{"turn_id": 2, "note": "no other field"}',
                '["not", "an", "object"]',
                "",
            ]
        ),
        encoding="utf-8",
    )


def _print_summary(database: str, partition_keys: list[str]) -> None:
    con = duckdb.connect(database, read_only=True)
    query = """
        SELECT strftime(d.partition_day, '%Y-%m-%d') AS day,
          (SELECT count(*) FROM main.raw_requests r WHERE r.partition_day = d.partition_day),
          (SELECT count(*) FROM main.quarantined_log_lines q
             WHERE q.partition_day = d.partition_day),
          (SELECT count(*) FROM main.linked_conversations c
             WHERE c.partition_day = d.partition_day),
          (SELECT count(*) FROM main.orphaned_requests o WHERE o.partition_day = d.partition_day)
        FROM (SELECT DISTINCT partition_day FROM main.raw_requests) d ORDER BY 1
    """
    print(f"\n{'day':<12}{'requests':>10}{'quarantined':>13}{'conversations':>15}{'orphans':>9}")
    for row in con.sql(query).fetchall():
        if row[0] in partition_keys:
            print(f"{row[0]:<12}{row[1]:>10}{row[2]:>13}{row[3]:>15}{row[4]:>9}")
    con.close()
    print(
        f"\nDuckDB file: {database}\nOpen the UI with: scripts/ui.sh  (then http://127.0.0.1:3000)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--conversations-per-day", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return run_demo(args.days, args.conversations_per_day, args.seed)


if __name__ == "__main__":
    sys.exit(main())
