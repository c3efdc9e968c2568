"""Credential detection: API keys, tokens, private keys and passwords pasted into chats.

WildChat-4.8M redacted credentials with TruffleHog. This module does the same job in pure
Python: each detector is a regex anchored on a vendor prefix or a cue word, plus a validator that
rejects what only looks like a credential. Precision matters more than in TruffleHog's use
(scanning repositories), because WildChat is mostly code and prose *about* code: documentation
placeholders (``sk-...``, ``YOUR_API_KEY``, ``<password>``), digests, UUIDs, base64 images and
``password = input()`` must survive untouched.

Decisions worth knowing:

- Documentation examples that say so (AWS's ``AKIAIOSFODNN7EXAMPLE`` and its secret
  ``wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY``) are placeholders and are kept. Stripe's and
  jwt.io's published sample keys do not say so and are redacted (harmless).
- Stripe publishable keys (``pk_live_``/``pk_test_``) are public by design and are kept; secret
  and restricted keys are redacted in test mode too (they grant API access).
- ``sk-`` keys without a vendor tag are reported as ``openai_api_key``: the format is the one
  OpenAI-compatible services (DeepSeek, one-api proxies, ...) copied.
- Passwords: a value counts only when it could not be a placeholder, a template, a variable, an
  environment lookup or a function call. Assignments need a digit or a symbol in the value, so a
  purely alphabetic password (``password: hunter``) is missed on purpose: labels, translations
  and identifiers look the same. Comparisons (``password == "x"``) are not assignments. URL
  passwords need no digit, but must not be a placeholder, a common default (``postgres``,
  ``tiger``, ``foobared``, ...), the user name again (``guest:guest``), a short lowercase word
  (``org:repo@``) or a CONSTANT (``NAME:SAS_KEY@``).
- Generic assignments (``api_key = "..."``, ``client_secret: ...``, ``Bearer ...``) need a
  random-looking value of 16+ characters with digits and letters; what is assigned to a
  secret-named key is redacted even when it is a hex digest or a UUID.

Every regex is bounded and starts with a literal or a cue, and every custom scan skips what it
already looked at, so a hostile text costs linear time. ``SECRET_GATE`` is a cheap necessary
condition in Rust regex syntax (polars), built from each detector's own necessary condition.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

SECRET_ENTITY = "SECRET"
# Bump when what is found where changes: part of the detection code version.
SECRETS_VERSION = "secrets-v1"
RECOGNIZER_PREFIX = "secret:"

# Order is priority: on equal spans the earlier (more specific) detector wins.
SECRET_DETECTORS: tuple[str, ...] = (
    "private_key",
    "jwt",
    "anthropic_api_key",
    "openai_api_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "slack_webhook",
    "discord_bot_token",
    "discord_webhook",
    "telegram_bot_token",
    "stripe_key",
    "google_api_key",
    "google_oauth_client_secret",
    "huggingface_token",
    "groq_api_key",
    "replicate_api_token",
    "xai_api_key",
    "perplexity_api_key",
    "npm_token",
    "sendgrid_api_key",
    "url_password",
    "basic_auth",
    "bearer_token",
    "password_assignment",
    "secret_assignment",
)
_PRIORITY = {name: i for i, name in enumerate(SECRET_DETECTORS)}


@dataclass(frozen=True)
class SecretMatch:
    start: int
    end: int
    detector: str


def secret_label(detector: str) -> str:
    """The placeholder's entity: ``<PRESIDIO_ANONYMIZED_SECRET_OPENAI_API_KEY>``."""
    if detector not in _PRIORITY:
        raise ValueError(f"unknown secret detector {detector!r}")
    return f"{SECRET_ENTITY}_{detector.upper()}"


def detector_of(recognizer_name: str) -> str | None:
    """The detector behind a ``recognition_metadata["recognizer_name"]``, or None."""
    if not recognizer_name.startswith(RECOGNIZER_PREFIX):
        return None
    detector = recognizer_name[len(RECOGNIZER_PREFIX) :]
    return detector if detector in _PRIORITY else None


# ---------------------------------------------------------------------------------------------
# What real keys look like, and what placeholders do.

# Matched in any case; long enough that a random key holds one with a chance under 1e-7.
_PLACEHOLDER_WORDS = (
    "example",
    "placeholder",
    "insert",
    "replace",
    "redacted",
    "dummy",
    "sample",
    "****",
)
# Matched as typed: a random "yOuR" or "XxxX" is no placeholder, "YOUR_KEY" and "xxxx" are.
_PLACEHOLDER_EXACT = ("your", "Your", "YOUR", "xxxx", "XXXX")
# Assignments to ``api_key`` and friends are judged harder: their values have no prefix.
_ASSIGNMENT_PLACEHOLDER_WORDS = (
    *_PLACEHOLDER_WORDS,
    *("your", "secret", "_key", "-key", "key_", "key-", "apikey", "token", "test", "demo"),
    *("fake",),
    *("change", "here", "abcd1234", "1234abcd"),
)
_REPEAT = re.compile(r"(.)\1{5}")
_SPACE = re.compile(r"\s")


def _has_sequence(text: str, run: int = 6) -> bool:
    """An ascending or descending run like ``abcdef`` or ``987654``: typed, not random."""
    low = text.lower()
    up = down = 1
    for a, b in itertools.pairwise(low):
        step = ord(b) - ord(a)
        up = up + 1 if step == 1 else 1
        down = down + 1 if step == -1 else 1
        if up >= run or down >= run:
            return True
    return False


