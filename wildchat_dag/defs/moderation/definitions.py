"""What the code location loads of moderation beyond the scorers in assets.py: the toxic flags,
at the configured threshold."""

from dagster import Definitions

from wildchat_dag import settings
from wildchat_dag.defs.moderation.assets import build_toxicity_assets

defs = Definitions(assets=build_toxicity_assets(settings.toxicity_threshold()))
