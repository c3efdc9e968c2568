"""Geo enrichment core: lookups, reasons, snapshots, and the conversation-level rule."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from wildchat_dag.core.geo import (
    SPECIAL_NETWORKS,
    GeoDatabaseError,
    GeoStatus,
    conversation_locations,
    locate,
    open_snapshots,
    status_counts,
)
from wildchat_dag.core.geo_reference import ReferenceLocator
from wildchat_dag_tests.geo_databases import city, write_city_database

DAY = date(2024, 3, 10)

NETWORKS = {
    "81.2.69.0/24": city("United Kingdom", "England", "Brent", iso="GB"),
    "114.114.0.0/16": city("China", "Jiangsu", iso="CN"),
    "77.88.0.0/16": city("Russia", iso="RU"),  # a country without a subdivision
    "1.0.0.0/24": city(None),  # held, but no country
    "1.0.1.0/24": {"registered_country": {"iso_code": "AU", "names": {"en": "Australia"}}},
    "10.0.0.0/8": city("Trapland", "Trap"),  # a private network a database should not hold
    "2001:4860::/32": city("United States", "California", iso="US"),
    "2a02:1800::/24": city("Belgium", "Flanders", "Antwerp", iso="BE"),
}

# (address as ingest stores it, expected country, state, geo_status); IPv6 rows need an IPv6
# database.
CASES_V4 = [
    ("81.2.69.142", "United Kingdom", "England", GeoStatus.LOCATED),
    ("114.114.114.114", "China", "Jiangsu", GeoStatus.LOCATED),
    ("77.88.55.55", "Russia", None, GeoStatus.LOCATED),
    ("1.0.0.7", None, None, GeoStatus.NO_COUNTRY),
    ("1.0.1.7", None, None, GeoStatus.NO_COUNTRY),  # not even a continent
    ("8.8.8.8", None, None, GeoStatus.NOT_IN_DATABASE),
    ("10.1.2.3", None, None, GeoStatus.PRIVATE),
    ("192.168.0.10", None, None, GeoStatus.PRIVATE),
    ("172.20.1.1", None, None, GeoStatus.PRIVATE),
    ("100.64.0.1", None, None, GeoStatus.PRIVATE),
    ("169.254.1.1", None, None, GeoStatus.PRIVATE),
    ("127.0.0.1", None, None, GeoStatus.LOOPBACK),
    ("192.0.2.44", None, None, GeoStatus.RESERVED),
    ("198.51.100.7", None, None, GeoStatus.RESERVED),
    ("203.0.113.9", None, None, GeoStatus.RESERVED),
    ("224.0.0.251", None, None, GeoStatus.RESERVED),
    ("255.255.255.255", None, None, GeoStatus.RESERVED),
    ("0.0.0.0", None, None, GeoStatus.RESERVED),
    (None, None, None, GeoStatus.INVALID),
    ("not-an-address", None, None, GeoStatus.INVALID),
    ("300.1.2.3", None, None, GeoStatus.INVALID),
]
CASES_V6 = [
    ("2001:4860:4860::8888", "United States", "California", GeoStatus.LOCATED),
    ("2a02:1810::1", "Belgium", "Flanders", GeoStatus.LOCATED),
    # IPv4-mapped, as ipaddress writes it compressed: located as 81.2.69.142.
    ("::ffff:5102:458e", "United Kingdom", "England", GeoStatus.LOCATED),
    ("::ffff:10.0.0.1", None, None, GeoStatus.PRIVATE),
    ("2a03:2880::1", None, None, GeoStatus.NOT_IN_DATABASE),
    ("::1", None, None, GeoStatus.LOOPBACK),
    ("fd12:3456::1", None, None, GeoStatus.PRIVATE),
    ("fe80::1", None, None, GeoStatus.PRIVATE),
    ("fe80::1%eth0", None, None, GeoStatus.PRIVATE),  # ingest keeps a zone id
    ("2001:4860::1%2", "United States", "California", GeoStatus.LOCATED),
    ("2001:db8::5", None, None, GeoStatus.RESERVED),
    ("ff02::1", None, None, GeoStatus.RESERVED),
    ("::", None, None, GeoStatus.RESERVED),
    ("1:2", None, None, GeoStatus.INVALID),
]


def turns_at(addresses: list[str | None], day: date = DAY) -> pl.DataFrame:
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return pl.DataFrame(
        {"ip": addresses, "timestamp": [at] * len(addresses)},
        schema={"ip": pl.String, "timestamp": pl.Datetime("us", "UTC")},
    )


def answers(located: pl.DataFrame) -> list[tuple]:
    return list(located.select("ip", "country", "state", "geo_status").iter_rows())


@pytest.mark.parametrize("ip_version", [4, 6])
def test_test_databases_give_names_nulls_and_counted_reasons(tmp_path, ip_version):
    path = write_city_database(
        tmp_path / f"v{ip_version}.mmdb",
        {k: v for k, v in NETWORKS.items() if ip_version == 6 or ":" not in k},
        built=date(2024, 1, 2),
        ip_version=ip_version,
    )
    snapshots = open_snapshots(str(path))
    assert [s.ip_version for s in snapshots.snapshots] == [ip_version]
    assert not snapshots.embedded and snapshots.warning is None
    cases = CASES_V4 + (CASES_V6 if ip_version == 6 else [])
    result = locate(turns_at([c[0] for c in cases]), snapshots)
    assert answers(result.turns) == cases
    assert set(result.turns["geoip_snapshot"].to_list()) == {date(2024, 1, 2)}

    expected = {status: 0 for status in status_counts(pl.Series([], dtype=pl.String))}
    for *_, status in cases:
        expected[status] += 1
    assert status_counts(result.turns["geo_status"]) == expected


def test_ipv6_turns_against_an_ipv4_only_database_are_counted(tmp_path):
    path = write_city_database(
        tmp_path / "v4.mmdb", {"81.2.69.0/24": NETWORKS["81.2.69.0/24"]}, built=DAY, ip_version=4
    )
    result = locate(
        turns_at(["2001:4860:4860::8888", "::ffff:5102:458e", "81.2.69.1"]),
        open_snapshots(str(path)),
    )
    assert result.turns["geo_status"].to_list() == [
        GeoStatus.NOT_IN_DATABASE,
        GeoStatus.LOCATED,  # IPv4-mapped: looked up as IPv4
        GeoStatus.LOCATED,
    ]
    assert result.stats["ipv6_turns_in_ipv4_only_database"] == 1


def test_state_is_the_top_level_subdivision_unless_asked_for_the_most_specific(tmp_path):
    path = write_city_database(tmp_path / "db.mmdb", NETWORKS, built=DAY)
    snapshots = open_snapshots(str(path))
    turns = turns_at(["81.2.69.142", "2a02:1810::1", "114.114.114.114", "77.88.55.55"])
    top = locate(turns, snapshots).turns["state"]
    specific = locate(turns, snapshots, "most_specific").turns["state"]
    assert top.to_list() == ["England", "Flanders", "Jiangsu", None]
    assert specific.to_list() == ["Brent", "Antwerp", "Jiangsu", None]


def test_the_shipped_database_answers_as_geolite2_did_in_2018():
    snapshots = open_snapshots(None)
    assert snapshots.embedded
    assert snapshots.first_date() == date(2018, 7, 3)
    assert "2018-07-03" in snapshots.warning and "WILDCHAT_GEOIP_PATH" in snapshots.warning
    result = locate(
        turns_at(["81.2.69.142", "114.114.114.114", "2001:4860:4860::8888", "77.88.55.55"]),
        snapshots,
    )
    assert list(result.turns.select("country", "state").iter_rows()) == [
        ("United Kingdom", "England"),
        ("China", "Jiangsu"),
        ("United States", "California"),
        ("Russia", None),
    ]


def write_snapshots(folder: Path) -> None:
    """81.2.69.0/24 moves from England to Ireland on 2024-03-01."""
    write_city_database(
        folder / "GeoLite2-City_20240102" / "GeoLite2-City.mmdb",
        {"81.2.69.0/24": city("United Kingdom", "England")},
        built=date(2024, 1, 2),
    )
    write_city_database(
        folder / "GeoLite2-City_20240301" / "GeoLite2-City.mmdb",
        {"81.2.69.0/24": city("Ireland", "Leinster")},
        built=date(2024, 3, 1),
    )


def test_each_turn_uses_the_newest_snapshot_not_later_than_its_date(tmp_path):
    write_snapshots(tmp_path / "snapshots")
    snapshots = open_snapshots(str(tmp_path / "snapshots"))
    assert [s.build_date for s in snapshots.snapshots] == [date(2024, 1, 2), date(2024, 3, 1)]
    stamps = [
        datetime(2023, 12, 30, tzinfo=UTC),  # before every snapshot: the oldest, counted
        datetime(2024, 2, 29, 23, 59, tzinfo=UTC),
        datetime(2024, 3, 1, 0, 1, tzinfo=UTC),
        datetime(2024, 6, 1, tzinfo=UTC),
    ]
    turns = pl.DataFrame(
        {"ip": ["81.2.69.142"] * 4, "timestamp": stamps},
        schema={"ip": pl.String, "timestamp": pl.Datetime("us", "UTC")},
    )
    result = locate(turns, snapshots)
    assert result.turns["country"].to_list() == [
        "United Kingdom",
        "United Kingdom",
        "Ireland",
        "Ireland",
    ]
    assert result.turns["geoip_snapshot"].to_list() == [
        date(2024, 1, 2),
        date(2024, 1, 2),
        date(2024, 3, 1),
        date(2024, 3, 1),
    ]
    assert result.stats["turns_before_first_snapshot"] == 1


def test_unusable_databases_fail_naming_the_file(tmp_path):
    with pytest.raises(GeoDatabaseError, match="no such GeoIP database"):
        open_snapshots(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeoDatabaseError, match=r"no \.mmdb file"):
        open_snapshots(str(tmp_path / "empty"))
    corrupt = tmp_path / "corrupt" / "GeoLite2-City.mmdb"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"\x00not a maxmind database" * 100)
    with pytest.raises(GeoDatabaseError, match=f"{corrupt}: not a readable MaxMind database"):
        open_snapshots(str(tmp_path / "corrupt"))
    asn = write_city_database(
        tmp_path / "asn.mmdb", {"1.0.0.0/24": {"autonomous_system_number": 13335}},
        built=DAY, database_type="GeoLite2-ASN",
    )  # fmt: skip
    with pytest.raises(GeoDatabaseError, match=f"{asn}: a GeoLite2-ASN database"):
        open_snapshots(str(asn))
    for name in ("a", "b"):
        write_city_database(tmp_path / "twins" / f"{name}.mmdb", NETWORKS, built=DAY)
    with pytest.raises(GeoDatabaseError, match="both built on 2024-03-10"):
        open_snapshots(str(tmp_path / "twins"))


def test_a_replaced_database_file_is_read_again(tmp_path):
    path = tmp_path / "GeoLite2-City.mmdb"
    write_city_database(path, {"81.2.69.0/24": city("United Kingdom")}, built=date(2024, 1, 2))
    assert open_snapshots(str(path)).first_date() == date(2024, 1, 2)
    write_city_database(path, {"81.2.69.0/24": city("Ireland")}, built=date(2024, 2, 6))
    snapshots = open_snapshots(str(path))
    assert snapshots.first_date() == date(2024, 2, 6)
    assert locate(turns_at(["81.2.69.142"]), snapshots).turns["country"].to_list() == ["Ireland"]


def random_addresses(n: int, seed: int) -> list[str | None]:
    """Public, special-purpose, IPv4-mapped and malformed addresses, canonical as ingest
    stores them (except the malformed ones, which ingest would have nulled)."""
    rng = random.Random(seed)
    special = [ipaddress.ip_network(net) for net, _ in SPECIAL_NETWORKS]
    out: list[str | None] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.35:
            out.append(str(ipaddress.IPv4Address(rng.getrandbits(32))))
        elif r < 0.6:
            bits = rng.getrandbits(128)
            if rng.random() < 0.7:  # mostly global unicast, where the data is
                bits = (0x2 << 125) | (bits >> 3)
            out.append(ipaddress.IPv6Address(bits).compressed)
        elif r < 0.8:
            net = rng.choice(special)
            offset = rng.randrange(min(net.num_addresses, 1 << 32))
            out.append((net.network_address + offset).compressed)
        elif r < 0.93:
            mapped = ipaddress.IPv6Address(f"::ffff:{ipaddress.IPv4Address(rng.getrandbits(32))}")
            out.append(mapped.compressed)
        else:
            out.append(rng.choice([None, "", "junk", "1:2", "::g", "256.0.0.1", "1.2.3"]))
    return out


@pytest.mark.parametrize("database", ["shipped", "test"])
def test_the_vectorised_path_equals_the_per_row_loop(tmp_path, database):
    path = None if database == "shipped" else str(
        write_city_database(tmp_path / "db.mmdb", NETWORKS, built=DAY)
    )  # fmt: skip
    snapshots = open_snapshots(path)
    addresses = random_addresses(20_000, seed=7)
    addresses += [c[0] for c in CASES_V4 + CASES_V6]
    got = locate(turns_at(addresses), snapshots).turns
    reference = ReferenceLocator(snapshots)
    try:
        expected = [(ip, *reference.locate_one(ip, DAY)) for ip in addresses]
    finally:
        reference.close()
    assert answers(got) == expected
    assert len(set(got["geo_status"].to_list())) == 7  # every status occurs


def test_special_networks_cover_what_python_calls_non_global():
    """Every address Python's ipaddress says is not globally routable is not looked up, except
    IPv4-mapped ones, which are located as the IPv4 address they carry."""
    addresses = random_addresses(20_000, seed=11)
    statuses = locate(turns_at(addresses), open_snapshots(None)).turns["geo_status"].to_list()
    checked = 0
    for ip, status in zip(addresses, statuses, strict=True):
        try:
            address = ipaddress.ip_address(ip or "")
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global:
            checked += 1
            assert status in GeoStatus.UNLOCATABLE, ip
    assert checked > 3_000


def test_conversation_country_is_the_most_frequent_and_its_state_comes_from_that_country():
    turns = pl.DataFrame(
        [
            (1, 0, "United States", "California"),
            (1, 2, "United States", "Texas"),
            (1, 4, "Canada", "Ontario"),
            (1, 6, "Canada", "Ontario"),
            (1, 8, "United States", "New York"),
            (2, 0, None, None),  # nulls do not count
            (2, 2, "France", None),
            (2, 4, None, None),
            (3, 0, None, None),
            (4, 0, "Japan", "Tokyo"),  # a tie: the earliest turn wins
            (4, 2, "China", "Beijing"),
        ],
        schema=["conversation_id", "utterance_index", "country", "state"],
        orient="row",
    )
    got = {row[0]: row[1:] for row in conversation_locations(turns).iter_rows()}
    # Ontario is the most frequent state overall, but not in the conversation's country.
    assert got[1] == ("United States", "California")
    assert got[2] == ("France", None)
    assert 3 not in got
    assert got[4] == ("Japan", "Tokyo")
