"""The text detection reads: one normalized view of a message, with a way back to the original.

PII is not always written the way recognizers expect. A user may type a phone number in
full-width digits (``１５０８８６８１３０５``), put a zero-width space inside an e-mail address, let
a line break split a number, or write an address against Chinese text with no space in between
(``请发到x@y.photography谢谢``), where ``\\b`` finds no word boundary. Detection therefore runs on
a normalized view of each text:

- NFKC, which folds full-width digits, letters and punctuation to ASCII and NBSP to a space;
- zero-width, bidi-control and other invisible format characters removed;
- a line break (with the blanks around it) removed where it splits a number, an e-mail
  address, a URL or a long token such as a key, and made a space where it splits a name;
- a space put between a character of a script written without spaces (Han, kana, Hangul,
  Thai, ...) and a Latin letter or digit, so that word boundaries exist where a reader sees them.

Every character of the view knows the stretch of the original it came from, so a span found in
the view maps back to original offsets, and redaction replaces the original characters,
invisible ones inside the span included. Most texts need none of this (``needs_normalization``
says which, vectorised), and for them the view is the text itself.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

# Bumped when the view changes: it is part of detection's version.
NORMALIZATION_VERSION = "nfkc-invisible-linebreak-cjkspace-v2"

# Invisible characters that can hide inside a value: every format character (Unicode category
# Cf: soft hyphen, zero-width space and joiners, LRM/RLM, bidi embeddings, overrides and isolates,
# word joiner, invisible operators, BOM, tags, ...), the combining grapheme joiner, the Khmer
# inherent vowels and the variation selectors. The one list: detection's view, the IP finder
# and the sanitizer of the text exit all drop these.
INVISIBLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE007F),
    (0xE0100, 0xE01EF),
)


def codepoints(ranges: Iterable[tuple[int, int]]) -> list[int]:
    return [cp for first, last in ranges for cp in range(first, last + 1)]


def char_class(points: Iterable[int]) -> str:
    """A character class that Python's ``re`` and Rust's ``regex`` (polars) read alike."""
    ranges: list[list[int]] = []
    for cp in sorted(set(points)):
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])

    def char(cp: int) -> str:
        c = chr(cp)
        return "\\" + c if c in "\\[]^-&~" else c

    body = "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)
    return f"[{body}]"


INVISIBLE_CLASS = char_class(codepoints(INVISIBLE_RANGES))
# Scripts written without spaces between words (so ``\b`` never separates them from Latin).
UNSPACED_SCRIPTS = (
    "\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff"  # Thai, Lao, Myanmar, Khmer
    "\u3000-\u303f\u3040-\u309f\u30a0-\u30ff\u3100-\u312f"  # CJK punctuation, kana, bopomofo
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han
    "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"  # Hangul
    "\uff61-\uff9f"  # half-width kana
)
_LINE_BREAK = "(?:\\r\\n|[\\r\\n\\u2028\\u2029])"
_INVISIBLE_RE = re.compile(INVISIBLE_CLASS)
_UNSPACED_RE = re.compile(f"[{UNSPACED_SCRIPTS}]")
_LATIN_OR_DIGIT_RE = re.compile(r"[A-Za-z0-9\u00c0-\u024f]")
# Where a space goes between a character and the one before it: a change between a script
# written without spaces and a Latin letter or digit.
_SCRIPT_CHANGE_RE = re.compile(
    f"(?<={_UNSPACED_RE.pattern}){_LATIN_OR_DIGIT_RE.pattern}"
    f"|(?<={_LATIN_OR_DIGIT_RE.pattern}){_UNSPACED_RE.pattern}"
)
_BREAK_RE = re.compile(f"[ \\t]*{_LINE_BREAK}[ \\t]*")
_NUMBER_BEFORE = set("0123456789+-()")
_NUMBER_AFTER = set("0123456789-()")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.+/=]{8,}")
_URL_SEPARATORS = set(".-_/:")

# The same conditions in Rust regex syntax (polars): a text matching none of them is its own
# normalized view, apart from NFKC, which is compared directly.
_BREAK_RUST = r"[ \t]*(?:\r\n|[\r\n\x{2028}\x{2029}])[ \t]*"
# The Python side tests characters with str.isalnum/isupper/isalpha, which are Unicode-wide:
# each class here is at least as wide (a gate may flag too much, never too little).
_ALNUM_RUST = r"\p{L}\p{N}"
_SPLIT_BREAK_RUST = "|".join(
    [
        rf"[0-9+\-()]{_BREAK_RUST}[0-9\-()]",
        rf"@\S*{_BREAK_RUST}[{_ALNUM_RUST}\w.\-]",
        rf"{_BREAK_RUST}@",
        rf"(?:/|(?i:www\.))(?:\S*[.\-_/:])?{_BREAK_RUST}[{_ALNUM_RUST}\w./\-]",
        rf"[0-9][A-Za-z0-9_\-.+/=]*{_BREAK_RUST}[{_ALNUM_RUST}_\-]",
        rf"[{_ALNUM_RUST}]\S*[\-_]{_BREAK_RUST}[{_ALNUM_RUST}_\-]",
        rf"\p{{Uppercase}}\p{{Alphabetic}}+{_BREAK_RUST}\p{{Uppercase}}",
    ]
)
_UNSPACED_RUST = (
    r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}\p{Lao}\p{Myanmar}\p{Khmer}"
    r"\p{Bopomofo}\x{3000}-\x{303f}]"
)
_LATIN_OR_DIGIT_RUST = r"[A-Za-z0-9\x{c0}-\x{24f}]"
_NEEDS_VIEW_RUST = "|".join(
    [
        INVISIBLE_CLASS,
        _SPLIT_BREAK_RUST,
        f"{_UNSPACED_RUST}{_LATIN_OR_DIGIT_RUST}",
        f"{_LATIN_OR_DIGIT_RUST}{_UNSPACED_RUST}",
    ]
)


def needs_normalization(text: pl.Expr) -> pl.Expr:
    """True where ``normalize_for_detection`` would change the text (null: False)."""
    changed = (text.str.normalize("NFKC") != text) | text.str.contains(_NEEDS_VIEW_RUST)
    return changed.fill_null(False)


# Hangul vowel and trailing jamo: NFKC composes them with the syllable or jamo before them.
_HANGUL_COMPOSING = ((0x1161, 0x1175), (0x11A8, 0x11C2))


@functools.cache
def _nfkc_may_change() -> str:
    """A character class that every text NFKC changes holds a character of: those NFKC
    changes on their own, combining marks (reordered), and those that compose with the
    character before them (the second of a two-character canonical decomposition, and Hangul
    vowel and trailing jamo). A text of other characters is left as it is. Characters this
    Python's Unicode data does not know are in it too: polars' may be newer."""
    second = set(codepoints(_HANGUL_COMPOSING))
    changing: list[int] = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        char = chr(cp)
        if unicodedata.category(char) == "Cn":
            changing.append(cp)  # no decomposition, no combining class here
            continue
        decomposition = unicodedata.decomposition(char)
        if decomposition and not decomposition.startswith("<"):
            parts = decomposition.split()
            if len(parts) == 2:
                second.add(int(parts[1], 16))
        if unicodedata.combining(char) or not unicodedata.is_normalized("NFKC", char):
            changing.append(cp)
    return char_class([*changing, *second])


def nfkc_may_change(text: pl.Expr) -> pl.Expr:
    """False only where NFKC leaves the text as it is: it holds no character that NFKC changes,
    reorders or composes with the one before (null: False). True may still be a text NFKC
    keeps; what it spares is ``str.normalize`` over the many texts it cannot change."""
    return text.str.contains(_nfkc_may_change()).fill_null(False)


def preload() -> None:
    """Build the tables of the vectorised checks and of the view now (about half a second of
    CPU) rather than in the first run that needs them: a warm worker calls it at start."""
    _nfkc_may_change()
    _fast_tables()


def needing_normalization(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """The rows of ``frame`` whose ``column`` ``needs_normalization``: NFKC is compared only on
    the texts that hold a character it may change (most hold none), the rest is a regex."""
    text = pl.col(column)
    may = text.str.contains(f"{_nfkc_may_change()}|{_NEEDS_VIEW_RUST}").fill_null(False)
    return frame.filter(may).filter(needs_normalization(text))


@dataclass(frozen=True)
class NormalizedText:
    """A normalized view of ``original``; ``starts``/``ends`` are None when it is the original.

    Character ``i`` of ``text`` came from ``original[starts[i]:ends[i]]`` (an empty stretch
    for an inserted space).
    """

    original: str
    text: str
    starts: tuple[int, ...] | None = None
    ends: tuple[int, ...] | None = None

    @property
    def changed(self) -> bool:
        return self.starts is not None

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """The original offsets of the view's ``text[start:end]``.

        The result covers every original character that any character of the span came from,
        and nothing outside the first and last of them.
        """
        if self.starts is None or self.ends is None:
            return start, end
        if end <= start:
            at = self.starts[start] if start < len(self.starts) else len(self.original)
            return at, at
        return self.starts[start], max(self.ends[start:end])


def _clusters(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each base character with the combining marks that follow it."""
    bounds: list[tuple[int, int]] = []
    for i, char in enumerate(text):
        if bounds and unicodedata.combining(char):
            bounds[-1] = (bounds[-1][0], i + 1)
        else:
            bounds.append((i, i + 1))
    return bounds


