"""Client IP addresses beyond the raw layer: keyed hashing, and finding raw IPs in text.

``hashed_ip`` is WildChat's scheme, sha256(salt + ip) as 64 hex digits, over the canonical
address that ingest stores. The salt is a secret: without one, every IPv4 address can be hashed
in minutes (2^32 of them) and the hashes reversed, so an unsalted or short salt is refused.

A client may write its own address in many ways, and each must be found: dotted quads with
leading zeros (``081.002.069.109``), in hex or octal (``0x51.0x2.0x45.0x6d``), as one integer
(``1359101293``, ``0x51024d6d``), in full-width digits (``８１．２．６９．１０９``), with zero-width
characters or spaces inside (``81. 2. 69 .109``), as IPv6 in any case, compression or expansion,
IPv4-mapped (``::ffff:81.2.69.109``, ``::ffff:5102:456d``), or with a zone id (``fe80::1%eth0``).
Two tools share one reading of text:

- ``find_ip_literals`` finds the literals of one text exactly, with offsets into the text as
  written (it redacts, and it confirms a finding);
- ``normalize_for_ip_search`` and ``ip_search_forms`` search many texts at once: the forms of
  known addresses are plain substrings of the normalized text (``str.contains_any``), a cheap
  and vectorised prefilter for ``find_ip_literals``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import secrets
import unicodedata
from collections.abc import Collection, Iterable
from pathlib import Path

import polars as pl

from wildchat_dag.core.text_normalization import (
    INVISIBLE_CLASS,
    INVISIBLE_RANGES,
    char_class,
    codepoints,
)

MIN_SALT_CHARS = 16
SALT_ENV_VAR = "WILDCHAT_IP_SALT"


class SaltError(RuntimeError):
    """No usable salt: the run must not write hashed IPs."""


def salt_problem(salt: str | None) -> str | None:
    """Why ``salt`` cannot be used, or None."""
    if not salt:
        return (
            f"{SALT_ENV_VAR} is not set, so runs that write hashed IPs refuse to start. "
            "hashed_ip = sha256(salt + ip) needs a secret salt: an unsalted hash of an IPv4 "
            f"address is reversed by hashing all 2^32 addresses. Set {SALT_ENV_VAR} to a long "
            "random secret (e.g. `openssl rand -hex 32`) and keep it, or run in demo mode "
            "(WILDCHAT_MODE=demo), which makes a per-install salt."
        )
    if len(salt) < MIN_SALT_CHARS:
        return (
            f"{SALT_ENV_VAR} has {len(salt)} characters; at least {MIN_SALT_CHARS} are needed so "
            "that the salt cannot be guessed and the hashed IPs reversed."
        )
    return None


def check_salt(salt: str | None) -> str:
    problem = salt_problem(salt)
    if problem:
        raise SaltError(problem)
    assert salt is not None
    return salt


def hash_ip(ip: str, salt: str) -> str:
    return hashlib.sha256((salt + ip).encode("utf-8")).hexdigest()


def hash_ips(ips: pl.Series, salt: str) -> pl.Series:
    """``hash_ip`` over a column, once per distinct address; null stays null."""
    check_salt(salt)
    distinct = ips.drop_nulls().unique()
    mapping = {ip: hash_ip(ip, salt) for ip in distinct.to_list()}
    return ips.replace_strict(mapping, default=None, return_dtype=pl.String).alias(
        ips.name or "hashed_ip"
    )


def salt_fingerprint(salt: str) -> str:
    """Tells releases made with different salts apart without revealing the salt."""
    return hashlib.sha256(b"wildchat-dag salt fingerprint\0" + salt.encode()).hexdigest()[:16]


def ensure_demo_salt(path: Path) -> tuple[str, bool]:
    """The per-install demo salt at ``path``, created (mode 0600) if absent: ``(salt, created)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        salt = path.read_text(encoding="ascii").strip()
        check_salt(salt)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return salt, False
    salt = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(salt + "\n")
    return salt, True