def _placeholder(token: str, words: tuple[str, ...] = _PLACEHOLDER_WORDS) -> bool:
    low = token.lower()
    return (
        any(w in low for w in words)
        or any(w in token for w in _PLACEHOLDER_EXACT)
        or _REPEAT.search(token) is not None
        or _has_sequence(token)
        or "..." in token
        or "…" in token
    )


def _classes(token: str) -> int:
    return (
        any(c.islower() for c in token)
        + any(c.isupper() for c in token)
        + any(c.isdigit() for c in token)
    )


def _random(token: str, min_classes: int = 2) -> bool:
    """A prefixed key's body: random-looking and not a placeholder."""
    return token.isascii() and _classes(token) >= min_classes and not _placeholder(token)


def _entropy(token: str) -> float:
    counts: dict[str, int] = {}
    for c in token:
        counts[c] = counts.get(c, 0) + 1
    n = len(token)
    return -sum(k / n * math.log2(k / n) for k in counts.values())


def _looks_like_token(value: str, min_len: int = 16) -> bool:
    """A value with no vendor prefix (``api_key = "..."``, ``Bearer ...``) that is a credential."""
    if not (min_len <= len(value) <= 4096) or not value.isascii():
        return False
    if _SPACE.search(value) is not None or value[0] in "$%{<[(@:/" or "://" in value:
        return False
    if _placeholder(value, _ASSIGNMENT_PLACEHOLDER_WORDS):
        return False
    digits = sum(c.isdigit() for c in value)
    upper = sum(c.isupper() for c in value)
    lower = sum(c.islower() for c in value)
    if len(set(value)) < 8 or _entropy(value) < 3.0 or upper + lower < 2:
        return False
    if digits >= 2:
        return True
    # Without digits only a random mix of cases: CamelCaseNames have few capitals.
    return len(value) >= 20 and min(upper, lower) >= 0.3 * (upper + lower)


_DEFAULT_PASSWORDS = frozenset(
    {
        *("password", "passwd", "pass", "pwd", "pw", "secret", "mysecret", "supersecret"),
        *("topsecret", "s3cret", "changeme", "admin", "root", "toor", "guest", "test"),
        *("testing", "tester", "demo", "example", "postgres", "mysql", "redis", "user"),
        *("username", "default", "letmein", "qwerty", "qwerty123", "qwertyuiop", "abc123"),
        *("abcd1234", "iloveyou", "monkey", "dragon", "foobared", "tiger", "hunter2"),
        *("p@ssw0rd", "p@ssword", "passw0rd", "pa$$word", "pa55word", "pass123", "pass1234"),
        *("111111", "000000", "none", "null", "nil", "undefined", "true", "false", "empty"),
        *("required", "optional", "string", "str", "text", "hidden", "sa", "secret123"),
        *("token", "masterkey", "mypass", "mypwd", "foo", "bar", "baz", "foobar", "p4ssword"),
    }
)
_PASSWORD_PLACEHOLDER_WORDS = (
    *("password", "passwd", "your", "placeholder", "example", "changeme", "change_me"),
    *("change-me", "redacted", "xxxx", "****", "...", "…"),
)


# my_secret, your-db-pass, some_value: names of a value rather than one.
_PLACEHOLDER_SHAPE = re.compile(r"(?:my|your|some)[_\-]?[a-z]+(?:[_\-][a-z]+)*")


def _password_placeholder(value: str, user: str | None = None) -> bool:
    low = value.lower()
    if not value or len(set(low)) == 1 or low in _DEFAULT_PASSWORDS:
        return True
    if user is not None and low == user.lower():
        return True
    # Templates and bind parameters: ${X}, %s, %(pw)s, {pw}, {{ pw }}, <password>, :pw, @pw.
    if value[0] in "$%<{[:@" or value[-1] in "}>" or any(t in value for t in ("{{", "${", "%(")):
        return True
    if _PLACEHOLDER_SHAPE.fullmatch(low):
        return True
    return any(w in low for w in _PASSWORD_PLACEHOLDER_WORDS) or _has_sequence(low)


# ---------------------------------------------------------------------------------------------
# Detectors. Each yields (start, end) spans; ``_DETECTORS`` pairs them with their gate pieces.

Span = tuple[int, int]
_Check = Callable[[re.Match[str]], "Span | None"]

# Characters of base64url/identifier tokens: a key must not be glued to more of them.
_T = r"A-Za-z0-9_\-"


def _random_body(m: re.Match[str]) -> Span | None:
    return m.span() if _random(m.group("b")) else None


def _prefixed(
    prefix: str, body: str, lengths: str, tail: str = _T, rest: str = ""
) -> tuple[str, str]:
    """A vendor prefix (a regex of fixed width, then ``rest``) and a random body of ``lengths``,
    not glued to more token characters on either side; and its gate piece."""
    low = lengths.strip("{}").split(",")[0]
    pattern = rf"{prefix}(?<![{tail}]{prefix}){rest}(?P<b>[{body}]{lengths}+)(?![{tail}])"
    return pattern, f"{prefix}{rest}[{body}]{{{low}}}"


def _regex_detector(pattern: str, check: _Check) -> Callable[[str], Iterator[Span]]:
    compiled = re.compile(pattern)

    def detect(text: str) -> Iterator[Span]:
        for m in compiled.finditer(text):
            span = check(m)
            if span is not None:
                yield span

    return detect


