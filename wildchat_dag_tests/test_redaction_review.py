"""The redaction review's core: decisions placed in the anonymized text, and the rules diff.

No instance and no warehouse: frames in, frames out, through the same redaction functions the
pipeline runs.
"""

from __future__ import annotations

import random

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wildchat_dag.core.hashing import sha256_hex
from wildchat_dag.defs.anonymization.anonymization import qualify_located
from wildchat_dag.defs.anonymization.redaction import (
    Decision,
    Span,
    apply_frequencies,
    conversation_counts,
    merge_spans,
    replace_spans,
)
from wildchat_dag.defs.anonymization.redaction_review import (
    CLIENT_IP_RECOGNIZER,
    REVIEW_SCHEMA,
    Status,
    anonymized_position,
    place_spans,
    review_utterances,
    rules_diff,
    shown_texts,
    with_placeholder_entity,
)
from wildchat_dag.defs.anonymization.redaction_rules import load_rules, parse_rules

RULES = load_rules()


def candidate(text: str, value: str, entity: str, recognizer: str = "Rec", score: float = 0.9):
    start = text.index(value)
    return {
        "content_sha256": sha256_hex(text),
        "entity_type": entity,
        "start": start,
        "end": start + len(value),
        "score": score,
        "text": value,
        "recognizer": recognizer,
        "context_before": text[max(0, start - 100) : start],
        "context_after": text[start + len(value) : start + len(value) + 100],
    }


def utterances_of(texts: list[str], status: str = "complete") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "conversation_id": [1] * len(texts),
            "utterance_index": list(range(len(texts))),
            "role": ["user", "assistant"] * (len(texts) // 2) + ["user"] * (len(texts) % 2),
            "content_sha256": [sha256_hex(t) for t in texts],
            "content": texts,
            "scan_status": [status] * len(texts),
            "language_code": ["en"] * len(texts),
        }
    )


def decide(candidates: list[dict], utterances: pl.DataFrame, rules=RULES) -> pl.DataFrame:
    frame = pl.DataFrame(candidates, schema_overrides={"score": pl.Float64})
    qualified = qualify_located(
        frame, utterances.select("content_sha256", "language_code").unique(), rules
    )
    located = qualified.join(
        utterances.select("content_sha256", "conversation_id").unique(), on="content_sha256"
    )
    return with_placeholder_entity(
        apply_frequencies(qualified, conversation_counts(located), rules)
    )


def anonymize(utterances: pl.DataFrame, decided: pl.DataFrame, rules=RULES) -> pl.DataFrame:
    """The stored anonymized text, as redaction writes it."""
    rows = []
    for cid, index, sha, text in utterances.select(
        "conversation_id", "utterance_index", "content_sha256", "content"
    ).iter_rows():
        spans = [
            Span(s, e, entity, 1.0)
            for s, e, entity in decided.filter(
                (pl.col("content_sha256") == sha) & (pl.col("decision") == Decision.REDACT)
            )
            .select("start", "end", "placeholder_entity")
            .iter_rows()
        ]
        rows.append((cid, index, replace_spans(text, merge_spans(spans), rules)))
    return pl.DataFrame(
        rows, schema=["conversation_id", "utterance_index", "anonymized_content"], orient="row"
    )


EMAIL_TEXT = "Please write to me at maria.lopez@gmail.com or at john.doe@example.com today."
PERSON_TEXT = "Hello, my name is Maria Lopez and I need a cover letter."


def test_a_redacted_candidate_shows_as_its_placeholder_and_a_skipped_one_as_the_released_text():
    utterances = utterances_of([EMAIL_TEXT, PERSON_TEXT])
    decided = decide(
        [
            candidate(EMAIL_TEXT, "maria.lopez@gmail.com", "EMAIL_ADDRESS"),
            candidate(EMAIL_TEXT, "john.doe@example.com", "EMAIL_ADDRESS"),
            candidate(PERSON_TEXT, "Maria Lopez", "PERSON"),
        ],
        utterances,
    )
    stored = anonymize(utterances, decided)
    review = review_utterances(utterances, stored, decided, RULES)
    assert review.schema == REVIEW_SCHEMA
    by_value = {row["anonymized_start"]: row for row in review.iter_rows(named=True)}
    assert len(by_value) == 3
    rows = review.sort("utterance_index", "anonymized_start").to_dicts()
    email, skipped, person = rows
    assert email["decision"] == Decision.REDACT
    assert email["shown"] == "<PRESIDIO_ANONYMIZED_EMAIL_ADDRESS>" == email["placeholder"]
    assert email["context_before"].endswith("write to me at ")
    assert skipped["decision"] == Decision.SKIP_PATTERN
    assert "skip patterns" in skipped["explanation"]
    # Left alone: the released text holds it, so the review shows it there.
    assert skipped["shown"] == "john.doe@example.com" and skipped["placeholder"] is None
    assert person["shown"] == "<PRESIDIO_ANONYMIZED_PERSON>"
    assert {r["status"] for r in rows} == {Status.OK}
    # Every text shown is a piece of the stored anonymized text; no redacted value is.
    anonymized = stored["anonymized_content"].to_list()
    for text in shown_texts(review):
        assert any(text in a for a in anonymized), text
    shown = " ".join(shown_texts(review))
    assert "maria.lopez@gmail.com" not in shown and "Maria Lopez" not in shown


