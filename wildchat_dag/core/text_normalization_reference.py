"""The normalized view's character pass as first written: the reference for ``_folded``; and
how its line-break rule first found the line before a break: the reference for ``_line_before``.

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
    _INVISIBLE_RE,
    _LATIN_OR_DIGIT_RE,
    _UNSPACED_RE,
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


def line_before(view: str, begin: int) -> str:
    """``text_normalization._line_before`` as first written: the stretch of up to 256
    characters before ``begin``, split at line breaks, its last piece."""
    return re.split(r"[\r\n\u2028\u2029]", view[max(0, begin - 256) : begin])[-1]
