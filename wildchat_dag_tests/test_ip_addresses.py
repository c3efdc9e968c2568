"""Client IPs outside the raw layer: salted hashing, the demo salt file, and finding IP literals.

The salt is what keeps ``hashed_ip`` from being reversed (2^32 IPv4 addresses hash in minutes),
so the salt checks are tested as strictly as the hash itself. ``find_ip_literals`` feeds the
check that no raw client address leaks into a released table, so both what it must find and
what it must not (versions, times, C++ scopes) are pinned down: every notation a client may
write its own address in, with the exact offsets redaction needs, and the vectorised prefilters
(``IP_LITERAL_HINT``, ``normalize_for_ip_search`` with ``ip_search_forms``, ``IP_SHAPE``,
``INTEGER_TOKEN``), each of which must flag every text the finder finds something in.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import stat
import unicodedata
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wildchat_dag.core.ip_addresses import (
    ADDRESS_CHARACTERS,
    COMPATIBILITY_BLOCKS,
    INTEGER_TOKEN,
    INVISIBLE_RANGES,
    IP_LITERAL_HINT,
    IP_SHAPE,
    MIN_SALT_CHARS,
    SaltError,
    check_salt,
    ensure_demo_salt,
    find_ip_literals,
    hash_ip,
    hash_ips,
    integer_forms,
    ip_literals_in,
    ip_search_forms,
    normalize_for_ip_search,
    salt_fingerprint,
)
from wildchat_dag.defs.checks.raw_ip_scan import rows_with_raw_ips

SALT = "s3cret-salt-for-tests-0123456789"
OTHER_SALT = "another-salt-for-tests-987654321"
HEX64 = re.compile(r"[0-9a-f]{64}")


def reference_hash(ip: str, salt: str) -> str:
    """WildChat's scheme, written out independently of the module."""
    return hashlib.sha256((salt + ip).encode("utf-8")).hexdigest()


# -- check_salt ---------------------------------------------------------------------------------


@pytest.mark.parametrize("salt", [None, ""])
def test_missing_salt_is_refused_with_an_explanation(salt: str | None) -> None:
    """The operator must learn which variable to set and why an unsalted hash is unsafe."""
    with pytest.raises(SaltError) as caught:
        check_salt(salt)
    message = str(caught.value)
    assert "WILDCHAT_IP_SALT" in message
    assert "2^32" in message


def test_short_salt_is_refused() -> None:
    """A short salt can itself be brute-forced, which reverses every hashed IP."""
    with pytest.raises(SaltError) as caught:
        check_salt("x" * (MIN_SALT_CHARS - 1))
    assert "WILDCHAT_IP_SALT" in str(caught.value)
    assert str(MIN_SALT_CHARS) in str(caught.value)


def test_long_enough_salt_is_returned_unchanged() -> None:
    salt = "y" * MIN_SALT_CHARS
    assert check_salt(salt) == salt
    assert check_salt(SALT) == SALT


# -- hash_ip / hash_ips -------------------------------------------------------------------------


@pytest.mark.parametrize("ip", ["203.0.113.9", "2001:db8::5", "::1"])
def test_hash_ip_is_sha256_of_salt_then_ip(ip: str) -> None:
    """Released hashes must be comparable with WildChat's: sha256(salt + ip), 64 hex digits."""
    digest = hash_ip(ip, SALT)
    assert digest == reference_hash(ip, SALT)
    assert HEX64.fullmatch(digest)


def test_hash_ip_depends_on_the_salt() -> None:
    """Otherwise the salt would add no protection."""
    assert hash_ip("203.0.113.9", SALT) != hash_ip("203.0.113.9", OTHER_SALT)
    # And it is the salt prefixed, not appended.
    assert hash_ip("203.0.113.9", SALT) != reference_hash(SALT, "203.0.113.9")