# Blocks whose characters the fast path of ``normalize_for_detection`` knows: the scripts and
# symbols of nearly all chat text. Looked up once a process (some 40 ms), on first use.
_FAST_BLOCKS: tuple[tuple[int, int], ...] = (
    (0x0000, 0x058F),  # Basic Latin to Armenian (IPA, Greek and Cyrillic included)
    (0x0590, 0x06FF),  # Hebrew, Arabic
    (0x0900, 0x09FF),  # Devanagari, Bengali
    (0x0E00, 0x0E7F),  # Thai
    (0x10A0, 0x10FF),  # Georgian
    (0x1E00, 0x1FFF),  # Latin Extended Additional (Vietnamese), Greek Extended
    (0x2000, 0x2BFF),  # punctuation, super- and subscripts, symbols, arrows, box drawing
    (0x3000, 0x318F),  # CJK punctuation, kana, bopomofo, Hangul compatibility jamo
    (0x3400, 0x4DBF),  # Han, extension A
    (0x4E00, 0x9FFF),  # Han
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xFF00, 0xFFEF),  # half- and full-width forms
    (0x1F000, 0x1FAFF),  # emoji and other pictographs
)


@dataclass(frozen=True)
class _FastTables:
    run: re.Pattern[str]  # a stretch of the characters below
    folds: dict[int, str]  # each such character that NFKC changes, and what it becomes
    # str.translate table of every code point of _FAST_BLOCKS: its fold, else itself. A list
    # indexed by code point translates twice as fast as the dict, which misses on most.
    translation: list[int | str]


