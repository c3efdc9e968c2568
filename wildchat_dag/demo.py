"""The demo: generate a few days of sample logs, then run the daily job over them.

Runs go into the Dagster instance at $DAGSTER_HOME, so `dagster dev` shows them afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import yaml
from dagster import AssetKey, DagsterInstance

# Before the definitions load: demo mode makes up a per-install IP salt if none is set, and ends
# the partitions at the demo's last day of logs.
os.environ.setdefault("WILDCHAT_MODE", "demo")

from wildchat_dag import settings
from wildchat_dag.defs.ingest.assets import INGEST_ASSETS
from wildchat_dag.local_runs import run_stage
from wildchat_dag.loggen.generator import generate_logs

# (stage, assets, per day?). Each stage runs for every day before the next starts: linking sees
# its lookahead days, and the PII frequencies count every day before any is redacted.
STAGES = (
    ("ingest", list(INGEST_ASSETS), True),
    ("linking", ["linked_conversations", "orphaned_requests", "withdrawn_conversations"], True),
    (
        "enrichment",
        [
            "user_turn_locations",
            "conversation_locations",
            "utterance_languages",
            "conversation_languages",
        ],
        True,
    ),
    ("detection", ["pii_candidates", "pii_scanned_utterances"], True),
    ("frequency", ["redaction_rules", "pii_entity_frequency"], False),
    ("anonymization", ["anonymized_conversations"], True),
    (
        "moderation",
        [
            "openai_moderation",
            "detoxify_moderation",
            "utterance_toxicity",
            "conversation_toxicity",
        ],
        True,
    ),
    ("release records", ["release_records", "release_day_statistics"], True),
    # The ledger observed first: the releases are then built from its current version.
    ("release", ["takedown_ledger", "release_statistics", "public_release", "full_release"], False),
    ("search index", ["public_search_index", "full_search_index"], False),
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
    # Only now: in demo mode the partitions end at the last day folder, which the generator may
    # just have written. The UI (scripts/ui.sh) reads the same folders, so both see these days.
    from wildchat_dag.definitions import defs
    from wildchat_dag.partitions import collection_days

    partitions = collection_days.get_partition_keys()
    partition_keys = [key for key in partitions if (log_root / key).is_dir()]
    if not partition_keys:
        print(f"No partition has a log folder under {log_root}: nothing to run", file=sys.stderr)
        return 1
    print(f"Days: {partition_keys[0]} .. {partition_keys[-1]} ({len(partition_keys)} partitions)")
    if len(partition_keys) < len(partitions):
        # Ingest fails on a day without a folder; such days stay missing.
        print(f"  {len(partitions) - len(partition_keys)} partition(s) have no logs: skipped")
    instance = DagsterInstance.get()
    job = defs.resolve_job_def("wildchat_daily")
    print(f"IP salt: {settings.ip_salt_source()}")
    for stage, keys, per_day in STAGES:
        days_of_stage = partition_keys if per_day else [None]
        if not run_stage(job, stage, [AssetKey(k) for k in keys], days_of_stage, instance):
            return 1
    database = settings.default_duckdb_path()
    _print_summary(database, partition_keys)
    _print_releases(Path(settings.release_root()))
    print(
        f"\nDuckDB file: {database}\n"
        "Open the UI with: bash scripts/ui.sh  (then http://127.0.0.1:3000)\n"
        "Browse and review the conversations with: bash scripts/browse.sh  "
        "(then http://127.0.0.1:8765)"
    )
    return 0


def _print_releases(root: Path) -> None:
    print()
    for release in ("public", "full"):
        folder = root / release
        card = folder / "README.md"
        header = yaml.safe_load(card.read_text(encoding="utf-8").split("---")[1])
        [split] = header["dataset_info"]["splits"]
        shards = len(list((folder / "data").glob("*.parquet")))
        size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        print(
            f"{release} release: {split['num_examples']:,} conversations, "
            f"{size / 1e6:,.2f} MB on disk ({shards} Parquet file(s) and the card README.md) "
            f"in {folder}"
        )


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
          (SELECT count(*) FROM main.orphaned_requests o WHERE o.partition_day = d.partition_day),
          (SELECT count(*) FILTER (WHERE a.redacted) FROM main.anonymized_conversations a
             WHERE a.partition_day = d.partition_day),
          (SELECT printf('%.0f%%', 100 * avg((g.geo_status = 'located')::INT))
             FROM main.user_turn_locations g WHERE g.partition_day = d.partition_day),
          (SELECT count(DISTINCT u.language) FILTER (WHERE u.language <> 'Nolang')
             FROM main.utterance_languages u WHERE u.partition_day = d.partition_day),
          (SELECT count(*) FILTER (WHERE t.toxic) FROM main.conversation_toxicity t
             WHERE t.partition_day = d.partition_day),
          (SELECT count(*) FILTER (WHERE t.toxic IS NULL) FROM main.conversation_toxicity t
             WHERE t.partition_day = d.partition_day)
        FROM (SELECT DISTINCT partition_day FROM main.raw_requests) d ORDER BY 1
    """
    widths = (12, 10, 13, 15, 9, 10, 9, 11, 7, 9)

    def line(values) -> str:
        first, *rest = zip(values, widths, strict=True)
        return f"{first[0]:<{first[1]}}" + "".join(f"{v:>{w}}" for v, w in rest)

    header = ("day", "requests", "quarantined", "conversations", "orphans", "redacted")
    print("\n" + line((*header, "located", "languages", "toxic", "unknown")))
    for row in con.sql(query).fetchall():
        if row[0] in partition_keys:
            print(line(row))
    scorers = con.sql(
        "SELECT DISTINCT status, detail FROM main.openai_moderation "
        "WHERE status = 'not_configured' UNION "
        "SELECT DISTINCT status, detail FROM main.detoxify_moderation "
        "WHERE status = 'not_configured'"
    ).fetchall()
    con.close()
    for _, detail in scorers:
        # "unknown": conversations no scorer could clear; say what would enable scoring.
        print(f"Moderation did not run: {detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=settings.DEMO_DAYS)
    parser.add_argument("--conversations-per-day", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.days < 1 or args.conversations_per_day < 1:
        parser.error("--days and --conversations-per-day must be at least 1")
    return run_demo(args.days, args.conversations_per_day, args.seed)


if __name__ == "__main__":
    sys.exit(main())