def _openai_check(m: re.Match[str]) -> Span | None:
    body = m.group("body")
    for tag in ("proj-", "svcacct-", "admin-", "None-"):
        if body.startswith(tag):
            body = body[len(tag) :]
            break
    if len(body) < 20 or _placeholder(body):
        return None
    # Kebab-case names (sk-learn-model-...) are words; real keys have long random runs.
    if max(len(run) for run in re.split(r"[_\-]", body)) < 12:
        return None
    lower, upper, digit = (
        any(c.islower() for c in body),
        any(c.isupper() for c in body),
        any(c.isdigit() for c in body),
    )
    # Base62 keys have all three classes; DeepSeek-style keys are 32+ lowercase hex digits.
    hex_key = len(body) >= 32 and re.fullmatch(r"[0-9a-f]+", body) and lower and digit
    return m.span() if (lower and upper and digit) or hex_key else None


def _aws_secret_check(m: re.Match[str]) -> Span | None:
    value = m.group("s")
    hex_only = re.fullmatch(r"[0-9A-Fa-f]+", value) is not None
    has_cases = any(c.islower() for c in value) and any(c.isupper() for c in value)
    if hex_only or not has_cases or _placeholder(value):
        return None
    return m.span("s")


def _aws_key_id_check(m: re.Match[str]) -> Span | None:
    return None if _placeholder(m.group()[4:]) else m.span()


def _slack_token_check(m: re.Match[str]) -> Span | None:
    *numbers, tail = m.group()[5:].split("-")
    if len(tail) < 8 or _classes(tail) < 2 or _placeholder(tail):
        return None
    # Team and user ids are random digits; docs write 000000000000 or 123456789012.
    if any(len(set(n)) <= 2 or n in "01234567890123456789" for n in numbers if len(n) >= 6):
        return None
    return m.span()


def _b64url_decode(segment: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None


def _jwt_check(m: re.Match[str]) -> Span | None:
    # The header group starts after the literal "eyJ" that the lookbehind sits behind.
    header = _b64url_decode("eyJ" + m.group("header"))
    if header is None:
        return None
    try:
        parsed = json.loads(header)
    except (UnicodeDecodeError, ValueError):
        return None
    return m.span() if isinstance(parsed, dict) and "alg" in parsed else None


def _discord_bot_check(m: re.Match[str]) -> Span | None:
    # The first part is the bot's user id (a snowflake) in base64: a precise fingerprint.
    user_id = _b64url_decode(m.group("id"))
    if user_id is None or not re.fullmatch(rb"[0-9]{17,20}", user_id):
        return None
    return m.span() if _random(m.group("sig")) else None


_SCHEME_BEFORE = re.compile(r"(?:https?://)?(?:ptb\.|canary\.)?\Z")


def _with_scheme(text: str, start: int) -> int:
    """Start a webhook's span at its ``https://``, if it has one."""
    window = text[max(0, start - 16) : start]
    m = _SCHEME_BEFORE.search(window)
    return start - (len(window) - m.start()) if m else start


def _webhook_check(m: re.Match[str]) -> Span | None:
    secret = m.group("secret")
    if len(secret) < 16 or not _random(secret):
        return None
    return _with_scheme(m.string, m.start()), m.end()


# The bot's id; in API URLs it follows "bot": https://api.telegram.org/bot123456789:AA.../
_TELEGRAM_ID = re.compile(r"(?:(?<![A-Za-z0-9_\-])|(?<=bot))[0-9]{8,10}\Z")


def _telegram_check(m: re.Match[str]) -> Span | None:
    text, colon = m.string, m.start()
    digits = _TELEGRAM_ID.search(text[max(0, colon - 14) : colon])
    if digits is None or not _random(m.group()[1:]):
        return None
    return colon - (len(digits.group())), m.end()


def _url_password_check(m: re.Match[str]) -> Span | None:
    password, user = unquote(m.group("s")), unquote(m.group("user"))
    if len(password) < 3 or _SPACE.search(password) or _password_placeholder(password, user):
        return None
    if password.isdigit() and len(password) <= 5:  # host:port@... is a URL trick, not a secret
        return None
    return None if _word_password(password) else m.span("s")


def _word_password(password: str) -> bool:
    """Documentation writes short words (github://org:repo@sha, foo:bar) and CONSTANTS
    (azure://NAME:SAS_KEY@...) where a password goes."""
    short_word = password.isalpha() and password.islower() and len(password) < 8
    return short_word or re.fullmatch(r"[A-Z_]+", password) is not None


def _basic_check(m: re.Match[str]) -> Span | None:
    encoded = m.group("s")
    if len(encoded) % 4:
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        return None
    if not decoded.isprintable() or ":" not in decoded:
        return None
    user, password = decoded.split(":", 1)
    # Without a password, the user name is an API key (as Stripe and others take it).
    if password:
        ok = not _password_placeholder(password, user) and not _word_password(password)
    else:
        ok = _looks_like_token(user)
    return m.span("s") if ok else None


def _bearer_check(m: re.Match[str]) -> Span | None:
    token = m.group("s").rstrip(".")  # a sentence's full stop
    return (m.start("s"), m.start("s") + len(token)) if _looks_like_token(token) else None


_WS = r" \t\n\r\f\v"
_AWS_ID_PREFIX = r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA|A3T[A-Z0-9])"
_AWS_SECRET_WORDS = r"aws[ _.\-]?secret|secret[ _.\-]?access[ _.\-]?key"
# Python's (?i) also folds "ı" and "İ" onto "i", Rust's doesn't: cues fold ASCII case only
# here (flag "a"), so that the gate's (?i) is never narrower.
_AWS_SECRET_CUE = rf"(?ai:{_AWS_SECRET_WORDS})"

