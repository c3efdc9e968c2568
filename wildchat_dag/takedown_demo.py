"""The takedown demo, after `bash scripts/demo.sh`: two requests added to the demo's ledger,
applied in this process as `takedown apply` would have the daemon apply them, and the changelog
that results.

    bash scripts/takedown-demo.sh      # python -m wildchat_dag.takedown_demo
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("WILDCHAT_MODE", "demo")

import polars as pl
from dagster import AssetKey, DagsterInstance

from wildchat_dag import settings
from wildchat_dag.defs.release.release_versions import (
    changelog,
    history_root_of,
    load_versions,
)
from wildchat_dag.defs.takedowns.application import named_days, resolve_hashes
from wildchat_dag.defs.takedowns.ledger import add_request, ledger_frame
from wildchat_dag.local_runs import run_stage
from wildchat_dag.takedown import RELEASE_ASSETS, named_now, rebuild_assets, warehouse_query


def main() -> int:
    database = settings.default_duckdb_path()
    releases = Path(settings.release_root())
    public = releases / "public" / "data"
    if not public.is_dir():
        print("No release yet: run `bash scripts/demo.sh` first", file=sys.stderr)
        return 1
    released = pl.read_parquet(public / "*.parquet").sort("timestamp")
    if released.height < 2:
        print("The demo's public release has fewer than 2 conversations", file=sys.stderr)
        return 1
    reported = released.row(0, named=True)
    # Another user's conversations, all of them: the hashed_ip of a later conversation.
    user = released.filter(pl.col("hashed_ip") != reported["hashed_ip"]).row(-1, named=True)
    ledger = Path(settings.takedown_ledger_path())
    today = datetime.now(UTC).date()
    resolved = resolve_hashes(
        warehouse_query(database), history_root_of(releases), [reported["conversation_hash"]]
    )
    requests = [
        add_request(
            ledger,
            today,
            "pii_found",
            "conversation_hash",
            [reported["conversation_hash"]],
            "demo: a conversation reported for personal data",
            sorted(resolved.values()),
        ),
        add_request(ledger, today, "consent_withdrawn", "hashed_ip", [user["hashed_ip"]]),
    ]
    for r in requests:
        print(f"Added {r.request_id} ({r.reason}, {r.key_type}) to {ledger}")
    named = named_now(database, ledger_frame(requests))
    days = named_days(warehouse_query(database), ledger_frame(requests))
    print(
        f"They name {named['conversation_id'].n_unique()} released record(s) on {len(days)} day(s)"
    )

    from wildchat_dag.definitions import defs

    job = defs.resolve_job_def("wildchat_daily")
    instance = DagsterInstance.get()
    # As `takedown apply` has the daemon do it: each named day from the mark on, then the cut.
    keys = [AssetKey(k) for k in rebuild_assets()]
    if not run_stage(job, "takedown", keys, days, instance):
        return 1
    cut = [AssetKey("takedown_ledger"), *(AssetKey(k) for k in RELEASE_ASSETS)]
    if not run_stage(job, "release", cut, [None], instance):
        return 1
    for release in ("public", "full"):
        versions = load_versions(history_root_of(releases), release)
        print(f"\nThe {release} release's changelog (its card, README.md, says the same):")
        for entry in changelog(versions):
            print(entry)
    print("\nCompare two versions: python -m wildchat_dag.releases diff public OLD NEW")
    return 0


if __name__ == "__main__":
    sys.exit(main())