# -- how text is read --------------------------------------------------------------------------

# The blocks that hold every character whose NFKC form is one character an address is written
# with (full-width and mathematical digits, super- and subscripts, full-width colon and stop...).
# Scanned at import so that nothing is listed by hand; a test checks no other block has one.
COMPATIBILITY_BLOCKS: tuple[tuple[int, int], ...] = (
    (0x0080, 0x02FF),
    (0x1D00, 0x1DBF),
    (0x2000, 0x2BFF),
    (0x3000, 0x303F),
    (0xA7F0, 0xA7FF),
    (0xFE10, 0xFE6F),
    (0xFF00, 0xFFEF),
    (0x1D400, 0x1D7FF),
    (0x1F100, 0x1F1FF),
    (0x1FBF0, 0x1FBFF),
)
ADDRESS_CHARACTERS = frozenset("0123456789abcdefABCDEFxX.:% ")
# Chinese and Japanese input methods type this stop for "."; NFKC keeps it as it is.
_IDEOGRAPHIC_STOP = "\u3002"


def _compatibility_map() -> dict[int, str]:
    """Each character that NFKC turns into one address character, and that character."""
    found = {}
    for cp in codepoints(COMPATIBILITY_BLOCKS):
        folded = unicodedata.normalize("NFKC", chr(cp))
        if folded == _IDEOGRAPHIC_STOP:
            found[cp] = "."
        elif folded in ADDRESS_CHARACTERS and folded != chr(cp):
            found[cp] = folded
    found[ord(_IDEOGRAPHIC_STOP)] = "."
    return found


_TO_ASCII = _compatibility_map()
_INVISIBLE = frozenset(chr(cp) for cp in codepoints(INVISIBLE_RANGES))


def _like(ascii_chars: str) -> list[int]:
    """These characters, and every character the finder reads as one of them."""
    return [ord(c) for c in ascii_chars] + [cp for cp, c in _TO_ASCII.items() if c in ascii_chars]


_HEX_DIGITS = "0123456789abcdefABCDEF"
_HEX_LIKE = char_class(_like(_HEX_DIGITS))
_DIGIT_LIKE = char_class(_like("0123456789"))
_DOT_LIKE = char_class(_like("."))
_COLON_LIKE = char_class(_like(":"))
_X_LIKE = char_class(_like("xX"))
_GAP = char_class([*codepoints(INVISIBLE_RANGES), ord("\t"), *_like(" ")])
_INSIDE_RUN = char_class(
    [*codepoints(INVISIBLE_RANGES), ord("\t"), *_like(" "), *_like(_HEX_DIGITS + ".")]
)
# A cheap test, vectorised (polars' Rust regex; Python's ``re`` reads it alike) on text as
# written: a text without it holds nothing ``find_ip_literals`` finds, whatever ``known`` is. A
# dotted quad has a hex digit, a stop and a digit; IPv6 two colons with only hex digits and stops
# between; an integer large enough to be an address eight digits, or "0x" and seven hex digits.
# Invisible characters and spaces may sit in between, and every character may be a look-alike.
IP_LITERAL_HINT = (
    f"{_HEX_LIKE}{_GAP}*{_DOT_LIKE}{_GAP}*{_DIGIT_LIKE}"
    f"|{_COLON_LIKE}{_INSIDE_RUN}*{_COLON_LIKE}"
    f"|{_DIGIT_LIKE}(?:{INVISIBLE_CLASS}*{_DIGIT_LIKE}){{7}}"
    f"|{_X_LIKE}(?:{INVISIBLE_CLASS}*{_HEX_LIKE}){{7}}"
)