def test_hash_ips_hashes_each_element_and_keeps_nulls() -> None:
    ips = pl.Series("ip", ["203.0.113.9", None, "2001:db8::5", "203.0.113.9"], dtype=pl.String)
    hashed = hash_ips(ips, SALT)
    assert hashed.dtype == pl.String
    assert hashed.len() == ips.len()
    assert hashed.to_list() == [
        reference_hash("203.0.113.9", SALT),
        None,
        reference_hash("2001:db8::5", SALT),
        reference_hash("203.0.113.9", SALT),
    ]


def test_hash_ips_of_only_nulls_stays_null() -> None:
    ips = pl.Series("ip", [None, None], dtype=pl.String)
    assert hash_ips(ips, SALT).to_list() == [None, None]


@pytest.mark.parametrize("salt", [None, "", "short"])
def test_hash_ips_refuses_a_bad_salt(salt: str | None) -> None:
    """The column-wise path must not write weakly hashed IPs either."""
    with pytest.raises(SaltError):
        hash_ips(pl.Series("ip", ["203.0.113.9"]), salt)  # type: ignore[arg-type]


# -- salt_fingerprint ---------------------------------------------------------------------------


def test_salt_fingerprint_is_stable_short_and_distinguishes_salts() -> None:
    """Releases name their salt by fingerprint: same salt, same name; never the salt itself."""
    fingerprint = salt_fingerprint(SALT)
    assert fingerprint == salt_fingerprint(SALT)
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    assert fingerprint != salt_fingerprint(OTHER_SALT)
    assert SALT not in fingerprint
    # Not simply a prefix of an unsalted hash of the salt either (it is domain-separated).
    assert fingerprint != hashlib.sha256(SALT.encode()).hexdigest()[:16]


# -- ensure_demo_salt ---------------------------------------------------------------------------


def test_demo_salt_is_created_private_then_reused(tmp_path: Path) -> None:
    """Demo mode makes one salt per install; it must persist (stable hashes) and stay private."""
    path = tmp_path / "state" / "ip_salt"
    salt, created = ensure_demo_salt(path)
    assert created is True
    assert check_salt(salt) == salt
    assert path.read_text(encoding="ascii").strip() == salt
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    again, created_again = ensure_demo_salt(path)
    assert (again, created_again) == (salt, False)


def test_demo_salts_differ_between_installs(tmp_path: Path) -> None:
    """A fixed demo salt would be public, hence no salt at all."""
    first, _ = ensure_demo_salt(tmp_path / "a" / "salt")
    second, _ = ensure_demo_salt(tmp_path / "b" / "salt")
    assert first != second


def test_demo_salt_with_loose_permissions_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "ip_salt"
    salt, _ = ensure_demo_salt(path)
    path.chmod(0o644)
    assert ensure_demo_salt(path) == (salt, False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_demo_salt_file_with_a_short_salt_is_refused(tmp_path: Path) -> None:
    """A truncated or hand-edited salt file must not silently weaken the hashes."""
    path = tmp_path / "ip_salt"
    path.write_text("tooshort\n", encoding="ascii")
    with pytest.raises(SaltError):
        ensure_demo_salt(path)


# -- find_ip_literals ---------------------------------------------------------------------------


def literals(text: str) -> list[tuple[str, str]]:
    """(text as written, canonical address) for each literal, checking the offsets agree."""
    found = find_ip_literals(text)
    for start, end, _ in found:
        assert 0 <= start < end <= len(text)
    return [(text[start:end], address) for start, end, address in found]


def could_be_a_client(address: str) -> bool:
    """IPv4, or IPv6 global unicast (2000::/3): where client addresses come from."""
    parsed = ipaddress.ip_address(address)
    return parsed.version == 4 or parsed in ipaddress.ip_network("2000::/3")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A sentence's full stop is punctuation, not part of the address.
        ("My server is 192.168.1.10.", [("192.168.1.10", "192.168.1.10")]),
        ("Use the resolver at 8.8.8.8:53 for now", [("8.8.8.8", "8.8.8.8")]),
        ("Ping 2001:db8::5 please", [("2001:db8::5", "2001:db8::5")]),
        # Brackets and port around an uncompressed, uppercase form: canonical is compressed.
        ("curl https://[2001:DB8:0::5]:443/x", [("2001:DB8:0::5", "2001:db8::5")]),
        # A colon ending the sentence is not part of the address.
        ("The address is 2001:db8::1:", [("2001:db8::1", "2001:db8::1")]),
        ("Try fe80::1.", [("fe80::1", "fe80::1")]),
        (
            "mapped ::ffff:1.2.3.4 here",
            [("::ffff:1.2.3.4", ipaddress.ip_address("::ffff:1.2.3.4").compressed)],
        ),
        (
            "two: 10.0.0.1 and 2001:db8::7",
            [("10.0.0.1", "10.0.0.1"), ("2001:db8::7", "2001:db8::7")],
        ),
    ],
)
def test_find_ip_literals_finds_addresses(text: str, expected: list[tuple[str, str]]) -> None:
    found = literals(text)
    assert set(expected) <= set(found)
    # Anything more is the same literal in its other notation, or a reading after a
    # hex-looking label that is nobody's client address.
    spans = {written for written, _ in expected}
    for written, address in set(found) - set(expected):
        assert written in spans or not could_be_a_client(address), (written, address)


