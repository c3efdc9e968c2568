"""The normalized view detection reads, and the way back to the original's offsets.

The vectorised ``needs_normalization`` decides which texts get a view at all, so it must never
say False for a text whose view differs: that is checked as a property over an alphabet made of
every kind of character the view treats specially.
"""

from __future__ import annotations

import unicodedata

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wildchat_dag.core import text_normalization
from wildchat_dag.core.text_normalization import (
    _FAST_BLOCKS,
    _fast_tables,
    _folded,
    _line_before,
    _splitting_breaks,
    needing_normalization,
    needs_normalization,
    normalize_for_detection,
    normalized_view,
)
from wildchat_dag.core.text_normalization_reference import folded_chars, line_before

CASES = [
    # (original, view, a value in the view, the original characters it must map back to)
    (
        "call １５０８８６８１３０５ now",
        "call 15088681305 now",
        "15088681305",
        "１５０８８６８１３０５",
    ),
    ("mail a\u200bb@x.com", "mail ab@x.com", "ab@x.com", "a\u200bb@x.com"),
    (
        "mail ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｏｒｇ",
        "mail alice@example.org",
        "alice@example.org",
        None,
    ),
    ("请发到x@y.photography谢谢", "请发到 x@y.photography 谢谢", "x@y.photography", None),
    ("加我wechat 15088681305吧", "加我 wechat 15088681305 吧", "15088681305", None),
    ("tel +1 415 555-\n0132 ok", "tel +1 415 555-0132 ok", "+1 415 555-0132", None),
    ("bob.smith@\nexample.com", "bob.smith@example.com", "bob.smith@example.com", None),
    ("bob.smith@exam\r\nple.com", "bob.smith@example.com", "bob.smith@example.com", None),
    ("tel\u00a0555\u00a01234", "tel 555 1234", "555 1234", "555\u00a01234"),
    ("soft\u00adhyphen 12\u00ad34", "softhyphen 1234", "1234", "12\u00ad34"),
    ("\u202eRTL override 4111\u202c", "RTL override 4111", "4111", "4111"),
    ("السلام عليكم 0555123456 شكرا", "السلام عليكم 0555123456 شكرا", "0555123456", "0555123456"),
]


@pytest.mark.parametrize(("original", "view", "value", "written"), CASES)
def test_view_folds_hidden_notations_and_maps_values_back(
    original: str, view: str, value: str, written: str | None
) -> None:
    normalized = normalize_for_detection(original)
    assert normalized.text == view
    start = view.index(value)
    begin, end = normalized.to_original(start, start + len(value))
    if written is not None:
        assert original[begin:end] == written
    # Whatever the notation, the original stretch normalizes back to the value.
    assert normalize_for_detection(original[begin:end]).text.replace(" ", "") == value.replace(
        " ", ""
    )


@pytest.mark.parametrize(
    "text",
    ["plain English text", "line one.\nLine two", "a\nb", "2 + 2 = 4", "中文文本没有拉丁字母", ""],
)
def test_text_that_needs_no_view_is_its_own_view(text: str) -> None:
    normalized = normalize_for_detection(text)
    assert normalized.text == text
    assert not normalized.changed
    assert normalized.to_original(0, len(text)) == (0, len(text))


@pytest.mark.parametrize(
    "text",
    [
        "linkedin.com/\nin/x",
        "www.linkedin.\ncom/in/x",
        "sk_live_\nAbc123",
        "AKIA1234\nABCD",
        "Hi Kwame\nVolkov,",
        "+1 (415)\n555",
        "x@\ny.com",
        "x\n@y.com",
        "a.b@c\n.com",
    ],
)
def test_every_kind_of_split_value_is_flagged_for_a_view(text: str) -> None:
    flagged = pl.select(needs_normalization(pl.lit(text, pl.String))).item()
    assert flagged
    assert normalize_for_detection(text).changed


def test_line_breaks_between_words_stay() -> None:
    """Only a break that splits a number or an address is removed: prose keeps its lines."""
    assert normalize_for_detection("Thanks,\nMateo Mbeki").text == "Thanks,\nMateo Mbeki"
    assert normalize_for_detection("item 3.\nNext").text == "item 3.\nNext"


def test_a_name_split_by_a_break_is_joined_only_after_a_short_line() -> None:
    """A capitalized word ending a line of at most four words, then one starting the next and
    not followed by another: a name (Kwame Volkov). A longer line is prose, and so is a next
    line of two capitalized words (a signature's title)."""
    assert normalize_for_detection("Best wishes from Kwame\nVolkov").text == (
        "Best wishes from Kwame Volkov"
    )
    for kept in ("With best wishes from Kwame\nVolkov", "Kwame\nVolkov Senior"):
        assert normalize_for_detection(kept).text == kept


