"""The wildchat-dag code location, for `dg dev`, `dagster dev`, the daemon and the CLI.

Each pipeline step is a folder of wildchat_dag/defs/ (Dagster's project shape, loaded with
``load_from_defs_folder``): its assets and checks, its resource and its pure logic. What holds
across steps is added here: the automation condition every derived asset follows, the checks on
every table, the resources and the executor.
"""

from __future__ import annotations

from pathlib import Path

from dagster import (
    Definitions,
    EnvVar,
    in_process_executor,
    load_assets_from_modules,
    load_from_defs_folder,
)

from wildchat_dag import settings
from wildchat_dag.core.ip_addresses import SALT_ENV_VAR
from wildchat_dag.defs.anonymization.assets import build_anonymization_assets
from wildchat_dag.defs.anonymization.redaction_rules import load_rules
from wildchat_dag.defs.anonymization.resource import IpHasher
from wildchat_dag.defs.anonymization.stale_days import build_stale_days_check
from wildchat_dag.defs.automation.automation import with_automation
from wildchat_dag.defs.browse import assets as browse_assets
from wildchat_dag.defs.browse.resource import SearchIndexFolder
from wildchat_dag.defs.checks.table_checks import build_table_checks
from wildchat_dag.defs.geo import assets as geo_assets
from wildchat_dag.defs.geo.resource import GeoIpDatabase
from wildchat_dag.defs.ingest import assets as ingest_assets
from wildchat_dag.defs.ingest.resource import RequestLogStore
from wildchat_dag.defs.language import assets as language_assets
from wildchat_dag.defs.language.resource import LanguageIdModels
from wildchat_dag.defs.linking import assets as linking_assets
from wildchat_dag.defs.moderation import assets as moderation_assets
from wildchat_dag.defs.moderation.assets import build_toxicity_assets
from wildchat_dag.defs.moderation.resource import (
    API_KEY_ENV_VAR,
    DEFAULT_BASE_URL,
    DetoxifyResource,
    OpenAIModerationResource,
)
from wildchat_dag.defs.pii_detection.assets import build_detection_assets
from wildchat_dag.defs.pii_detection.resource import PresidioDetector
from wildchat_dag.defs.release.assets import build_release_assets
from wildchat_dag.defs.release.definitions import release_policy
from wildchat_dag.defs.release.resource import ReleaseFolder
from wildchat_dag.defs.takedowns import assets as takedown_assets
from wildchat_dag.defs.takedowns.resource import TakedownLedger
from wildchat_dag.resources.duckdb_io import WildchatDuckDBIOManager
from wildchat_dag.resources.warehouse import Warehouse


def build_assets(rules_path: Path | None = None) -> list:
    """Every step's assets, the privacy ones applying ``rules_path`` (default: the configured
    rules file): what the defs folder loads, for a pipeline built with other rules (the tests;
    a test holds the two to the same assets)."""
    path = rules_path or settings.redaction_rules_path()
    rules = load_rules(path)
    modules = [
        ingest_assets,
        linking_assets,
        geo_assets,
        language_assets,
        moderation_assets,
        takedown_assets,
        browse_assets,
    ]
    return [
        *load_assets_from_modules(modules),
        *build_detection_assets(rules),
        *build_anonymization_assets(path, rules),
        *build_toxicity_assets(settings.toxicity_threshold()),
        *build_release_assets(release_policy(), settings.toxicity_threshold()),
        build_stale_days_check(),
    ]


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
        "language_id": LanguageIdModels(),
        "geoip": GeoIpDatabase(path=geoip_path or settings.geoip_path()),
        "pii_detector": PresidioDetector(),
        # An unset variable stops a run that needs it before any step starts.
        "ip_hasher": IpHasher(salt=EnvVar(SALT_ENV_VAR), salt_source=settings.ip_salt_source()),
        "release_folder": ReleaseFolder(root=settings.release_root()),
        "search_indexes": SearchIndexFolder(
            root=settings.search_root(),
            push_url=settings.env_or_none("WILDCHAT_SEARCH_PUSH_URL"),
            push_authorization=(
                EnvVar("WILDCHAT_SEARCH_PUSH_AUTHORIZATION")
                if settings.env_or_none("WILDCHAT_SEARCH_PUSH_AUTHORIZATION")
                else None
            ),
        ),
        "takedowns": TakedownLedger(path=settings.takedown_ledger_path()),
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


def build_definitions() -> Definitions:
    """The steps of wildchat_dag/defs/, with what holds across them."""
    steps = load_from_defs_folder(path_within_project=Path(__file__).parent)
    assets = with_automation(list(steps.assets or []))
    return Definitions(
        assets=assets,
        asset_checks=[*(steps.asset_checks or []), *build_table_checks(assets)],
        jobs=steps.jobs,
        schedules=steps.schedules,
        sensors=steps.sensors,
        resources=build_resources(),
        # A run is one process: its steps share the engines that its warm worker loaded once
        # for every run it executes (wildchat_dag/warm_runs.py). A process per step paid
        # Python's, dagster's and the engines' start-up again for every step of every day.
        executor=in_process_executor,
    )


defs = build_definitions()
