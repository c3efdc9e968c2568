"""Redaction by the rules, through the real detector: a labelled set, thresholds, placeholders.

Each case is a sentence built from a rule of the default policy (WildChat's), with the text the
release must carry. Detection is Presidio with the shipped spaCy model and fastText, gated as in
the pipeline; the rules then decide.
"""

from __future__ import annotations

import re
from collections import Counter

import polars as pl
import pytest
import yaml

from wildchat_dag.defs.anonymization.anonymization import redact_batch
from wildchat_dag.defs.anonymization.redaction import (
    Decision,
    Span,
    merge_spans,
    qualify_candidates,
)
from wildchat_dag.defs.anonymization.redaction_rules import (
    DEFAULT_RULES_PATH,
    RulesError,
    load_rules,
    parse_rules,
)
from wildchat_dag.defs.pii_detection.pii_detection import PiiDetector, detection_version
from wildchat_dag_tests.conftest import utterance_frame

PERSON = "<PRESIDIO_ANONYMIZED_PERSON>"
PHONE = "<PRESIDIO_ANONYMIZED_PHONE_NUMBER>"
EMAIL = "<PRESIDIO_ANONYMIZED_EMAIL_ADDRESS>"
CARD = "<PRESIDIO_ANONYMIZED_CREDIT_CARD>"
URL = "<PRESIDIO_ANONYMIZED_URL>"

POSITIVES = [
    # PERSON: a cue phrase just before two or more capitalized words, in English.
    (
        "My name is John Smith and I need help with my resume.",
        f"My name is {PERSON} and I need help with my resume.",
    ),
    (
        "Dear Emily Clark,\nThank you for the interview yesterday.",
        f"Dear {PERSON},\nThank you for the interview yesterday.",
    ),
    ("Best regards,\nSarah Johnson", f"Best regards,\n{PERSON}"),
    ("Sincerely, David Miller", f"Sincerely, {PERSON}"),
    (
        "Hi Laura Brown, can you review this document for me?",
        f"Hi {PERSON}, can you review this document for me?",
    ),
    # PHONE_NUMBER: more than 8 characters of digits, spaces or -()+, after a cue or with a +.
    ("phone: +1 212-555-0199", f"phone: {PHONE}"),
    ("Tel: 020 7946 0958", f"Tel: {PHONE}"),
    ("WhatsApp 13812345678", f"WhatsApp {PHONE}"),
    ("我的电话是13812345678，请联系我。", f"我的电话是{PHONE}，请联系我。"),
    (
        "Call me on +44 20 7946 0958 tomorrow morning.",
        f"Call me on {PHONE} tomorrow morning.",
    ),
    # EMAIL_ADDRESS: a personal address.
    (
        "Contact me at john.smith84@gmail.com about the job.",
        f"Contact me at {EMAIL} about the job.",
    ),
    # CREDIT_CARD: with "card" nearby.
    ("My card number is 4111 1111 1111 1111.", f"My card number is {CARD}."),
    # URL: LinkedIn profiles only.
    (
        "See https://www.linkedin.com/in/john-smith-123 for my profile.",
        f"See {URL} for my profile.",
    ),
]

NEGATIVES = [
    "My name is John.",  # one word
    "John Smith wrote this report yesterday.",  # no cue
    'My name is "John Smith".',  # quoted
    "Bonjour, je m'appelle Marie Dupont. Dear Marie Dupont, merci beaucoup pour votre aide "
    "et à bientôt.",  # not English
    "Call 212-555-0199 now to book a table.",  # "call" is no cue, and no leading +
    "phone: 555-0199",  # 8 characters: not more than 8
    "Write to info@example.com for details.",  # placeholder domain, generic prefix
    "Write to contact@acme-industries.com for details.",  # generic prefix
    "Send it to jane@domain.com please.",  # placeholder domain
    "Order reference 4111111111111111 was shipped yesterday.",  # 16 digits, no "card" nearby
    "The code is at https://github.com/johnsmith/project.",  # not a LinkedIn profile
    "My server is at 203.0.113.9 and it times out.",  # IP_ADDRESS: detected, not redacted
    # WildChat's own placeholders stay as they are.
    "Hello <PRESIDIO_ANONYMIZED_PERSON>, my email is <PRESIDIO_ANONYMIZED_EMAIL_ADDRESS>.",
]


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.fixture(scope="module")
def detector(rules):
    return PiiDetector(rules)


