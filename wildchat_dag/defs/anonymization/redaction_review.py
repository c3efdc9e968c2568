"""Redaction review: every PII candidate of a conversation with what the rules decided about it,
shown only through the anonymized text.

A reviewer asks two things: why was this span replaced (or not), and what would another version
of the rules change. Both are answered from what detection stored and the same functions that
anonymize (``redaction.py``), so the review cannot disagree with the release:

- ``review_utterances`` re-applies the decisions to each text, places every candidate in the
  *stored* anonymized text (the placeholder that covers it, or the text left alone) and cuts its
  context from there. If re-applying does not give back the stored text exactly (the day was
  anonymized under other rules or detections), the utterance is ``stale`` and shows no context:
  a review never guesses where a span went.
- ``decisions_under`` and ``rules_diff`` compare two versions of the rules over the stored
  candidates: which conversations and which spans change decision.

Raw values stay here: the outputs hold entity types, rule decisions, offsets and slices of the
anonymized text, never ``text`` or context of a candidate. ``shown_texts`` lists every text a
review shows, so a caller (and a test) can hold each to the anonymized content.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from wildchat_dag.defs.anonymization.anonymization import (
    client_ip_spans,
    client_ips_written,
    decide_candidates,
)
from wildchat_dag.defs.anonymization.redaction import (
    CLIENT_IP_ENTITY,
    SPAN_SCHEMA,
    Decision,
    Span,
    conversation_counts,
    merge_spans,
    placeholder_entity,
)
from wildchat_dag.defs.anonymization.redaction_rules import UNSCANNED_ENTITY, RedactionRules
from wildchat_dag.defs.pii_detection.pii_detection import ScanStatus, detection_version

# The recognizer named for a client IP of the raw logs written into a message: not a detection
# result, so it has no candidate row.
CLIENT_IP_RECOGNIZER = "client_ip_of_the_logs"


class Status:
    """``status`` of a reviewed utterance."""

    OK = "ok"
    # Detection did not finish and the rules withhold such text: nothing of it is released.
    WITHHELD = "withheld"
    # Re-applying the decisions does not give the stored anonymized text: no context is shown.
    STALE = "stale"


# Why a candidate was left alone, for a reader. ``{count}`` and ``{limit}`` are filled for the
# frequency limit.
EXPLANATIONS = {
    Decision.REDACT: "redacted",
    Decision.NOT_IN_RULES: "left alone: the rules detect this type but do not redact it",
    Decision.INSIDE_PLACEHOLDER: "left alone: inside a placeholder already in the text",
    Decision.LANGUAGE: "left alone: the text's language is not one the rule applies to",
    Decision.PATTERN: "left alone: the match does not have the rule's pattern",
    Decision.PRECEDED_BY: "left alone: preceded by a quote or another excluded character",
    Decision.NO_CUE: "left alone: no cue phrase before it",
    Decision.NO_NEARBY_CUE: "left alone: no cue phrase nearby",
    Decision.SKIP_PATTERN: "left alone: the match has one of the rule's skip patterns",
    Decision.FREQUENT: (
        "left alone: the value is in {count} conversations, at or over the frequency limit "
        "of {limit}"
    ),
}

REVIEW_SCHEMA = pl.Schema(
    {
        "conversation_id": pl.Int64,
        "utterance_index": pl.Int64,
        "role": pl.String,
        "entity_type": pl.String,
        "recognizer": pl.String,
        "score": pl.Float64,
        "decision": pl.String,
        "explanation": pl.String,
        # The placeholder that stands where the candidate was, when a redaction covers it.
        "placeholder": pl.String,
        "status": pl.String,
        # In the stored anonymized text: where the candidate shows (its placeholder, or the text
        # left alone), and the text on either side. Null unless ``status`` is ok.
        "anonymized_start": pl.Int64,
        "anonymized_end": pl.Int64,
        "context_before": pl.String,
        "shown": pl.String,
        "context_after": pl.String,
    }
)

# What review_utterances needs of each utterance. ``content`` is the raw text: it is read to
# place spans and never returned.
UTTERANCE_INPUT = ("conversation_id", "utterance_index", "role", "content_sha256", "content")


def explanation(decision: str, count: int | None, limit: int | None) -> str:
    text = EXPLANATIONS.get(decision, f"left alone: {decision}")
    return text.format(count=count if count is not None else "?", limit=limit or "?")


@dataclass(frozen=True)
class Placed:
    """A merged span, in the raw text (``start``/``end``) and the anonymized one."""

    start: int
    end: int
    anonymized_start: int
    anonymized_end: int
    placeholder: str


def place_spans(text: str, merged: list[Span], rules: RedactionRules) -> tuple[str, list[Placed]]:
    """``replace_spans`` that also says where each placeholder landed."""
    pieces: list[str] = []
    placed: list[Placed] = []
    position = written = 0
    for span in merged:
        kept = text[position : span.start]
        pieces.append(kept)
        written += len(kept)
        placeholder = rules.placeholder_for(span.entity)
        pieces.append(placeholder)
        placed.append(
            Placed(span.start, span.end, written, written + len(placeholder), placeholder)
        )
        written += len(placeholder)
        position = span.end
    pieces.append(text[position:])
    return "".join(pieces), placed


def anonymized_position(position: int, placed: list[Placed]) -> int:
    """Where raw ``position`` (outside every span) is in the anonymized text."""
    shift = 0
    for span in placed:
        if span.end <= position:
            shift += (span.anonymized_end - span.anonymized_start) - (span.end - span.start)
    return position + shift


def _frequency_limits(rules: RedactionRules) -> dict[str, int | None]:
    return {rule.entity: rule.skip_if_in_conversations for rule in rules.rules}


def review_utterances(
    utterances: pl.DataFrame,
    anonymized: pl.DataFrame,
    decided: pl.DataFrame,
    rules: RedactionRules,
    client_ips: set[str] = frozenset(),  # type: ignore[assignment]
    context_chars: int = 60,
) -> pl.DataFrame:
    """Every candidate of ``utterances`` (and every client IP redacted in them), in REVIEW_SCHEMA.

    ``utterances``: UTTERANCE_INPUT plus ``scan_status``. ``anonymized``: ``conversation_id``,
    ``utterance_index`` and ``anonymized_content``, the stored text. ``decided``: the
    candidates of these texts with ``decision`` (and ``corpus_conversations`` where the
    frequency limit was applied), as ``apply_frequencies`` returns them.
    """
    limits = _frequency_limits(rules)
    withhold = rules.unscanned_text == "withhold"
    by_text: dict[str, list[dict]] = {}
    for row in decided.iter_rows(named=True):
        by_text.setdefault(row["content_sha256"], []).append(row)
    ip_spans = client_ip_spans(
        utterances.select("content_sha256", "content").unique("content_sha256"),
        client_ips if rules.redact_client_ips else set(),
    )
    ips_by_text: dict[str, list[tuple[int, int]]] = {}
    for sha, start, end in ip_spans.select("content_sha256", "start", "end").iter_rows():
        ips_by_text.setdefault(sha, []).append((start, end))
    stored = {
        (c, u): text
        for c, u, text in anonymized.select(
            "conversation_id", "utterance_index", "anonymized_content"
        ).iter_rows()
    }
    rows: list[dict] = []
    for utterance in utterances.sort("conversation_id", "utterance_index").iter_rows(named=True):
        sha, text = utterance["content_sha256"], utterance["content"] or ""
        candidates = sorted(by_text.get(sha, []), key=lambda r: (r["start"], r["end"]))
        ip_ranges = ips_by_text.get(sha, [])
        if not candidates and not ip_ranges:
            continue
        spans = [
            Span(r["start"], r["end"], r["placeholder_entity"], r["score"] or 0.0)
            for r in candidates
            if r["decision"] == Decision.REDACT
        ]
        spans += [Span(s, e, CLIENT_IP_ENTITY, 1.0) for s, e in ip_ranges]
        rebuilt, placed = place_spans(text, merge_spans(spans), rules)
        kept = stored.get((utterance["conversation_id"], utterance["utterance_index"]))
        withheld = withhold and utterance["scan_status"] in ScanStatus.INCOMPLETE and bool(text)
        if withheld:
            unscanned = rules.placeholder_for(UNSCANNED_ENTITY)
            status = Status.WITHHELD if kept == unscanned else Status.STALE
        else:
            status = Status.OK if kept == rebuilt else Status.STALE
        base = {
            "conversation_id": utterance["conversation_id"],
            "utterance_index": utterance["utterance_index"],
            "role": utterance["role"],
        }
        shown_rows = [
            (r["entity_type"], r["recognizer"], r["score"], r["decision"], r, r["start"], r["end"])
            for r in candidates
        ] + [
            (CLIENT_IP_ENTITY, CLIENT_IP_RECOGNIZER, 1.0, Decision.REDACT, None, s, e)
            for s, e in ip_ranges
        ]
        for entity, recognizer, score, decision, row, start, end in shown_rows:
            count = row.get("corpus_conversations") if row else None
            reviewed = {
                **base,
                "entity_type": entity,
                "recognizer": recognizer,
                "score": score,
                "decision": decision,
                "explanation": (
                    "redacted: a client IP address of the raw logs"
                    if row is None
                    else explanation(decision, count, limits.get(entity))
                ),
                "placeholder": None,
                "status": status,
                "anonymized_start": None,
                "anonymized_end": None,
                "context_before": None,
                "shown": None,
                "context_after": None,
            }
            cover = next((p for p in placed if p.start < end and start < p.end), None)
            if cover is not None:
                reviewed["placeholder"] = cover.placeholder
            if status == Status.OK and kept is not None:
                if cover is not None:
                    a, b = cover.anonymized_start, cover.anonymized_end
                else:
                    a, b = anonymized_position(start, placed), anonymized_position(end, placed)
                reviewed.update(
                    anonymized_start=a,
                    anonymized_end=b,
                    context_before=kept[max(0, a - context_chars) : a],
                    shown=kept[a:b],
                    context_after=kept[b : b + context_chars],
                )
            rows.append(reviewed)
    return pl.DataFrame(rows, schema=REVIEW_SCHEMA, orient="row")


def with_placeholder_entity(decided: pl.DataFrame) -> pl.DataFrame:
    """The entity each redacted span's placeholder names (a secret by its kind)."""
    return decided.with_columns(
        placeholder_entity=placeholder_entity(pl.col("entity_type"), pl.col("recognizer"))
    )


