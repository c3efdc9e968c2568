"""Redaction: which detected candidates the rules replace, and the replaced text.

Three stages, each a pure function of polars frames:

1. ``qualify_candidates``: each candidate against its entity's rule, using only what detection
   stored (matched text, language, up to ``MAX_CONTEXT_CHARS`` of context either side), so that a
   rule change needs no new detection. The result names the first condition that failed.
2. ``apply_frequencies``: a value that qualifies in too many conversations (a celebrity, a shop's
   phone number) is left alone. The counts come from ``pii_entity_frequency``, over all days.
3. ``redact_contents``: the surviving spans, merged where they overlap, become placeholders.

The same functions serve the pipeline and the benchmark's baseline, so "identical redactions"
compares detection strategies, not two copies of the rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from wildchat_dag.defs.anonymization.redaction_rules import (
    UNSCANNED_ENTITY,
    EntityRule,
    RedactionRules,
    cue_alternation,
)
from wildchat_dag.defs.pii_detection.credentials import (
    RECOGNIZER_PREFIX as SECRET_RECOGNIZER_PREFIX,
)
from wildchat_dag.defs.pii_detection.credentials import SECRET_ENTITY

# WildChat's own placeholders, already in some text: never redacted again, never split.
EXISTING_PLACEHOLDER = re.compile(r"<PRESIDIO_ANONYMIZED_[A-Z_]+>")
CLIENT_IP_ENTITY = "IP_ADDRESS"


class Decision:
    """Why a candidate is, or is not, redacted (``decision`` column)."""

    REDACT = "redact"
    NOT_IN_RULES = "entity_not_redacted"
    INSIDE_PLACEHOLDER = "inside_existing_placeholder"
    LANGUAGE = "language"
    PATTERN = "pattern"
    PRECEDED_BY = "preceded_by_excluded_character"
    NO_CUE = "no_cue_before"
    NO_NEARBY_CUE = "no_cue_nearby"
    SKIP_PATTERN = "skip_pattern"
    FREQUENT = "frequent_value"


# What qualification reads; detection stores exactly these (plus the content's language).
QUALIFY_INPUT = {
    "entity_type": pl.String,
    "text": pl.String,
    "context_before": pl.String,
    "context_after": pl.String,
    "language_code": pl.String,
}

FREQUENCY_SCHEMA = pl.Schema(
    {"entity_type": pl.String, "value_key": pl.String, "conversations": pl.Int64}
)

REDACTED_CONTENT_SCHEMA = pl.Schema(
    {
        "content_sha256": pl.String,
        "redacted_content": pl.String,
        "redacted": pl.Boolean,
        "spans_redacted": pl.Int64,
        "withheld": pl.Boolean,
    }
)

SPAN_SCHEMA = pl.Schema(
    {
        "content_sha256": pl.String,
        "start": pl.Int64,
        "end": pl.Int64,
        "entity_type": pl.String,
        "score": pl.Float64,
    }
)


def value_key(entity_type: pl.Expr, text: pl.Expr) -> pl.Expr:
    """The form in which a value is counted across conversations.

    A phone or card number written with other spacing or dashes is the same number; an address or
    name differs by case and spacing only.
    """
    digits = text.str.replace_all(r"[^0-9]", "")
    words = text.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(entity_type.is_in(["PHONE_NUMBER", "CREDIT_CARD"])).then(digits).otherwise(words)


def _rule_conditions(rule: EntityRule) -> list[tuple[str, pl.Expr]]:
    """``(decision if it fails, condition)`` in the order they are reported."""
    text, before, after = pl.col("text"), pl.col("context_before"), pl.col("context_after")
    conditions: list[tuple[str, pl.Expr]] = []
    if rule.languages:
        language_ok = pl.col("language_code").is_in(list(rule.languages)).fill_null(False)
        conditions.append((Decision.LANGUAGE, language_ok))
    if rule.pattern:
        conditions.append((Decision.PATTERN, text.str.contains(rule.pattern)))
    if rule.not_preceded_by:
        preceded = pl.any_horizontal(*(before.str.ends_with(c) for c in rule.not_preceded_by))
        conditions.append((Decision.PRECEDED_BY, ~preceded))
    if rule.cues_before:
        if rule.cue_adjacent:
            cued = before.str.contains(rule.cue_before_regex())
        else:
            cued = before.str.slice(-rule.cue_window).str.contains(
                cue_alternation(rule.cues_before)
            )
        if rule.no_cue_needed_if:
            cued = cued | text.str.contains(rule.no_cue_needed_if)
        conditions.append((Decision.NO_CUE, cued))
    if rule.cues_nearby:
        nearby = cue_alternation(rule.cues_nearby)
        window = rule.nearby_window
        near = before.str.slice(-window).str.contains(nearby) | after.str.slice(
            0, window
        ).str.contains(nearby)
        conditions.append((Decision.NO_NEARBY_CUE, near))
    if rule.skip_patterns:
        skipped = pl.any_horizontal(*(text.str.contains(p) for p in rule.skip_patterns))
        conditions.append((Decision.SKIP_PATTERN, ~skipped))
    return conditions


def _inside_placeholder(frame: pl.DataFrame) -> pl.Series:
    """True where the candidate overlaps one of WildChat's placeholders already in the text."""
    flags = []
    for before, text, after in frame.select("context_before", "text", "context_after").iter_rows():
        window = f"{before}{text}{after}"
        if "PRESIDIO_ANONYMIZED_" not in window:
            flags.append(False)
            continue
        start, end = len(before), len(before) + len(text)
        flags.append(
            any(m.start() < end and start < m.end() for m in EXISTING_PLACEHOLDER.finditer(window))
        )
    return pl.Series("inside_placeholder", flags, dtype=pl.Boolean)