@functools.cache
def _fast_tables() -> _FastTables:
    """The characters that the per-cluster loop (``_fold_clusters``) turns into exactly one
    visible character, whatever surrounds them: no combining class (so a cluster by itself),
    not a mark, not invisible, and NFKC gives one character that is not invisible either.

    The loop normalizes each cluster on its own, so no composition with a neighbour happens
    there and none needs ruling out here.
    """
    kept: list[int] = []
    folds: dict[int, str] = {}
    for first, last in _FAST_BLOCKS:
        for cp in range(first, last + 1):
            char = chr(cp)
            if unicodedata.combining(char) or unicodedata.category(char)[0] == "M":
                continue
            folded = unicodedata.normalize("NFKC", char)
            if len(folded) != 1 or _INVISIBLE_RE.fullmatch(char) or _INVISIBLE_RE.fullmatch(folded):
                continue
            kept.append(cp)
            if folded != char:
                folds[cp] = folded
    translation: list[int | str] = list(range(_FAST_BLOCKS[-1][1] + 1))
    for cp, folded in folds.items():
        translation[cp] = folded
    return _FastTables(re.compile(f"{char_class(kept)}+"), folds, translation)


def _fold_clusters(
    text: str, begin: int, end: int, pieces: list[str], starts: list[int], ends: list[int]
) -> None:
    """NFKC by cluster over ``text[begin:end]`` (whole clusters), invisible characters
    dropped; the view's pieces and the original stretch of each of their characters."""
    for first, last in _clusters(text[begin:end]):
        first, last = first + begin, last + begin
        if _INVISIBLE_RE.fullmatch(text[first]):
            continue
        folded = _INVISIBLE_RE.sub("", unicodedata.normalize("NFKC", text[first:last]))
        pieces.append(folded)
        starts += [first] * len(folded)
        ends += [last] * len(folded)


