"""The naive detector, as a user would first write it: the reference for ``PiiDetector``.

Presidio's full ``AnalyzerEngine`` (every recognizer, spaCy's whole pipeline) analyzes every
utterance once, for every entity type the rules redact, and fastText identifies every utterance's
language. No gate, no de-duplication, no chunking. It reads the same normalized view of each
text (``text_normalization``) and has the same recognizers of our own (secrets, cued names):
those decide what can be found, not where to look. The same rules then decide
(``anonymization.redact_batch``), so comparing the two compares detection strategies only; the
benchmark (``benchmarks/bench_privacy.py``) and the tests hold the pipeline to it.
"""

from __future__ import annotations

import time

import polars as pl

from wildchat_dag.defs.anonymization.redaction_rules import RedactionRules
from wildchat_dag.defs.language.language import LanguageIdentifier
from wildchat_dag.defs.pii_detection.pii_detection import (
    CANDIDATE_COLUMNS,
    SCAN_COLUMNS,
    DetectionResult,
    ScanStatus,
    build_full_engine,
    candidate_rows,
    detection_views,
    detector_input,
    to_original_offsets,
)


def detect_everywhere(
    utterances: pl.DataFrame,
    rules: RedactionRules,
    engine=None,
    languages: LanguageIdentifier | None = None,
) -> DetectionResult:
    started = time.perf_counter()
    engine = engine or build_full_engine(rules=rules)
    languages = languages or LanguageIdentifier()
    utterances = detector_input(utterances)
    entities = rules.redacted_entities
    candidates: dict[str, list[tuple]] = {}
    viewed, views = detection_views(utterances.select("content_sha256", "content"))
    for sha, content in viewed.iter_rows():
        if content:
            results = engine.analyze(content, language="en", entities=entities)
            candidates[sha] = candidate_rows(sha, content, 0, results)
    identified = languages.predict(utterances["content"])
    scans = (
        utterances.select("content_sha256", "content")
        .hstack(identified)
        .unique("content_sha256")
        .select(
            "content_sha256",
            characters=pl.col("content").str.len_chars().cast(pl.Int64),
            language_code="language_code",
            language_confidence="language_confidence",
            entities_scanned=pl.lit(entities, pl.List(pl.String)),
            ner_model=pl.lit(None, pl.String),
            ner_without_model=pl.lit(False),
            scan_status=pl.lit(ScanStatus.COMPLETE),
            scan_detail=pl.lit(None, pl.String),
            chunks=pl.lit(1, pl.Int64),
            characters_scanned=pl.col("content").str.len_chars().cast(pl.Int64),
        )
        .cast(SCAN_COLUMNS)  # type: ignore[arg-type]
    )
    rows = [row for found in candidates.values() for row in found]
    return DetectionResult(
        to_original_offsets(pl.DataFrame(rows, schema=CANDIDATE_COLUMNS, orient="row"), views),
        scans,
        utterances.select("conversation_id", "utterance_index", "role", "content_sha256"),
        {"seconds": round(time.perf_counter() - started, 3)},
    )