def qualify_candidates(candidates: pl.DataFrame, rules: RedactionRules) -> pl.DataFrame:
    """Add ``value_key`` and ``decision``: ``redact`` or the first rule condition that failed.

    Frequencies are not applied here (see ``apply_frequencies``): the corpus counts are made of
    the candidates this function says ``redact``.
    """
    missing = [c for c in QUALIFY_INPUT if c not in candidates.columns]
    if missing:
        raise ValueError(f"candidates lack column(s) {missing}")
    frame = candidates.with_columns(
        _inside_placeholder(candidates)
        if candidates.height
        else pl.lit(False, pl.Boolean).alias("inside_placeholder")
    )
    entity = pl.col("entity_type")
    decision = pl.when(~entity.is_in(rules.redacted_entities)).then(pl.lit(Decision.NOT_IN_RULES))
    decision = decision.when(pl.col("inside_placeholder")).then(pl.lit(Decision.INSIDE_PLACEHOLDER))
    for rule in rules.rules:
        for reason, ok in _rule_conditions(rule):
            decision = decision.when((entity == rule.entity) & ~ok).then(pl.lit(reason))
    return frame.with_columns(
        value_key=value_key(entity, pl.col("text")),
        decision=decision.otherwise(pl.lit(Decision.REDACT)),
    ).drop("inside_placeholder")


def conversation_counts(qualified: pl.DataFrame) -> pl.DataFrame:
    """Distinct conversations per qualifying value; ``qualified`` carries ``conversation_id``."""
    return (
        qualified.filter(pl.col("decision") == Decision.REDACT)
        .group_by("entity_type", "value_key")
        .agg(conversations=pl.col("conversation_id").n_unique().cast(pl.Int64))
        .sort("entity_type", "value_key")
    )


def apply_frequencies(
    qualified: pl.DataFrame, frequencies: pl.DataFrame, rules: RedactionRules
) -> pl.DataFrame:
    """Turn ``redact`` into ``frequent_value`` where the value is in too many conversations."""
    limits = {r.entity: r.skip_if_in_conversations for r in rules.rules}
    thresholds = pl.DataFrame(
        [(e, n) for e, n in limits.items() if n],
        schema={"entity_type": pl.String, "threshold": pl.Int64},
        orient="row",
    )
    counted = (
        qualified.join(
            frequencies.select("entity_type", "value_key", corpus_conversations="conversations"),
            on=["entity_type", "value_key"],
            how="left",
        )
        .join(thresholds, on="entity_type", how="left")
        .with_columns(pl.col("corpus_conversations").fill_null(0))
    )
    frequent = (pl.col("decision") == Decision.REDACT) & (
        pl.col("corpus_conversations") >= pl.col("threshold")
    ).fill_null(False)
    return counted.with_columns(
        decision=pl.when(frequent).then(pl.lit(Decision.FREQUENT)).otherwise("decision")
    ).drop("threshold")