def test_combining_marks_fold_with_their_base() -> None:
    original = "Jose\u0301 Garci\u0301a"
    normalized = normalize_for_detection(original)
    assert normalized.text == "José García"
    start = normalized.text.index("García")
    begin, end = normalized.to_original(start, start + len("García"))
    assert original[begin:end] == "Garci\u0301a"


def test_normalized_view_only_touches_texts_that_need_it() -> None:
    texts = pl.Series("content", ["plain", "１２", None, "a\u200bb"])
    assert normalized_view(texts).to_list() == ["plain", "12", None, "ab"]


ALPHABET = st.sampled_from(
    [
        *"abw AZ09@.-+()_/\t\n\r,:",
        *["\u200b", "\u200d", "\u00ad", "\u202e", "\ufeff", "\u00a0", "\u2028"],
        *["１", "Ａ", "＠", "．", "ﬁ", "\u0301", "é", "中", "あ", "한", "ไ", "ا", "Ж", "。"],
        # Letters and digits beyond ASCII, whose Python and Rust classes differ: "W" for "WWW.",
        # a superscript digit, a Roman numeral (uppercase, not Lu), a titlecase letter, "ª".
        *["W", "²", "Ⅰ", "ǅ", "ª", "\x1c"],
    ]
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(ALPHABET, max_size=24).map("".join))
@example("aa-\u2028é")  # a hyphenated word broken before a non-ASCII letter: once missed
def test_needs_normalization_never_misses_a_text_whose_view_differs(text: str) -> None:
    flagged = pl.select(needs_normalization(pl.lit(text, pl.String))).item()
    if not flagged:
        assert normalize_for_detection(text).text == text


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=24).map("".join))
def test_every_view_character_comes_from_its_original_stretch(text: str) -> None:
    normalized = normalize_for_detection(text)
    if not normalized.changed:
        return
    assert normalized.starts is not None and normalized.ends is not None
    assert len(normalized.starts) == len(normalized.text) == len(normalized.ends)
    for char, start, end in zip(normalized.text, normalized.starts, normalized.ends, strict=True):
        assert 0 <= start <= end <= len(text)
        stretch = text[start:end]
        if char not in unicodedata.normalize("NFKC", stretch):
            # A space put between scripts (from nothing), or for a line break.
            assert char == " " and not stretch.strip()
    # Offsets never go backwards, so a span maps to one stretch of the original.
    assert list(normalized.starts) == sorted(normalized.starts)


def cluster_loop(text: str) -> tuple[str, list[int], list[int]]:
    """The reference loop's result as ``_folded`` gives it: the characters as one string,
    which ``normalize_for_detection`` slices as it would the list."""
    chars, starts, ends = folded_chars(text)
    assert all(len(char) == 1 for char in chars)
    return "".join(chars), starts, ends


def test_fast_path_matches_the_cluster_loop_on_every_fast_character() -> None:
    """Each character the fast path accepts, alone and after a Latin letter and a Han one."""
    checked = 0
    for first, last in _FAST_BLOCKS:
        for cp in range(first, last + 1):
            for text in (chr(cp), "a" + chr(cp), "中" + chr(cp), chr(cp) + "\u0301"):
                assert _folded(text) == cluster_loop(text), hex(cp)
                checked += _fast_tables().run.fullmatch(text) is not None
    # Nearly every character of these blocks is fast (not marks, invisible ones and the like).
    assert checked > 3 * 45_000


# Every kind of character the view treats specially, and the common ones it does not.
MIXED = st.one_of(
    st.sampled_from([*"aZ09 .-@/_+()\t", "\n", "\r\n", "\r", "\u2028", "\u2029"]),
    st.characters(min_codepoint=0x20, max_codepoint=0x24F),  # ASCII, Latin-1, Latin Ext-A/B
    st.characters(min_codepoint=0x300, max_codepoint=0x36F),  # combining diacriticals
    st.characters(min_codepoint=0x370, max_codepoint=0x52F),  # Greek, Cyrillic (marks too)
    st.characters(min_codepoint=0x590, max_codepoint=0x6FF),  # Hebrew, Arabic (marks too)
    st.characters(min_codepoint=0x900, max_codepoint=0x97F),  # Devanagari (marks, nukta)
    st.characters(min_codepoint=0xE00, max_codepoint=0xE7F),  # Thai (unspaced, marks)
    st.characters(min_codepoint=0x1100, max_codepoint=0x11FF),  # Hangul conjoining jamo
    st.characters(min_codepoint=0x1E00, max_codepoint=0x206F),  # Vietnamese, punctuation
    st.characters(min_codepoint=0x3000, max_codepoint=0x318F),  # kana, compatibility jamo
    st.characters(min_codepoint=0x4E00, max_codepoint=0x4EFF),  # Han
    st.characters(min_codepoint=0xAC00, max_codepoint=0xAC7F),  # Hangul syllables
    st.characters(min_codepoint=0xFF00, max_codepoint=0xFFEF),  # full- and half-width forms
    st.sampled_from(["\u200b", "\u200d", "\u00ad", "\u202e", "\ufeff", "\ufe0f", "\u034f"]),
    st.sampled_from(["ﬁ", "…", "①", "㈱", "\u0301", "\u3099", "👍", "\U0001f1fa", "\U00020000"]),
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(MIXED, max_size=40).map("".join))
@example("中文a１，ｂ２\n한국어ㄱㄴ")
@example("Kwame\nVolkov 555-\n0132 x@\ny.com")
def test_fast_path_is_the_cluster_loop(text: str) -> None:
    assert _folded(text) == cluster_loop(text)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(MIXED.filter(lambda c: _fast_tables().run.fullmatch(c) is not None), max_size=40).map(
        "".join
    )
)
def test_texts_of_fast_characters_are_one_stretch(text: str) -> None:
    """The alphabet above mostly mixes stretches and clusters; this one makes one stretch."""
    assert not text or _fast_tables().run.fullmatch(text)
    assert _folded(text) == cluster_loop(text)


