from __future__ import annotations

from datetime import date
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from wildchat_dag.defs.ingest.log_contract import DEFAULT_MAX_LINE_BYTES, MAX_JSON_DEPTH, day_folder
from wildchat_dag.defs.ingest.log_folders import day_fingerprints, has_logs


class RequestLogStore(ConfigurableResource):
    """Raw request logs: JSON Lines files (plain, gzip, bz2 or xz), one folder per UTC day."""

    root: str = Field(description="Log root holding one YYYY-MM-DD folder per collection day.")
    max_line_bytes: int = Field(
        default=DEFAULT_MAX_LINE_BYTES,
        description="Lines larger than this are quarantined as line_too_large, unparsed.",
    )
    max_json_depth: int = Field(
        default=MAX_JSON_DEPTH,
        ge=1,
        description="Lines nested deeper than this are quarantined as nesting_too_deep before "
        "any native JSON decoder sees them (a deep enough value crashes one).",
    )
    settle_seconds: float = Field(
        default=120.0,
        description="The new-logs sensor launches a day only once its files have been left "
        "unchanged this long: the service may still be writing to them.",
    )

    def folder(self, day: date) -> Path:
        return day_folder(self.root, day)

    def has_logs(self, day: date) -> bool:
        """Whether the day's folder holds anything ingest reads or fails on."""
        return has_logs(self.folder(day))

    def day_fingerprints(self) -> dict[str, str]:
        """``{day: fingerprint}`` of the settled day folders (see defs/ingest/log_folders.py)."""
        return day_fingerprints(self.root, self.settle_seconds)
