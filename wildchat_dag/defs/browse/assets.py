"""The releases' full-text indexes: what `python -m wildchat_dag.browse` searches."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from dagster import AssetsDefinition, Failure, MaterializeResult, MetadataValue, asset

from wildchat_dag.common.metadata import counts_table
from wildchat_dag.common.text_exit import text_exit
from wildchat_dag.defs.browse.release_reader import (
    INDEX_MANIFEST,
    locator_batches,
    release_shards,
)
from wildchat_dag.defs.browse.resource import SearchIndexFolder
from wildchat_dag.defs.browse.search_index import SearchIndex, build_index, push_bulk
from wildchat_dag.defs.release.release_export import staging_folder, swap_in
from wildchat_dag.defs.release.release_schema import RELEASES
from wildchat_dag.defs.release.release_versions import history_root_of, load_index, load_versions
from wildchat_dag.defs.release.resource import ReleaseFolder

GROUP = "browse"
# Part of the code version: a change of the index's fields or tokenizers rebuilds it.
INDEX_FORMAT = "search-index-v1"


def build_search_index(release: str) -> AssetsDefinition:
    @asset(
        name=f"{release}_search_index",
        deps=[f"{release}_release"],
        group_name=GROUP,
        code_version=INDEX_FORMAT,
        description=(
            f"A full-text index of the {release} release (tantivy, embedded): every "
            "conversation's text, searchable by words and phrases in any script, with facets "
            "on toxic, redacted, model, language, country, state, hashed_ip and turns. "
            "`python -m wildchat_dag.browse` serves it. Built beside the previous index and "
            "swapped in whole; it names the release version it indexes, and the app says so "
            "when the release has moved on. With WILDCHAT_SEARCH_PUSH_URL set, the same "
            "documents also go to Elasticsearch or OpenSearch."
        ),
    )
    @text_exit
    def search_index(
        release_folder: ReleaseFolder, search_indexes: SearchIndexFolder
    ) -> MaterializeResult:
        started = time.perf_counter()
        folder = release_folder.folder(release)
        shards = release_shards(folder)
        versions = load_versions(history_root_of(Path(release_folder.root)), release)
        if not versions:
            raise Failure(
                description=f"The {release} release has no version yet: materialize "
                f"{release}_release first."
            )
        version = versions[-1]
        locators = load_index(version)

        def batches() -> Iterator[pl.DataFrame]:
            yield from locator_batches(shards, locators)

        target = search_indexes.folder(release)
        staging = staging_folder(target)
        stats = build_index(staging, batches())
        rows = sum(count for _, count in shards)
        if stats.documents != rows:
            raise Failure(
                description=f"The {release} search index holds {stats.documents} documents, "
                f"the release {rows} conversations: the release changed while it was indexed; "
                "materialize the index again."
            )
        manifest = {
            "release": release,
            "release_version": version.version,
            "documents": stats.documents,
            "shards": [path.name for path, _ in shards],
            "format": INDEX_FORMAT,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staging / INDEX_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        swap_in(staging, target)
        pushed = None
        if search_indexes.push_url:
            headers = (
                {"Authorization": search_indexes.push_authorization}
                if search_indexes.push_authorization
                else None
            )
            pushed = push_bulk(
                search_indexes.push_url, f"wildchat-{release}", batches(), headers=headers
            )
        browse = SearchIndex.open(target).search("", facet_size=10)
        metadata = {
            "documents": stats.documents,
            "release_version": version.version,
            "index_bytes": MetadataValue.int(stats.bytes),
            "index_folder": MetadataValue.path(str(target)),
            "build_seconds": round(stats.seconds, 3),
            "seconds": round(time.perf_counter() - started, 3),
            "pushed_documents": pushed if pushed is not None else "not configured",
        }
        for facet in ("language", "country", "model", "toxic"):
            metadata[f"top_{facet}"] = counts_table(
                {f.value: f.count for f in browse.facets.get(facet, [])}, key=facet
            )
        return MaterializeResult(metadata=metadata)

    return search_index


search_indexes = [build_search_index(release) for release in RELEASES]