def _folded(text: str) -> tuple[str, list[int], list[int]]:
    """NFKC by cluster, invisible characters dropped, spaces put between scripts: the view
    before line breaks are looked at, and the original stretch of each of its characters, as
    ``text_normalization_reference.folded_chars`` defines it one cluster at a time.

    A stretch of ``_fast_tables`` characters (each a cluster by itself: the one before a
    combining mark is left out) is translated at once, character i to one character from
    ``text[i:i+1]``; the clusters between stretches go through the loop. The spaces between
    scripts are put in last: a space never decides where another goes."""
    tables = _fast_tables()
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    position = 0
    for match in tables.run.finditer(text):
        begin, end = match.span()
        if end < len(text) and unicodedata.combining(text[end]):
            end -= 1  # its last character is the base of the next cluster
        if begin >= end:
            continue
        if position < begin:
            _fold_clusters(text, position, begin, pieces, starts, ends)
        pieces.append(text[begin:end].translate(tables.translation))
        starts += range(begin, end)
        ends += range(begin + 1, end + 1)
        position = end
    if position < len(text):
        _fold_clusters(text, position, len(text), pieces, starts, ends)
    view = "".join(pieces)
    # A space goes next to a character of a script written without spaces: none, no space.
    if _UNSPACED_RE.search(view) is None:
        return view, starts, ends
    cuts = [match.start() for match in _SCRIPT_CHANGE_RE.finditer(view)]
    if not cuts:
        return view, starts, ends
    spaced: list[str] = []
    spaced_starts: list[int] = []
    spaced_ends: list[int] = []
    position = 0
    for cut in cuts:
        spaced += (view[position:cut], " ")
        spaced_starts += starts[position:cut]
        spaced_starts.append(starts[cut])
        spaced_ends += ends[position:cut]
        spaced_ends.append(starts[cut])
        position = cut
    spaced.append(view[position:])
    return (
        "".join(spaced),
        spaced_starts + starts[position:],
        spaced_ends + ends[position:],
    )


def normalize_for_detection(text: str) -> NormalizedText:
    """The view detection analyzes (see the module's docstring), with its offset map."""
    if not text:
        return NormalizedText(text, text)
    view, starts, ends = _folded(text)
    breaks = _splitting_breaks(view)
    if breaks:
        pieces: list[str] = []
        joined_starts: list[int] = []
        joined_ends: list[int] = []
        position = 0
        for begin, finish, replacement in breaks:
            pieces.append(view[position:begin])
            joined_starts += starts[position:begin]
            joined_ends += ends[position:begin]
            if replacement:
                pieces.append(replacement)
                joined_starts.append(starts[begin])
                joined_ends.append(ends[finish - 1])
            position = finish
        pieces.append(view[position:])
        starts = joined_starts + starts[position:]
        ends = joined_ends + ends[position:]
        view = "".join(pieces)
    if view == text and starts == list(range(len(starts))):
        return NormalizedText(text, text)
    return NormalizedText(text, view, tuple(starts), tuple(ends))


