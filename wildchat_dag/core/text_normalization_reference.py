"""The normalized view's character pass as first written: the reference for ``_folded``; and
its line-break rule as first written: the reference for ``_splitting_breaks``.

One cluster at a time: NFKC of the cluster, invisible characters dropped, and a space put
before each character that changes between a script written without spaces and a Latin letter
or digit. ``text_normalization._folded`` computes the same with a Python step only for the
clusters outside its known blocks; the tests compare the two on every character of those blocks
and on generated text. Nothing in the pipeline calls it.
"""

from __future__ import annotations

import re
import unicodedata

from wildchat_dag.core.text_normalization import (
    _BREAK_RE,
    _INVISIBLE_RE,
    _LATIN_OR_DIGIT_RE,
    _NUMBER_AFTER,
    _NUMBER_BEFORE,
    _TOKEN_CHARS,
    _UNSPACED_RE,
    _URL_SEPARATORS,
    _capitalized,
    _clusters,
)


def _needs_space(before: str, after: str) -> bool:
    return bool(
        (_UNSPACED_RE.match(before) and _LATIN_OR_DIGIT_RE.match(after))
        or (_LATIN_OR_DIGIT_RE.match(before) and _UNSPACED_RE.match(after))
    )


def folded_chars(text: str) -> tuple[list[str], list[int], list[int]]:
    """The view's characters before line breaks are looked at, one each, and the original
    stretch of each (an empty one for an inserted space)."""
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for start, end in _clusters(text):
        piece = text[start:end]
        if _INVISIBLE_RE.fullmatch(piece[0]):
            continue
        folded = unicodedata.normalize("NFKC", piece)
        folded = _INVISIBLE_RE.sub("", folded)
        for char in folded:
            if chars and _needs_space(chars[-1], char):
                chars.append(" ")
                starts.append(start)
                ends.append(start)
            chars.append(char)
            starts.append(start)
            ends.append(end)
    return chars, starts, ends


def splitting_breaks(view: str) -> list[tuple[int, int, str]]:
    """``text_normalization._splitting_breaks`` as first written: line breaks (with the blanks
    around them) inside a value, and what replaces each.

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
        before, after = view[begin - 1], view[finish]
        # The text around the break (bounded: a text may hold many breaks).
        line_before = re.split(r"[\r\n\u2028\u2029]", view[max(0, begin - 256) : begin])[-1]
        words_before = line_before.split()
        token = words_before[-1] if words_before else ""
        words_after = view[finish : finish + 256].split(None, 2)
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
            found.append((begin, finish, ""))
        elif number:
            # Number recognizers take spaced groups; a space also keeps two numbers apart.
            found.append((begin, finish, " "))
        elif (
            _capitalized(token)
            and len(words_before) <= 4
            and words_after
            and _capitalized(words_after[0].rstrip(",.;:!?"))
            and not (len(words_after) > 1 and _capitalized(words_after[1].rstrip(",.;:!?")))
        ):
            found.append((begin, finish, " "))
    return found