# Candidate literals in the finder's reading of a text; ``ipaddress`` and ``_ipv4_readings``
# decide which are addresses. A group of a dotted quad is decimal (maybe with leading zeros,
# maybe octal as inet_aton reads it) or hex; digits or dots right before or after make the quad
# part of something else (a version string 1.2.3.4.5).
_GROUP = r"(?:0[xX][0-9A-Fa-f]{1,8}|[0-9]{1,12})"
_IPV4 = rf"(?<![0-9.])(?:{_GROUP}\.){{3}}{_GROUP}(?![0-9]|\.[0-9])"
# Runs of hex digits, colons and dots with at least two colons; the address is found inside
# (after a label such as "IP:", before a closing colon). A zone id may follow (RFC 4007, and
# RFC 6874's "%25" in URLs); it is part of the written address, not of the stored one.
_IPV6_RUN = r"[0-9A-Fa-f:.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*"
_ZONE = r"%[0-9A-Za-z._~\-]+"
IP_LITERAL = re.compile(rf"(?P<v4>{_IPV4})|(?P<v6>{_IPV6_RUN})(?P<zone>{_ZONE})?")
_DOTTED_QUAD = re.compile(rf"{_GROUP}(?:\.{_GROUP}){{3}}")
# A bare number is an address only when it is a known one (``find_ip_literals``' ``known``):
# most are counts, ids or phone numbers. A letter or digit beside it makes it part of a word, a
# hash or a longer number.
_INTEGER = re.compile(
    r"(?<![0-9A-Za-z.])(?:0[xX](?P<hex>[0-9A-Fa-f]{1,8})|(?P<dec>[0-9]{7,12}))"
    r"(?![0-9A-Za-z]|\.[0-9])"
)
_SMALLEST_INTEGER_ADDRESS = 2**24
# Spaces typed around a stop or a colon inside an address ("81. 2. 69 .109"): a stop between
# groups has a hex digit before it and a digit after (decimal, octal and "0x" groups all begin
# with one), a colon (or IPv6's "::") hex digits on both sides.
_SPACED_SEPARATOR = re.compile(
    r"[0-9A-Fa-f](?:([ \t]*)\.([ \t]*)(?=[0-9])|([ \t]*)::?([ \t]*)(?=[0-9A-Fa-f]))"
)
_ANY_SPACED_SEPARATOR = re.compile(
    r"[0-9A-Fa-f](?:[ \t]+(?:\.|::?)[ \t]*|(?:\.|::?)[ \t]+)[0-9A-Fa-f]"
)
_INVISIBLE_RE = re.compile(INVISIBLE_CLASS)


def canonical_ip(literal: str) -> str | None:
    try:
        return ipaddress.ip_address(literal).compressed
    except ValueError:
        return None


def notations(address: str) -> list[str]:
    """An address as ingest may have stored it: IPv4 also as IPv4-mapped IPv6, and back."""
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv4Address):
        return [address, ipaddress.ip_address(f"::ffff:{address}").compressed]
    if parsed.ipv4_mapped is not None:
        return [address, str(parsed.ipv4_mapped)]
    return [address]


def _search_texts(text: str) -> list[tuple[str, list[int] | None]]:
    """``text`` as the finder reads it, each reading with where each of its characters is in
    ``text`` (None: at the same place).

    Look-alike characters become the ASCII ones (one for one, so offsets hold) and invisible
    ones go. Where spaces stand around a separator between hex digits, a second reading drops
    them ("81. 2. 69 .109"); the first keeps them, since they may instead part an address from
    a word ("mapped ::ffff:1.2.3.4") or a number from a sentence ("step 0. 16777216").
    """
    origin: list[int] | None = None
    if not text.isascii():
        text = text.translate(_TO_ASCII)
        if _INVISIBLE_RE.search(text):
            origin = [i for i, c in enumerate(text) if c not in _INVISIBLE]
            text = _INVISIBLE_RE.sub("", text)
    if not _ANY_SPACED_SEPARATOR.search(text):
        return [(text, origin)]
    spaces = [
        match.span(group)
        for match in _SPACED_SEPARATOR.finditer(text)
        for group in (1, 2, 3, 4)
        if match.start(group) < match.end(group)
    ]
    positions = origin if origin is not None else range(len(text))
    pieces, kept, at = [], [], 0
    for start, end in spaces:
        pieces.append(text[at:start])
        kept.extend(positions[at:start])
        at = end
    pieces.append(text[at:])
    kept.extend(positions[at:])
    return [(text, origin), ("".join(pieces), kept)]


