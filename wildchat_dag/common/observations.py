"""The data version an observable source (a rules file, the takedown ledger) was last observed
at: a sensor that watches the file observes it again only when its content changed."""

from __future__ import annotations

from dagster import AssetKey, DagsterInstance
from dagster._core.definitions.data_version import DATA_VERSION_TAG


def latest_observed_version(instance: DagsterInstance, key: AssetKey) -> str | None:
    records = instance.fetch_observations(key, limit=1).records
    if not records:
        return None
    observation = records[0].asset_observation
    return (observation.tags or {}).get(DATA_VERSION_TAG) if observation else None
