"""What the code location loads of anonymization: the rules file, the PII frequencies and the
redacted conversations, built with the configured rules; and what shows a rules edit as stale."""

from dagster import Definitions

from wildchat_dag import settings
from wildchat_dag.defs.anonymization.assets import build_anonymization_assets
from wildchat_dag.defs.anonymization.redaction_rules import load_rules
from wildchat_dag.defs.anonymization.stale_days import (
    build_redaction_staleness_sensor,
    build_stale_days_check,
)

_rules_path = settings.redaction_rules_path()
defs = Definitions(
    assets=build_anonymization_assets(_rules_path, load_rules(_rules_path)),
    # Not in a day's run (the jobs leave it out): it judges every day at once.
    asset_checks=[build_stale_days_check()],
    sensors=[build_redaction_staleness_sensor(_rules_path)],
)
