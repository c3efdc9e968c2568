"""The PII detection step's resource: the Presidio detector."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from wildchat_dag.defs.anonymization.redaction_rules import RedactionRules
from wildchat_dag.defs.language.language import LanguageIdentifier
from wildchat_dag.defs.pii_detection.pii_detection import (
    DEFAULT_SPACY_MODELS,
    NER_WEIGHT,
    PARALLEL_MIN_WORK,
    DetectorSettings,
    PiiDetector,
)


class PresidioDetector(ConfigurableResource):
    """Presidio's analyzer with spaCy NER, run where a redaction rule can use its results."""

    spacy_models: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_SPACY_MODELS),
        description="Language (fastText ISO code) to spaCy model: an installed package name or "
        "a model folder. A language whose model is not installed gets pattern recognizers "
        "only; the materialization's metadata says which.",
    )
    chunk_chars: int = Field(
        default=100_000,
        description="Longer texts are analyzed in chunks of this many characters (spaCy's "
        "max_length is 1,000,000).",
    )
    chunk_overlap: int = Field(default=1_000, description="Characters shared by adjacent chunks.")
    time_limit_s: float = Field(
        default=60.0,
        description="Per text. A text still unfinished is recorded as time_limit and withheld "
        "from release (see the rules' unscanned_text).",
    )
    regex_timeout_s: float = Field(
        default=10.0,
        description="Presidio's per-regex timeout. A text where one fires is recorded as "
        "regex_timeout and withheld.",
    )
    ner_batch_size: int = Field(default=32, description="Texts per spaCy batch.")
    workers: int = Field(
        default=2,
        description="Processes for large partitions (each loads its own spaCy model); small "
        "ones run in the step's process.",
    )
    parallel_min_work: int = Field(
        default=PARALLEL_MIN_WORK,
        ge=0,
        description="The planned work (characters to scan, those spaCy reads weighing "
        f"{NER_WEIGHT} times more; about a microsecond of CPU each) from which a partition is "
        "scanned by `workers` processes. Two workers spend some 20 CPU-s starting up, so the "
        "default keeps a WildChat-sized day (about 10 M) in the step's process.",
    )

    def detector(self, rules: RedactionRules, languages: LanguageIdentifier) -> PiiDetector:
        settings = DetectorSettings(
            spacy_models=dict(self.spacy_models),
            chunk_chars=self.chunk_chars,
            chunk_overlap=self.chunk_overlap,
            time_limit_s=self.time_limit_s,
            regex_timeout_s=self.regex_timeout_s,
            ner_batch_size=self.ner_batch_size,
            workers=self.workers,
            parallel_min_work=self.parallel_min_work,
        )
        return PiiDetector(rules, settings, languages)
