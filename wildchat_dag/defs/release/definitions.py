"""What the code location loads of the release: the records, statistics and exports, under the
configured release policy and toxicity threshold."""

from dagster import Definitions

from wildchat_dag import settings
from wildchat_dag.defs.release.assets import build_release_assets
from wildchat_dag.defs.release.release import ReleasePolicy


def release_policy() -> ReleasePolicy:
    unscored = settings.release_includes_unscored()
    return ReleasePolicy(include_unscored=unscored, include_unscreened=unscored)


defs = Definitions(assets=build_release_assets(release_policy(), settings.toxicity_threshold()))
