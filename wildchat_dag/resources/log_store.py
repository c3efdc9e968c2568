from __future__ import annotations

from datetime import date
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from wildchat_dag.core.log_contract import DEFAULT_MAX_LINE_BYTES, day_folder


class RequestLogStore(ConfigurableResource):
    """Raw request logs: JSON Lines files, optionally gzipped, in one folder per UTC day."""

    root: str = Field(description="Log root holding one YYYY-MM-DD folder per collection day.")
    max_line_bytes: int = Field(
        default=DEFAULT_MAX_LINE_BYTES,
        description="Lines larger than this are quarantined as line_too_large, unparsed.",
    )

    def folder(self, day: date) -> Path:
        return day_folder(self.root, day)