def test_an_utterance_anonymized_under_other_decisions_is_stale_and_shows_no_context():
    utterances = utterances_of([EMAIL_TEXT])
    decided = decide([candidate(EMAIL_TEXT, "maria.lopez@gmail.com", "EMAIL_ADDRESS")], utterances)
    # As if the day had been anonymized before the rule redacted emails.
    stored = utterances.select(
        "conversation_id", "utterance_index", anonymized_content=pl.col("content")
    )
    review = review_utterances(utterances, stored, decided, RULES)
    assert review["status"].to_list() == [Status.STALE]
    assert review["shown"].to_list() == [None] and review["context_before"].to_list() == [None]
    assert shown_texts(review) == ["<PRESIDIO_ANONYMIZED_EMAIL_ADDRESS>"]


def test_a_withheld_text_shows_no_context():
    utterances = utterances_of([EMAIL_TEXT], status="time_limit")
    decided = decide([candidate(EMAIL_TEXT, "maria.lopez@gmail.com", "EMAIL_ADDRESS")], utterances)
    stored = utterances.select(
        "conversation_id",
        "utterance_index",
        anonymized_content=pl.lit(RULES.placeholder_for("UNSCANNED_TEXT")),
    )
    review = review_utterances(utterances, stored, decided, RULES)
    assert review["status"].to_list() == [Status.WITHHELD]
    assert review["shown"].to_list() == [None]


def test_a_client_ip_written_in_a_message_is_reviewed_as_redacted():
    text = "my server 198.51.100.7 is down, and 10.0.0.1 is the gateway"
    utterances = utterances_of([text])
    decided = decide([candidate(text, "10.0.0.1", "IP_ADDRESS", "IpRecognizer")], utterances)
    stored = pl.DataFrame(
        {
            "conversation_id": [1],
            "utterance_index": [0],
            "anonymized_content": [
                "my server <PRESIDIO_ANONYMIZED_IP_ADDRESS> is down, and 10.0.0.1 is the gateway"
            ],
        }
    )
    review = review_utterances(utterances, stored, decided, RULES, {"198.51.100.7"})
    rows = review.sort("anonymized_start").to_dicts()
    assert [r["recognizer"] for r in rows] == [CLIENT_IP_RECOGNIZER, "IpRecognizer"]
    assert rows[0]["shown"] == "<PRESIDIO_ANONYMIZED_IP_ADDRESS>"
    # The detected address is not a client's: left alone (IP_ADDRESS is not in the rules).
    assert rows[1]["decision"] == Decision.NOT_IN_RULES and rows[1]["shown"] == "10.0.0.1"
    assert {r["status"] for r in rows} == {Status.OK}


def test_a_candidate_left_alone_inside_a_redacted_span_shows_the_placeholder():
    text = "Hello, my name is Maria Lopez Garcia and I need help."
    utterances = utterances_of([text])
    decided = decide(
        [
            candidate(text, "Maria Lopez Garcia", "PERSON"),
            candidate(text, "Lopez", "LOCATION"),
        ],
        utterances,
    )
    review = review_utterances(utterances, anonymize(utterances, decided), decided, RULES)
    location = review.filter(pl.col("entity_type") == "LOCATION").row(0, named=True)
    assert location["decision"] == Decision.NOT_IN_RULES
    assert location["shown"] == "<PRESIDIO_ANONYMIZED_PERSON>" == location["placeholder"]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_positions_outside_spans_land_on_the_same_character(data):
    text = data.draw(st.text(alphabet="abcé中 \n", min_size=1, max_size=60))
    n = data.draw(st.integers(0, 4))
    spans = []
    for _ in range(n):
        start = data.draw(st.integers(0, len(text) - 1))
        end = data.draw(st.integers(start + 1, len(text)))
        spans.append(Span(start, end, data.draw(st.sampled_from(["PERSON", "EMAIL"])), 1.0))
    merged = merge_spans(spans)
    rebuilt, placed = place_spans(text, merged, RULES)
    assert rebuilt == replace_spans(text, merged, RULES)
    for p in placed:
        assert rebuilt[p.anonymized_start : p.anonymized_end] == p.placeholder
    for position, char in enumerate(text):
        if not any(s.start <= position < s.end for s in merged):
            assert rebuilt[anonymized_position(position, placed)] == char