@pytest.mark.parametrize(
    "text",
    [
        "Upgrade to version 1.2.3.4.5 today",  # a version string, not an address
        "The host 10.0.0.256 is unreachable",  # octet out of range
        "Meet at 12:30:45 sharp",  # a time of day
        "std::vector<int> values;",  # C++ scope resolution
        "Call Foo::Bar::baz() here",  # nested scopes
        "Nothing here at all.",
    ],
)
def test_find_ip_literals_ignores_look_alikes(text: str) -> None:
    """False positives would flag (or, in redaction, damage) ordinary text: nothing found here
    could be a client's address."""
    assert not [a for _, a in literals(text) if could_be_a_client(a)]
    assert "." not in text or not [a for _, a in literals(text) if "." in a]


@pytest.mark.parametrize(
    "text", ["IP:2001:db8::5", "IPv6:2001:db8::5", "X-Forwarded-For:2001:db8::5"]
)
def test_find_ip_literals_finds_ipv6_right_after_a_label(text: str) -> None:
    """A client writing "IP:<address>" must not slip past redaction (IPv4 does not)."""
    assert ("2001:db8::5", "2001:db8::5") in literals(text)


def test_find_ip_literals_finds_ipv4_right_after_a_label() -> None:
    assert ("203.0.113.9", "203.0.113.9") in literals("IP:203.0.113.9")


def test_ipv4_mapped_addresses_match_both_notations() -> None:
    """Ingest stores a mapped client address as IPv6; a user may write it either way."""
    assert set(literals("from ::ffff:1.2.3.4 today")) == {
        ("::ffff:1.2.3.4", "::ffff:102:304"),
        ("::ffff:1.2.3.4", "1.2.3.4"),
    }
    assert ("1.2.3.4", "::ffff:102:304") in literals("from 1.2.3.4 today")


def test_find_ip_literals_offsets_point_at_the_literal() -> None:
    text = "a 203.0.113.9, b [2001:db8::5]:80, c 198.51.100.7:8080."
    found = {(text[s:e], a) for s, e, a in find_ip_literals(text)}
    assert {
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8::5", "2001:db8::5"),
        ("198.51.100.7", "198.51.100.7"),
    } <= found


def test_ip_literals_in_lists_distinct_addresses_per_row() -> None:
    """One row per (row, address): a row repeating an address lists it once."""
    texts = pl.Series(
        "t",
        [
            "from 203.0.113.9 and again 203.0.113.9, also 2001:DB8::5",
            None,
            "no addresses, version 1.2.3.4.5",
            "resolver 8.8.8.8:53",
        ],
    )
    found = ip_literals_in(texts)
    assert found.schema == pl.Schema({"row": pl.Int64, "ip": pl.String})
    assert {(0, "2001:db8::5"), (0, "203.0.113.9"), (3, "8.8.8.8")} <= set(found.iter_rows())
    assert found.height == found.unique().height
    assert not found.filter(pl.col("row") == 2).height


