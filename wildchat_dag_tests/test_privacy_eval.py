"""The labelled privacy set through detection and redaction, the pipeline's way.

Every placed value (``wildchat_dag.loggen.pii_cases``: PII the rules redact, secrets, the
client's own IP, in every position, script and notation) must come out inside a placeholder,
every decoy unchanged, every redaction on a placed value, and gated detection
(``PiiDetector.detect``) must redact exactly as Presidio run on everything
(``detect_everywhere``). Each case is its own test, named by its case id; the whole report
(recall and precision per entity type, notation and script) is written to
``test-artifacts/privacy/eval.md``. The same evaluation runs as
``benchmarks/bench_privacy_eval.py``.

The first tests check the set itself: labels, coverage, realistic values, and that its logs are
the log contract's (ingested, linked back to the same conversations with their client IPs).
"""

from __future__ import annotations

import ipaddress
from datetime import date
from pathlib import Path

import orjson
import polars as pl
import pytest

from wildchat_dag.defs.anonymization.redaction_rules import load_rules
from wildchat_dag.defs.ingest.log_contract import DEFAULT_MAX_LINE_BYTES
from wildchat_dag.defs.ingest.parsing import ingest_day
from wildchat_dag.defs.linking.linking import link_window
from wildchat_dag.loggen.pii_cases import (
    DECOY_KINDS,
    ENTITY_TYPES,
    IP_NOTATIONS,
    NOTATIONS,
    PERSON_CUES,
    POSITIONS,
    PUBLIC_FIGURE,
    ROLES,
    SCRIPTS,
    SECRET_DETECTORS,
    ZONE_ID,
    build_case_set,
    check_case_set,
    luhn_valid,
    normalized_form,
    write_case_logs,
)
from wildchat_dag_tests.privacy_cases import Evaluation, evaluate, redact_cases

SEED = 15
DAY = date(2024, 9, 2)
CASES = build_case_set(SEED)
REPORT = Path(__file__).resolve().parents[1] / "test-artifacts" / "privacy" / "eval.md"


# -- the set ------------------------------------------------------------------------------------


def test_the_set_is_seeded_and_its_labels_hold():
    assert build_case_set(SEED) == CASES
    assert build_case_set(SEED + 1).values != CASES.values
    check_case_set(CASES)
    for v in CASES.values:
        plain = normalized_form(v.value)
        content = CASES.content(v.conversation_key, v.turn_index)
        if v.entity_type == "IP_ADDRESS":
            assert ipaddress.ip_address(v.canonical).compressed == v.canonical
            assert CASES.conversation(v.conversation_key).client_ip == v.canonical, v.case_id
            if v.notation == "zone_id":
                assert content[v.end :].startswith(ZONE_ID), v.case_id
        elif v.notation == "line_break":
            assert "\n" in v.value, v.case_id
            assert v.canonical in (plain.replace("\n", " "), plain.replace("\n", "")), v.case_id
        else:
            assert plain == v.canonical, v.case_id
        if v.notation == "nbsp" and v.value == v.canonical:
            # No space inside: the NBSP is next to it.
            assert "\u00a0" in content[v.start - 1 : v.start] + content[v.end : v.end + 1]
        elif v.notation not in ("plain", "ipv6", "zone_id"):
            assert v.value != v.canonical, v.case_id


def test_every_dimension_is_covered():
    values = CASES.values
    for entity in ENTITY_TYPES:
        mine = [v for v in values if v.entity_type == entity]
        notations = IP_NOTATIONS if entity == "IP_ADDRESS" else NOTATIONS
        assert {v.notation for v in mine} == set(notations), entity
        # PERSON is redacted in English texts only.
        assert {v.script for v in mine} == ({"latin"} if entity == "PERSON" else set(SCRIPTS))
        assert {v.position for v in mine} == set(POSITIONS), entity
        assert {v.role for v in mine} == set(ROLES), entity
        assert {v.turn for v in mine} == {"first", "later"}, entity
    assert {v.detail for v in values if v.entity_type == "PERSON"} == set(PERSON_CUES)
    assert {v.detail for v in values if v.entity_type == "SECRET"} == set(SECRET_DETECTORS)
    assert {v.detail for v in values if v.entity_type == "PHONE_NUMBER"} == {"cue", "plus"}
    assert {d.kind for d in CASES.decoys} == set(DECOY_KINDS)
    figure = {d.conversation_key for d in CASES.decoys if d.value == PUBLIC_FIGURE}
    assert len(figure) >= 50 + 10