def shown_texts(review: pl.DataFrame) -> list[str]:
    """Every piece of text a review shows: each must be part of the anonymized text."""
    return [
        text
        for column in ("context_before", "shown", "context_after", "placeholder")
        for text in review[column].drop_nulls().to_list()
        if text
    ]


# -- two versions of the rules ---------------------------------------------------------------

# What decisions_under needs: the candidates with their text's language and its conversation.
LOCATED_INPUT = (
    "content_sha256",
    "entity_type",
    "start",
    "end",
    "text",
    "recognizer",
    "context_before",
    "context_after",
    "language_code",
    "conversation_id",
)


def decisions_under(located: pl.DataFrame, rules: RedactionRules) -> pl.DataFrame:
    """``decision`` of every candidate under ``rules``, with the frequency limit counted over
    the conversations of ``located`` (one row per candidate and conversation that holds its
    text, as ``LOCATED_SQL`` reads them)."""
    return decide_candidates(
        located.drop("language_code"),
        located.select("content_sha256", "language_code").unique("content_sha256"),
        rules,
        conversation_counts,
    )


DIFF_KEY = ["conversation_id", "content_sha256", "entity_type", "recognizer", "start", "end"]

RULES_DIFF_SCHEMA = pl.Schema(
    {
        "partition_day": pl.Date,
        "conversation_id": pl.Int64,
        "utterance_index": pl.Int64,
        "entity_type": pl.String,
        "recognizer": pl.String,
        "start": pl.Int64,
        "end": pl.Int64,
        "decision_a": pl.String,
        "decision_b": pl.String,
    }
)


