"""Where releases are written, and how."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field


class ReleaseFolder(ConfigurableResource):
    """The folder the releases are written to, one subfolder each (``public/``, ``full/``), in
    Hugging Face's layout."""

    root: str = Field(description="Parent folder of the releases (WILDCHAT_RELEASE_ROOT).")
    shard_rows: int = Field(
        default=50_000, ge=1, description="Conversations per Parquet file (data/train-*)."
    )

    def folder(self, release: str) -> Path:
        return Path(self.root) / release