def test_values_are_realistic():
    rules = {r.entity: r for r in load_rules().rules}
    for v in CASES.values:
        if v.entity_type == "PHONE_NUMBER":
            assert _valid_phone(v.canonical), v.case_id
        if v.entity_type == "CREDIT_CARD":
            assert luhn_valid(v.canonical), v.case_id
    for d in CASES.decoys:
        if d.kind == "luhn_without_card":
            assert luhn_valid(d.value)
    # Each placed value passes its rule's own conditions on the value (Rust regex, as polars).
    checks = {
        "PERSON": rules["PERSON"].pattern,
        "PHONE_NUMBER": rules["PHONE_NUMBER"].pattern,
        "URL": rules["URL"].pattern,
    }
    for entity, pattern in checks.items():
        canon = pl.Series([v.canonical for v in CASES.values if v.entity_type == entity])
        assert canon.str.contains(pattern).all(), entity
    skips = rules["EMAIL_ADDRESS"].skip_patterns
    emails = pl.Series([v.canonical for v in CASES.values if v.entity_type == "EMAIL_ADDRESS"])
    for pattern in skips:
        assert not emails.str.contains(pattern).any(), pattern
    decoy_emails = pl.Series(
        [d.value for d in CASES.decoys if d.kind in ("placeholder_email", "generic_mailbox")]
    )
    skipped = pl.any_horizontal(*(decoy_emails.str.contains(p) for p in skips))
    assert pl.select(skipped).to_series().all()


def _valid_phone(number: str) -> bool:
    """A valid number: in international form, or in the national form of a country the set
    writes local numbers for."""
    import phonenumbers

    for region in (None,) if number.startswith("+") else ("US", "GB", "CN", "RU", "IL"):
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(number, region)):
                return True
        except phonenumbers.NumberParseException:
            continue
    return False


def test_the_logs_link_back_to_the_conversations_with_their_client_ips(tmp_path):
    logs = write_case_logs(CASES, tmp_path, DAY, seed=SEED)
    lines = [orjson.loads(x) for x in logs.files[0].read_bytes().splitlines()]
    assert len(lines) == logs.requests == sum(len(c.messages) // 2 for c in CASES.conversations)
    owner = {t: key for key, turns in logs.turn_ids.items() for t in turns}
    for line in lines:
        assert line["ip"] == CASES.conversation(owner[line["turn_id"]]).client_ip
        assert line["timestamp"].startswith(DAY.isoformat())
    ingested = ingest_day(tmp_path / DAY.isoformat(), DAY, max_line_bytes=DEFAULT_MAX_LINE_BYTES)
    assert ingested.quarantine.is_empty()
    linked = link_window(ingested.requests, DAY, lookahead_days=1)
    assert linked.orphans.is_empty()
    got = {
        tuple(own): (
            tuple((m["role"], m["content"]) for m in conversation),
            {m["ip"] for m in conversation if m["role"] == "user"},
        )
        for own, conversation in linked.conversations.select(
            "own_turn_ids", "conversation"
        ).iter_rows()
    }
    for c in CASES.conversations:
        messages, ips = got[tuple(logs.turn_ids[c.key])]
        assert messages == tuple((m["role"], m["content"]) for m in c.messages), c.key
        assert ips == {c.client_ip}, c.key


def test_the_quarantined_lines_are_quarantined_for_their_reason(tmp_path):
    logs = write_case_logs(CASES, tmp_path, DAY, seed=SEED, quarantined=True)
    ingested = ingest_day(tmp_path / DAY.isoformat(), DAY, max_line_bytes=DEFAULT_MAX_LINE_BYTES)
    assert ingested.requests.height == logs.requests
    reasons = sorted(ingested.quarantine["reason"].to_list())
    assert reasons == sorted(q.reason for q in logs.quarantined)


# -- the evaluation -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    gated = redact_cases(CASES)
    full = redact_cases(CASES, full=True)
    result = evaluate(CASES, gated.texts, full.texts)
    result.seconds = {"gated": gated.seconds, "full": full.seconds}
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        f"# Privacy evaluation (seed {SEED})\n\n{CASES.counts_table()}\n\n"
        f"{result.markdown(show=1000)}\n",
        encoding="utf-8",
    )
    return result


@pytest.mark.parametrize("case_id", [v.case_id for v in CASES.values])
def test_placed_value_is_redacted(evaluation, case_id):
    outcome = evaluation.value(case_id)
    assert outcome.found, (
        f"{case_id}: {outcome.status}, {outcome.surviving} of its characters left in the "
        f"release (placeholders over it: {', '.join(outcome.placeholders) or 'none'}); "
        f"report: {REPORT}"
    )


@pytest.mark.parametrize("decoy_id", [d.decoy_id for d in CASES.decoys])
def test_decoy_is_released_unchanged(evaluation, decoy_id):
    outcome = evaluation.decoy(decoy_id)
    assert outcome.kept, (
        f"{decoy_id}: {outcome.redacted_chars} characters redacted by "
        f"{', '.join(outcome.placeholders)}"
    )


def test_every_redaction_is_on_a_placed_value(evaluation):
    stray = [
        f"{s.key[0]} message {s.key[1]}: {s.span.placeholder} over {s.text[:40]!r}"
        for s in evaluation.unlabelled_spans
    ]
    assert not stray, "redactions on no placed value:\n" + "\n".join(stray[:30])


def test_every_redacted_text_is_the_original_with_placeholders(evaluation):
    assert not evaluation.alignment_errors, {
        f"{k[0]} message {k[1]}": why for k, why in list(evaluation.alignment_errors.items())[:20]
    }


def test_gated_and_full_detection_redact_identically(evaluation):
    assert evaluation.differences is not None
    differing = [f"{k[0]} message {k[1]}" for k in evaluation.differences]
    assert not differing, (
        f"{len(differing)} of {evaluation.compared} messages are redacted differently by gated "
        f"and full detection: {differing[:30]}"
    )
