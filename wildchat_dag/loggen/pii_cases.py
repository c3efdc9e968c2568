"""A labelled evaluation set for the privacy boundary: conversations with PII, secrets and client
IPs placed at known offsets, and decoys that must come out unchanged.

Pure and seeded (no Dagster, no network): ``build_case_set(seed)`` returns the same conversations
and labels for the same seed. Each placed value is one *case*, in a conversation of its own, with
its position varied along every axis the detectors must survive:

- **entity type**: each type the default rules redact (PERSON after each cue, PHONE_NUMBER with a
  cue and with a leading ``+``, EMAIL_ADDRESS, CREDIT_CARD with "card" nearby, URL of a LinkedIn
  profile), SECRET (one case per detector at least) and the conversation's own client IP;
- **notation**: plain, full-width, a zero-width space inside, a soft hyphen inside, a line break
  inside, NBSP (``NOTATIONS``); client IPs have notations of their own (``IP_NOTATIONS``);
- **script** around the value: English prose, Chinese with no space around the value, Arabic or
  Hebrew, Russian (``SCRIPTS``). PERSON is English only: its rule applies to English texts;
- **position**: start, middle or end of the message; first or a later round; user or assistant.

Labels (``PlacedValue``) carry the offsets of the value in the final text, the value as written
and its plain (normalized) form. Decoys (``Decoy``) are values the rules must leave alone:
placeholder and generic e-mail addresses, phone numbers without a cue, quoted titles after a cue,
"I am Very Happy", a public figure named with a cue in ``PUBLIC_FIGURE_CONVERSATIONS``
conversations (the frequency rule keeps it), hashes, UUIDs, git hashes, a base64 image, code
reading a password, placeholder API keys, version strings, IPs that are no client's, grouped
numbers, a Luhn-valid number with no "card" near it, non-profile URLs and names without a cue.

``write_case_logs`` writes the set as one day of raw request logs in the log contract, through
``replay_conversations`` (full history in every request, prev/current hash chains); every
request carries its conversation's client IP in the ``ip`` field, so an IP case's value is the
client's own. ``quarantined=True`` adds lines that ingest must quarantine, carrying a client IP
and PII of their own (``QuarantinedLine``).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import random
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path

import orjson

from wildchat_dag.loggen.generator import (
    DAY_US,
    DEFAULT_FIRST_TURN_ID,
    MINUTE_US,
    SCHEMA_VERSION,
    TimestampFormatter,
    date_to_us,
    random_ipv6,
    random_public_ipv4,
)
from wildchat_dag.loggen.replay import replay_conversations

# --- the dimensions ------------------------------------------------------------------------------

ENTITY_TYPES = (
    "PERSON",
    "PHONE_NUMBER",
    "EMAIL_ADDRESS",
    "CREDIT_CARD",
    "URL",
    "SECRET",
    "IP_ADDRESS",
)
NOTATIONS = ("plain", "fullwidth", "zero_width", "soft_hyphen", "line_break", "nbsp")
IP_NOTATIONS = (
    "plain",
    "ipv6",
    "ipv6_expanded",
    "ipv4_mapped",
    "leading_zeros",
    "integer",
    "fullwidth",
    "zero_width",
    "spaces",
    "zone_id",
)
SCRIPTS = ("latin", "cjk", "rtl", "cyrillic")
POSITIONS = ("start", "middle", "end")
ROLES = ("user", "assistant")

# PERSON's cues, one case each (the rules' ``cues_before``), as a writer would spell them.
PERSON_CUES = (
    "my name is",
    "my name's",
    "i am",
    "i'm",
    "this is",
    "dear",
    "hi",
    "hello",
    "hey",
    "regards,",
    "best regards,",
    "kind regards,",
    "warm regards,",
    "sincerely,",
    "faithfully,",
    "yours truly,",
    "thanks,",
    "thank you,",
    "cheers,",
    "name:",
    "signed,",
)
SECRET_DETECTORS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "GITHUB_TOKEN",
    "SLACK_TOKEN",
    "STRIPE_KEY",
    "GOOGLE_API_KEY",
    "JWT",
    "PRIVATE_KEY",
    "CONNECTION_STRING_PASSWORD",
    "URL_PASSWORD",
    "PASSWORD_ASSIGNMENT",
)
"""What each SECRET case holds. The names are this set's, not necessarily the pipeline's
detector names (its placeholder is ``<PRESIDIO_ANONYMIZED_SECRET_{DETECTOR}>``)."""

PUBLIC_FIGURE = "Taylor Swift"
PUBLIC_FIGURE_CONVERSATIONS = 80
"""Conversations naming the public figure after a cue: PERSON's threshold is 50 conversations,
with room for a detector that misses the name in a few of them."""

DECOY_KINDS = (
    "placeholder_email",
    "generic_mailbox",
    "phone_without_cue",
    "quoted_title",
    "capitalized_words",
    "public_figure",
    "sha256",
    "uuid",
    "git_hash",
    "data_uri",
    "password_input",
    "placeholder_key",
    "version_string",
    "non_client_ip",
    "grouped_number",
    "luhn_without_card",
    "non_profile_url",
    "name_without_cue",
)

ZONE_ID = "%eth0"
ZWSP = "\u200b"
SOFT_HYPHEN = "\u00ad"
NBSP = "\u00a0"
# Removed by normalization: zero-width characters, the soft hyphen, bidi marks and controls.
_INVISIBLE = frozenset(
    "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e"
    "\u2066\u2067\u2068\u2069"
)
_MODEL = "gpt-4-0613"
_CLIENT_IP_AVOID_FIRST_OCTETS = frozenset({1, 2, 8})  # the decoys' 1.2.3.4.5, 8.8.8.8, 1.1.1.1


# --- labels --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlacedValue:
    """One value the pipeline must not release, where it was written."""

    case_id: str
    conversation_key: str
    turn_index: int
    """Index of the message in the conversation (0: the first user message)."""
    role: str
    entity_type: str
    notation: str
    script: str
    position: str
    start: int
    end: int
    value: str
    """``content[start:end]``: the value as written, notation included."""
    canonical: str
    """The value in its plain form (what normalization should read; an IP: canonical)."""
    detail: str = ""
    """PERSON: the cue; PHONE_NUMBER: ``cue`` or ``plus``; SECRET: the detector; others: ''."""

    @property
    def turn(self) -> str:
        """``first`` round or a ``later`` one."""
        return "first" if self.turn_index < 2 else "later"


@dataclass(frozen=True)
class Decoy:
    """A value the pipeline must release unchanged."""

    decoy_id: str
    conversation_key: str
    turn_index: int
    kind: str
    start: int
    end: int
    value: str


@dataclass(frozen=True)
class CaseConversation:
    key: str
    messages: tuple[dict[str, str], ...]
    """Alternating user/assistant messages, starting with user, ending with assistant."""
    client_ip: str
    """The ``ip`` of every request of the conversation, canonical."""
    model: str = _MODEL


@dataclass(frozen=True)
class QuarantinedValue:
    case_id: str
    entity_type: str
    value: str
    canonical: str


@dataclass(frozen=True)
class QuarantinedLine:
    """A raw log line that ingest must quarantine, and the values it carries."""

    case_id: str
    reason: str
    """The expected ``quarantined_log_lines.reason``."""
    line: str
    values: tuple[QuarantinedValue, ...]


@dataclass(frozen=True)
class PiiCaseSet:
    seed: int
    conversations: tuple[CaseConversation, ...]
    values: tuple[PlacedValue, ...]
    decoys: tuple[Decoy, ...]

    def __repr__(self) -> str:
        # Short, and without the values: a test failure prints it.
        return (
            f"PiiCaseSet(seed={self.seed}, {len(self.conversations)} conversations, "
            f"{len(self.values)} values, {len(self.decoys)} decoys)"
        )

    def conversation(self, key: str) -> CaseConversation:
        return self._by_key[key]

    @cached_property
    def _by_key(self) -> dict[str, CaseConversation]:
        return {c.key: c for c in self.conversations}

    def content(self, key: str, turn_index: int) -> str:
        return self.conversation(key).messages[turn_index]["content"]

    @property
    def client_ips(self) -> frozenset[str]:
        return frozenset(c.client_ip for c in self.conversations)

    def counts(self, dimension: str) -> dict[str, int]:
        """Cases per value of ``dimension`` (an attribute of ``PlacedValue``)."""
        return dict(Counter(str(getattr(v, dimension)) for v in self.values))

    def counts_table(self) -> str:
        """Markdown: cases per entity type and notation, and per entity type and script."""
        lines = []
        for dimension, columns in (
            ("notation", list(NOTATIONS) + [n for n in IP_NOTATIONS if n not in NOTATIONS]),
            ("script", list(SCRIPTS)),
        ):
            present = [c for c in columns if any(getattr(v, dimension) == c for v in self.values)]
            lines.append(f"| entity type | {' | '.join(present)} | all |")
            lines.append("|---|" + "---:|" * (len(present) + 1))
            for entity in ENTITY_TYPES:
                mine = [v for v in self.values if v.entity_type == entity]
                cells = [str(sum(getattr(v, dimension) == c for v in mine)) for c in present]
                lines.append(f"| {entity} | {' | '.join(cells)} | {len(mine)} |")
            totals = [str(sum(getattr(v, dimension) == c for v in self.values)) for c in present]
            lines.append(f"| all | {' | '.join(totals)} | {len(self.values)} |")
            lines.append("")
        decoys = Counter(d.kind for d in self.decoys)
        lines.append("| decoy kind | decoys |")
        lines.append("|---|---:|")
        lines.extend(f"| {k} | {decoys[k]} |" for k in DECOY_KINDS if decoys[k])
        lines.append(f"| all | {len(self.decoys)} |")
        return "\n".join(lines)


# --- normalization and notations -----------------------------------------------------------------


def normalized_form(text: str) -> str:
    """``text`` as a reader sees it: NFKC (full-width folded, NBSP a space), invisible
    characters removed. Line breaks are kept."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(c for c in folded if c not in _INVISIBLE)