def redact_conversations(detector, rules, conversations: list[list[str]]) -> dict[str, str]:
    """Original text -> released text, with corpus frequencies over these conversations."""
    utterances = utterance_frame(conversations)
    found = detector.with_rules(rules).detect(utterances)
    contents = found.utterances.join(utterances, on=["conversation_id", "utterance_index"])
    released = redact_batch(found, contents.select("content_sha256", "content"), rules).contents
    return dict(
        contents.join(released, on="content_sha256").select("content", "redacted_content").rows()
    )


def test_labelled_positives_are_redacted_as_the_rules_say(detector, rules):
    released = redact_conversations(detector, rules, [[text] for text, _ in POSITIVES])
    assert {text: released[text] for text, _ in POSITIVES} == dict(POSITIVES)


def test_labelled_negatives_are_left_alone(detector, rules):
    released = redact_conversations(detector, rules, [[text] for text in NEGATIVES])
    assert {text: released[text] for text in NEGATIVES} == {text: text for text in NEGATIVES}


@pytest.mark.parametrize(
    ("text", "threshold"),
    [
        ("Dear Barack Obama, thank you for your service to the country.", 50),
        ("You can call my phone: +1 212-555-0147 after six.", 10),
        ("Reach me at anna.kowalska77@gmail.com please.", 10),
        ("My card number is 5500 0000 0000 0004 thanks.", 10),
    ],
)
def test_values_in_too_many_conversations_are_left_alone(detector, rules, text, threshold):
    """At the threshold a value is public (a celebrity, a business); one below, still private."""
    filler = "Please help me with my homework."
    below = redact_conversations(detector, rules, [[text, filler]] * (threshold - 1))
    at = redact_conversations(detector, rules, [[text, filler]] * threshold)
    assert below[text] != text and "<PRESIDIO_ANONYMIZED_" in below[text]
    assert at[text] == text


def test_frequency_counts_conversations_not_occurrences(detector, rules):
    text = "You can call my phone: +1 212-555-0148 after six."
    # Ten times in one conversation is still one conversation: stays redacted.
    released = redact_conversations(detector, rules, [[text] * 10])
    assert released[text] != text


def test_a_further_entity_type_is_enabled_by_editing_the_rules_alone(detector, rules):
    text = "My server is at 203.0.113.9 and it times out."
    data = rules.as_data()
    data["redact"]["IP_ADDRESS"] = {}
    data["detect_also"] = [e for e in data["detect_also"] if e != "IP_ADDRESS"]
    enabled = parse_rules(data, source="edited")
    # Where detection runs is unchanged, so stored detections serve the new rule as they are.
    assert detection_version(enabled) == detection_version(rules)
    assert enabled.rules_hash != rules.rules_hash
    released = redact_conversations(detector, enabled, [[text]])
    assert released[text] == "My server is at <PRESIDIO_ANONYMIZED_IP_ADDRESS> and it times out."


def test_threshold_edits_keep_detection_cue_edits_do_not(rules):
    data = rules.as_data()
    data["redact"]["PERSON"]["skip_if_in_conversations"] = 20
    data["placeholder"] = "[{entity}]"
    assert detection_version(parse_rules(data)) == detection_version(rules)
    data["redact"]["PERSON"]["cues_before"] = [*data["redact"]["PERSON"]["cues_before"], "yo"]
    assert detection_version(parse_rules(data)) != detection_version(rules)


def test_real_sample_keeps_its_placeholders(detector, rules, wildchat_sample):
    conversations = [[u["content"] for u in c["conversation"]] for c in wildchat_sample]
    released = redact_conversations(detector, rules, conversations)
    placeholder = re.compile(r"<PRESIDIO_ANONYMIZED_[A-Z_]+>")
    with_placeholders = [t for texts in conversations for t in texts if placeholder.search(t)]
    assert len(with_placeholders) >= 8
    for text in with_placeholders:
        out = released[text]
        # Every original placeholder is still there, whole; redaction may only add more.
        assert Counter(placeholder.findall(text)) <= Counter(placeholder.findall(out)), text[:200]
        assert out.count("<") - text.count("<") == out.count("PRESIDIO_ANONYMIZED_") - text.count(
            "PRESIDIO_ANONYMIZED_"
        )