def located(candidates: list[dict], conversations: list[int], language: str = "en"):
    frame = pl.DataFrame(candidates, schema_overrides={"score": pl.Float64})
    return pl.concat(
        [
            frame.with_columns(language_code=pl.lit(language), conversation_id=pl.lit(c, pl.Int64))
            for c in conversations
        ]
    )


def scanned_of(texts: list[str], conversations: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        [(c, i, sha256_hex(t), "2024-01-01") for c in conversations for i, t in enumerate(texts)],
        schema=["conversation_id", "utterance_index", "content_sha256", "partition_day"],
        orient="row",
    ).with_columns(pl.col("partition_day").str.to_date())


def edited(**changes) -> object:
    data = RULES.as_data()
    for entity, rule in changes.items():
        data["redact"][entity] = rule
    return parse_rules(data)


def test_a_rules_diff_names_the_conversations_and_spans_whose_decision_changes():
    texts = [EMAIL_TEXT, PERSON_TEXT]
    frame = located(
        [
            candidate(EMAIL_TEXT, "maria.lopez@gmail.com", "EMAIL_ADDRESS"),
            candidate(EMAIL_TEXT, "john.doe@example.com", "EMAIL_ADDRESS"),
            candidate(PERSON_TEXT, "Maria Lopez", "PERSON"),
        ],
        [7, 8],
    )
    # B redacts every email, placeholder domains included.
    b = edited(EMAIL_ADDRESS={})
    diff = rules_diff(frame, scanned_of(texts, [7, 8]), RULES, b)
    assert diff.conversations == 2
    assert diff.spans.select("conversation_id", "decision_a", "decision_b").sort(
        "conversation_id"
    ).rows() == [
        (7, Decision.SKIP_PATTERN, Decision.REDACT),
        (8, Decision.SKIP_PATTERN, Decision.REDACT),
    ]
    assert diff.spans["utterance_index"].to_list() == [0, 0]
    assert diff.redacted_under_b_only == 2 and diff.redacted_under_a_only == 0
    assert diff.notes == []
    # The same rules change nothing.
    same = rules_diff(frame, scanned_of(texts, [7, 8]), RULES, RULES)
    assert same.spans.is_empty() and same.conversations == 0


def test_a_frequency_limit_in_b_is_counted_over_the_conversations():
    frame = located([candidate(PERSON_TEXT, "Maria Lopez", "PERSON")], [1, 2, 3])
    person = RULES.as_data()["redact"]["PERSON"]
    b = edited(PERSON={**person, "skip_if_in_conversations": 3})
    diff = rules_diff(frame, scanned_of([PERSON_TEXT], [1, 2, 3]), RULES, b)
    assert set(diff.spans["decision_b"]) == {Decision.FREQUENT} and diff.conversations == 3


def test_a_rules_diff_says_what_reaches_every_span_or_needs_new_detections():
    data = RULES.as_data()
    data["placeholder"] = "[{entity}]"
    data["redact"]["PERSON"] = {**data["redact"]["PERSON"], "languages": ["en", "de"]}
    diff = rules_diff(
        located([candidate(PERSON_TEXT, "Maria Lopez", "PERSON")], [1]),
        scanned_of([PERSON_TEXT], [1]),
        RULES,
        parse_rules(data),
    )
    assert any("placeholder changes" in n for n in diff.notes)
    assert any("Detect again" in n for n in diff.notes)


def test_a_rules_diff_refuses_candidates_without_their_language():
    with pytest.raises(ValueError, match="language_code"):
        rules_diff(
            pl.DataFrame([candidate(PERSON_TEXT, "Maria Lopez", "PERSON")]),
            scanned_of([PERSON_TEXT], [1]),
            RULES,
            RULES,
        )


def test_review_of_many_random_texts_always_matches_the_stored_text():
    rng = random.Random(7)
    words = ["hello", "my", "name", "is", "Maria", "Lopez", "mail", "x@gmail.com", "call", "中文"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 30))) for _ in range(50)]
    texts = list(dict.fromkeys(texts))
    utterances = utterances_of(texts)
    candidates = [
        candidate(t, v, e)
        for t in texts
        for v, e in (("x@gmail.com", "EMAIL_ADDRESS"), ("Maria Lopez", "PERSON"))
        if v in t
    ]
    decided = decide(candidates, utterances)
    stored = anonymize(utterances, decided)
    review = review_utterances(utterances, stored, decided, RULES)
    assert set(review["status"]) <= {Status.OK}
    assert review.height == len(candidates)
    anonymized = stored["anonymized_content"].to_list()
    for text in shown_texts(review):
        assert any(text in a for a in anonymized)