# -- checks.rows_with_raw_ips -------------------------------------------------------------------


def test_rows_with_raw_ips_reports_rows_and_counts_but_not_addresses() -> None:
    """The leak check must find raw IPs in any notation, and its report must not leak them."""
    raw_ips = {"203.0.113.9", "2001:db8::5"}
    rows = pl.DataFrame(
        {
            "conversation_id": [1, 2, None, 4, 5],
            "row": [
                '{"content":"my ip is 203.0.113.9"}',
                '{"content":"public resolver 8.8.8.8 only"}',
                '{"content":"2001:0DB8:0000:0000:0000:0000:0000:0005 and 203.0.113.9 twice '
                '203.0.113.9"}',
                '{"content":"nothing to see, v1.2.3.4.5"}',
                '{"url":"http://[2001:DB8:0::5]:443/"}',
            ],
        },
        schema={"conversation_id": pl.Int64, "row": pl.String},
    )
    found = rows_with_raw_ips(rows, raw_ips)
    assert found.select("row", "conversation_id", "addresses").rows() == [
        (0, 1, 1),
        (2, None, 2),
        (4, 5, 1),
    ]
    written = ["203.0.113.9", "2001:db8::5", "2001:0DB8:0000:0000:0000:0000:0000:0005"]
    for column in found.columns:
        values = found[column].cast(pl.String).to_list()
        assert not any(v is not None and ip in v for v in values for ip in written), column


def test_rows_with_raw_ips_without_matches_is_empty() -> None:
    rows = pl.DataFrame(
        {"conversation_id": [1], "row": ['{"content":"8.8.8.8"}']},
        schema={"conversation_id": pl.Int64, "row": pl.String},
    )
    assert rows_with_raw_ips(rows, {"203.0.113.9"}).is_empty()


# -- every notation of a client's own address ---------------------------------------------------