# detector: [(prefix, body characters, body length, boundary characters, rest of the prefix)]
_PREFIXED: dict[str, list[tuple[str, ...]]] = {
    "anthropic_api_key": [(r"sk-ant-", _T, "{32,300}", _T, r"(?:api|admin|oat|ort|sid)[0-9]{2}-")],
    "github_token": [
        (r"gh[pousr]_", "A-Za-z0-9", "{36,251}", "A-Za-z0-9_"),
        (r"github_pat_", "A-Za-z0-9_", "{50,255}", "A-Za-z0-9_"),
    ],
    "gitlab_token": [(r"glpat-", _T, "{20,64}")],
    "stripe_key": [
        (r"[sr]k_(?:live|test)_", "A-Za-z0-9", "{20,247}", "A-Za-z0-9_"),
        (r"whsec_", "A-Za-z0-9", "{32,64}", "A-Za-z0-9_"),
    ],
    # A Google key fits in the standard base64 alphabet: keep it out of base64 blobs.
    "google_api_key": [(r"AIza", _T, "{35}", _T + "+/")],
    "google_oauth_client_secret": [(r"GOCSPX-", _T, "{28}")],
    "huggingface_token": [(r"hf_", "A-Za-z0-9", "{30,40}")],
    "groq_api_key": [(r"gsk_", "A-Za-z0-9", "{48,56}")],
    "replicate_api_token": [(r"r8_", "A-Za-z0-9", "{36,40}")],
    "xai_api_key": [(r"xai-", "A-Za-z0-9", "{70,90}")],
    "perplexity_api_key": [(r"pplx-", "A-Za-z0-9", "{40,56}")],
    "npm_token": [(r"npm_", "A-Za-z0-9", "{36}")],
}

# (pattern, check) and the gate piece: a necessary condition of every pattern, in Rust syntax.
_REGEX_DETECTORS: dict[str, tuple[list[tuple[str, _Check]], str]] = {
    "jwt": (
        [
            (
                rf"eyJ(?<![{_T}]eyJ)(?P<header>[{_T}]{{5,2000}}+)\.[{_T}]{{2,20000}}+\."
                rf"[{_T}]{{16,2000}}+(?![{_T}])",
                _jwt_check,
            )
        ],
        rf"eyJ[{_T}]{{5}}[{_T}]*\.[{_T}]{{2}}[{_T}]*\.[{_T}]{{16}}",
    ),
    "openai_api_key": (
        [(rf"sk-(?<![{_T}]sk-)(?!ant-)(?P<body>[{_T}]{{20,300}}+)(?![{_T}])", _openai_check)],
        rf"sk-[{_T}]{{20}}",
    ),
    "aws_access_key_id": (
        [
            (
                rf"{_AWS_ID_PREFIX}(?<![A-Za-z0-9+/]....)[A-Z0-9]{{16}}(?![A-Za-z0-9])",
                _aws_key_id_check,
            )
        ],
        rf"{_AWS_ID_PREFIX}[A-Z0-9]{{16}}",
    ),
    "aws_secret_access_key": (
        [
            (
                rf"{_AWS_SECRET_CUE}[A-Za-z_.\-]{{0,24}}[^A-Za-z0-9/+]{{1,12}}"
                r"(?P<s>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
                _aws_secret_check,
            ),
            (
                r"(?:AKIA|ASIA)[A-Z0-9]{16}[^A-Za-z0-9/+]{1,8}(?P<s>[A-Za-z0-9/+]{40})"
                r"(?![A-Za-z0-9/+=])",
                _aws_secret_check,
            ),
        ],
        rf"(?i:{_AWS_SECRET_WORDS})|(?:AKIA|ASIA)[A-Z0-9]{{16}}",
    ),
    "slack_token": (
        [
            (
                rf"xox(?<![{_T}]xox)[abeoprs]-[0-9]{{1,15}}-[A-Za-z0-9\-]{{8,300}}+(?![{_T}])",
                _slack_token_check,
            )
        ],
        r"xox[abeoprs]-[0-9]{1,15}-[A-Za-z0-9\-]{8}",
    ),
    "slack_webhook": (
        [
            (
                r"hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]{6,12}/"
                r"(?:[A-Za-z0-9]{1,40}/){1,3}(?P<secret>[A-Za-z0-9]{16,64})(?![A-Za-z0-9])",
                _webhook_check,
            )
        ],
        r"hooks\.slack\.com/",
    ),
    "discord_bot_token": (
        [
            (
                rf"(?P<id>[MNO](?<![{_T}][MNO])[{_T}]{{23,27}})\.[{_T}]{{6}}\."
                rf"(?P<sig>[{_T}]{{27,40}})(?![{_T}])",
                _discord_bot_check,
            )
        ],
        rf"[MNO][{_T}]{{23,27}}\.[{_T}]{{6}}\.",
    ),
    "discord_webhook": (
        [
            (
                rf"discord(?:app)?\.com/api/webhooks/[0-9]{{17,20}}/(?P<secret>[{_T}]{{60,70}})"
                rf"(?![{_T}])",
                _webhook_check,
            )
        ],
        r"discord(?:app)?\.com/api/webhooks/",
    ),
    "telegram_bot_token": (
        [(rf":AA[{_T}]{{33}}(?![{_T}])", _telegram_check)],
        rf"[0-9]{{8}}:AA[{_T}]{{33}}",
    ),
    "sendgrid_api_key": (
        [(rf"SG\.(?<![{_T}.]SG\.)[{_T}]{{22}}\.(?P<b>[{_T}]{{43}})(?![{_T}])", _random_body)],
        rf"SG\.[{_T}]{{22}}\.[{_T}]{{43}}",
    ),
    "url_password": (
        [
            (
                rf"://(?<=[A-Za-z0-9]://)(?P<user>[^{_WS}/?#@:\"'<>\[\]{{}}\\]{{0,128}}+):"
                rf"(?P<s>[^{_WS}/?#\"'<>\\,]{{1,256}})@(?=[A-Za-z0-9\[])",
                _url_password_check,
            )
        ],
        rf"[A-Za-z0-9]://[^{_WS}/?#@:\"'<>\[\]{{}}\\]*:[^{_WS}/?#\"'<>\\]+@[A-Za-z0-9\[]",
    ),
    "basic_auth": (
        [
            (
                r"(?<![A-Za-z0-9])(?ai:basic)[ \t]+(?P<s>[A-Za-z0-9+/]{8,1024}+={0,2})"
                r"(?![A-Za-z0-9+/=])",
                _basic_check,
            )
        ],
        r"(?i:basic)[ \t]+[A-Za-z0-9+/]{8}",
    ),
    "bearer_token": (
        [
            (
                r"(?<![A-Za-z0-9])(?ai:bearer)[ \t]+(?P<s>[A-Za-z0-9\-._~+/]{16,4096}+=*)"
                r"(?![A-Za-z0-9\-._~+/=])",
                _bearer_check,
            )
        ],
        r"(?i:bearer)[ \t]+[A-Za-z0-9\-._~+/]{16}",
    ),
}
for _name, _specs in _PREFIXED.items():
    _built = [_prefixed(*spec) for spec in _specs]
    _REGEX_DETECTORS[_name] = (
        [(pattern, _random_body) for pattern, _ in _built],
        "|".join(gate for _, gate in _built),
    )


