"""Where the search indexes of the releases are kept, and where else their documents go."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field


class SearchIndexFolder(ConfigurableResource):
    """The folder of the releases' full-text indexes (one subfolder per release), and an
    optional Elasticsearch or OpenSearch cluster that receives the same documents."""

    root: str = Field(description="Parent folder of the indexes (WILDCHAT_SEARCH_ROOT).")
    push_url: str | None = Field(
        default=None,
        description=(
            "Base URL of an Elasticsearch or OpenSearch cluster (WILDCHAT_SEARCH_PUSH_URL). "
            "When set, each index build also sends its documents to the cluster's _bulk API, "
            "into the index wildchat-<release>."
        ),
    )
    push_authorization: str | None = Field(
        default=None,
        description=(
            "The Authorization header for the cluster (WILDCHAT_SEARCH_PUSH_AUTHORIZATION)."
        ),
    )

    def folder(self, release: str) -> Path:
        return Path(self.root) / release
