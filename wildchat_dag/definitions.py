"""The wildchat-dag code location: one Definitions object for `dagster dev` and the CLI."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job, load_assets_from_modules

from wildchat_dag import settings
from wildchat_dag.assets import ingest, linking
from wildchat_dag.partitions import collection_days
from wildchat_dag.resources.duckdb_io import WildchatDuckDBIOManager
from wildchat_dag.resources.log_store import RequestLogStore
from wildchat_dag.resources.warehouse import Warehouse

all_assets = load_assets_from_modules([ingest, linking])

wildchat_daily_job = define_asset_job(
    "wildchat_daily",
    selection=AssetSelection.all(),
    partitions_def=collection_days,
    description="Every step of the pipeline for one collection day.",
)


def build_resources(log_root: str | None = None, duckdb_path: str | None = None) -> dict:
    database = duckdb_path or settings.default_duckdb_path()
    return {
        "log_store": RequestLogStore(root=log_root or settings.default_log_root()),
        "io_manager": WildchatDuckDBIOManager(database=database, schema="main"),
        "warehouse": Warehouse(database=database),
    }


defs = Definitions(assets=all_assets, jobs=[wildchat_daily_job], resources=build_resources())