@dataclass
class RulesDiff:
    """What changes from rules ``a`` to rules ``b``: spans whose decision differs, and changes
    that reach every redaction or that the stored detections cannot show."""

    spans: pl.DataFrame  # RULES_DIFF_SCHEMA
    conversations: int
    notes: list[str]

    @property
    def redacted_under_b_only(self) -> int:
        return int((self.spans["decision_b"] == Decision.REDACT).sum())

    @property
    def redacted_under_a_only(self) -> int:
        return int((self.spans["decision_a"] == Decision.REDACT).sum())


def rules_diff(
    located: pl.DataFrame, utterances: pl.DataFrame, a: RedactionRules, b: RedactionRules
) -> RulesDiff:
    """``located``: LOCATED_INPUT; ``utterances``: ``conversation_id``, ``utterance_index``,
    ``content_sha256`` and ``partition_day`` of every scanned utterance."""
    missing = [c for c in LOCATED_INPUT if c not in located.columns]
    if missing:
        raise ValueError(f"candidates lack column(s) {missing}")
    under_a = decisions_under(located, a).select(*DIFF_KEY, decision_a="decision")
    under_b = decisions_under(located, b).select(*DIFF_KEY, decision_b="decision")
    changed = (
        under_a.join(under_b, on=DIFF_KEY, how="full", coalesce=True, nulls_equal=True)
        .filter(pl.col("decision_a").ne_missing(pl.col("decision_b")))
        .unique()
    )
    spans = (
        changed.join(
            utterances.select(
                "conversation_id", "content_sha256", "utterance_index", "partition_day"
            ),
            on=["conversation_id", "content_sha256"],
            how="left",
        )
        .with_columns(pl.col("partition_day").cast(pl.Date))
        .select(RULES_DIFF_SCHEMA.names())
        .cast(RULES_DIFF_SCHEMA)  # type: ignore[arg-type]
        .sort("partition_day", "conversation_id", "utterance_index", "start", "entity_type")
    )
    notes = []
    if a.placeholder != b.placeholder:
        notes.append(
            f"The placeholder changes from {a.placeholder} to {b.placeholder}: every redacted "
            "span of every conversation changes text."
        )
    if a.unscanned_text != b.unscanned_text:
        notes.append(
            f"Text whose detection did not finish: {a.unscanned_text} under A, "
            f"{b.unscanned_text} under B."
        )
    if a.redact_client_ips != b.redact_client_ips:
        notes.append(
            "Client IP addresses written into messages: "
            f"{'redacted' if a.redact_client_ips else 'left'} under A, "
            f"{'redacted' if b.redact_client_ips else 'left'} under B."
        )
    if detection_version(a) != detection_version(b):
        notes.append(
            "B changes where detection runs (languages, patterns, cues or entity types): spans "
            "that only detection under B would find are not in the stored candidates. Detect "
            "again under B (materialize pii_candidates) to see them."
        )
    return RulesDiff(spans, spans["conversation_id"].n_unique(), notes)