CLIENT_V4 = "81.2.69.109"
CLIENT_V4_INT = int(ipaddress.IPv4Address(CLIENT_V4))  # 1359103341
CLIENT_V6 = "2001:db8::5"
ZWSP = "\u200b"
# (text, the literal as written in it, the canonical address)
NOTATIONS = [
    ("plain", "My IP is 81.2.69.109, ok?", "81.2.69.109", CLIENT_V4),
    ("leading zeros", "ip 081.002.069.109 here", "081.002.069.109", CLIENT_V4),
    ("integer", f"as a number {CLIENT_V4_INT}.", str(CLIENT_V4_INT), CLIENT_V4),
    ("hex integer", "hex 0x5102456D!", "0x5102456D", CLIENT_V4),
    ("octal integer", "octal 012100442555", "012100442555", CLIENT_V4),
    ("full-width", "地址８１．２．６９．１０９谢谢", "８１．２．６９．１０９", CLIENT_V4),
    ("full-width integer", "号码１３５９１０３３４１", "１３５９１０３３４１", CLIENT_V4),
    ("zero-width space", f"ip 81.{ZWSP}2.69{ZWSP}.109 x", f"81.{ZWSP}2.69{ZWSP}.109", CLIENT_V4),
    ("zero-width in an integer", f"n 1359{ZWSP}103341 n", f"1359{ZWSP}103341", CLIENT_V4),
    ("soft hyphen, bidi", "ip 81.\u00ad2.\u202a69.109", "81.\u00ad2.\u202a69.109", CLIENT_V4),
    ("spaces", "my ip: 81. 2. 69 .109 thanks", "81. 2. 69 .109", CLIENT_V4),
    ("spaces both sides", "ip 81 . 2 . 69 . 109", "81 . 2 . 69 . 109", CLIENT_V4),
    (
        "no-break spaces",
        "ip 81.\u00a02.69\u3000.109",
        "81.\u00a02.69\u3000.109",
        CLIENT_V4,
    ),
    ("ideographic stops", "地址81。2。69。109吗", "81。2。69。109", CLIENT_V4),
    ("hex dotted", "try 0x51.0x2.0x45.0x6d now", "0x51.0x2.0x45.0x6d", CLIENT_V4),
    ("hex dotted, upper", "0X51.0X02.0X45.0X6D", "0X51.0X02.0X45.0X6D", CLIENT_V4),
    ("octal dotted", "octal 0121.02.0105.0155", "0121.02.0105.0155", CLIENT_V4),
    ("mapped dotted", "from ::ffff:81.2.69.109 today", "::ffff:81.2.69.109", CLIENT_V4),
    ("mapped hex", "from ::FFFF:5102:456D today", "::FFFF:5102:456D", CLIENT_V4),
    ("mapped expanded", "0:0:0:0:0:ffff:5102:456d", "0:0:0:0:0:ffff:5102:456d", CLIENT_V4),
    ("mapped, leading zeros", "::ffff:081.002.069.109", "::ffff:081.002.069.109", CLIENT_V4),
    ("mapped in a URL", "http://[::ffff:81.2.69.109]:80/", "::ffff:81.2.69.109", CLIENT_V4),
    ("beside CJK", "我的IP是81.2.69.109谢谢", "81.2.69.109", CLIENT_V4),
    ("after a full-width colon", "IP：81.2.69.109", "81.2.69.109", CLIENT_V4),
    ("ipv6", "ping 2001:db8::5 now", "2001:db8::5", CLIENT_V6),
    ("ipv6 expanded", "2001:0db8:0000:0000:0000:0000:0000:0005", None, CLIENT_V6),
    (
        "ipv6 expanded, upper",
        "a 2001:0DB8:0000:0000:0000:0000:0000:0005 b",
        "2001:0DB8:0000:0000:0000:0000:0000:0005",
        CLIENT_V6,
    ),
    ("ipv6 partly compressed", "x 2001:DB8:0::5 y", "2001:DB8:0::5", CLIENT_V6),
    ("ipv6 dotted tail", "x 2001:db8::0.0.0.5 y", "2001:db8::0.0.0.5", CLIENT_V6),
    ("ipv6 beside CJK", "地址2001:db8::5谢谢", "2001:db8::5", CLIENT_V6),
    ("ipv6 full-width", "地址２００１：ｄｂ８：：５谢谢", "２００１：ｄｂ８：：５", CLIENT_V6),
    ("ipv6 spaces", "v6 2001 : db8 :: 5 ok", "2001 : db8 :: 5", CLIENT_V6),
    ("ipv6 zero-width", f"v6 2001:{ZWSP}db8::5", f"2001:{ZWSP}db8::5", CLIENT_V6),
    ("zone id", "ping fe80::1%eth0 fails", "fe80::1%eth0", "fe80::1"),
    ("zone id, URL-encoded", "http://[fe80::1%25eth0]:8080/", "fe80::1%25eth0", "fe80::1"),
    ("zone id at a full stop", "ping fe80::1%eth0.", "fe80::1%eth0", "fe80::1"),
    ("ipv6 zone id", "ssh 2001:db8::5%en0", "2001:db8::5%en0", CLIENT_V6),
]
KNOWN = {CLIENT_V4, CLIENT_V6, "fe80::1"}


def notation_ids() -> list[str]:
    return [kind for kind, *_ in NOTATIONS]


@pytest.mark.parametrize(("kind", "text", "written", "address"), NOTATIONS, ids=notation_ids())
def test_every_notation_is_found_with_its_offsets_in_the_text_as_written(
    kind: str, text: str, written: str | None, address: str
) -> None:
    """Redaction replaces exactly the span: the whole literal as written, with what is inside
    it (invisible characters, spaces) and its zone id, nothing around it."""
    written = written or text
    start = text.index(written)
    found = find_ip_literals(text, KNOWN)
    assert (start, start + len(written), address) in found, (kind, found)
    assert ipaddress.ip_address(address).compressed == address
    # An address ingest may have stored either way is found in both notations.
    if address == CLIENT_V4:
        assert (start, start + len(written), "::ffff:5102:456d") in found


