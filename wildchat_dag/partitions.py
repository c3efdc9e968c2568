from __future__ import annotations

import warnings
from datetime import date, timedelta

from dagster import BetaWarning, DailyPartitionsDefinition, TimeWindowPartitionMapping

from wildchat_dag import settings

FIRST_DAY = settings.partitions_start_date()
# The last day, inclusive; None: every day that has ended. DailyPartitionsDefinition's end is
# exclusive.
LAST_DAY = settings.partitions_end_date()

collection_days = DailyPartitionsDefinition(
    start_date=FIRST_DAY.isoformat(),
    end_date=(LAST_DAY + timedelta(days=1)).isoformat() if LAST_DAY else None,
    timezone="UTC",
    fmt="%Y-%m-%d",
)

LOOKAHEAD_DAYS = settings.link_lookahead_days()

# Linking day D reads D-(N+1) .. D+N; see wildchat_dag/defs/linking/linking.py for why.
# The window reaches before the first partition and past the last; those days hold no rows.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)
    link_window_mapping = TimeWindowPartitionMapping(
        start_offset=-(LOOKAHEAD_DAYS + 1),
        end_offset=LOOKAHEAD_DAYS,
        allow_nonexistent_upstream_partitions=True,
    )


def partition_date(partition_key: str) -> date:
    return date.fromisoformat(partition_key)