def _ipv4_readings(literal: str) -> list[str]:
    """The addresses a dotted quad may mean: its groups decimal (leading zeros ignored), and as
    inet_aton reads them (a leading zero makes a group octal); "0x" groups are hex in both."""
    if not _DOTTED_QUAD.fullmatch(literal):
        return []
    lenient: list[int | None] = []
    aton: list[int | None] = []
    for group in literal.split("."):
        if group[:2] in ("0x", "0X"):
            value: int | None = int(group[2:], 16)
            lenient.append(value)
            aton.append(value)
            continue
        lenient.append(int(group))
        if len(group) > 1 and group[0] == "0":
            aton.append(int(group, 8) if set(group) <= set("01234567") else None)
        else:
            aton.append(int(group))
    readings = []
    for groups in (lenient, aton):
        if all(g is not None and g <= 255 for g in groups):
            address = ".".join(str(g) for g in groups)
            if address not in readings:
                readings.append(address)
    return readings


# IPv6 prefixes that embed an IPv4 address in the last 32 bits and are written with it dotted:
# IPv4-compatible (RFC 4291, deprecated) and NAT64's well-known prefix (RFC 6052). Mapped
# addresses (::ffff:0:0/96) have their IPv4 notation through ``notations``.
_EMBEDDING_IPV4 = (ipaddress.ip_network("::/96"), ipaddress.ip_network("64:ff9b::/96"))


def _run_readings(candidate: str) -> list[str]:
    """The addresses a stretch of an IPv6 run may mean. A dotted tail may have leading zeros;
    after an embedding prefix it is an IPv4 address of its own too ("::81.2.69.109",
    "64:ff9b::81.2.69.109")."""
    if ":" not in candidate:
        return _ipv4_readings(candidate)
    if "." not in candidate:
        address = canonical_ip(candidate)
        return [address] if address else []
    head, _, tail = candidate.rpartition(":")
    found = []
    for ipv4 in _ipv4_readings(tail) if tail[:2] not in ("0x", "0X") else []:
        address = canonical_ip(f"{head}:{ipv4}")
        if address is not None:
            found.append(address)
            parsed = ipaddress.IPv6Address(address)
            if any(parsed in network for network in _EMBEDDING_IPV4):
                found.append(ipv4)
    return found


_PORT = re.compile(r":[0-9]{1,5}$")


def _addresses_from(run: str, first: int) -> list[tuple[int, int, str]]:
    """The longest stretch of ``run`` from ``first`` on that is an IPv6 (or mapped) address; a
    trailing colon (end of a sentence, "addr:port") may be cut off. Where the run ends in what
    may be a port, the stretch before it too: after an address that holds "::", a colon may end
    it or continue it ("::ffff:100:0:80")."""
    ends = [len(run)] + [i for i in range(len(run) - 1, first, -1) if run[i] == ":"]
    found: list[tuple[int, int, str]] = []
    for end in ends:
        found = [(first, end, address) for address in _run_readings(run[first:end])]
        if found:
            break
    port = _PORT.search(run, first)
    if found and port and found[0][1] == len(run):
        found += [(first, port.start(), a) for a in _run_readings(run[first : port.start()])]
    return found


def _addresses_in_run(run: str) -> list[tuple[int, int, str]]:
    """IPv6 addresses in a run of hex digits, colons and dots.

    The run may begin with a label that is hex too ("ab:2001:db8::5" is an address, and so is
    "2001:db8::5"): the address after the first single colon is tried as well.
    """
    first = 1 if run.startswith(":") and not run.startswith("::") else 0
    found = _addresses_from(run, first)
    if run.startswith(":::"):
        # A label's colon before "::" ("IP:::ffff:1.2.3.4").
        found += _addresses_from(run, 1)
    colon = run.find(":", first)
    if colon > first and run[colon + 1 : colon + 2] != ":":
        found += _addresses_from(run, colon + 1)
    return sorted(set(found))


