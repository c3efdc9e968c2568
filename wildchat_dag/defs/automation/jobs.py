"""The jobs: what the schedule, the sensor, a backfill and the release run."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from wildchat_dag.defs.anonymization.stale_days import STALE_DAY_CHECKS
from wildchat_dag.partitions import collection_days

# Cut on demand, not nightly: each export rewrites a whole release from every day, and each
# search index re-reads its release.
RELEASE_CUT = AssetSelection.assets(
    "release_statistics",
    "public_release",
    "full_release",
    "public_search_index",
    "full_search_index",
)
# Every day's staleness is judged by the redaction_staleness sensor, not inside a day's run.
EVERYTHING = AssetSelection.all() - STALE_DAY_CHECKS

wildchat_daily_job = define_asset_job(
    "wildchat_daily",
    selection=EVERYTHING,
    partitions_def=collection_days,
    description=(
        "Every step of the pipeline for one collection day, the release included when selected."
    ),
)

wildchat_nightly_job = define_asset_job(
    "wildchat_nightly",
    selection=EVERYTHING - RELEASE_CUT,
    partitions_def=collection_days,
    description=(
        "Every per-day step of one collection day, with the PII frequency table that redaction "
        "reads. What the nightly schedule and the new-logs sensor launch; the release's "
        "statistics and exports are cut on demand by wildchat_release."
    ),
)

wildchat_release_job = define_asset_job(
    "wildchat_release",
    selection=RELEASE_CUT - STALE_DAY_CHECKS,
    description=(
        "The release statistics and both exports, from the release records of every day built "
        "so far, and the exports' search indexes."
    ),
)

redaction_refresh_job = define_asset_job(
    "redaction_refresh",
    selection=AssetSelection.assets("redaction_rules").downstream() - STALE_DAY_CHECKS,
    partitions_def=collection_days,
    description=(
        "After a redaction rule changed: re-count the PII frequencies and re-apply the rules to "
        "a day, with everything downstream, re-using the stored detections."
    ),
)
