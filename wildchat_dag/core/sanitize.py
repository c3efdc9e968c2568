"""One exit for text: what leaves the raw layer for Dagster's own storage, raw values masked.

Materialization and check metadata, log messages and the message of a failed step are kept in
the instance's event log (and its compute logs) for as long as the instance lives, readable by
anyone who can open the UI. None of it may hold a value of the raw logs: a name, an e-mail, a
phone or card number, a client IP, a secret. Every such text therefore goes through
``sanitize_text``, which masks whatever could be a raw value and says what it removed:

- quoted literals, as DuckDB (``'...'``, ``"..."``) and polars (``["...", ...]``) quote the
  value they could not convert, except short identifiers (a column or table name such as
  ``'headers'``) and our own safe tokens; the unquoted echoes DuckDB adds (``Input: ...``, the
  line above a ``^`` marker) too: ``<value: 23 chars>``;
- e-mail addresses: ``<email>``;
- long secret-like tokens (``sk-...``, ``AKIA...``, ``ghp_...``, JWTs, PEM blocks, long
  mixed-case tokens): ``<secret>``;
- IPv4 and IPv6 literals in any notation (leading zeros, octal or hex octets, spaces around
  the dots, brackets, ``%zone``): ``<ip>``;
- digit groups that look like phone or card numbers, and any run of 7 or more digits, which
  also covers an IPv4 address written as one 32-bit integer: ``<number>``.

Before matching, the text is NFKC-normalized (full-width digits become ASCII) and invisible
format characters (zero-width, bidi controls) are dropped, so hidden notations are found. Our
own tokens stay readable: hex digests (sha256 and its 12/16-hex prefixes), UUID run ids, ISO
dates and times (partition keys), version strings, file paths with line numbers, counts
(``1,234,567``).

Pure: no Dagster. The Dagster side (the step exit, the log helpers, metadata) is
``wildchat_dag/common/text_exit.py`` and ``wildchat_dag/common/metadata.py``.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from wildchat_dag.core.text_normalization import INVISIBLE_RANGES, char_class, codepoints

MASK_IP = "<ip>"
MASK_EMAIL = "<email>"
MASK_NUMBER = "<number>"
MASK_SECRET = "<secret>"

# Longer texts are cut before matching, so a huge message costs a bounded time; whatever is
# cut is never shown anyway (the output is at most ``max_chars``).
MAX_INPUT_CHARS = 100_000

# Invisible characters a value can hide behind: detection's list (every format character,
# variation selectors, the combining grapheme joiner: text_normalization.INVISIBLE_RANGES), and
# the Hangul fillers, which render as nothing though they are letters. test_sanitize holds this
# list to unicodedata's Cf set.
HANGUL_FILLERS = (0x115F, 0x1160, 0x3164, 0xFFA0)
HIDDEN_CHARACTERS = char_class([*codepoints(INVISIBLE_RANGES), *HANGUL_FILLERS])
_HIDDEN = re.compile(HIDDEN_CHARACTERS)
# Control characters other than tab and line breaks.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}")

# -- our own tokens ------------------------------------------------------------------------------

_ISO_DATETIME = (
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[ ]?[+-]\d{2}:?\d{2})?)?"
)
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Lower-case hex of a digest's lengths, with a letter in it (all digits is a number).
_DIGEST = r"(?=[0-9a-f]*[a-f])(?:[0-9a-f]{64}|[0-9a-f]{40}|[0-9a-f]{32}|[0-9a-f]{16}|[0-9a-f]{12})"
_SAFE_TOKEN = re.compile(rf"(?<![0-9A-Za-z])(?:{_UUID}|{_ISO_DATETIME}|{_DIGEST})(?![0-9A-Za-z])")
_VERSION = re.compile(r"v?\d{1,4}(?:\.\d{1,4}){1,2}(?:[.+-]?[A-Za-z][A-Za-z0-9.]*)?")
_PATH = re.compile(r"(?:[~.]{0,2}/)?(?:[\w.@+-]+/)*[\w.@+-]*[\w](?::\d{1,9})?")
_FILE_NAME = re.compile(
    r"[\w.-]+\.(?:jsonl|ndjson|json|gz|parquet|duckdb|db|sqlite|yaml|yml|py|mmdb|txt|md|lock|"
    r"ckpt|bin|csv|log)(?::\d{1,9})?"
)

# -- raw values ----------------------------------------------------------------------------------

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]{1,40}-----(?:.*?-----END [A-Z0-9 ]{1,40}-----|.*)", re.S)
_SECRETS = re.compile(
    "|".join(
        [
            r"sk-(?:proj-|ant-|live-|test-|svcacct-)?[A-Za-z0-9_\-]{16,}",
            r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}",
            r"gh[pousr]_[A-Za-z0-9]{20,}",
            r"github_pat_[A-Za-z0-9_]{20,}",
            r"glpat-[A-Za-z0-9_\-]{20,}",
            r"xox[abposr]-[A-Za-z0-9\-]{10,}",
            r"AIza[0-9A-Za-z_\-]{30,}",
            r"hf_[A-Za-z0-9]{30,}",
            r"eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}(?:\.[A-Za-z0-9_\-]*)?",
        ]
    )
)
_BEARER = re.compile(
    r"(?i)\b(bearer|token|api[_-]?key|password|passwd|secret)\b(\s*[=:]?\s*)(\S{8,})"
)
# Long tokens of mixed case and digits (base64, API keys); checked in ``_mask_long_token``.
_LONG_TOKEN = re.compile(r"(?<![A-Za-z0-9_+=\-])[A-Za-z0-9_+=\-]{24,}")
# The look-behind starts a match only where a local part starts: linear on long words.
_EMAIL = re.compile(r"(?<![\w.%+\-'])[\w.%+\-']+@[\w\-]+(?:\.[\w\-]+)+")

_OCTET = r"(?:0[xX][0-9a-fA-F]{1,2}|\d{1,4})"
_DOT = r"[ \t]*[.\u3002][ \t]*"
_IPV4 = re.compile(rf"(?<![\d.]){_OCTET}(?:{_DOT}{_OCTET}){{3}}(?![\d]|\.\d)")
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z])\[?(?:[0-9A-Fa-f]{1,4})?(?:[ \t]?:[ \t]?[0-9A-Fa-f]{0,4}){2,8}\]?"
    r"(?:%[0-9A-Za-z_.\-]+)?"
)
_HEX_NUMBER = re.compile(r"(?<![0-9A-Za-z])0[xX][0-9a-fA-F]{6,}(?![0-9A-Za-z])")
# Digits with at most two separators between them: phone and card numbers, 32-bit integers.
_DIGIT_GROUP = re.compile(r"(?<!\d)\+?\d(?:[ \t\-().]{0,2}\d){6,}")
_DECIMAL = re.compile(r"\d{1,6}\.\d+")

# DuckDB's unquoted echoes of a value: "... Input: <the value>", and the line above a caret.
_INPUT_ECHO = re.compile(r"(\bInput: )([^\n]+)")
_CARET_LINE = re.compile(r"[ \t]*\^[ \t]*")
# polars lists the values it could not convert: values: ["a", "b", … "z"]
_VALUE_LIST = re.compile(
    r'\[\s*"(?:[^"\\\n]|\\.)*"(?:\s*,?\s*(?:"(?:[^"\\\n]|\\.)*"|…|\.\.\.))*\s*\]'
)
# Before a quoted identifier, these words say it is a value, not a name; so does a colon or an
# equals sign when the literal ends the line ("KeyError: 'John'", but not "AttributeError:
# 'Foo' object has no attribute 'bar'").
_VALUE_CONTEXT = re.compile(
    r"\b(?:strings?|values?|literal|got|input|text|content|found|key)\b[^\w\n]{0,3}$", re.I
)
_SEPARATOR_CONTEXT = re.compile(r"[:=]\s?\[?$")
_LINE_END = re.compile(r"[\s.,;:)\]]*(?:\n|$)")
# Opening quote: closing quote. Curly, guillemet and corner quotes too: NFKC keeps them.
_QUOTES = {
    '"': '"',
    "'": "'",
    "`": "`",
    "\u201c": "\u201d",
    "\u2018": "\u2019",
    "\u00ab": "\u00bb",
    "\u300c": "\u300d",
    "\u300e": "\u300f",
}
_WORD = re.compile(r"\w")


def value_mask(chars: int) -> str:
    return f"<value: {chars} chars>"


def normalize_text(text: str) -> str:
    """NFKC, then invisible format and control characters removed: the text a reader sees,
    with full-width or zero-width-split notations made plain."""
    return _CONTROL.sub("", _HIDDEN.sub("", unicodedata.normalize("NFKC", text)))


def sanitize_text(text: object, max_chars: int = 2000) -> str:
    """``text`` with anything that could be a raw value masked (see the module docstring), at
    most ``max_chars`` characters long."""
    text = "" if text is None else str(text)
    cut = len(text) > MAX_INPUT_CHARS
    text = normalize_text(text[:MAX_INPUT_CHARS])
    text = _PEM.sub(MASK_SECRET, text)
    text = _mask_echoes(text)
    text = _VALUE_LIST.sub(lambda m: f"[{value_mask(len(m.group()) - 2)}]", text)
    text = _mask_quoted(text, unterminated=cut)
    text = _EMAIL.sub(MASK_EMAIL, text)
    text = _SECRETS.sub(MASK_SECRET, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK_SECRET}", text)
    text, kept = _protect(text)
    text = _LONG_TOKEN.sub(_mask_long_token, text)
    # IPv4 first: an IPv4-mapped IPv6 address then ends in a masked tail the IPv6 rule takes.
    text = _IPV4.sub(MASK_IP, text)
    text = _IPV6.sub(_mask_ipv6, text)
    text = _HEX_NUMBER.sub(MASK_NUMBER, text)
    text = _DIGIT_GROUP.sub(_mask_digits, text)
    return truncate(_restore(text, kept), max_chars)


def truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    suffix = f" … <{len(text) - max_chars} more chars>"
    return text[: max(0, max_chars - len(suffix))] + suffix


def sanitize_value(value: Any, max_chars: int = 2000) -> Any:
    """``sanitize_text`` on every string inside ``value`` (dict keys and values, list and tuple
    items); numbers, booleans and None are ours (counts, ids) and stay."""
    if isinstance(value, str):
        return sanitize_text(value, max_chars)
    if isinstance(value, Mapping):
        return {sanitize_text(k, 200): sanitize_value(v, max_chars) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [sanitize_value(v, max_chars) for v in value]
    return value


# -- the steps -----------------------------------------------------------------------------------


def _mask_echoes(text: str) -> str:
    text = _INPUT_ECHO.sub(lambda m: m.group(1) + value_mask(len(m.group(2))), text)
    lines = text.split("\n")
    for i in range(len(lines) - 1):
        if _CARET_LINE.fullmatch(lines[i + 1]) and lines[i] and not lines[i].startswith("LINE "):
            lines[i] = value_mask(len(lines[i]))
    return "\n".join(lines)


def _safe_literal(content: str) -> bool:
    """Quoted text that is one of our own tokens, not a value: shown, still masked inside."""
    return bool(
        content == ""
        or _SAFE_TOKEN.fullmatch(content)
        or _VERSION.fullmatch(content)
        or ("/" in content and _PATH.fullmatch(content))
        or _FILE_NAME.fullmatch(content)
    )


def _mask_quoted(text: str, unterminated: bool) -> str:
    """Quoted literals masked, left to right; a quote glued to a word on its outer side is an
    apostrophe ("doesn't", "users'"), not a quote."""
    closers: dict[str, list[int]] = {}
    for close in set(_QUOTES.values()):
        closers[close] = [
            i for i in _positions(text, close) if i + 1 >= len(text) or not _WORD.match(text[i + 1])
        ]
    out: list[str] = []
    at = 0
    i = 0
    while i < len(text):
        char = text[i]
        close = _QUOTES.get(char)
        if close is None or (i > 0 and (_WORD.match(text[i - 1]) or text[i - 1] == char)):
            i += 1
            continue
        candidates = closers[close]
        k = bisect.bisect_right(candidates, i)
        if k == len(candidates):
            if unterminated:
                out.append(text[at:i] + value_mask(len(text) - i - 1))
                return "".join(out)
            i += 1
            continue
        end = candidates[k]
        content = text[i + 1 : end]
        keep = _safe_literal(content) or (
            IDENTIFIER.fullmatch(content) is not None and not _value_context(text, i, end)
        )
        if not keep:
            out.append(text[at:i] + value_mask(len(content)))
            at = end + 1
        i = end + 1
    out.append(text[at:])
    return "".join(out)


def _value_context(text: str, start: int, end: int) -> bool:
    before = text[max(0, start - 30) : start]
    if _VALUE_CONTEXT.search(before):
        return True
    return bool(_SEPARATOR_CONTEXT.search(before) and _LINE_END.match(text, end + 1))


def _positions(text: str, char: str) -> list[int]:
    found, at = [], text.find(char)
    while at >= 0:
        found.append(at)
        at = text.find(char, at + 1)
    return found


# Placeholders for protected tokens: private-use characters, which no later rule matches.
_KEEP_OPEN, _KEEP_CLOSE, _KEEP_BASE = "\ue000", "\ue001", 0xE100
_KEPT = re.compile(f"{_KEEP_OPEN}([\ue100-\uf8ff]+){_KEEP_CLOSE}")


def _protect(text: str) -> tuple[str, list[str]]:
    kept: list[str] = []

    def hold(match: re.Match[str]) -> str:
        kept.append(match.group())
        n, digits = len(kept) - 1, ""
        while True:
            n, r = divmod(n, 0x1000)
            digits = chr(_KEEP_BASE + r) + digits
            if not n:
                break
        return _KEEP_OPEN + digits + _KEEP_CLOSE

    return _SAFE_TOKEN.sub(hold, text), kept


def _restore(text: str, kept: list[str]) -> str:
    if not kept:
        return text

    def back(match: re.Match[str]) -> str:
        n = 0
        for char in match.group(1):
            n = n * 0x1000 + (ord(char) - _KEEP_BASE)
        return kept[n]

    return _KEPT.sub(back, text)


def _mask_long_token(match: re.Match[str]) -> str:
    token = match.group()
    mixed = (
        any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and any(c.isdigit() for c in token)
    )
    return MASK_SECRET if mixed else token


def _mask_ipv6(match: re.Match[str]) -> str:
    literal = match.group()
    if not any(c.isdigit() for c in literal):
        return literal
    plain = re.sub(r"[ \t\[\]]", "", literal).split("%", 1)[0].strip(".")
    if plain.startswith(":") and not plain.startswith("::"):
        plain = plain[1:]
    while plain.endswith(":") and not plain.endswith("::"):
        plain = plain[:-1]
    if _is_ipv6(plain) or plain.count(":") >= 5:
        return MASK_IP
    return literal


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _mask_digits(match: re.Match[str]) -> str:
    group = match.group()
    # A decimal fraction (a score, seconds) is a number of ours, not a phone number.
    if _DECIMAL.fullmatch(group):
        return group
    return MASK_NUMBER


__all__ = [
    "MASK_EMAIL",
    "MASK_IP",
    "MASK_NUMBER",
    "MASK_SECRET",
    "normalize_text",
    "sanitize_text",
    "sanitize_value",
    "truncate",
    "value_mask",
]