@pytest.mark.parametrize(("kind", "text", "written", "address"), NOTATIONS, ids=notation_ids())
def test_the_prefilters_flag_every_notation(
    kind: str, text: str, written: str | None, address: str
) -> None:
    """Each vectorised filter is a necessary condition of the finder: one that missed a notation
    would let it through the check unread."""
    texts = pl.Series([text])
    assert texts.str.contains(IP_LITERAL_HINT).item(), kind
    assert re.search(IP_LITERAL_HINT, text), "Python's re reads the hint alike"
    normalized = normalize_for_ip_search(texts)
    assert normalized.str.contains_any(ip_search_forms([address])).item(), normalized.item()
    shaped = normalized.str.contains(IP_SHAPE).item()
    tokens = normalized.str.extract_all(INTEGER_TOKEN).item().to_list()
    assert shaped or set(tokens) & set(integer_forms([address])), normalized.item()


def test_bare_integers_count_only_when_they_are_a_known_address() -> None:
    """Most numbers are counts, ids or phone numbers: without the known addresses, none is an
    address, and with them only those that decode to one."""
    text = f"order {CLIENT_V4_INT} and ticket 1359103342"
    assert find_ip_literals(text) == []
    found = find_ip_literals(text, {CLIENT_V4})
    assert {a for _, _, a in found} == {CLIENT_V4, "::ffff:5102:456d"}
    assert {text[s:e] for s, e, _ in found} == {str(CLIENT_V4_INT)}
    # A known address stored as mapped IPv6 matches its integer too.
    assert find_ip_literals(f"n {CLIENT_V4_INT}", {"::ffff:5102:456d"})


@pytest.mark.parametrize(
    "text",
    [
        f"a{CLIENT_V4_INT}",  # part of a word or a hash
        f"{CLIENT_V4_INT}b",
        f"1{CLIENT_V4_INT}",  # part of a longer number
        f"{CLIENT_V4_INT}5",
        f"{CLIENT_V4_INT}.5",  # a decimal
        f"v.{CLIENT_V4_INT}",
        "0x5102456d0",  # a longer hex number
        "ab0x5102456d",
        "hash 5102456d",  # hex without 0x
        "small 16777215",  # below 2^24: 0.255.255.255 is nobody's address
    ],
)
def test_integers_inside_something_else_are_not_addresses(text: str) -> None:
    assert find_ip_literals(text, {CLIENT_V4, "0.255.255.255"}) == []


def test_an_address_inside_a_longer_one_is_not_that_address() -> None:
    """1.2.3.4 is a substring of 11.2.3.45, which is another address."""
    found = find_ip_literals("server 11.2.3.45 and 21.2.3.4.5", {"1.2.3.4"})
    assert "1.2.3.4" not in {a for _, _, a in found}
    assert {a for _, _, a in found} == {"11.2.3.45", "::ffff:b02:32d"}


@pytest.mark.parametrize(
    "text",
    [
        "MAC 00:1A:2B:3C:4D:5E on eth0",  # six groups: not IPv6
        "Meet at 12:30 : 45 sharp",  # spaces do not turn a time into an address
        "Step 1. 2 eggs. 3 cups",  # list numbers
        "Call +1 202 555 0123 or 202-555-0123",  # phone numbers
        "pi is 3.14159, e is 2.71828",
        "Firmware 10.0.0.256",  # out of range
        "0x51.0x2.0x45",  # three groups
        "1.2.3.4.5.6",
        "a\u200b.\u200bb",  # invisible characters between letters
    ],
)
def test_more_look_alikes_are_not_client_addresses(text: str) -> None:
    found = find_ip_literals(text, KNOWN)
    assert not [a for _, a in ((None, a) for _, _, a in found) if could_be_a_client(a)], found


def test_dotted_quads_with_leading_zeros_are_read_both_ways() -> None:
    """inet_aton reads 010 as octal 8, a person as decimal 10: a client's address is found
    whichever was meant."""
    addresses = {a for _, _, a in find_ip_literals("host 010.0.0.011")}
    assert {"10.0.0.11", "8.0.0.9"} <= addresses