# --- private keys ----------------------------------------------------------------------------

_PEM_BEGIN = re.compile(r"-{4,5} ?BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)? ?-{4,5}")
_PEM_END = re.compile(r"-{4,5} ?END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)? ?-{4,5}")
# A key without its END line: optional armor headers, then lines of base64. Newlines may be
# real or escaped (a key inside a JSON or code string literal).
_NL = r"(?:\r?\n|\\r\\n|\\n)"
_PEM_BODY = re.compile(
    rf"(?:[ \t]*{_NL}[ \t]*[A-Za-z][A-Za-z0-9\-]{{1,30}}:[^\r\n\\]{{0,200}}+)*"
    rf"(?:[ \t]*{_NL})*[ \t]*"
    rf"(?P<body>[A-Za-z0-9+/=]{{1,200}}+(?:[ \t]*{_NL}[ \t]*[A-Za-z0-9+/=]{{1,200}}+)*+)"
)
_PEM_MAX_CHARS = 100_000


def _pem_body_ok(inner: str) -> bool:
    body = re.sub(r"\\[rn]", "", inner)
    chars = re.findall(r"[A-Za-z0-9+/]", body)
    return len(chars) >= 64 and len(set(chars)) >= 16


def _private_keys(text: str) -> Iterator[Span]:
    if "PRIVATE KEY" not in text:
        return
    ends = [(m.start(), m.end()) for m in _PEM_END.finditer(text)]
    end_starts = [s for s, _ in ends]
    covered = 0
    for begin in _PEM_BEGIN.finditer(text):
        if begin.start() < covered:
            continue
        i = bisect.bisect_left(end_starts, begin.end())
        if i < len(ends) and ends[i][0] - begin.end() <= _PEM_MAX_CHARS:
            end_start, end_end = ends[i]
            if _pem_body_ok(text[begin.end() : end_start]):
                covered = end_end
                yield begin.start(), end_end
            continue
        body = _PEM_BODY.match(text, begin.end())
        if body and _pem_body_ok(body.group("body")):
            covered = body.end("body")
            yield begin.start(), covered


# --- assignments: password = "...", api_key: ... ---------------------------------------------

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_ID_RUN = re.compile(r"[A-Za-z0-9_.\-]*+")
_MAX_KEY = 80

_PASSWORD_WORDS = frozenset(
    {"password", "passwd", "passwort", "passphrase", "pass", "pwd", "pw", "kennwort", "senha"}
    | {"wachtwoord", "contrasena"}
)
# INVALID_PASSWORD = '28P01' (an error code), FORGOT_PASSWORD, MIN_PASSWORD, SHOW_PASSWORD.
_NOT_A_PASSWORD = frozenset(
    {"invalid", "wrong", "incorrect", "bad", "error", "err", "forgot", "forget", "reset"}
    | {"min", "max", "hint", "label", "show", "hide", "toggle", "verify", "validate", "check"}
    | {"is", "has", "enter", "type", "input", "expired", "weak", "strong", "first", "second"}
)
_PASSWORD_SUFFIXES = frozenset(
    {"confirm", "confirmation", "again", "new", "old", "plain", "plaintext", "value", "repeat"}
)
# Cue words in other languages: a key by themselves, followed by a separator.
FOREIGN_PASSWORD_CUES = (
    *("密码", "密碼", "口令", "パスワード", "비밀번호", "пароль", "contraseña", "hasło"),
    *("şifre", "mot de passe", "mật khẩu"),
)
# Exact case variants: Python's (?i) folds more than Rust's ("ı" and "İ" onto "i").
_FOREIGN_VARIANTS = sorted(
    {v for c in FOREIGN_PASSWORD_CUES for v in (c, c.capitalize(), c.upper())},
    key=lambda v: (-len(v), v),
)
_PASSWORD_CUE = re.compile(rf"(?ai:pass|pw)|{'|'.join(map(re.escape, _FOREIGN_VARIANTS))}")
_SECRET_CUE = re.compile(r"(?ai:key|token|secret)")