# -- reading the warehouse -------------------------------------------------------------------

Query = Callable[..., pl.DataFrame]

CONVERSATION_UTTERANCES_SQL = """
SELECT s.conversation_id, s.utterance_index, s.role, s.content_sha256, s.scan_status,
       s.language_code, u.content, a.content AS anonymized_content
FROM main.pii_scanned_utterances s
JOIN (
    SELECT conversation_id, unnest(conversation).content AS content,
           generate_subscripts(conversation, 1) - 1 AS utterance_index
    FROM main.linked_conversations
    WHERE partition_day = $day AND conversation_id = $conversation
) u USING (conversation_id, utterance_index)
LEFT JOIN (
    SELECT conversation_id, unnest(conversation).content AS content,
           generate_subscripts(conversation, 1) - 1 AS utterance_index
    FROM main.anonymized_conversations
    WHERE partition_day = $day AND conversation_id = $conversation
) a USING (conversation_id, utterance_index)
WHERE s.partition_day = $day AND s.conversation_id = $conversation
ORDER BY s.utterance_index
"""

CANDIDATES_OF_SQL = """
SELECT * FROM main.pii_candidates
WHERE partition_day = $day AND content_sha256 IN (SELECT content_sha256 FROM texts)
"""

# Every candidate with the conversations that hold its text: the input of a rules diff.
LOCATED_SQL = """
SELECT c.content_sha256, c.entity_type, c."start", c."end", c.text, c.recognizer,
       c.context_before, c.context_after, s.language_code, s.conversation_id
FROM main.pii_candidates c
JOIN (SELECT DISTINCT partition_day, content_sha256, language_code, conversation_id
      FROM main.pii_scanned_utterances) s USING (partition_day, content_sha256)
"""