def fullwidth(text: str) -> str:
    """ASCII letters, digits and punctuation as their full-width forms (spaces kept)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _inside_point(value: str) -> int:
    """An index near the middle of ``value`` between two letters or digits."""
    middle = len(value) // 2
    for distance in range(len(value)):
        for i in (middle - distance, middle + distance):
            if 0 < i < len(value) and value[i - 1].isalnum() and value[i].isalnum():
                return i
    return max(1, middle)


def insert_inside(value: str, char: str) -> str:
    i = _inside_point(value)
    return value[:i] + char + value[i:]


def with_line_break(value: str) -> str:
    """A line break inside: in place of the space nearest the middle, else after the separator
    nearest the middle, else in the middle."""
    middle = len(value) / 2
    spaces = [i for i, c in enumerate(value) if c == " "]
    if spaces:
        i = min(spaces, key=lambda s: abs(s - middle))
        return value[:i] + "\n" + value[i + 1 :]
    separators = [i + 1 for i, c in enumerate(value[:-1]) if c in ".-_/@:"]
    i = min(separators, key=lambda s: abs(s - middle)) if separators else _inside_point(value)
    return value[:i] + "\n" + value[i:]


@dataclass(frozen=True)
class Written:
    """A value in a notation, with what goes right before and after it (NBSP padding)."""

    value: str
    pad_before: str = ""
    pad_after: str = ""
    suffix: str = ""
    """Written right after the value, outside its label (an IPv6 zone id)."""


def write_in(value: str, notation: str) -> Written:
    if notation == "plain":
        return Written(value)
    if notation == "fullwidth":
        return Written(fullwidth(value))
    if notation == "zero_width":
        return Written(insert_inside(value, ZWSP))
    if notation == "soft_hyphen":
        return Written(insert_inside(value, SOFT_HYPHEN))
    if notation == "line_break":
        return Written(with_line_break(value))
    if notation == "nbsp":
        if " " in value:
            return Written(value.replace(" ", NBSP))
        # No space inside: NBSP is the space around it.
        return Written(value, NBSP, NBSP)
    raise ValueError(f"unknown notation {notation!r}")


def write_ip(address: str, notation: str) -> str:
    """``address`` (canonical; IPv6 for the IPv6 notations) written in ``notation``."""
    parsed = ipaddress.ip_address(address)
    if notation in ("plain", "ipv6"):
        return parsed.compressed
    if notation == "ipv6_expanded":
        return parsed.exploded
    if notation == "ipv4_mapped":
        return f"::ffff:{parsed}"
    if notation == "zone_id":
        # The zone (the interface) is not part of the address: ``ZONE_ID`` follows the label.
        return parsed.compressed
    octets = str(parsed).split(".")
    if notation == "leading_zeros":
        return ".".join(f"{int(o):03d}" for o in octets)
    if notation == "integer":
        return str(int(parsed))
    if notation == "fullwidth":
        return fullwidth(str(parsed))
    if notation == "zero_width":
        return ".".join(octets[:2]) + "." + ZWSP + ".".join(octets[2:])
    if notation == "spaces":
        return " . ".join(octets)
    raise ValueError(f"unknown IP notation {notation!r}")


def _ip_is_v6(notation: str) -> bool:
    return notation in ("ipv6", "ipv6_expanded", "zone_id")


# --- values --------------------------------------------------------------------------------------

FIRST_NAMES = (
    "Nadia",
    "Mateo",
    "Amara",
    "Tomasz",
    "Ingrid",
    "Kwame",
    "Leilani",
    "Rafael",
    "Yuki",
    "Siddharth",
    "Chiara",
    "Dmitri",
    "Aisling",
    "Oluwaseun",
    "Mei",
    "Farhan",
    "Zoë",
    "José",
    "Søren",
    "Anika",
    "Thiago",
    "Hana",
    "Emeka",
    "Lucía",
    "Bogdan",
    "Priyanka",
    "Elif",
    "Callum",
    "Nomvula",
    "Kenji",
    "Ximena",
    "Tariq",
    "Annelie",
    "Rasmus",
    "Wanjiru",
    "Henrik",
)
LAST_NAMES = (
    "Osei",
    "Mbeki",
    "Vasquez",
    "Kowalczyk",
    "Halvorsen",
    "Mensah",
    "Kahale",
    "Figueroa",
    "Nakamura",
    "Raghunathan",
    "Bellucci",
    "Volkov",
    "Adeyemi",
    "Lindgren",
    "Chaudhry",
    "Álvarez",
    "Dahl",
    "Brennan",
    "Okonkwo",
    "Castellanos",
    "Petrov",
    "Moreau",
    "Haddad",
    "Takahashi",
    "Oyelaran",
    "Sørensen",
    "Whitfield",
    "Quispe",
    "Fairweather",
    "Ekström",
)
_EMAIL_DOMAINS = (
    "gmail.com",
    "outlook.com",
    "proton.me",
    "yahoo.co.uk",
    "icloud.com",
    "hotmail.fr",
    "web.de",
    "mail.ru",
    "yandex.ru",
    "qq.com",
    "163.com",
    "fastmail.fm",
)
_VANITY_TLDS = ("photography", "design", "studio", "dev", "io")
_PASSWORD_SYMBOLS = "!*_-+="  # allowed as they are in a URL's user info
# Detectors whose value is a password (in a connection string, a URL, an assignment).
_PASSWORD_DETECTORS = ("CONNECTION_STRING_PASSWORD", "URL_PASSWORD", "PASSWORD_ASSIGNMENT")
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_B64URL = _ALNUM + "-_"


def _ascii(text: str) -> str:
    return "".join(
        c for c in unicodedata.normalize("NFKD", text) if c.isascii() and (c.isalnum() or c == " ")
    )


class _Values:
    """Draws realistic values, each at most once."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()
        self.persons: list[str] = []
        self._names = [(f, last) for f in FIRST_NAMES for last in LAST_NAMES]
        rng.shuffle(self._names)

    def _unique(self, draw: Callable[[], str]) -> str:
        for _ in range(10_000):
            value = draw()
            if value not in self.used:
                self.used.add(value)
                return value
        raise RuntimeError("could not draw an unused value")

    def name_parts(self) -> tuple[str, str]:
        first, last = self._names.pop()
        return first, last

    def person(self) -> str:
        for _ in range(10_000):
            first, last = self.name_parts()
            # A few three-word names: the rule wants two or more capitalized words.
            if self.rng.random() < 0.15:
                name = f"{first} {self.rng.choice(FIRST_NAMES)} {last}"
            else:
                name = f"{first} {last}"
            # No name inside another: each is written only where it is labelled.
            if not any(name in other or other in name for other in self.persons):
                self.persons.append(name)
                self.used.add(name)
                return name
        raise RuntimeError("could not draw an unused name")

    def email(self, vanity: bool = False) -> str:
        rng = self.rng

        def draw() -> str:
            first, last = (_ascii(p).lower().replace(" ", "") for p in self.name_parts())
            local = rng.choice(
                (
                    f"{first}.{last}",
                    f"{first}_{last}{rng.randrange(10, 99)}",
                    f"{first[0]}{last}{rng.randrange(1970, 2005)}",
                    f"{first}.{last[0]}",
                )
            )
            if vanity:
                return f"{first}@{last}.{rng.choice(_VANITY_TLDS)}"
            return f"{local}@{rng.choice(_EMAIL_DOMAINS)}"

        return self._unique(draw)

    def linkedin(self) -> str:
        rng = self.rng

        def draw() -> str:
            first, last = (_ascii(p).lower().replace(" ", "-") for p in self.name_parts())
            slug = f"{first}-{last}-{rng.randrange(16**5, 16**6):x}"
            return rng.choice(
                (
                    f"https://www.linkedin.com/in/{slug}",
                    f"https://www.linkedin.com/in/{slug}/",
                    f"linkedin.com/in/{first}{last}",
                    f"https://uk.linkedin.com/in/{slug}",
                )
            )

        return self._unique(draw)

    def card(self) -> str:
        rng = self.rng

        def draw() -> str:
            brand = rng.choice(("visa", "visa", "mastercard", "amex", "discover"))
            if brand == "visa":
                prefix, length = "4" + str(rng.randrange(100, 1000)), 16
            elif brand == "mastercard":
                prefix, length = str(rng.randrange(51, 56)), 16
            elif brand == "amex":
                prefix, length = rng.choice(("34", "37")), 15
            else:
                prefix, length = "6011", 16
            body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - 1 - len(prefix)))
            number = luhn_complete(body)
            style = rng.choice(("spaces", "spaces", "dashes", "compact"))
            groups = (
                [number[:4], number[4:10], number[10:]]
                if length == 15
                else [number[i : i + 4] for i in range(0, 16, 4)]
            )
            if style == "spaces":
                return " ".join(groups)
            if style == "dashes":
                return "-".join(groups)
            return number

        return self._unique(draw)

    def luhn_number(self) -> str:
        """A Luhn-valid 16-digit number in groups (a decoy: no "card" near it)."""
        rng = self.rng

        def draw() -> str:
            number = luhn_complete("4716" + "".join(str(rng.randrange(10)) for _ in range(11)))
            return " ".join(number[i : i + 4] for i in range(0, 16, 4))

        return self._unique(draw)

    def phone(self, country: str, international: bool) -> str:
        """A valid number (``phonenumbers`` says so) of ``country``, as people write them."""
        import phonenumbers

        rng = self.rng

        def digits(n: int) -> str:
            return "".join(str(rng.randrange(10)) for _ in range(n))

        def draw() -> str:
            for _ in range(1_000):
                text, region = _phone_candidate(country, international, rng, digits)
                parsed = phonenumbers.parse(text, region)
                if phonenumbers.is_valid_number(parsed):
                    return text
            raise RuntimeError(f"no valid {country} number drawn")

        return self._unique(draw)

    def ipv4(self) -> str:
        rng = self.rng

        def draw() -> str:
            while True:
                ip = random_public_ipv4(rng)
                octets = [int(o) for o in ip.split(".")]
                # Leading zeros must show: at least one octet under 100.
                if octets[0] not in _CLIENT_IP_AVOID_FIRST_OCTETS and min(octets) < 100:
                    return ip

        return self._unique(draw)

    def ipv6(self) -> str:
        rng = self.rng

        def draw() -> str:
            while True:
                ip = random_ipv6(rng)
                # Real ISP prefixes only (no documentation range) and a compressible address.
                if not ip.startswith("2001:db8") and "::" in ip:
                    return ip

        return self._unique(draw)

    def password(self) -> str:
        rng = self.rng

        def draw() -> str:
            word = rng.choice(("Summer", "Falcon", "Maple", "Orbit", "Cobalt", "Tundra", "Lilac"))
            tail = "".join(rng.choice(_ALNUM) for _ in range(rng.randrange(5, 9)))
            symbols = "".join(rng.choice(_PASSWORD_SYMBOLS) for _ in range(2))
            return f"{word}{rng.randrange(10, 99)}{symbols[0]}{tail}{symbols[1]}"

        return self._unique(draw)

    def secret(self, detector: str) -> str:
        rng = self.rng

        def chars(alphabet: str, n: int) -> str:
            return "".join(rng.choice(alphabet) for _ in range(n))

        def draw() -> str:
            if detector == "OPENAI_API_KEY":
                if rng.random() < 0.5:
                    return f"sk-proj-{chars(_B64URL, 74)}T3BlbkFJ{chars(_B64URL, 74)}"
                return f"sk-{chars(_ALNUM, 20)}T3BlbkFJ{chars(_ALNUM, 20)}"
            if detector == "ANTHROPIC_API_KEY":
                return f"sk-ant-api03-{chars(_B64URL, 93)}AA"
            if detector == "AWS_ACCESS_KEY_ID":
                return "AKIA" + chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
            if detector == "AWS_SECRET_ACCESS_KEY":
                return chars(_ALNUM + "/+", 40)
            if detector == "GITHUB_TOKEN":
                if rng.random() < 0.5:
                    return f"ghp_{chars(_ALNUM, 36)}"
                return f"github_pat_11{chars(_ALNUM.upper()[:36], 20)}_{chars(_ALNUM, 59)}"
            if detector == "SLACK_TOKEN":
                return (
                    f"xoxb-{rng.randrange(10**11, 10**12)}-{rng.randrange(10**12, 10**13)}-"
                    f"{chars(_ALNUM, 24)}"
                )
            if detector == "STRIPE_KEY":
                return f"sk_live_{chars(_ALNUM, 99)}"
            if detector == "GOOGLE_API_KEY":
                return f"AIza{chars(_B64URL, 35)}"
            if detector == "JWT":
                return jwt_like(rng)
            if detector == "PRIVATE_KEY":
                return pem_private_key(rng)
            raise ValueError(f"unknown detector {detector!r}")

        if detector in _PASSWORD_DETECTORS:
            return self.password()
        return self._unique(draw)