def test_decisions_name_the_condition_that_failed(rules):
    """Qualification reads only what detection stored: text, language and context."""
    cases = [
        # entity, text, before, after, language, decision
        ("PERSON", "John Smith", "My name is ", ".", "en", Decision.REDACT),
        ("PERSON", "John Smith", "My name is ", ".", "fr", Decision.LANGUAGE),
        ("PERSON", "John", "My name is ", ".", "en", Decision.PATTERN),
        ("PERSON", "John Smith", 'My name is "', '".', "en", Decision.PRECEDED_BY),
        ("PERSON", "John Smith", "I met ", ".", "en", Decision.NO_CUE),
        ("PHONE_NUMBER", "212-555-0199", "Call ", " now", "en", Decision.NO_CUE),
        ("PHONE_NUMBER", "+44 20 7946 0958", "Call ", " now", "en", Decision.REDACT),
        (
            "PHONE_NUMBER",
            "+44 20 7946 0958",
            "my phone number, as asked, is ",
            "",
            None,
            Decision.REDACT,
        ),
        ("CREDIT_CARD", "4111111111111111", "Order ", " shipped", "en", Decision.NO_NEARBY_CUE),
        ("CREDIT_CARD", "4111111111111111", "Order ", " paid by card", "en", Decision.REDACT),
        ("EMAIL_ADDRESS", "info@acme.com", "Write to ", "", "en", Decision.SKIP_PATTERN),
        ("URL", "https://github.com/x", "See ", "", "en", Decision.PATTERN),
        ("PERSON", "PRESIDIO_ANONYMIZED_PERSON", "Hi <", ">", "en", Decision.INSIDE_PLACEHOLDER),
        ("IP_ADDRESS", "203.0.113.9", "at ", "", "en", Decision.NOT_IN_RULES),
    ]
    frame = pl.DataFrame(
        [c[:5] for c in cases],
        schema=["entity_type", "text", "context_before", "context_after", "language_code"],
        orient="row",
    )
    decided = qualify_candidates(frame, rules)
    assert decided["decision"].to_list() == [c[5] for c in cases]


def test_overlapping_spans_are_merged_not_dropped():
    merged = merge_spans(
        [Span(0, 10, "URL", 0.5), Span(5, 20, "EMAIL_ADDRESS", 1.0), Span(30, 35, "X", 0.1)]
    )
    # The union covers both, labelled by the more confident; a partial overlap leaves no tail.
    assert merged == [Span(0, 20, "EMAIL_ADDRESS", 1.0), Span(30, 35, "X", 0.1)]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"redact": {"PERSON": {"cue_before": ["hi"]}}}, r"redact\.PERSON: unknown key"),
        ({"redact": {"EMAIL_ADDRESS": {"pattern": "(unclosed"}}}, r"invalid regular expression"),
        ({"redact": {"person": {}}}, r"redact\.person: entity types are Presidio names"),
        ({"redact": {"PHONE_NUMBER": {"cue_window": 30}}}, r"need cues_before"),
        ({"redact": {"CREDIT_CARD": {"nearby_window": 500, "cues_nearby": ["card"]}}}, "at most"),
        ({"version": 2}, r"version: this code reads version 1"),
        ({"placeholder": "[REDACTED]"}, r"placeholder: must be a string containing \{entity\}"),
        ({"unscanned_text": "drop"}, r"unscanned_text: must be 'withhold' or 'keep'"),
        ({"redact_client_ips": "yes"}, r"redact_client_ips: must be true or false"),
        ({"redact_everything": True}, r"top level: unknown key"),
    ],
)
def test_a_malformed_rules_file_fails_naming_the_file_and_the_key(tmp_path, edit, message):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"redact": {}, **edit}))
    with pytest.raises(RulesError, match=message) as raised:
        load_rules(path)
    assert str(raised.value).startswith(str(path))


def test_the_rules_hash_ignores_comments_formatting_and_order(tmp_path, rules):
    data = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    data["redact"] = dict(reversed(list(data["redact"].items())))
    path = tmp_path / "rules.yaml"
    path.write_text("# reordered, reformatted\n" + yaml.safe_dump(data, default_flow_style=True))
    assert load_rules(path).rules_hash == rules.rules_hash
    data["redact"]["URL"]["pattern"] = "(?i)linkedin\\.com/(in|pub)/"
    path.write_text(yaml.safe_dump(data))
    assert load_rules(path).rules_hash != rules.rules_hash