SCANNED_SQL = """
SELECT conversation_id, utterance_index, content_sha256,
       CAST(partition_day AS DATE) AS partition_day
FROM main.pii_scanned_utterances
"""


class NotInWarehouse(LookupError):
    """The conversation is not in the anonymized layer of this warehouse (day and id)."""


@dataclass
class ConversationReview:
    rows: pl.DataFrame  # REVIEW_SCHEMA
    anonymized: pl.DataFrame  # utterance_index, role, anonymized_content


def review_conversation(
    query: Query,
    day: object,
    conversation_id: int,
    rules: RedactionRules,
    frequencies_of: Callable[[pl.DataFrame], pl.DataFrame],
    client_ips_among: Callable[[pl.Series], set[str]],
) -> ConversationReview:
    """The review of one conversation of the warehouse, under ``rules``, decided as
    ``anonymize_day`` decides: ``frequencies_of`` gives the corpus counts (the
    pii_entity_frequency table), ``client_ips_among`` which addresses are client IPs."""
    parameters = {"day": day, "conversation": conversation_id}
    utterances = query(CONVERSATION_UTTERANCES_SQL, parameters)
    if utterances.is_empty():
        raise NotInWarehouse(f"conversation {conversation_id} of {day} is not in the warehouse")
    texts = utterances.select("content_sha256").unique()
    candidates = query(CANDIDATES_OF_SQL, {"day": day}, {"texts": texts})
    scanned = utterances.select("content_sha256", "language_code").unique("content_sha256")
    decided = with_placeholder_entity(decide_candidates(candidates, scanned, rules, frequencies_of))
    owners = query(
        "SELECT DISTINCT unnest(conversation).ip AS ip FROM main.linked_conversations "
        "WHERE partition_day = $day AND conversation_id = $conversation",
        parameters,
    )
    client_ips = client_ips_written(
        utterances["content"], set(owners["ip"].drop_nulls().to_list()), rules, client_ips_among
    )
    rows = review_utterances(
        utterances.select(*UTTERANCE_INPUT, "scan_status"),
        utterances.select("conversation_id", "utterance_index", "anonymized_content"),
        decided,
        rules,
        client_ips,
    )
    return ConversationReview(
        rows, utterances.select("utterance_index", "role", "anonymized_content")
    )


def diff_in_warehouse(query: Query, a: RedactionRules, b: RedactionRules) -> RulesDiff:
    """``rules_diff`` over every stored candidate of the warehouse."""
    return rules_diff(query(LOCATED_SQL), query(SCANNED_SQL), a, b)


__all__ = [
    "SPAN_SCHEMA",
    "ConversationReview",
    "RulesDiff",
    "Status",
    "decisions_under",
    "diff_in_warehouse",
    "place_spans",
    "review_conversation",
    "review_utterances",
    "rules_diff",
    "shown_texts",
]