def _integer_readings(match: re.Match[str]) -> list[str]:
    if match.group("hex") is not None:
        values = [int(match.group("hex"), 16)]
    else:
        digits = match.group("dec")
        values = [int(digits)]
        if len(digits) > 1 and digits[0] == "0" and set(digits) <= set("01234567"):
            values.append(int(digits, 8))
    return [str(ipaddress.IPv4Address(v)) for v in values if _SMALLEST_INTEGER_ADDRESS <= v < 2**32]


def _literals(text: str, known: Collection[str] | None) -> list[tuple[int, int, str]]:
    """``(start, end, address)`` in the finder's reading of a text."""
    found = []
    for match in IP_LITERAL.finditer(text):
        if match.group("v4") is not None:
            spans = [(0, len(match.group()), a) for a in _ipv4_readings(match.group())]
        else:
            run = match.group("v6")
            stripped = run.rstrip(".")
            spans = _addresses_in_run(stripped)
            zone = (match.group("zone") or "").rstrip(".")
            if zone and stripped == run:
                # The zone belongs to an address that ends where the run does; a full stop
                # after it ends the sentence.
                spans = [(s, e + len(zone) if e == len(run) else e, a) for s, e, a in spans]
        for start, end, address in spans:
            found.extend(
                (match.start() + start, match.start() + end, a) for a in notations(address)
            )
    if known:
        for match in _INTEGER.finditer(text):
            for address in _integer_readings(match):
                forms = notations(address)
                if any(form in known for form in forms):
                    found.extend((match.start(), match.end(), form) for form in forms)
    return found


def find_ip_literals(text: str, known: Collection[str] | None = None) -> list[tuple[int, int, str]]:
    """``(start, end, address)`` for the IP addresses written in ``text``: offsets into
    ``text`` as written (the whole literal, with any invisible characters or spaces inside it and
    its zone id), the address canonical as ingest stores it (``ipaddress``' compressed form, no
    zone), once more in its other notation where it has one (``notations``). Sorted, no repeats.

    Bare integers (``1359101293``, ``0x51024d6d``, octal ``012200446555``) are found only when
    they decode to one of ``known`` (canonical addresses, any notation): most numbers are not
    addresses.

    Made for matching against known addresses, so it errs towards recall: after a hex-looking
    label ("IPv6:2001:db8::5") both readings are returned, a dotted quad with leading zeros both
    as decimal and as inet_aton's octal; the extra readings are never a client's but by chance.
    """
    found = set()
    for search, origin in _search_texts(text):
        for start, end, address in _literals(search, known):
            if origin is not None:
                start, end = origin[start], origin[end - 1] + 1
            found.add((start, end, address))
    return sorted(found)


def ip_literals_in(texts: pl.Series, known: Collection[str] | None = None) -> pl.DataFrame:
    """Each distinct address written in ``texts``: ``row`` (position in texts) and ``ip``."""
    hinted = texts.str.contains(IP_LITERAL_HINT).fill_null(False)
    rows, addresses = [], []
    for row, text in zip(hinted.arg_true().to_list(), texts.filter(hinted).to_list(), strict=True):
        for address in {a for _, _, a in find_ip_literals(text, known)}:
            rows.append(row)
            addresses.append(address)
    return pl.DataFrame({"row": rows, "ip": addresses}, schema={"row": pl.Int64, "ip": pl.String})


# -- searching many texts at once --------------------------------------------------------------

