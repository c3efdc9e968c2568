"""What the code location loads of PII detection: its assets, gated by the configured rules."""

from dagster import Definitions

from wildchat_dag import settings
from wildchat_dag.defs.anonymization.redaction_rules import load_rules
from wildchat_dag.defs.pii_detection.assets import build_detection_assets

defs = Definitions(assets=build_detection_assets(load_rules(settings.redaction_rules_path())))
