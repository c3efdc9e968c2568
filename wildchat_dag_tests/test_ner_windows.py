"""NER reads the stretches around the cues: where, and that it finds there what reading the whole
text finds."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wildchat_dag.core.hashing import sha256_column
from wildchat_dag.defs.anonymization.redaction_rules import EntityRule, load_rules, unanchored
from wildchat_dag.defs.language.language import LanguageIdentifier
from wildchat_dag.defs.pii_detection.ner_windows import (
    MAX_SNAP,
    NER_WINDOW_EDGE,
    NER_WINDOW_MARGIN,
    interior,
    ner_windows,
)
from wildchat_dag.defs.pii_detection.pii_detection import (
    NER_WEIGHT,
    PARALLEL_MIN_WORK,
    DetectorSettings,
    PiiDetector,
    detection_views,
)
from wildchat_dag.defs.pii_detection.pii_detection_reference import detect_everywhere
from wildchat_dag.defs.pii_detection.resource import PresidioDetector
from wildchat_dag_tests.conftest import utterance_frame
from wildchat_dag_tests.test_pii_detection import released_texts

PROSE = (
    "The committee reviewed the quarterly figures and asked for a revised plan before the next "
    "meeting. Barack Obama and Angela Merkel were quoted in the appendix on trade policy. "
)


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.fixture(scope="module")
def person(rules) -> EntityRule:
    rule = rules.rule("PERSON")
    assert rule is not None
    return rule


@pytest.fixture(scope="module")
def detector(rules):
    return PiiDetector(rules)


def letter(paragraphs_before: int, paragraphs_after: int) -> str:
    return (
        PROSE * paragraphs_before
        + "My name is Nadia Osei, I write about my order. "
        + (PROSE * paragraphs_after)
    )


def test_a_long_text_is_read_only_around_its_cue(person):
    text = letter(30, 30)
    cue = text.index("My name is")
    (window,) = ner_windows(text, [person])
    start, end = window
    # The margin either side, moved out to whitespace, and no further.
    assert cue - NER_WINDOW_MARGIN - MAX_SNAP <= start <= cue - NER_WINDOW_MARGIN
    assert text[start - 1].isspace()
    name_end = text.index("Osei") + len("Osei")
    assert name_end + NER_WINDOW_MARGIN <= end <= name_end + NER_WINDOW_MARGIN + MAX_SNAP
    assert text[end].isspace()
    assert end - start < len(text) / 10


def test_cues_close_together_share_a_window_and_many_cues_read_the_whole_text(person):
    text = PROSE * 20 + "Hi Anna Berg, " + PROSE + "Regards, Tom Weller " + PROSE * 20
    assert len(ner_windows(text, [person])) == 1
    dense = "Hi Anna Berg. " + PROSE + "Dear Tom Weller. " + PROSE + "Thanks, Li Wei."
    assert ner_windows(dense, [person]) == [(0, len(dense))]


def test_a_cue_without_a_capitalized_name_after_it_opens_no_window(person):
    # "this is" and "hi" in "this" are cues the gate does not pass: no capitalized words follow.
    text = PROSE * 10 + "This is what I mean, hi there. " + PROSE * 10 + "Hi John Smith. " + PROSE
    windows = ner_windows(text, [person])
    assert len(windows) == 1
    assert windows[0][0] > text.index("hi there")


@pytest.mark.parametrize(
    "changes",
    [
        {"cues_before": ()},  # a rule that holds anywhere
        {"no_cue_needed_if": "^Dr "},  # a cue that may be left out
        {"pattern": "(?U)^\\p{Lu}\\p{L}+ \\p{Lu}\\p{L}+$"},  # Rust syntax Python cannot read
        {"cues_before": ("signed by",)},  # no cue in the text: the whole text, to be safe
    ],
)
def test_whole_text_where_a_rule_does_not_bound_its_matches(person, changes):
    text = letter(20, 20)
    assert ner_windows(text, [dataclasses.replace(person, **changes)]) == [(0, len(text))]


def test_an_entity_type_detected_for_review_reads_the_whole_text(person):
    text = letter(20, 20)
    assert ner_windows(text, [None]) == [(0, len(text))]
    assert ner_windows(text, [person, None]) == [(0, len(text))]


def test_a_cue_window_or_a_nearby_cue_widens_the_window():
    text = "word " * 400 + "address: " + "word " * 400
    cue = text.index("address")
    windowed = EntityRule("LOCATION", cues_before=("address",), cue_window=120)
    nearby = EntityRule("LOCATION", cues_nearby=("address",), nearby_window=80)
    ((start, end),) = ner_windows(text, [windowed])
    assert (
        start <= cue - NER_WINDOW_MARGIN and end >= cue + len("address") + 120 + NER_WINDOW_MARGIN
    )
    ((start, end),) = ner_windows(text, [nearby])
    assert (
        start <= cue - 80 - NER_WINDOW_MARGIN
        and end >= cue + len("address") + 80 + NER_WINDOW_MARGIN
    )


def test_text_without_spaces_is_cut_within_the_snap_limit(person):
    han = "汉" * 2000
    text = han + " Hi Anna Berg " + han
    ((start, end),) = ner_windows(text, [person])
    cue = text.index("Hi")
    assert start == cue - NER_WINDOW_MARGIN  # no whitespace within reach: cut where it was
    assert end - start < 800


def test_the_interior_keeps_the_texts_own_ends():
    assert interior((0, 500), 500) == (0, 500)
    assert interior((100, 400), 500) == (100 + NER_WINDOW_EDGE, 400 - NER_WINDOW_EDGE)


WORDS = st.sampled_from(
    [
        *("hi", "Hi", "HELLO", "dear", "ſigned,", "thanks,", "my name is", "this is", "chi"),
        *("John", "Smith", "Ōta", "İris", "Nadia", "Osei", "word", "the", "Mbeki你好"),
        *("你好", "x\u200b", ".", ",", ":", "-", "'", '"', "1984"),
    ]
)
GAPS = st.sampled_from([" ", "  ", "\n", ", ", ": ", "\t", ""])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(WORDS, GAPS), min_size=1, max_size=60))
def test_every_place_the_rule_could_redact_has_its_margin_in_a_window(person, pieces) -> None:
    """Checked with the rules' own (Rust) regexes, as anonymization applies them: wherever the
    text before a position ends with a cue and its gap, and a match of the rule's pattern starts
    there, a window holds the margin either side."""
    text = "".join(word + gap for word, gap in pieces)
    margin = 12  # small, so that windows are parts of these short texts
    windows = ner_windows(text, [person], margin=margin)
    positions = pl.DataFrame({"at": range(1, len(text))}).with_columns(
        before=pl.col("at").map_elements(lambda at: text[:at], return_dtype=pl.String),
        after=pl.col("at").map_elements(lambda at: text[at:], return_dtype=pl.String),
    )
    redactable = positions.filter(
        pl.col("before").str.contains(person.cue_before_regex())
        & pl.col("after").str.contains("^(?:" + unanchored(person.pattern or "") + ")")
    )["at"]
    for at in redactable:
        assert any(
            (start == 0 or start <= at - margin) and (end == len(text) or end >= at + margin)
            for start, end in windows
        ), (text, at, windows)


def test_names_near_cues_are_found_and_redacted_as_reading_everything(detector, rules):
    text = letter(30, 30)
    utterances = utterance_frame([[text]])
    found = detector.detect(utterances)
    everywhere = detect_everywhere(utterances, rules, languages=detector.languages)
    assert found.stats["characters_read_by_ner"] < len(text) / 10
    people = found.candidates.filter(pl.col("entity_type") == "PERSON")["text"].to_list()
    assert "Nadia Osei" in people
    # Names far from every cue are not looked for: of the 60 that reading everything finds, only
    # those in the paragraphs next to the cue. The rules leave them alone either way.
    assert everywhere.candidates["text"].to_list().count("Barack Obama") == 60
    assert 0 < people.count("Barack Obama") <= 4
    assert released_texts(found, utterances, rules) == released_texts(everywhere, utterances, rules)
    assert "Nadia Osei" not in next(iter(released_texts(found, utterances, rules).values()))


def people(candidates: pl.DataFrame, sha: str) -> set[tuple[int, int]]:
    """Where the PERSON candidates of one text are."""
    found = candidates.filter(
        (pl.col("content_sha256") == sha) & (pl.col("entity_type") == "PERSON")
    )
    return set(found.select("start", "end").rows())


def test_on_real_text_ner_finds_in_its_windows_what_reading_everything_finds_there(
    detector, rules, wildchat_sample
):
    """Every real text that NER reads (and that needs no normalized view, so that offsets
    compare): the PERSON candidates are those that analyzing the whole text finds inside the
    windows' interiors."""
    texts = sorted(
        {u["content"] for c in wildchat_sample for u in c["conversation"] if u["content"]}
    )
    contents = pl.DataFrame({"content": texts})
    contents = contents.with_columns(content_sha256=sha256_column(contents["content"]))
    views, normalized = detection_views(contents.select("content_sha256", "content"))
    planned = (
        detector.plan(views)
        .filter(pl.col("ner_entities").list.len() > 0)
        .filter(~pl.col("content_sha256").is_in(list(normalized)))
    )
    assert planned.height >= 5
    utterances = utterance_frame([[content] for content in planned["content"]])
    ours = detector.detect(utterances).candidates
    theirs = detect_everywhere(utterances, rules, languages=detector.languages).candidates
    read = 0
    for sha, content, ners in planned.select(
        "content_sha256", "content", "ner_entities"
    ).iter_rows():
        windows = detector.ner_windows(content, ners)
        read += sum(end - start for start, end in windows)
        kept = [interior(window, len(content)) for window in windows]

        inside = {
            (start, end)
            for start, end in people(theirs, sha)
            if any(low <= start and end <= high for low, high in kept)
        }
        assert people(ours, sha) == inside, content[:80]
    assert read < planned["content"].str.len_chars().sum() / 3


def test_a_pool_is_started_for_what_spacy_reads_not_for_the_whole_text(rules):
    """80,000 characters with one cue: weighed whole for NER, over ``parallel_min_work``; weighed
    by its window, one process does it."""
    text = letter(230, 230)
    assert 75_000 < len(text) < 100_000
    settings = DetectorSettings(workers=2, parallel_min_work=2_000_000)
    assert len(text) * NER_WEIGHT >= settings.parallel_min_work
    found = PiiDetector(rules, settings).detect(utterance_frame([[text]]))
    assert found.stats["workers"] == 1
    assert "Nadia Osei" in found.candidates["text"].to_list()


def test_the_resource_sets_the_pool_threshold(rules):
    languages = LanguageIdentifier()
    assert PresidioDetector().detector(rules, languages).settings.parallel_min_work == (
        PARALLEL_MIN_WORK
    )
    tuned = PresidioDetector(parallel_min_work=1_000).detector(rules, languages)
    assert tuned.settings.parallel_min_work == 1_000