# polars' (Rust) regex has no look-around, so the spaces around a separator are dropped by
# replacement; a match takes the digit after the separator with it, so one pass can miss the
# next separator of a one-digit group ("1 . 2 . 3"), and a second pass takes it (a separator
# already without spaces does not match again).
_SPACED_SEPARATOR_RUST = (
    r"([0-9a-f])(?:[ \t]+(\.)[ \t]*|(\.)[ \t]+)([0-9])"
    r"|([0-9a-f])(?:[ \t]+(::?)[ \t]*|(::?)[ \t]+)([0-9a-f])"
)
_SPACED_SEPARATOR_REPLACEMENT = "".join(f"${{{i}}}" for i in range(1, 9))
# Leading zeros of a group (after a stop, a colon, a space...: not inside a number like 100).
# Before a digit they all go, and a group of zeros keeps one ("000." is "0."); before a hex
# letter only in an IPv6 group (after a colon, or a first group before one): a dotted quad's
# last group may meet a word ("169.000b" is 169.0 and "b").
_LEADING_ZEROS = r"(^|[^0-9a-z])0+([0-9])"
_IPV6_LEADING_ZEROS = r"(:)0+([a-f])"
_FIRST_IPV6_LEADING_ZEROS = r"(^|[^0-9a-z.:])0+([a-f][0-9a-f]{0,2}:)"
_HEX_LEADING_ZEROS = r"0x0+([0-9a-f])"

# Where an address that is nobody's known one may be written, in normalized text: a dotted quad
# (groups of at most three digits, or "0x" and two hex digits, once leading zeros are gone),
# an IPv6 "::" beside a hex digit, or eight hex groups. A text without it holds no address
# ``find_ip_literals`` finds but "::" and the bare integers it needs ``known`` for.
IP_SHAPE = (
    r"(?:0x[0-9a-f]{1,2}|[0-9]{1,3})(?:\.(?:0x[0-9a-f]{1,2}|[0-9]{1,3})){3}"
    r"|[0-9a-f]::|::[0-9a-f]"
    r"|[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){7}"
)
# What normalized text holds where ``find_ip_literals`` may read an integer as an address (from
# 2^24, eight digits or "0x" and seven hex digits on): cut out whole, so that it can be looked
# up among ``integer_forms`` by equality.
INTEGER_TOKEN = r"0x[0-9a-f]{7,8}|[0-9]{8,12}"


def normalize_for_ip_search(texts: pl.Series) -> pl.Series:
    """``texts`` read as ``find_ip_literals`` reads them, vectorised, and more: NFKC (full-width
    and other look-alike characters), invisible characters dropped, the ideographic stop as
    ".", lower case, spaces around a separator between hex digits dropped, and leading zeros of
    numeric groups stripped. Every literal of an address then holds one of ``ip_search_forms``
    of the address as a plain substring. Nulls stay null.
    """
    normalized = (
        texts.str.replace_all(INVISIBLE_CLASS, "")
        .str.normalize("NFKC")
        .str.replace_all(_IDEOGRAPHIC_STOP, ".", literal=True)
        .str.to_lowercase()
    )
    for _ in range(2):
        normalized = normalized.str.replace_all(
            _SPACED_SEPARATOR_RUST, _SPACED_SEPARATOR_REPLACEMENT
        )
    return (
        normalized.str.replace_all(_LEADING_ZEROS, "${1}${2}")
        .str.replace_all(_IPV6_LEADING_ZEROS, "${1}${2}")
        .str.replace_all(_FIRST_IPV6_LEADING_ZEROS, "${1}${2}")
        .str.replace_all(_HEX_LEADING_ZEROS, "0x${1}")
        .alias(texts.name)
    )


def _ipv6_spellings(groups: list[int]) -> list[str]:
    """Eight 16-bit groups written every way: lower-case hex without leading zeros (what
    normalization leaves), "::" in place of any run of zero groups or none, and the last two
    groups also as a dotted quad."""
    hexes = [f"{g:x}" for g in groups]
    quad = str(ipaddress.IPv4Address((groups[6] << 16) | groups[7]))
    spellings = [":".join(hexes), ":".join([*hexes[:6], quad])]
    for i in range(8):
        for j in range(i + 1, 9):
            if groups[j - 1]:
                break
            spellings.append(":".join(hexes[:i]) + "::" + ":".join(hexes[j:]))
            if j <= 6:
                spellings.append(":".join(hexes[:i]) + "::" + ":".join([*hexes[j:6], quad]))
    return spellings