# Characters NFKC treats in context: Hangul jamo that compose into a syllable, a vowel sign that
# composes with the one before it (Tamil ொ = ெ + ா), marks that are reordered, a compatibility
# jamo NFKC turns into a composing one, and characters with and without a decomposition.
COMPOSING = ["\u1100", "\u1161", "\u11a8", "\uac00", "\u0bc6", "\u0bbe", "\u0301", "\u0323"]
COMPOSING += ["\u3131", "\u314f", "e", "é", "Å", "Å", "ﬁ", "１", "中", "a", " "]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.one_of(ALPHABET, st.sampled_from(COMPOSING)), max_size=12).map("".join))
@example("\u1100\u1161")  # two jamo NFKC composes into 가, neither changed on its own
@example("\u0bc6\u0bbe")
def test_the_two_step_filter_keeps_exactly_the_texts_that_need_a_view(text: str) -> None:
    frame = pl.DataFrame({"t": [text]})
    kept = needing_normalization(frame, "t").height == 1
    assert kept == frame.select(needs_normalization(pl.col("t"))).item()


def test_every_character_nfkc_changes_alone_passes_the_first_step() -> None:
    """Each code point, alone and after a letter: where NFKC changes the text, the cheap step
    keeps it (the second step then decides exactly)."""
    chars = [chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    texts = pl.Series("t", chars + ["a" + c for c in chars], dtype=pl.String)
    frame = texts.to_frame().with_columns(changed=pl.col("t").str.normalize("NFKC") != pl.col("t"))
    kept = needing_normalization(frame.filter("changed"), "t")
    assert frame["changed"].sum() > 5_000
    assert kept.height == frame["changed"].sum()


def test_preload_builds_both_tables() -> None:
    """What a warm worker builds at start, so that no run pays for it."""
    for table in (text_normalization._nfkc_may_change, text_normalization._fast_tables):
        table.cache_clear()
    text_normalization.preload()
    assert text_normalization._nfkc_may_change.cache_info().currsize == 1
    assert text_normalization._fast_tables.cache_info().currsize == 1


# What the line-break rule reads: numbers, addresses, URLs, keys and names on either side of a
# break, every kind of break, lines past the 256 characters the rule looks back over, and
# scripts written without spaces.
BREAK_PIECES = [
    "\n", "\r\n", "\r", "\u2028", "\u2029", " ", "\t", "  \n  ",
    "555-", "0132", "(", ")", "+1 415", "bob.smith@", "example.com", "@", "https://x.org/a/",
    "www.", "Example", "sk-", "a1b2c3d4e5f6", "key_", "Kwame", "Volkov", "Mateo Mbeki",
    "Senior Engineer", "Dear Dr.", "Hi,", "中文", "x" * 250, "Word " * 60, ".", "-", "_", "/",
]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(BREAK_PIECES), max_size=24).map("".join))
@example("Kwame\nVolkov 555-\n0132 x@\ny.com")
@example("x" * 300 + " Mateo\nMbeki")
def test_the_line_before_a_break_is_its_reference(view: str) -> None:
    """The rule finds the line before a break with str.rfind: at every position (every break
    among them), the line its first-written regex split gave."""
    for begin in range(len(view) + 1):
        assert _line_before(view, begin) == line_before(view, begin), begin


def test_the_line_before_a_break_is_its_reference_on_real_text(wildchat_sample) -> None:
    views = {
        _folded(u["content"])[0] for c in wildchat_sample for u in c["conversation"] if u["content"]
    }
    found = 0
    for view in views:
        for match in text_normalization._BREAK_RE.finditer(view):
            assert _line_before(view, match.start()) == line_before(view, match.start())
        found += len(_splitting_breaks(view))
    assert found > 100