def test_an_ipv4_tail_of_an_ipv6_address_is_an_ipv4_address_too() -> None:
    """IPv4-compatible (::81.2.69.109) and NAT64 (64:ff9b::81.2.69.109) spellings write the
    IPv4 client address, though the IPv6 address is another."""
    for text in ("::81.2.69.109", "64:ff9b::81.2.69.109"):
        assert CLIENT_V4 in {a for _, _, a in find_ip_literals(text)}, text


@given(
    value=st.integers(min_value=2**24, max_value=2**32 - 1),
    before=st.sampled_from(["", " ", "x ", "是", "IP:", "(", "\n"]),
    after=st.sampled_from(["", " ", ".", "谢谢", ")", ":80", ",", "\n"]),
    style=st.sampled_from(
        [
            "dotted",
            "zeros",
            "integer",
            "hex",
            "hexdotted",
            "fullwidth",
            "zwsp",
            "spaces",
            "mapped",
            "mappedhex",
        ]
    ),
)
@settings(max_examples=300, deadline=None)
def test_any_client_address_in_any_notation_and_context_is_found_and_flagged(
    value: int, before: str, after: str, style: str
) -> None:
    address = str(ipaddress.IPv4Address(value))
    octets = [int(o) for o in address.split(".")]
    written = {
        "dotted": address,
        "zeros": ".".join(f"{o:03d}" for o in octets),
        "integer": str(value),
        "hex": f"0x{value:X}",
        "hexdotted": ".".join(f"0x{o:x}" for o in octets),
        "fullwidth": address.translate(str.maketrans("0123456789.", "０１２３４５６７８９．")),
        "zwsp": address.replace(".", "\u200b.", 2),
        "spaces": " . ".join(str(o) for o in octets),
        "mapped": f"::ffff:{address}",
        "mappedhex": f"::ffff:{value >> 16:x}:{value & 0xFFFF:x}",
    }[style]
    text = before + written + after
    start = len(before)
    found = find_ip_literals(text, {address})
    assert (start, start + len(written), address) in found, (text, found)
    series = pl.Series([text])
    assert series.str.contains(IP_LITERAL_HINT).item()
    normalized = normalize_for_ip_search(series)
    assert normalized.str.contains_any(ip_search_forms([address])).item(), normalized.item()


_NOISE = st.text(
    alphabet=st.sampled_from(
        [*"0123456789abcdefxX.:% \t%g-", "０", "９", "．", "：", "。", "\u200b", "\u00a0", "ａ"]
    ),
    max_size=40,
)


@given(text=_NOISE)
@settings(max_examples=1500, deadline=None)
def test_the_hint_and_the_shape_are_necessary_conditions(text: str) -> None:
    """Whatever the finder finds, the hint (on the text as written) flags; whatever address it
    finds but "::" and bare integers, IP_SHAPE (on the normalized text) flags too."""
    found = find_ip_literals(text)
    if not found:
        return
    assert re.search(IP_LITERAL_HINT, text), (text, found)
    assert pl.Series([text]).str.contains(IP_LITERAL_HINT).item(), (text, found)
    if any(a != "::" for _, _, a in found):
        normalized = normalize_for_ip_search(pl.Series([text])).item()
        assert re.search(IP_SHAPE, normalized), (text, normalized, found)


@given(text=_NOISE, value=st.integers(min_value=2**24, max_value=2**32 - 1))
@settings(max_examples=500, deadline=None)
def test_integer_tokens_are_a_necessary_condition(text: str, value: int) -> None:
    address = str(ipaddress.IPv4Address(value))
    text = f"{text} {value} {text}"
    found = {a for _, _, a in find_ip_literals(text, {address})}
    assert address in found
    normalized = normalize_for_ip_search(pl.Series([text]))
    tokens = set(normalized.str.extract_all(INTEGER_TOKEN).item().to_list())
    assert tokens & set(integer_forms([address])) or normalized.str.contains(IP_SHAPE).item()


# -- the vectorised reading -------------------------------------------------------------------