@dataclass(frozen=True)
class Span:
    """A stretch of text to replace by the placeholder of ``entity``."""

    start: int
    end: int
    entity: str
    score: float


def placeholder_entity(entity_type: pl.Expr, recognizer: pl.Expr) -> pl.Expr:
    """The entity a span's placeholder names: a secret is named by its kind
    (``SECRET_OPENAI_API_KEY``, from the recognizer ``secret:openai_api_key``), as
    WildChat-4.8M names TruffleHog's detectors, so a reader knows what was there."""
    kind = recognizer.str.strip_prefix(SECRET_RECOGNIZER_PREFIX).str.to_uppercase()
    is_secret = (entity_type == SECRET_ENTITY) & recognizer.str.starts_with(
        SECRET_RECOGNIZER_PREFIX
    ).fill_null(False)
    return pl.when(is_secret).then(pl.lit(f"{SECRET_ENTITY}_") + kind).otherwise(entity_type)


def merge_spans(spans: list[Span]) -> list[Span]:
    """Overlapping spans become one, labelled by the longest of them (then by entity name).

    A union rather than a choice: a partly overlapping span left out would leave its tail
    readable. The label does not depend on scores: Presidio's scores vary with the NLP context
    it was given, and the placeholder must not.
    """
    merged: list[Span] = []
    best: Span | None = None
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1].end:
            current = merged[-1]
            assert best is not None
            if (span.end - span.start, span.entity) > (best.end - best.start, best.entity):
                best = span
            merged[-1] = Span(current.start, max(current.end, span.end), best.entity, best.score)
        else:
            best = span
            merged.append(span)
    return merged


def replace_spans(text: str, merged: list[Span], rules: RedactionRules) -> str:
    """``merged``: spans from ``merge_spans``, sorted and not overlapping."""
    pieces, position = [], 0
    for span in merged:
        pieces.append(text[position : span.start])
        pieces.append(rules.placeholder_for(span.entity))
        position = span.end
    pieces.append(text[position:])
    return "".join(pieces)


def redact_contents(
    contents: pl.DataFrame, spans: pl.DataFrame, rules: RedactionRules
) -> pl.DataFrame:
    """Each distinct content with its redactions applied.

    ``contents``: ``content_sha256``, ``content`` and ``withhold`` (detection could not finish:
    the whole text becomes the UNSCANNED_TEXT placeholder when the rules say ``withhold``).
    ``spans``: ``SPAN_SCHEMA`` rows to replace.
    """
    by_content: dict[str, list[Span]] = {}
    for sha, start, end, entity, score in spans.select(SPAN_SCHEMA.names()).iter_rows():
        by_content.setdefault(sha, []).append(Span(start, end, entity, score or 0.0))
    withhold_all = rules.unscanned_text == "withhold"
    rows = []
    for sha, content, withhold in contents.select(
        "content_sha256", "content", "withhold"
    ).iter_rows():
        if withhold and withhold_all and content:
            rows.append((sha, rules.placeholder_for(UNSCANNED_ENTITY), True, 0, True))
            continue
        found = by_content.get(sha)
        if not found:
            rows.append((sha, content, False, 0, False))
            continue
        merged = merge_spans(found)
        rows.append((sha, replace_spans(content, merged, rules), True, len(merged), False))
    return pl.DataFrame(rows, schema=REDACTED_CONTENT_SCHEMA, orient="row")


def decision_counts(decided: pl.DataFrame) -> dict[str, int]:
    """``{"PERSON/redact": n, "EMAIL_ADDRESS/skip_pattern": m, ...}`` for metadata."""
    if decided.is_empty():
        return {}
    counts = decided.group_by("entity_type", "decision").len().sort("entity_type", "decision")
    return {f"{e}/{d}": n for e, d, n in counts.iter_rows()}