# The spellings of an IPv4-mapped address whose last two groups are not zero, with the address
# put in: the common case, without working out "::" placements for every address.
_MAPPED_TEMPLATES = tuple(
    spelling.replace("1:2", "{high:x}:{low:x}").replace("0.1.0.2", "{quad}")
    for spelling in _ipv6_spellings([0, 0, 0, 0, 0, 0xFFFF, 1, 2])
)


def _address_forms(address: str) -> list[str]:
    """The written forms of one address after ``normalize_for_ip_search``."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return []
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is None:
        groups = [int(parsed) >> (16 * (7 - i)) & 0xFFFF for i in range(8)]
        return _ipv6_spellings(groups)
    ipv4 = parsed.ipv4_mapped if isinstance(parsed, ipaddress.IPv6Address) else parsed
    assert ipv4 is not None
    octets = list(ipv4.packed)
    value = int(ipv4)
    high, low, quad = value >> 16, value & 0xFFFF, str(ipv4)
    if high and low:
        mapped = [t.format(high=high, low=low, quad=quad) for t in _MAPPED_TEMPLATES]
    else:
        mapped = _ipv6_spellings([0, 0, 0, 0, 0, 0xFFFF, high, low])
    return [
        quad,
        ".".join(f"0x{o:x}" for o in octets),
        ".".join(f"{o:o}" for o in octets),
        *_integer_forms(value),
        *mapped,
    ]


def _integer_forms(value: int) -> list[str]:
    if value < _SMALLEST_INTEGER_ADDRESS:
        return []
    return [str(value), f"0x{value:x}", f"{value:o}"]


def ip_search_forms(ips: Iterable[str]) -> list[str]:
    """Every literal form of these (canonical) addresses as it reads after
    ``normalize_for_ip_search``: the canonical notation and the mapped or unmapped other one;
    IPv6 expanded, with "::" for any run of zero groups, with a dotted tail; an IPv4 address
    also as hex and octal dotted quads, as an integer in decimal, hex and octal (from 2^24 on,
    as ``find_ip_literals`` reads integers), and mapped in every spelling. ``str.contains_any``
    over normalized text then flags every text where ``find_ip_literals`` finds one of these
    addresses, but for a dotted quad that mixes radixes group by group (``0x51.2.69.109``),
    which ``IP_SHAPE`` flags. Unparseable entries are skipped; no repeats.
    """
    return list(dict.fromkeys(form for ip in ips for form in _address_forms(ip)))


def integer_forms(ips: Iterable[str]) -> list[str]:
    """The bare-integer forms of these addresses (IPv4, or IPv4-mapped) after
    ``normalize_for_ip_search``: decimal, hex and octal, as ``INTEGER_TOKEN`` cuts them out."""
    forms = []
    for ip in ips:
        try:
            # Stored addresses are canonical: a dotted quad is read without ``ipaddress``, which
            # costs ten times more (a day has tens of thousands of clients).
            a, b, c, d = (int(o) for o in ip.split("."))
            value = (
                a << 24 | b << 16 | c << 8 | d
                if 0 <= min(a, b, c, d) <= max(a, b, c, d) <= 255
                else None
            )
        except ValueError:
            value = None
        if value is None:
            try:
                parsed = ipaddress.ip_address(ip)
            except ValueError:
                continue
            ipv4 = parsed.ipv4_mapped if isinstance(parsed, ipaddress.IPv6Address) else parsed
            if ipv4 is None:
                continue
            value = int(ipv4)
        forms += _integer_forms(value)
    return list(dict.fromkeys(forms))