_KEY_QUALIFIERS = frozenset(
    {"api", "app", "access", "secret", "private", "subscription", "client", "master", "auth"}
    | {"encryption", "signing", "openai", "anthropic", "claude", "gemini", "google", "groq"}
    | {"mistral", "deepseek", "cohere", "stripe", "sendgrid", "mailgun", "twilio", "azure"}
    | {"aws", "gpt", "chatgpt", "hf", "huggingface", "replicate", "together", "serpapi"}
    | {"openweather", "openweathermap", "weather", "youtube", "maps", "pinecone"}
)
_TOKEN_QUALIFIERS = frozenset(
    {"access", "auth", "bot", "api", "bearer", "refresh", "secret", "private", "personal"}
    | {"session", "oauth", "github", "gh", "gitlab", "slack", "discord", "telegram", "tg", "hf"}
    | {"huggingface", "openai", "app", "client", "webhook", "security", "aws", "notion", "pat"}
    | {"user", "id", "jwt", "vk", "line"}
)

_SEPARATOR = re.compile(
    r"""
    (?P<close>\\?["'`]?\]?)[ \t]*
    (?:
        (?P<annotation>:[ \t]*[A-Za-z_][A-Za-z0-9_.\[\],|\ ]{0,40}?[ \t]*=(?![=~>]))
      | (?P<sep>:=|=>|=(?![=~])|:(?!:)|：|是|为|(?<=[ \t])(?ai:is)(?=[ \t]))
    )
    [ \t]*
    """,
    re.VERBOSE,
)
_CLI_SEPARATOR = re.compile(rf"[ \t]+(?=[^\-{_WS}])")
# A string literal on one line (b"..." and r'...' too), or one with escaped quotes: {\"pw\": \"x\"}.
_QUOTED = re.compile(
    r"""[bBrRuU]?(?:(?P<q>["'`])(?P<v>[^"'`\\\n]{1,200})(?P=q)"""
    r"""|\\(?P<q2>["'])(?P<v2>[^"'`\\\n]{1,200})\\(?P=q2))"""
)
_UNQUOTED_CHARS = "".join(
    re.escape(chr(c)) for c in range(0x21, 0x7F) if chr(c) not in "\"'`(),;<>[]{}&"
)
_UNQUOTED = re.compile(f"[{_UNQUOTED_CHARS}]{{1,128}}+")
_XML_VALUE = re.compile(r">(?P<v>[^<\s]{1,200})</")
_DOTTED = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)+")
_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_STRONG_SYMBOLS = frozenset("!@#$%^&*+=?~|")
# Validation rules and regexes kept under a password key: `"required|min:8"`, `^(?=.*\d)`.
_CODEISH = re.compile(
    r"required|nullable|confirmed|min:|max:|==|!=|&&|\|\||\(\?|\.\*|\\[dws]|\[a-z|\[A-Z"
)


def _words(key: str) -> list[str]:
    split = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return [w for w in re.split(r"[^A-Za-z0-9]+", split.lower()) if w]


@lru_cache(maxsize=4096)
def _password_key(key: str) -> bool:
    words = [w.rstrip("0123456789") for w in _words(key)]
    words = [w for w in words if w]
    if not words:
        return False
    at = len(words) - 1
    if words[at] in _PASSWORD_SUFFIXES and at >= 1:
        at -= 1
    if at >= 1 and words[at - 1] in _NOT_A_PASSWORD:
        return False
    return words[at] in _PASSWORD_WORDS or words[at].endswith(("password", "passwd"))


@lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    words = [w.rstrip("0123456789") for w in _words(key)]
    words = [w for w in words if w]
    if not words:
        return False
    last, before = words[-1], (words[-2] if len(words) >= 2 else "")
    if last == "key":
        return before in _KEY_QUALIFIERS
    if last == "token":
        return not before or before in _TOKEN_QUALIFIERS
    if last.endswith("secret"):
        return True
    if last.endswith("key") and last[:-3] in _KEY_QUALIFIERS:
        return True
    return last.endswith("token") and last[:-5] in _TOKEN_QUALIFIERS


def _password_value_ok(value: str, quoted: bool, unquoted_context: tuple[str, str]) -> bool:
    if len(value) < (4 if quoted else 6) or len(value) > 128:
        return False
    if not value.isascii() or _SPACE.search(value) is not None or value[0] in "/~":
        return False
    if _password_placeholder(value) or _CODEISH.search(value):
        return False
    if not quoted:
        separator, next_char = unquoted_context
        if (next_char and next_char in "([") or _DOTTED.fullmatch(value):
            return False  # a call, an index, an attribute: code
        # `password = user_password`: a variable. Config files rarely put spaces around "=".
        if separator.strip() == "=" and separator != "=" and _IDENTIFIER.fullmatch(value):
            return False
    if value.count("/") >= 2:
        return False  # a path or a resource name: projects/1/secrets/db/versions/2
    # Sentence punctuation ("the password is echoed!") is no sign of a password.
    core = value.rstrip("!?")
    if unquoted_context[0].strip().lower() in ("is", "是", "为"):
        return any(c.isdigit() for c in core)
    return any(c.isdigit() or c in _STRONG_SYMBOLS for c in core)


