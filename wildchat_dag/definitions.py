"""The wildchat-dag code location: one Definitions object for `dagster dev` and the CLI."""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions, EnvVar, in_process_executor, load_assets_from_modules

from wildchat_dag import settings
from wildchat_dag.assets import geo, ingest, language, linking, moderation
from wildchat_dag.assets.anonymization import build_anonymization_assets
from wildchat_dag.assets.moderation import build_toxicity_assets
from wildchat_dag.assets.pii_detection import build_detection_assets
from wildchat_dag.assets.release import build_release_assets
from wildchat_dag.assets.stale_days import (
    build_redaction_staleness_sensor,
    build_stale_days_check,
)
from wildchat_dag.assets.table_checks import build_table_checks
from wildchat_dag.automation import (
    follow_upstream_sensor,
    new_log_days_sensor,
    nightly_schedule,
    with_automation,
)
from wildchat_dag.core.ip_addresses import SALT_ENV_VAR
from wildchat_dag.core.redaction_rules import load_rules
from wildchat_dag.core.release import ReleasePolicy
from wildchat_dag.jobs import (
    redaction_refresh_job,
    wildchat_daily_job,
    wildchat_nightly_job,
    wildchat_release_job,
)
from wildchat_dag.resources.duckdb_io import WildchatDuckDBIOManager
from wildchat_dag.resources.enrichment import FastTextLanguageId, GeoIpDatabase
from wildchat_dag.resources.log_store import RequestLogStore
from wildchat_dag.resources.moderation import (
    API_KEY_ENV_VAR,
    DEFAULT_BASE_URL,
    DetoxifyResource,
    OpenAIModerationResource,
)
from wildchat_dag.resources.privacy import IpHasher, PresidioDetector
from wildchat_dag.resources.release import ReleaseFolder
from wildchat_dag.resources.warehouse import Warehouse
from wildchat_dag.scale_out import celery_daily_job


def build_assets(rules_path: Path | None = None) -> list:
    """Every asset; the privacy ones apply the rules file as it reads now."""
    path = rules_path or settings.redaction_rules_path()
    rules = load_rules(path)
    return [
        *load_assets_from_modules([ingest, linking, geo, language, moderation]),
        *build_detection_assets(rules),
        *build_anonymization_assets(path, rules),
        *build_toxicity_assets(settings.toxicity_threshold()),
        *build_release_assets(release_policy(), settings.toxicity_threshold()),
        # Not in a day's run (the jobs leave it out): it judges every day at once.
        build_stale_days_check(),
    ]


def release_policy() -> ReleasePolicy:
    unscored = settings.release_includes_unscored()
    return ReleasePolicy(include_unscored=unscored, include_unscreened=unscored)


def build_resources(
    log_root: str | None = None, duckdb_path: str | None = None, geoip_path: str | None = None
) -> dict:
    database = duckdb_path or settings.default_duckdb_path()
    return {
        "log_store": RequestLogStore(
            root=log_root or settings.default_log_root(),
            settle_seconds=settings.log_settle_seconds(),
        ),
        "io_manager": WildchatDuckDBIOManager(database=database, schema="main"),
        "warehouse": Warehouse(database=database),
        "language_id": FastTextLanguageId(),
        "geoip": GeoIpDatabase(path=geoip_path or settings.geoip_path()),
        "pii_detector": PresidioDetector(),
        # An unset variable stops a run that needs it before any step starts.
        "ip_hasher": IpHasher(salt=EnvVar(SALT_ENV_VAR), salt_source=settings.ip_salt_source()),
        "release_folder": ReleaseFolder(root=settings.release_root()),
        "openai": openai_moderation_resource(),
        "detoxify": DetoxifyResource(
            checkpoint=settings.env_or_none("WILDCHAT_DETOXIFY_CHECKPOINT"),
            huggingface_config_path=settings.env_or_none("WILDCHAT_DETOXIFY_CONFIG_PATH"),
        ),
    }


def openai_moderation_resource() -> OpenAIModerationResource:
    """The key and base URL come through EnvVar when set. Dagster refuses to start a run whose
    EnvVar is unset, and without a key the moderation step should still run, saying it skipped
    OpenAI: so an unset key is left out, and the step reports it."""
    return OpenAIModerationResource(
        api_key=EnvVar(API_KEY_ENV_VAR) if settings.env_or_none(API_KEY_ENV_VAR) else None,
        base_url=(
            EnvVar("OPENAI_BASE_URL")
            if settings.env_or_none("OPENAI_BASE_URL")
            else DEFAULT_BASE_URL
        ),
    )


all_assets = with_automation(build_assets())
defs = Definitions(
    assets=all_assets,
    asset_checks=build_table_checks(all_assets),
    jobs=[
        wildchat_daily_job,
        wildchat_nightly_job,
        wildchat_release_job,
        redaction_refresh_job,
        celery_daily_job,
    ],
    schedules=[nightly_schedule],
    sensors=[
        new_log_days_sensor,
        follow_upstream_sensor,
        build_redaction_staleness_sensor(settings.redaction_rules_path()),
    ],
    resources=build_resources(),
    # A run is one process: its steps share the engines that its warm worker loaded once for
    # every run it executes (wildchat_dag/warm_runs.py). A process per step paid Python's,
    # dagster's and the engines' start-up again for every step of every day.
    executor=in_process_executor,
)
