"""Client IPs outside the raw layer: salted hashing, the demo salt file, and finding IP literals.

The salt is what keeps ``hashed_ip`` from being reversed (2^32 IPv4 addresses hash in minutes),
so the salt checks are tested as strictly as the hash itself. ``find_ip_literals`` feeds the
check that no raw client address leaks into a released table, so both what it must find and
what it must not (versions, times, C++ scopes) are pinned down.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import stat
from pathlib import Path

import polars as pl
import pytest

from wildchat_dag.core.checks import rows_with_raw_ips
from wildchat_dag.core.ip_addresses import (
    MIN_SALT_CHARS,
    SaltError,
    check_salt,
    ensure_demo_salt,
    find_ip_literals,
    hash_ip,
    hash_ips,
    ip_literals_in,
    salt_fingerprint,
)

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