def _secret_value_ok(value: str, quoted: bool, unquoted_context: tuple[str, str]) -> bool:
    if not quoted:
        _, next_char = unquoted_context
        if (next_char and next_char in "([") or _DOTTED.fullmatch(value):
            return False
        # Bare values are often type names and constants (private_key: PKCS7PrivateKeyTypes,
        # token = NAMESPACE::call): they need digits.
        if sum(c.isdigit() for c in value) < 2 or "::" in value:
            return False
    return _looks_like_token(value)


def _assignment_value(
    text: str, key_start: int, key_end: int, cli: bool
) -> tuple[int, int, bool, tuple[str, str]] | None:
    """Parse ``KEY <sep> VALUE`` after a key; the value's span, whether quoted, and context."""
    if key_start > 0 and text[key_start - 1] == "<" and text.startswith(">", key_end):
        xml = _XML_VALUE.match(text, key_end)
        if xml:
            return xml.start("v"), xml.end("v"), True, ("", "")
        return None
    sep = _SEPARATOR.match(text, key_end)
    if sep is None:
        if not cli:
            return None
        sep = _CLI_SEPARATOR.match(text, key_end)
        if sep is None:
            return None
    separator = text[sep.end("close") if sep.re is _SEPARATOR else sep.start() : sep.end()]
    pos = sep.end()
    quoted = _QUOTED.match(text, pos)
    if quoted:
        group = "v" if quoted.group("v") is not None else "v2"
        return quoted.start(group), quoted.end(group), True, (separator, "")
    bare = _UNQUOTED.match(text, pos)
    if bare is None:
        return None
    start, end = bare.span()
    # A sentence's full stop is not part of it; a final "!" may be, and redacting it costs nothing.
    while end > start and text[end - 1] in ".:":
        end -= 1
    next_char = text[bare.end()] if bare.end() < len(text) else ""
    return start, end, False, (separator, next_char)


def _assignments(
    text: str,
    cue: re.Pattern[str],
    key_ok: Callable[[str], bool],
    value_ok: Callable[[str, bool, tuple[str, str]], bool],
    foreign: tuple[str, ...] = (),
) -> Iterator[Span]:
    covered = 0
    foreign_lower = {c.lower() for c in foreign}
    for m in cue.finditer(text):
        a, b = m.span()
        if a < covered:
            continue
        if m.group().lower() in foreign_lower:
            # Latin and Cyrillic cues are whole words; CJK ones are glued to text anyway.
            if m.group()[0] < "\u3000" and (text[b : b + 1].isalpha() or text[a - 1 : a].isalpha()):
                continue
            left, right = a, b
        else:
            left = a
            while left > 0 and a - left <= _MAX_KEY and text[left - 1] in _ID_CHARS:
                left -= 1
            right = _ID_RUN.match(text, b).end()
            covered = right
            if text[max(0, left - 3) : left] == "://":
                continue  # a URL's user name: url_password judges what follows
            if a - left > _MAX_KEY or right - left > _MAX_KEY:
                continue  # a long run of identifier characters is data, not a key
            key = text[left:right]
            # "API key: ...", "access token = ...": the qualifier is the previous word.
            if key.lower() in ("key", "token", "secret"):
                prev = re.search(r"([A-Za-z]{2,20})[ ]\Z", text[max(0, left - 21) : left])
                if prev:
                    key = f"{prev.group(1)}_{key}"
            if not key_ok(key.strip(".-")):
                continue
        parsed = _assignment_value(text, left, right, cli=text[left : left + 1] == "-")
        if parsed is None:
            continue
        start, end, quoted, context = parsed
        if end > start and value_ok(text[start:end], quoted, context):
            covered = max(covered, end)
            yield start, end


def _passwords(text: str) -> Iterator[Span]:
    return _assignments(
        text, _PASSWORD_CUE, _password_key, _password_value_ok, FOREIGN_PASSWORD_CUES
    )


def _secret_assignments(text: str) -> Iterator[Span]:
    return _assignments(text, _SECRET_CUE, _secret_key, _secret_value_ok)


# ---------------------------------------------------------------------------------------------
# The gate: one necessary condition a detector, in Rust regex syntax (no lookaround).

_GATE_SEPARATOR = r"""\\?["'`]?\]?[ \t]*(?:[=:：是为]|(?i:is)[ \t])"""


def _gate_assignment(cue: str) -> str:
    """After a key: a separator or an XML element's text; or, for a --flag, whitespace."""
    rest = r"[A-Za-z0-9_.\-]*"
    return (
        rf"(?:{cue}){rest}(?:{_GATE_SEPARATOR}|>[^<])"
        rf"|-{rest}(?:{cue}){rest}[ \t]+[^\-{_WS}]"
    )


_GATE_PIECES: dict[str, str] = {
    "private_key": r"PRIVATE KEY",
    "password_assignment": (
        _gate_assignment(r"(?i:pass|pw)")
        + rf"|(?i:{'|'.join(FOREIGN_PASSWORD_CUES)})(?:{_GATE_SEPARATOR}|>[^<])"
    ),
    "secret_assignment": _gate_assignment(r"(?i:key|token|secret)"),
}
_DETECTORS: dict[str, Callable[[str], Iterator[Span]]] = {
    "private_key": _private_keys,
    "password_assignment": _passwords,
    "secret_assignment": _secret_assignments,
}