def _splitting_breaks(view: str) -> list[tuple[int, int, str]]:
    """Line breaks (with the blanks around them) inside a value, and what replaces each.

    Removed: a break inside an e-mail address, a URL or a long token (a key). A space: a
    break inside a number, or between the two words of a name (``Kwame\\nVolkov``): a
    capitalized word ending a short line, and one starting the next that is not followed by
    another (``Mateo Mbeki\\nSenior Engineer`` is a signature, and stays two lines).
    """
    found = []
    for match in _BREAK_RE.finditer(view):
        begin, finish = match.span()
        if begin == 0 or finish == len(view):
            continue
        replacement = _break_replacement(view, begin, finish, _line_before(view, begin))
        if replacement is not None:
            found.append((begin, finish, replacement))
    return found


# How far around a break the rule reads: a text may hold many breaks.
_BREAK_CONTEXT = 256


def _line_before(view: str, begin: int) -> str:
    """The line that a break at ``begin`` ends, at most its last ``_BREAK_CONTEXT`` characters.

    Found with ``str.rfind`` rather than by splitting the stretch with a regex (the first
    written form, ``text_normalization_reference.line_before``): code and tables hold thousands
    of breaks."""
    window = max(0, begin - _BREAK_CONTEXT)
    line_start = 1 + max(
        view.rfind("\n", window, begin),
        view.rfind("\r", window, begin),
        view.rfind("\u2028", window, begin),
        view.rfind("\u2029", window, begin),
    )
    return view[max(line_start, window) : begin]


def _break_replacement(view: str, begin: int, finish: int, line_before: str) -> str | None:
    """What replaces the break ``view[begin:finish]`` that ends ``line_before``: "" (removed),
    " ", or None (it stays)."""
    before, after = view[begin - 1], view[finish]
    words_before = line_before.split()
    token = words_before[-1] if words_before else ""
    number = before in _NUMBER_BEFORE and after in _NUMBER_AFTER
    address = after == "@" or ("@" in token and (after.isalnum() or after in "._-"))
    url = (
        before in _URL_SEPARATORS
        and ("/" in token or token.lower().startswith("www."))
        and (after.isalnum() or after in "./-_")
    )
    long_token = (after.isalnum() or after in "-_") and (
        # A key cut anywhere: letters and digits mixed, or cut right after its prefix.
        (
            bool(_TOKEN_CHARS.fullmatch(token))
            and any(c.isdigit() for c in token)
            and any(c.isalpha() for c in token)
        )
        or (len(token) >= 3 and before in "-_" and token[0].isalnum())
    )
    if address or url or long_token or (number and "-" in (before, after)):
        return ""
    if number:
        # Number recognizers take spaced groups; a space also keeps two numbers apart.
        return " "
    if not (_capitalized(token) and len(words_before) <= 4):
        return None
    # The next line's words, read only where a name is possible.
    words_after = view[finish : finish + _BREAK_CONTEXT].split(None, 2)
    if (
        words_after
        and _capitalized(words_after[0].rstrip(",.;:!?"))
        and not (len(words_after) > 1 and _capitalized(words_after[1].rstrip(",.;:!?")))
    ):
        return " "
    return None


def _capitalized(word: str) -> bool:
    return len(word) > 1 and word[0].isupper() and word[1:].isalpha() and word[1:].islower()


def normalized_view(texts: pl.Series) -> pl.Series:
    """``normalize_for_detection(t).text`` for each text, computed only where it differs."""
    texts = texts.cast(pl.String)
    needing = needing_normalization(texts.to_frame("t").with_row_index("i"), "t")["i"]
    if needing.is_empty():
        return texts
    values = texts.to_list()
    for i in needing.to_list():
        values[i] = normalize_for_detection(values[i]).text
    return pl.Series(texts.name, values, dtype=pl.String)