def test_normalize_for_ip_search_keeps_length_nulls_and_name() -> None:
    texts = pl.Series("content", ["ＡＢ 081.002.069.109", None, "2001:0DB8::0005", ""])
    normalized = normalize_for_ip_search(texts)
    assert normalized.name == "content"
    assert normalized.to_list() == ["ab 81.2.69.109", None, "2001:db8::5", ""]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("８１．２．６９．１０９", "81.2.69.109"),
        ("81.\u200b2.69\u2060.109", "81.2.69.109"),
        ("81. 2. 69 .109", "81.2.69.109"),
        ("1 . 2 . 3 . 4", "1.2.3.4"),  # one-digit groups need the second pass
        ("2001 : DB8 :: 5", "2001:db8::5"),
        ("0X0051.0x02", "0x51.0x2"),
        ("0.0.0.0 and 00.00", "0.0.0.0 and 0.0"),
        ("room 100.5", "room 100.5"),  # zeros inside a number stay
        ("81。2。69。109", "81.2.69.109"),
        ("Step 1. Open", "step 1. open"),  # a stop before a letter keeps its space
    ],
)
def test_normalize_for_ip_search(text: str, expected: str) -> None:
    assert normalize_for_ip_search(pl.Series([text])).item() == expected


def test_ip_search_forms_of_an_ipv4_address() -> None:
    forms = ip_search_forms([CLIENT_V4, "not an address"])
    assert forms[0] == CLIENT_V4
    for form in [
        "0x51.0x2.0x45.0x6d",
        "121.2.105.155",
        "1359103341",
        "0x5102456d",
        "12100442555",
        "::ffff:81.2.69.109",
        "::ffff:5102:456d",
        "0:0:0:0:0:ffff:5102:456d",
        "0:0:0:0:0:ffff:81.2.69.109",
        "0::ffff:5102:456d",
        "::0:ffff:5102:456d",
    ]:
        assert form in forms, form
    assert len(forms) == len(set(forms))
    # A stored mapped address has the same forms.
    assert set(ip_search_forms(["::ffff:5102:456d"])) == set(forms)


def test_ip_search_forms_of_an_ipv6_address() -> None:
    forms = ip_search_forms([CLIENT_V6])
    for form in [
        "2001:db8::5",
        "2001:db8:0:0:0:0:0:5",
        "2001:db8:0::5",
        "2001:db8::0:5",
        "2001:db8::0.0.0.5",
    ]:
        assert form in forms, form
    # Every form parses back to the address.
    assert {ipaddress.ip_address(f).compressed for f in forms} == {CLIENT_V6}


def test_ip_search_forms_of_an_address_with_zero_groups() -> None:
    """A zero group may be where "::" goes: 81.2.0.0 mapped is also 0:0:0:0:0:ffff:5102::."""
    forms = ip_search_forms(["81.2.0.0"])
    assert "0:0:0:0:0:ffff:5102::" in forms and "::ffff:5102:0" in forms
    assert {ipaddress.ip_address(f).compressed for f in forms if ":" in f} == {"::ffff:5102:0"}


def test_every_look_alike_character_is_in_the_scanned_blocks() -> None:
    """The finder reads look-alikes from a few Unicode blocks only (scanned at import): no
    character elsewhere folds (NFKC) to a character addresses are written with."""
    inside = {cp for first, last in COMPATIBILITY_BLOCKS for cp in range(first, last + 1)}
    outside = [
        cp
        for cp in range(0x80, 0x110000)
        if cp not in inside
        and (folded := unicodedata.normalize("NFKC", chr(cp))) != chr(cp)
        and (folded in ADDRESS_CHARACTERS or folded == "\u3002")
    ]
    assert outside == []


def test_invisible_characters_are_format_characters_or_variation_selectors() -> None:
    """Dropping a visible character would join what the writer kept apart."""
    for first, last in INVISIBLE_RANGES:
        for cp in range(first, last + 1):
            name = unicodedata.name(chr(cp), "")
            assert unicodedata.category(chr(cp)) in ("Cf", "Mn", "Cn") or "VARIATION" in name, hex(
                cp
            )