def _chain(detectors: list[Callable[[str], Iterator[Span]]]) -> Callable[[str], Iterator[Span]]:
    def detect(text: str) -> Iterator[Span]:
        for d in detectors:
            yield from d(text)

    return detect


for _name, (_patterns, _gate) in _REGEX_DETECTORS.items():
    _DETECTORS[_name] = _chain([_regex_detector(p, c) for p, c in _patterns])
    _GATE_PIECES[_name] = _gate

assert set(_DETECTORS) == set(SECRET_DETECTORS) == set(_GATE_PIECES)

# Texts it does not match have no findings: polars' str.contains(SECRET_GATE) skips them.
SECRET_GATE: str = "|".join(f"(?:{_GATE_PIECES[name]})" for name in SECRET_DETECTORS)


# Words that every match of a detector holds, in lowercase: where the lowercased text has none
# of them, that detector's scan is skipped. Only detectors whose patterns start case-insensitively
# or with a class (or, for passwords, many alternatives) have them: Python's re tries those at
# every position, while a pattern that starts with a literal is found as fast as a word here.
# ``str.lower`` maps each character on its own (but for Σ), and an ASCII one to ASCII.
_CUE_WORDS: dict[str, tuple[str, ...]] = {
    # Both _AWS_SECRET_WORDS hold "secret"; the other pattern starts with AKIA or ASIA.
    "aws_secret_access_key": ("secret", "akia", "asia"),
    "stripe_key": ("k_live_", "k_test_", "whsec_"),
    "basic_auth": ("basic",),
    "bearer_token": ("bearer",),
    # _PASSWORD_CUE and _SECRET_CUE.
    "password_assignment": ("pass", "pw", *sorted({v.lower() for v in _FOREIGN_VARIANTS})),
    "secret_assignment": ("key", "token", "secret"),
}
assert not any("Σ" in v for v in _FOREIGN_VARIANTS)


# Python's case-insensitive matching also takes dotless ı and İ for i, and long ſ for s, which
# str.lower keeps apart: folded here too, so a pattern written (?i) never loses its scan to them.
_IGNORECASE_EXTRA = str.maketrans({"ı": "i", "ſ": "s", "\u0307": None})


def _detectors_for(text: str) -> list[str]:
    """The detectors that may find something in ``text`` (``_CUE_WORDS``), in priority order."""
    lowered = text.lower().translate(_IGNORECASE_EXTRA)
    return [
        name
        for name in SECRET_DETECTORS
        if (cues := _CUE_WORDS.get(name)) is None or any(cue in lowered for cue in cues)
    ]


def find_secrets(text: str) -> list[SecretMatch]:
    """Credentials in ``text``: sorted, non-overlapping; longer spans win, then priority."""
    return _find(text, _detectors_for(text))


def _find(text: str, detectors: Iterable[str]) -> list[SecretMatch]:
    candidates = [
        (start, end, name)
        for name in detectors
        for start, end in _DETECTORS[name](text)
        if end > start
    ]
    if not candidates:
        return []
    candidates.sort(key=lambda c: (c[0] - c[1], _PRIORITY[c[2]], c[0]))
    starts: list[int] = []
    kept: dict[int, SecretMatch] = {}
    for start, end, name in candidates:
        i = bisect.bisect_right(starts, start)
        if i > 0 and kept[starts[i - 1]].end > start:
            continue
        if i < len(starts) and starts[i] < end:
            continue
        starts.insert(i, start)
        kept[start] = SecretMatch(start, end, name)
    return [kept[s] for s in starts]


# ---------------------------------------------------------------------------------------------
# Presidio


@lru_cache(maxsize=1)
def _recognizer_class() -> type:
    from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult

    class SecretRecognizer(EntityRecognizer):
        """``find_secrets`` as a Presidio recognizer of the ``SECRET`` entity."""

        def __init__(self) -> None:
            super().__init__(
                supported_entities=[SECRET_ENTITY],
                name="SecretRecognizer",
                supported_language="en",
                version=SECRETS_VERSION,
            )

        def load(self) -> None:
            pass

        def analyze(
            self, text: str, entities: list[str], nlp_artifacts: Any = None
        ) -> list[RecognizerResult]:
            if entities and SECRET_ENTITY not in entities:
                return []
            results = []
            for match in find_secrets(text):
                name = f"{RECOGNIZER_PREFIX}{match.detector}"
                results.append(
                    RecognizerResult(
                        entity_type=SECRET_ENTITY,
                        start=match.start,
                        end=match.end,
                        score=1.0,
                        analysis_explanation=AnalysisExplanation(
                            recognizer=name,
                            original_score=1.0,
                            textual_explanation=f"{match.detector} ({SECRETS_VERSION})",
                        ),
                        recognition_metadata={
                            RecognizerResult.RECOGNIZER_NAME_KEY: name,
                            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                            "secret_detector": match.detector,
                            "secret_label": secret_label(match.detector),
                            "secrets_version": SECRETS_VERSION,
                        },
                    )
                )
            return results

    return SecretRecognizer


def build_secret_recognizer() -> Any:
    """A Presidio ``EntityRecognizer`` of ``SECRET``; results name ``secret:<detector>``."""
    return _recognizer_class()()