def _phone_candidate(
    country: str, international: bool, rng: random.Random, digits: Callable[[int], str]
) -> tuple[str, str]:
    """``(text, region)``: a number of ``country`` in one of its usual spellings."""
    if country == "CN":
        prefix = rng.choice(("138", "139", "150", "151", "158", "186", "188", "135", "137", "159"))
        number = prefix + digits(8)
        spaced = f"{number[:3]} {number[3:7]} {number[7:]}"
        if international:
            return rng.choice((f"+86 {spaced}", f"+86{number}")), "CN"
        return rng.choice((number, spaced, spaced.replace(" ", "-"))), "CN"
    if country == "US":
        area = rng.choice(("415", "212", "646", "312", "617", "206", "512", "303"))
        exchange = str(rng.randrange(201, 1000))
        line = digits(4)
        if international:
            return f"+1 {area} {exchange} {line}", "US"
        return rng.choice((f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}")), "US"
    if country == "GB":
        mobile = "7" + rng.choice(("400", "500", "700", "800", "900", "723", "852")) + digits(6)
        if international:
            return f"+44 {mobile[:4]} {mobile[4:]}", "GB"
        return f"0{mobile[:4]} {mobile[4:]}", "GB"
    if country == "RU":
        code = "9" + digits(2)
        rest = digits(7)
        if international:
            return f"+7 {code} {rest[:3]}-{rest[3:5]}-{rest[5:]}", "RU"
        return f"8 ({code}) {rest[:3]}-{rest[3:5]}-{rest[5:]}", "RU"
    if country == "AE":
        return f"+971 5{rng.choice('0245')} {digits(3)} {digits(4)}", "AE"
    if country == "IL":
        code = "5" + rng.choice("02348")
        if international:
            return f"+972 {code}-{digits(3)}-{digits(4)}", "IL"
        return f"0{code}-{digits(3)}-{digits(4)}", "IL"
    if country == "DE":
        return f"+49 15{rng.choice('12579')}{digits(1)} {digits(7)}", "DE"
    if country == "IN":
        return f"+91 {rng.choice('6789')}{digits(4)} {digits(5)}", "IN"
    if country == "FR":
        rest = digits(8)
        return f"+33 6 {' '.join(rest[i : i + 2] for i in range(0, 8, 2))}", "FR"
    if country == "BR":
        return f"+55 11 9{digits(4)}-{digits(4)}", "BR"
    if country == "JP":
        return f"+81 90-{digits(4)}-{digits(4)}", "JP"
    raise ValueError(f"no phone plan for {country}")


def luhn_complete(partial: str) -> str:
    """``partial`` with the Luhn check digit appended."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return partial + str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    digits = "".join(c for c in number if c.isdigit())
    return bool(digits) and luhn_complete(digits[:-1]) == digits


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def jwt_like(rng: random.Random) -> str:
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = orjson.dumps(
        {
            "sub": str(rng.randrange(10**9, 10**10)),
            "iat": rng.randrange(1_700_000_000, 1_720_000_000),
        }
    )
    signature = bytes(rng.randrange(256) for _ in range(32))
    return f"{header}.{_b64url(payload)}.{_b64url(signature)}"


def pem_private_key(rng: random.Random) -> str:
    body = base64.b64encode(bytes(rng.randrange(256) for _ in range(288))).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    kind = rng.choice(("RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY"))
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"


# --- text around the values ----------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """The sentence around a value: ``pre + value + post``.

    At the start of a message it is ``start_pre + value + start_post`` (``start_post`` None:
    ``post``); at the end, ``pre + value``. ``closing`` follows the value wherever it is (the
    rest of the code line or URL the value is part of).
    """

    pre: str
    post: str
    start_pre: str = ""
    start_post: str | None = None
    closing: str = ""


# Filler sentences, by script and role. None of them holds anything a rule redacts, a cue
# before a capitalized word, a digit, or a word the moderation stand-in flags.
FILLER: dict[str, dict[str, tuple[str, ...]]] = {
    "latin": {
        "user": (
            "I am putting together the documents for my new job and want to get everything right.",
            "Could you also check the grammar of the rest of my message?",
            "I have been stuck on this for two days, so any help is welcome.",
            "Please keep the answer short and practical.",
            "The deadline for the application is at the end of the month.",
            "My manager asked me to send everything before the weekend.",
            "Can you make the wording a little more formal?",
        ),
        "assistant": (
            "Sure, here is a cleaned-up version of your text.",
            "Of course, I have rewritten the message so it sounds more professional.",
            "Here is a draft you can adapt before sending it.",
            "Let me know if you would like any further changes.",
            "I kept the tone friendly but concise.",
            "Happy to help with the rest of the document as well.",
        ),
    },
    "cjk": {
        "user": (
            "我最近在准备新工作的材料，想把信息整理清楚。",
            "麻烦帮我检查一下下面的内容。",
            "请尽量简短地回答。",
            "我已经卡在这里两天了，非常感谢你的帮助。",
            "经理让我在周末之前把所有东西都发给他。",
        ),
        "assistant": (
            "好的，下面是整理后的内容。",
            "当然可以，我已经帮你改好了。",
            "如果还需要修改，请告诉我。",
            "我保留了原来的语气，只是让句子更通顺。",
        ),
    },
    "arabic": {
        "user": (
            "أنا أجهز المستندات لوظيفتي الجديدة وأريد أن يكون كل شيء صحيحًا.",
            "هل يمكنك مساعدتي في ترتيب هذه المعلومات؟",
            "شكرًا جزيلًا على المساعدة.",
            "أرجو أن تكون الإجابة قصيرة وواضحة.",
        ),
        "assistant": (
            "بالتأكيد، هذه نسخة منظمة من النص.",
            "إليك مسودة يمكنك تعديلها قبل الإرسال.",
            "أخبرني إذا كنت تريد أي تغييرات أخرى.",
        ),
    },
    "hebrew": {
        "user": (
            "אני מכין את המסמכים לעבודה החדשה שלי ורוצה שהכול יהיה מדויק.",
            "תוכל לעזור לי לסדר את המידע הזה?",
            "תודה רבה על העזרה.",
            "אשמח לתשובה קצרה וברורה.",
        ),
        "assistant": (
            "בטח, הנה גרסה מסודרת של הטקסט.",
            "הנה טיוטה שאפשר לערוך לפני השליחה.",
            "תגיד לי אם צריך עוד שינויים.",
        ),
    },
    "cyrillic": {
        "user": (
            "Я готовлю документы для новой работы и хочу, чтобы всё было правильно.",
            "Помогите, пожалуйста, привести эту информацию в порядок.",
            "Заранее спасибо за помощь.",
            "Ответьте, пожалуйста, коротко и по делу.",
        ),
        "assistant": (
            "Конечно, вот аккуратная версия вашего текста.",
            "Вот черновик, который можно поправить перед отправкой.",
            "Дайте знать, если нужно что-то изменить.",
        ),
    },
}
_JOINER = {"cjk": ""}

# (entity kind, language) -> frames. Languages: latin, cjk, arabic, hebrew, cyrillic.
FRAMES: dict[tuple[str, str], tuple[Frame, ...]] = {
    ("EMAIL_ADDRESS", "latin"): (
        Frame(
            "Please send the signed contract to ",
            " before Friday.",
            "",
            " is my personal address, please use it for the contract.",
        ),
        Frame(
            "You can reach me at ", " if anything is unclear.", "", " is the best way to reach me."
        ),
    ),
    ("EMAIL_ADDRESS", "cjk"): (
        Frame("请把合同发到", "，谢谢。", "", "是我的邮箱，有问题请发邮件。"),
        Frame("请发到", "谢谢", "", "是我的邮箱谢谢"),
        Frame("我的邮箱是", "，请尽快回复。", "", "是我常用的邮箱。"),
    ),
    ("EMAIL_ADDRESS", "arabic"): (
        Frame("يرجى إرسال العقد إلى ", " قبل يوم الجمعة.", "", " هو بريدي الإلكتروني الشخصي."),
    ),
    ("EMAIL_ADDRESS", "hebrew"): (
        Frame("אנא שלח את החוזה אל ", " לפני יום שישי.", "", " זו כתובת המייל שלי."),
    ),
    ("EMAIL_ADDRESS", "cyrillic"): (
        Frame("Пожалуйста, отправьте договор на ", " до пятницы.", "", " — это моя личная почта."),
    ),
    ("PHONE_NUMBER/cue", "latin"): (
        Frame("My phone number is ", ", call me after six.", "Phone: "),
        Frame("Text me on WhatsApp ", " if the plans change.", "WhatsApp: "),
        Frame("You can ring my mobile on ", " during the day.", "Mobile "),
    ),
    ("PHONE_NUMBER/cue", "cjk"): (
        Frame("我的手机号是", "，请晚上打给我。", "手机", "是我的号码，有事打给我。"),
        Frame("加我wechat ", "吧", "wechat ", "，加我吧。"),
        Frame("有事请打电话", "找我。", "电话：", "，工作日都可以打。"),
    ),
    ("PHONE_NUMBER/cue", "arabic"): (
        Frame("رقمي على WhatsApp هو ", " اتصل بي مساءً.", "WhatsApp: "),
    ),
    ("PHONE_NUMBER/cue", "hebrew"): (
        Frame("המספר שלי ב-WhatsApp הוא ", " אפשר להתקשר בערב.", "WhatsApp: "),
    ),
    ("PHONE_NUMBER/cue", "cyrillic"): (
        Frame("Мой номер в WhatsApp: ", ", звоните вечером.", "WhatsApp "),
    ),
    ("PHONE_NUMBER/plus", "latin"): (
        Frame("You can reach me at ", " in the evenings.", "", " is the best number to reach me."),
        Frame(
            "If the courier gets lost, they can ring ",
            " and ask for me.",
            "",
            " works for the courier too.",
        ),
    ),
    ("PHONE_NUMBER/plus", "cjk"): (Frame("你可以打", "联系我。", "", "是我的号码，晚上打给我。"),),
    ("PHONE_NUMBER/plus", "arabic"): (
        Frame("يمكنك التواصل معي على ", " في المساء.", "", " هو رقمي الشخصي."),
    ),
    ("PHONE_NUMBER/plus", "hebrew"): (
        Frame("אפשר להשיג אותי במספר ", " בערב.", "", " זה המספר שלי."),
    ),
    ("PHONE_NUMBER/plus", "cyrillic"): (
        Frame("Звоните мне по номеру ", " вечером.", "", " — мой личный номер."),
    ),
    ("CREDIT_CARD", "latin"): (
        Frame(
            "My card number is ",
            " and it expires in 2027.",
            "",
            " is the card I used for the booking.",
        ),
        Frame(
            "I paid with the Visa card ",
            " but the charge failed.",
            "",
            " is my card, why was it declined?",
        ),
    ),
    ("CREDIT_CARD", "cjk"): (
        Frame("我的Visa card卡号是", "，请帮我查一下扣款。", "", "是我的card卡号，请帮我查一下。"),
    ),
    ("CREDIT_CARD", "arabic"): (
        Frame("رقم بطاقتي (card) هو ", " وتنتهي صلاحيتها في 2027.", "", " هو رقم بطاقتي (card)."),
    ),
    ("CREDIT_CARD", "hebrew"): (
        Frame("מספר הכרטיס שלי (card): ", " בתוקף עד 2027.", "", " זה מספר הכרטיס (card) שלי."),
    ),
    ("CREDIT_CARD", "cyrillic"): (
        Frame(
            "Номер моей карты (card): ",
            ", срок действия до 2027 года.",
            "",
            " — номер моей карты (card).",
        ),
    ),
    ("URL", "latin"): (
        Frame(
            "Here is my LinkedIn profile: ",
            " if you want to check my experience.",
            "",
            " is my profile, please review it.",
        ),
        Frame(
            "Add a link to ",
            " at the bottom of my resume.",
            "",
            " should go at the bottom of my resume.",
        ),
    ),
    ("URL", "cjk"): (
        Frame("这是我的领英主页", "，请帮我看看简历。", "", "是我的领英主页，请帮我看看。"),
    ),
    ("URL", "arabic"): (Frame("هذا ملفي على لينكدإن: ", " أرجو مراجعته.", "", " هو ملفي الشخصي."),),
    ("URL", "hebrew"): (
        Frame("זה הפרופיל שלי בלינקדאין: ", " אשמח שתעבור עליו.", "", " זה הפרופיל שלי."),
    ),
    ("URL", "cyrillic"): (
        Frame("Вот мой профиль в LinkedIn: ", " посмотрите, пожалуйста.", "", " — мой профиль."),
    ),
    ("IP_ADDRESS", "latin"): (
        Frame(
            "My home IP address is ",
            ", can you tell me roughly where it is located?",
            "",
            " is my IP address, is it static or dynamic?",
        ),
        Frame(
            "The router shows my public IP as ",
            " right now.",
            "",
            " is what the router shows as my public address.",
        ),
    ),
    ("IP_ADDRESS", "cjk"): (
        Frame("我家的IP地址是", "，能帮我查一下位置吗？", "", "是我的IP地址，是固定的吗？"),
    ),
    ("IP_ADDRESS", "arabic"): (
        Frame("عنوان IP الخاص بي هو ", " هل يمكنك تحديد موقعه؟", "", " هو عنوان IP الخاص بي."),
    ),
    ("IP_ADDRESS", "hebrew"): (
        Frame("כתובת ה-IP שלי היא ", " אפשר לדעת איפה זה?", "", " זו כתובת ה-IP שלי."),
    ),
    ("IP_ADDRESS", "cyrillic"): (
        Frame(
            "Мой IP-адрес ",
            ", подскажите, где я нахожусь?",
            "",
            " — это мой IP-адрес, он статический?",
        ),
    ),
}

# SECRET: the key kinds' names and the code that carries the assignment-style ones.
_SECRET_LABELS = {
    "OPENAI_API_KEY": "OpenAI API key",
    "ANTHROPIC_API_KEY": "Anthropic API key",
    "AWS_ACCESS_KEY_ID": "AWS access key id",
    "GITHUB_TOKEN": "GitHub token",
    "SLACK_TOKEN": "Slack bot token",
    "STRIPE_KEY": "Stripe secret key",
    "GOOGLE_API_KEY": "Google Maps API key",
    "JWT": "session token",
    "PRIVATE_KEY": "server private key",
}
# Code around a secret: ``(before, after)``, the secret between.
_SECRET_CODE = {
    "AWS_SECRET_ACCESS_KEY": ("[default]\naws_secret_access_key = ", "\nregion = eu-west-1"),
    "CONNECTION_STRING_PASSWORD": (
        "DATABASE_URL=postgresql://app_user:",
        "@db-prod.internal:5432/orders",
    ),
    "URL_PASSWORD": ("git clone https://deploy:", "@git.acme-corp.net/shop/backend.git"),
    "PASSWORD_ASSIGNMENT": ('DB_HOST = "db-prod.internal"\nDB_PASSWORD = "', '"\nDB_PORT = 5432'),
}
_SECRET_SENTENCES = {
    "latin": Frame(
        "My {label} is ",
        ", why does every request return 401?",
        "",
        " is my {label}, why does every request return 401?",
    ),
    "cjk": Frame(
        "我的{label}是", "，为什么一直返回401？", "", "是我的{label}，为什么一直返回401？"
    ),
    "arabic": Frame(
        "مفتاح {label} الخاص بي هو ", " لماذا يظهر الخطأ 401؟", "", " هو مفتاح {label} الخاص بي."
    ),
    "hebrew": Frame("ה-{label} שלי הוא ", " למה מתקבלת שגיאה 401?", "", " זה ה-{label} שלי."),
    "cyrillic": Frame(
        "Мой {label}: ",
        ", почему каждый запрос возвращает 401?",
        "",
        " — мой {label}, почему он не работает?",
    ),
}
_CODE_INTRO = {
    "latin": ("Why does this config fail?\n", "\nIt worked yesterday."),
    "cjk": ("帮我看看这个配置哪里错了：\n", "\n昨天还能用。"),
    "arabic": ("لماذا يفشل هذا الإعداد؟\n", "\nكان يعمل بالأمس."),
    "hebrew": ("למה ההגדרה הזאת נכשלת?\n", "\nאתמול זה עבד."),
    "cyrillic": ("Почему не работает этот конфиг?\n", "\nВчера всё работало."),
}

# PERSON: (frame, positions it reads naturally in), by cue.
_GREETING_POSITIONS = ("start", "middle")
_SIGNOFF_POSITIONS = ("middle", "end")
_ALL_POSITIONS = POSITIONS
PERSON_FRAMES: dict[str, tuple[Frame, tuple[str, ...]]] = {
    "my name is": (
        Frame("My name is ", " and I am applying for the analyst role.", "My name is "),
        _ALL_POSITIONS,
    ),
    "my name's": (
        Frame("Hey there, my name's ", " and I run a small bakery.", "My name's "),
        _ALL_POSITIONS,
    ),
    "i am": (Frame("I am ", ", a second-year nursing student.", "I am "), _ALL_POSITIONS),
    "i'm": (Frame("I'm ", " from the procurement team.", "I'm "), _ALL_POSITIONS),
    "this is": (
        Frame("This is ", " from the front office, about the invoice.", "This is "),
        _ALL_POSITIONS,
    ),
    "dear": (
        Frame(
            "Please draft a reply that begins:\n\nDear ",
            ",\n\nthank you for the quick answer.",
            "Dear ",
        ),
        _GREETING_POSITIONS,
    ),
    "hi": (
        Frame("Start the email with: Hi ", ", could you look at the attached schedule?", "Hi "),
        _GREETING_POSITIONS,
    ),
    "hello": (
        Frame("The message should open with Hello ", ", thanks for the update.", "Hello "),
        _GREETING_POSITIONS,
    ),
    "hey": (
        Frame("Rewrite this text: hey ", ", are we still on for tomorrow?", "Hey "),
        _GREETING_POSITIONS,
    ),
}
_SIGNOFFS = {
    "regards,": "Regards,",
    "best regards,": "Best regards,",
    "kind regards,": "Kind regards,",
    "warm regards,": "Warm regards,",
    "sincerely,": "Yours sincerely,",
    "faithfully,": "Yours faithfully,",
    "yours truly,": "Yours truly,",
    "thanks,": "Thanks,",
    "thank you,": "Thank you,",
    "cheers,": "Cheers,",
    "signed,": "Signed,",
}
for _cue, _written in _SIGNOFFS.items():
    PERSON_FRAMES[_cue] = (
        Frame(f"\n\n{_written}\n", "\n\nP.S. the forms are attached.", f"{_written}\n"),
        _SIGNOFF_POSITIONS,
    )
PERSON_FRAMES["name:"] = (
    Frame(
        "Fill in the form:\nName: ", "\nPosition: data analyst\nStart date: next month", "Name: "
    ),
    _ALL_POSITIONS,
)
# Notation cases for PERSON: these cues, in turn.
_PERSON_NOTATION_CUES = ("hello", "name:", "thanks,", "my name is", "dear")


# --- composing messages --------------------------------------------------------------------------


class _Message:
    """Text built piece by piece, remembering where the marked pieces went."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0

    def add(self, text: str) -> _Message:
        self.parts.append(text)
        self.length += len(text)
        return self

    def mark(self, text: str) -> tuple[int, int]:
        start = self.length
        self.add(text)
        return start, self.length

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _language_of(script: str, index: int) -> str:
    """RTL alternates Arabic and Hebrew; the others are their own language."""
    if script == "rtl":
        return ("arabic", "hebrew")[index % 2]
    return script


def _filler(rng: random.Random, language: str, role: str, sentences: int = 1) -> str:
    bank = FILLER[language][role]
    picked = rng.sample(bank, k=min(sentences, len(bank)))
    return _JOINER.get(language, " ").join(picked)


def _place(
    rng: random.Random,
    language: str,
    role: str,
    position: str,
    frame: Frame,
    written: Written,
) -> tuple[str, int, int]:
    """A message holding ``written`` at ``position``: ``(text, start, end)`` of the value."""
    joiner = _JOINER.get(language, " ")
    message = _Message()
    if position == "start":
        pre, post = frame.start_pre, frame.post if frame.start_post is None else frame.start_post
    else:
        pre, post = frame.pre, frame.post
    if position != "start":
        message.add(_filler(rng, language, role)).add(joiner if not pre.startswith("\n") else "")
    pre = _padded(pre, written.pad_before, before=True)
    if position != "end" and not frame.closing:
        post = _padded(post, written.pad_after, before=False)
    message.add(pre)
    start, end = message.mark(written.value)
    message.add(written.suffix).add(frame.closing)
    if position != "end":
        message.add(post).add(joiner).add(_filler(rng, language, role))
    return message.text, start, end


def _padded(text: str, pad: str, before: bool) -> str:
    """``text`` with its space next to the value replaced by ``pad``; where there is no space,
    ``pad`` is added next to a letter (Chinese runs on without spaces) but not next to
    punctuation that belongs to the value's syntax (a quote, ``:``, ``=``)."""
    if not pad:
        return text
    edge = text[-1:] if before else text[:1]
    if edge == " ":
        return text[:-1] + pad if before else pad + text[1:]
    if edge == "" or edge.isalpha():
        return text + pad if before else pad + text
    return text


@dataclass
class _Builder:
    rng: random.Random
    values: _Values
    conversations: list[CaseConversation] = field(default_factory=list)
    placed: list[PlacedValue] = field(default_factory=list)
    decoys: list[Decoy] = field(default_factory=list)
    counter: int = 0

    def key(self, kind: str) -> str:
        self.counter += 1
        return f"pii-{self.counter:04d}-{kind}"

    def conversation(
        self,
        key: str,
        messages: dict[int, str],
        language: str,
        client_ip: str,
        rounds: int = 2,
    ) -> None:
        """A conversation of ``rounds`` rounds: ``messages`` at their indexes, filler elsewhere."""
        rounds = max(rounds, max(messages) // 2 + 1)
        texts = []
        for i in range(2 * rounds):
            role = ROLES[i % 2]
            texts.append(
                {"role": role, "content": messages.get(i) or _filler(self.rng, language, role, 2)}
            )
        self.conversations.append(CaseConversation(key, tuple(texts), client_ip))


def _placement(k: int) -> tuple[int, str]:
    """The k-th case's message index and role: first round user, first round assistant, later
    user, later assistant, in turn."""
    index = (0, 1, 2, 3)[k % 4]
    return index, ROLES[index % 2]


def _case_id(
    entity: str, detail: str, notation: str, script: str, position: str, index: int, serial: int
) -> str:
    head = f"{entity}:{detail}" if detail else entity
    return f"{head}/{notation}/{script}/{position}/{ROLES[index % 2]}-m{index}/#{serial:03d}"


def _add_case(
    b: _Builder,
    *,
    entity: str,
    detail: str,
    notation: str,
    script: str,
    position: str,
    k: int,
    frame: Frame,
    written: Written,
    canonical: str,
    client_ip: str | None = None,
    extra: Callable[[_Builder, str, dict[int, str]], None] | None = None,
) -> None:
    index, role = _placement(k)
    language = _language_of(script, k)
    text, start, end = _place(b.rng, language, role, position, frame, written)
    key = b.key(entity.lower().replace("_", "-"))
    serial = len(b.placed) + 1
    b.placed.append(
        PlacedValue(
            case_id=_case_id(entity, detail, notation, script, position, index, serial),
            conversation_key=key,
            turn_index=index,
            role=role,
            entity_type=entity,
            notation=notation,
            script=script,
            position=position,
            start=start,
            end=end,
            value=text[start:end],
            canonical=canonical,
            detail=detail,
        )
    )
    messages = {index: text}
    if extra is not None:
        extra(b, key, messages)
    b.conversation(key, messages, language, client_ip or b.values.ipv4(), rounds=2 + (k % 3 == 0))


# --- the cases -----------------------------------------------------------------------------------


def _person_cases(b: _Builder) -> None:
    k = 0
    for cue in PERSON_CUES:
        frame, positions = PERSON_FRAMES[cue]
        name = b.values.person()
        _add_case(
            b,
            entity="PERSON",
            detail=cue,
            notation="plain",
            script="latin",
            position=positions[k % len(positions)],
            k=k,
            frame=frame,
            written=write_in(name, "plain"),
            canonical=name,
        )
        k += 1
    for n, notation in enumerate(NOTATIONS[1:]):
        for m in range(3):
            cue = _PERSON_NOTATION_CUES[(n + m) % len(_PERSON_NOTATION_CUES)]
            frame, positions = PERSON_FRAMES[cue]
            name = b.values.person()
            _add_case(
                b,
                entity="PERSON",
                detail=cue,
                notation=notation,
                script="latin",
                position=positions[k % len(positions)],
                k=k,
                frame=frame,
                written=write_in(name, notation),
                canonical=name,
            )
            k += 1


_PHONE_COUNTRIES = {
    ("cue", "latin"): ("US", "GB"),
    ("cue", "cjk"): ("CN",),
    ("cue", "arabic"): ("AE",),
    ("cue", "hebrew"): ("IL",),
    ("cue", "cyrillic"): ("RU",),
    ("plus", "latin"): ("GB", "US", "DE", "FR", "IN", "BR", "JP"),
    ("plus", "cjk"): ("CN",),
    ("plus", "arabic"): ("AE",),
    ("plus", "hebrew"): ("IL",),
    ("plus", "cyrillic"): ("RU",),
}


def _grid_cases(b: _Builder, entity: str, detail: str, draw: Callable[[str, int], str]) -> None:
    """One case per script and notation, positions and placements in turn."""
    frame_key = f"{entity}/{detail}" if detail else entity
    k = 0
    for script in SCRIPTS:
        for notation in NOTATIONS:
            language = _language_of(script, k)
            frames = FRAMES[(frame_key, language)]
            value = draw(language, k)
            _add_case(
                b,
                entity=entity,
                detail=detail,
                notation=notation,
                script=script,
                position=POSITIONS[k % 3],
                k=k,
                frame=frames[k % len(frames)],
                written=write_in(value, notation),
                canonical=value,
            )
            k += 1


def _secret_frame(detector: str, language: str, value: str) -> tuple[Frame, str]:
    """The frame of a secret, and the detector's own value (a password for the code ones)."""
    if detector in _SECRET_CODE:
        before, after = _SECRET_CODE[detector]
        intro, outro = _CODE_INTRO[language]
        return Frame(intro + before, outro, before, outro, closing=after), value
    sentence = _SECRET_SENTENCES[language]
    label = _SECRET_LABELS[detector]
    return (
        Frame(
            sentence.pre.replace("{label}", label),
            sentence.post.replace("{label}", label),
            sentence.start_pre.replace("{label}", label),
            None if sentence.start_post is None else sentence.start_post.replace("{label}", label),
        ),
        value,
    )


def _secret_cases(b: _Builder) -> None:
    k = 0
    # Every detector, plain, in every script in turn.
    for detector in SECRET_DETECTORS:
        script = SCRIPTS[k % len(SCRIPTS)]
        language = _language_of(script, k)
        value = b.values.secret(detector)
        frame, value = _secret_frame(detector, language, value)
        position = POSITIONS[k % 3]
        if detector == "PRIVATE_KEY" and position == "middle":
            position = "end"
        _add_case(
            b,
            entity="SECRET",
            detail=detector,
            notation="plain",
            script=script,
            position=position,
            k=k,
            frame=frame,
            written=write_in(value, "plain"),
            canonical=value,
        )
        k += 1
    # Each script and notation, on the single-token keys in turn.
    rotating = (
        "OPENAI_API_KEY",
        "GITHUB_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "ANTHROPIC_API_KEY",
        "STRIPE_KEY",
        "GOOGLE_API_KEY",
        "SLACK_TOKEN",
        "PASSWORD_ASSIGNMENT",
    )
    for script in SCRIPTS:
        for notation in NOTATIONS:
            if script == "latin" and notation == "plain":
                continue
            detector = rotating[k % len(rotating)]
            if detector in _SECRET_CODE and notation in ("nbsp", "line_break"):
                # A quoted password has no space to be an NBSP, nor a line to wrap.
                detector = rotating[(k + 1) % len(rotating)]
            language = _language_of(script, k)
            frame, value = _secret_frame(detector, language, b.values.secret(detector))
            _add_case(
                b,
                entity="SECRET",
                detail=detector,
                notation=notation,
                script=script,
                position=POSITIONS[k % 3],
                k=k,
                frame=frame,
                written=write_in(value, notation),
                canonical=value,
            )
            k += 1


def _ip_cases(b: _Builder) -> None:
    k = 0
    for script in SCRIPTS:
        for notation in IP_NOTATIONS:
            language = _language_of(script, k)
            frames = FRAMES[("IP_ADDRESS", language)]
            address = b.values.ipv6() if _ip_is_v6(notation) else b.values.ipv4()
            extra = _resolver_decoy if k % 5 == 2 else None
            _add_case(
                b,
                entity="IP_ADDRESS",
                detail="",
                notation=notation,
                script=script,
                position=POSITIONS[k % 3],
                k=k,
                frame=frames[k % len(frames)],
                written=Written(
                    write_ip(address, notation), suffix=ZONE_ID if notation == "zone_id" else ""
                ),
                canonical=address,
                client_ip=address,
                extra=extra,
            )
            k += 1


def _resolver_decoy(b: _Builder, key: str, messages: dict[int, str]) -> None:
    """The reply after the user's message mentions a public resolver: no client's address."""
    index = max(messages) + 1 if max(messages) % 2 == 0 else max(messages) + 2
    message = _Message().add("If lookups are slow, try the public resolver ")
    start, end = message.mark(b.rng.choice(("8.8.8.8", "1.1.1.1", "9.9.9.9")))
    message.add(" in your network settings.")
    messages[index] = message.text
    b.decoys.append(
        Decoy(
            f"decoy/non_client_ip/#{len(b.decoys) + 1:03d}",
            key,
            index,
            "non_client_ip",
            start,
            end,
            message.text[start:end],
        )
    )


# --- decoys --------------------------------------------------------------------------------------

# Each: (user message, assistant message), pieces being text or (kind, value) for a decoy.
Piece = str | tuple[str, str]


def _decoy_conversations(rng: random.Random, values: _Values) -> list[tuple[Piece, ...]]:
    hexdigits = "0123456789abcdef"
    sha256 = hashlib.sha256(str(rng.random()).encode()).hexdigest()
    git = hashlib.sha1(str(rng.random()).encode()).hexdigest()
    uuid = "".join(rng.choice(hexdigits) for _ in range(32))
    uuid = f"{uuid[:8]}-{uuid[8:12]}-4{uuid[13:16]}-a{uuid[17:20]}-{uuid[20:]}"
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(rng.randrange(256) for _ in range(90))
    data_uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    luhn = values.luhn_number()
    return [
        (
            "Where should I write about a late delivery? The shop lists ",
            ("generic_mailbox", "support@zalando.de"),
            " and ",
            ("generic_mailbox", "info@acme-widgets.co.uk"),
            " on its site.",
            "\x00",
            "Start with ",
            ("generic_mailbox", "support@zalando.de"),
            "; automatic answers come from ",
            ("generic_mailbox", "noreply@github.com"),
            ", so do not reply to those.",
        ),
        (
            "The documentation uses ",
            ("placeholder_email", "alice.wong@example.com"),
            " and ",
            ("placeholder_email", "someone@yourcompany.com"),
            " in its samples. Should I keep them in my tutorial?",
            "\x00",
            "Yes, addresses such as ",
            ("placeholder_email", "jane@example.org"),
            " are reserved for documentation, so they are safe to publish.",
        ),
        (
            "Call the front desk at ",
            ("phone_without_cue", "0161 496 0000"),
            " to book a table, or ask the concierge. Rewrite this for a hotel leaflet.",
            "\x00",
            "Book your table with the front desk at ",
            ("phone_without_cue", "0161 496 0000"),
            " or ask our concierge.",
        ),
        (
            'My favourite film? This is "',
            ("quoted_title", "Gone With The Wind"),
            '", hands down. Write a short review of it.',
            "\x00",
            "Here is a short review. I am “",
            ("quoted_title", "The Great Gatsby"),
            "” obsessed too, but this film is a classic for good reasons.",
        ),
        (
            'Hello "',
            ("quoted_title", "Pride And Prejudice"),
            '" fans, this is my book club invitation. Make it sound warmer.',
            "\x00",
            "Of course. Dear '",
            ("quoted_title", "Little Women"),
            "' readers, you are warmly invited to our next meeting.",
        ),
        (
            "I am ",
            ("capitalized_words", "Very Happy"),
            " with how the essay turned out, thank you so much for the help!",
            "\x00",
            "I'm ",
            ("capitalized_words", "Really Glad"),
            " it helped. Good luck with the submission.",
        ),
        (
            "The installer page says sha256: ",
            ("sha256", sha256),
            ". How do I verify the download on Windows?",
            "\x00",
            "Run certutil -hashfile setup.exe SHA256 and compare the output with ",
            ("sha256", sha256),
            ".",
        ),
        (
            "Why does the API return not found for the order id ",
            ("uuid", uuid),
            "? It exists in the database.",
            "\x00",
            "Check that ",
            ("uuid", uuid),
            " is sent in lower case and without surrounding quotes.",
        ),
        (
            "I committed with hash ",
            ("git_hash", git),
            " but git show ",
            ("git_hash", git[:7]),
            " says unknown revision.",
            "\x00",
            "Run git fetch first; the short form ",
            ("git_hash", git[:7]),
            " only resolves once the commit is local.",
        ),
        (
            'Why does this image not show?\n<img src="',
            ("data_uri", data_uri),
            '" alt="logo">',
            "\x00",
            "The image data is truncated, so the browser cannot decode it.",
        ),
        (
            "Why does my script accept short passwords?\n```python\nusername = input()\n",
            ("password_input", "password = input()"),
            '\nif len(password) < 8:\n    print("too short")\n```',
            "\x00",
            "It prints a warning but never stops. Use a loop, and read the password with\n",
            ("password_input", 'password = getpass.getpass("Password: ")'),
            "\nso that it is not echoed.",
        ),
        (
            "The README says to run export OPENAI_API_KEY=",
            ("placeholder_key", "sk-xxxxxxxxxxxxxxxxxxxxxxxx"),
            " first. Is that a real key?",
            "\x00",
            "No, it is a placeholder. Replace it with your own key, and in code write\n"
            'client = OpenAI(api_key="',
            ("placeholder_key", "sk-..."),
            '") only for quick tests.',
        ),
        (
            "After upgrading from ",
            ("version_string", "1.2.3.4.5"),
            " the build fails on Windows ",
            ("version_string", "10.0.19041.1"),
            ". Any idea?",
            "\x00",
            "Version ",
            ("version_string", "1.2.3.4.5"),
            " changed the default compiler flags; Chrome ",
            ("version_string", "120.0.6099.109"),
            " is not involved.",
        ),
        (
            "How do I check whether DNS works on my home server?",
            "\x00",
            "Run ping ",
            ("non_client_ip", "8.8.8.8"),
            ", then nslookup wikipedia.org ",
            ("non_client_ip", "1.1.1.1"),
            ". For IPv6 try ping -6 ",
            ("non_client_ip", "2001:4860:4860::8888"),
            ". The router is usually at ",
            ("non_client_ip", "192.168.1.1"),
            " and the machine itself at ",
            ("non_client_ip", "127.0.0.1"),
            ".",
        ),
        (
            "The city has ",
            ("grouped_number", "1,234,567"),
            " residents and a budget of ",
            ("grouped_number", "12,345,678.90"),
            " euros. Write one sentence about it.",
            "\x00",
            "With ",
            ("grouped_number", "1,234,567"),
            " residents, the city spends about ten euros per person each year.",
        ),
        (
            "The parcel label says ",
            ("luhn_without_card", luhn),
            " as the tracking reference. When will it arrive?",
            "\x00",
            "Enter ",
            ("luhn_without_card", luhn),
            " on the courier's site to see the delivery window.",
        ),
        (
            "Compare ",
            ("non_profile_url", "https://www.linkedin.com/company/openai"),
            " with ",
            ("non_profile_url", "https://github.com/psf/requests"),
            " as sources for a company profile.",
            "\x00",
            "The first is a company page and the second a code repository.",
        ),
        (
            "The report by ",
            ("name_without_cue", "Marcus Lindqvist"),
            " was thorough, and ",
            ("name_without_cue", "Priya Raman"),
            " reviewed it. Summarize that in one line.",
            "\x00",
            "A thorough report, reviewed by a colleague.",
        ),
        (
            "服务器版本是",
            ("version_string", "1.2.3.4.5"),
            "，DNS设置成",
            ("non_client_ip", "8.8.8.8"),
            "了，为什么还是很慢？",
            "\x00",
            "可以先试试把DNS换成",
            ("non_client_ip", "1.1.1.1"),
            "，再看看速度。",
        ),
    ]


# Sixteen endings against five openings: 80 distinct first messages.
_FAN_ENDINGS = (
    "My favourite song is the one about the rainy autumn.",
    "We drove six hours to see the show.",
    "Please keep it under a hundred words.",
    "Mention the acoustic set at the end.",
    "It is for a birthday note from my daughter.",
    "Add a line about the friendship bracelets.",
    "Make it sound less formal.",
    "I want to post it in the fan club newsletter.",
    "Keep my spelling of the album title.",
    "It should fit on one page.",
    "End with a question about the next album.",
    "Say that I learned the guitar because of her.",
    "Thank her for the charity concert.",
    "Keep it cheerful and short.",
    "Mention that my whole family sings along.",
    "It is for the radio station's fan wall.",
)
_FAN_OPENINGS = (
    ("Write a short fan letter that starts with: Dear ", ", your songs got me through college."),
    ("Hi ", ", if you ever read this, thank you for the tour! Can you polish this message?"),
    ("Help me finish this note: Hello ", ", I am writing a school report about your career."),
    ("Make this sound more excited: Dear ", ", I have loved your music since I was ten."),
    ("Correct the grammar: Hi ", ", me and my sister is coming to the concert next summer."),
)
_FAN_REPLIES = (
    "Here is a polished version you could send:\n\nDear {c}, your music has meant so much to me.",
    "Sure! Hello {c}, thank you for the songs that carried me through the hardest year.",
    "Here you go:\n\nHi {c}, we cannot wait to see you on stage next summer.",
)


def _decoys(b: _Builder) -> None:
    for pieces in _decoy_conversations(b.rng, b.values):
        key = b.key("decoy")
        messages: dict[int, str] = {}
        marks: list[tuple[int, str, int, int]] = []
        index, message = 0, _Message()
        for piece in (*pieces, "\x00"):
            if piece == "\x00":
                messages[index] = message.text
                index, message = index + 1, _Message()
            elif isinstance(piece, tuple):
                kind, value = piece
                start, end = message.mark(value)
                marks.append((index, kind, start, end))
            else:
                message.add(piece)
        for turn, kind, start, end in marks:
            b.decoys.append(
                Decoy(
                    f"decoy/{kind}/#{len(b.decoys) + 1:03d}",
                    key,
                    turn,
                    kind,
                    start,
                    end,
                    messages[turn][start:end],
                )
            )
        language = "cjk" if any("\u4e00" <= c <= "\u9fff" for c in messages[0]) else "latin"
        b.conversation(key, messages, language, b.values.ipv4(), rounds=1)


def _public_figure(b: _Builder, conversations: int) -> None:
    for n in range(conversations):
        key = b.key("public-figure")
        pre, post = _FAN_OPENINGS[n % len(_FAN_OPENINGS)]
        user = _Message().add(pre)
        u_start, u_end = user.mark(PUBLIC_FIGURE)
        user.add(post).add(" ").add(_FAN_ENDINGS[n % len(_FAN_ENDINGS)])
        reply_template = _FAN_REPLIES[n % len(_FAN_REPLIES)]
        head, tail = reply_template.split("{c}")
        reply = _Message().add(head)
        r_start, r_end = reply.mark(PUBLIC_FIGURE)
        reply.add(tail)
        for turn, start, end in ((0, u_start, u_end), (1, r_start, r_end)):
            b.decoys.append(
                Decoy(
                    f"decoy/public_figure/#{len(b.decoys) + 1:03d}",
                    key,
                    turn,
                    "public_figure",
                    start,
                    end,
                    PUBLIC_FIGURE,
                )
            )
        b.conversation(key, {0: user.text, 1: reply.text}, "latin", b.values.ipv4(), rounds=1)


def build_case_set(
    seed: int = 0, *, public_figure_conversations: int = PUBLIC_FIGURE_CONVERSATIONS
) -> PiiCaseSet:
    """The evaluation set: the same conversations and labels for the same seed."""
    rng = random.Random(seed)
    b = _Builder(rng, _Values(rng))
    _person_cases(b)
    for detail in ("cue", "plus"):
        _grid_cases(
            b,
            "PHONE_NUMBER",
            detail,
            lambda language, k, d=detail: b.values.phone(
                _PHONE_COUNTRIES[(d, language)][k % len(_PHONE_COUNTRIES[(d, language)])],
                international=d == "plus",
            ),
        )
    _grid_cases(b, "EMAIL_ADDRESS", "", lambda language, k: b.values.email(vanity=k % 5 == 1))
    _grid_cases(b, "CREDIT_CARD", "", lambda language, k: b.values.card())
    _grid_cases(b, "URL", "", lambda language, k: b.values.linkedin())
    _secret_cases(b)
    _ip_cases(b)
    _decoys(b)
    _public_figure(b, public_figure_conversations)
    cases = PiiCaseSet(seed, tuple(b.conversations), tuple(b.placed), tuple(b.decoys))
    check_case_set(cases)
    return cases


def check_case_set(cases: PiiCaseSet) -> None:
    """Raise if a label does not point at its value, or a value leaks outside its labels."""
    keys = [c.key for c in cases.conversations]
    if len(set(keys)) != len(keys):
        raise AssertionError("conversation keys repeat")
    ips = [c.client_ip for c in cases.conversations]
    if len(set(ips)) != len(ips):
        raise AssertionError("client IPs repeat")
    for label in (*cases.values, *cases.decoys):
        content = cases.content(label.conversation_key, label.turn_index)
        if content[label.start : label.end] != label.value:
            raise AssertionError(f"{_label_id(label)}: offsets do not hold the value")
    texts = [m["content"] for c in cases.conversations for m in c.messages]
    for value in cases.values:
        # Each value is written at its own label only (so finding it elsewhere is a leak).
        if sum(t.count(value.value) for t in texts) != 1:
            raise AssertionError(f"{value.case_id}: the value is written more than once")
        if (
            value.entity_type == "IP_ADDRESS"
            and value.canonical != cases.conversation(value.conversation_key).client_ip
        ):
            raise AssertionError(f"{value.case_id}: not the conversation's client IP")
    decoy_ips = {d.value for d in cases.decoys if d.kind in ("non_client_ip", "version_string")}
    if decoy_ips & set(ips):
        raise AssertionError("a decoy IP is some client's")


def _label_id(label: PlacedValue | Decoy) -> str:
    return label.case_id if isinstance(label, PlacedValue) else label.decoy_id


# --- logs ----------------------------------------------------------------------------------------


@dataclass
class CaseLogs:
    files: list[Path]
    turn_ids: dict[str, list[int]]
    """Each conversation's requests, by conversation key."""
    quarantined: list[QuarantinedLine] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(len(t) for t in self.turn_ids.values())


def quarantined_lines(
    cases: PiiCaseSet, day: date, *, seed: int = 0, first_turn_id: int = 9_000_001
) -> list[QuarantinedLine]:
    """Lines ingest must quarantine, each with its own client IP or PII (none in ``cases``)."""
    rng = random.Random(f"quarantine-{seed}")
    values = _Values(rng)
    values.used |= {v.value for v in cases.values} | set(cases.client_ips)
    fmt = TimestampFormatter()
    at = date_to_us(day) + 9 * 60 * MINUTE_US
    header_ip, roles_ip = values.ipv4(), values.ipv4()
    name, email = values.person(), values.email()
    phone, key = values.phone("GB", international=True), values.secret("OPENAI_API_KEY")
    lines = []

    def record(turn_id: int, headers: object, messages: list[dict[str, str]]) -> str:
        return orjson.dumps(
            {
                "schema_version": SCHEMA_VERSION,
                "turn_id": turn_id,
                "timestamp": fmt(at + turn_id % 1000 * MINUTE_US),
                "model": _MODEL,
                "headers": headers,
                "messages": messages,
                "response": "Sure.",
                "response_timestamp": fmt(at + turn_id % 1000 * MINUTE_US + 2_000_000),
            }
        ).decode()

    lines.append(
        QuarantinedLine(
            "quarantine/headers_is_a_string",
            "invalid_field",
            record(
                first_turn_id,
                f"x-forwarded-for: {header_ip}; user-agent: Mozilla/5.0 (X11; Linux x86_64)",
                [{"role": "user", "content": "Can you summarize this article?"}],
            ),
            (
                QuarantinedValue(
                    "quarantine/headers_is_a_string", "IP_ADDRESS", header_ip, header_ip
                ),
            ),
        )
    )
    case = "quarantine/roles_not_alternating"
    lines.append(
        QuarantinedLine(
            case,
            "roles_not_alternating",
            record(
                first_turn_id + 1,
                {
                    "user-agent": "Mozilla/5.0",
                    "accept-language": "en-GB",
                    "x-forwarded-for": roles_ip,
                },
                [
                    {
                        "role": "user",
                        "content": f"My name is {name}, email {email}, phone {phone}.",
                    },
                    {"role": "user", "content": "Write a cover letter with these details."},
                ],
            ),
            (
                QuarantinedValue(case, "PERSON", name, name),
                QuarantinedValue(case, "EMAIL_ADDRESS", email, email),
                QuarantinedValue(case, "PHONE_NUMBER", phone, phone),
                QuarantinedValue(case, "IP_ADDRESS", roles_ip, roles_ip),
            ),
        )
    )
    case = "quarantine/invalid_json"
    broken = record(
        first_turn_id + 2,
        {"user-agent": "Mozilla/5.0", "x-forwarded-for": roles_ip},
        [{"role": "user", "content": f"Why is my key {key} rejected?"}],
    )
    lines.append(
        QuarantinedLine(
            case,
            "invalid_json",
            broken[: broken.index(key) + len(key) + 12],
            (QuarantinedValue(case, "SECRET", key, key),),
        )
    )
    return lines


def write_case_logs(
    cases: PiiCaseSet,
    log_root: Path | str,
    day: date,
    *,
    seed: int = 0,
    first_turn_id: int = DEFAULT_FIRST_TURN_ID,
    quarantined: bool = False,
) -> CaseLogs:
    """Write ``cases`` as the raw request logs of ``day``: ``<log_root>/<day>/requests-00.jsonl``
    (and ``requests-01.jsonl`` with ``quarantined_lines`` when ``quarantined``).

    ``replay_conversations`` writes the requests (full history, one request per round); here
    every request then carries its conversation's client IP in ``ip`` (and in
    ``x-forwarded-for``), and times are rescaled into ``day`` in their order, so that nothing
    spills into the next day's folder and the links stay as they were.
    """
    log_root = Path(log_root)
    folder = log_root / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pii-cases-") as staging:
        replayed = replay_conversations(
            [{"conversation": list(c.messages), "model": c.model} for c in cases.conversations],
            staging,
            start_date=day,
            days=1,
            seed=seed,
            gzip=False,
            first_turn_id=first_turn_id,
        )
        records = [
            orjson.loads(line)
            for path in sorted(Path(staging).rglob("*.jsonl"))
            for line in path.read_bytes().splitlines()
            if line.strip()
        ]
    owner = {t: cases.conversations[r.source_index] for r in replayed for t in r.turn_ids}
    _fit_into_day(records, day)
    for record in records:
        ip = owner[record["turn_id"]].client_ip
        record["ip"] = ip
        record["headers"]["x-forwarded-for"] = ip
    records.sort(key=lambda r: (r["timestamp"], r["turn_id"]))
    path = folder / "requests-00.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records))
    logs = CaseLogs(
        [path],
        {cases.conversations[r.source_index].key: list(r.turn_ids) for r in replayed},
    )
    if quarantined:
        extra = quarantined_lines(cases, day, seed=seed)
        bad = folder / "requests-01.jsonl"
        bad.write_text("".join(q.line + "\n" for q in extra), encoding="utf-8")
        logs.files.append(bad)
        logs.quarantined = extra
    return logs


def _parse_us(stamp: str) -> int:
    day_part, time_part = stamp.rstrip("Z").split("T")
    hours, minutes, seconds = time_part.split(":")
    whole, _, fraction = seconds.partition(".")
    return (
        date_to_us(date.fromisoformat(day_part))
        + (int(hours) * 3600 + int(minutes) * 60 + int(whole)) * 1_000_000
        + int((fraction or "0").ljust(6, "0")[:6])
    )


def _fit_into_day(records: Iterable[dict], day: date) -> None:
    """Rescale every request and response time into ``day`` (order kept)."""
    records = list(records)
    base = date_to_us(day)
    stamps = [_parse_us(r[k]) for r in records for k in ("timestamp", "response_timestamp")]
    low, high = min(stamps), max(stamps)
    target_low, target_high = base + MINUTE_US, base + DAY_US - MINUTE_US
    scale = min(1.0, (target_high - target_low) / max(1, high - low))
    fmt = TimestampFormatter()
    for r in records:
        for k in ("timestamp", "response_timestamp"):
            r[k] = fmt(target_low + int((_parse_us(r[k]) - low) * scale))
