"""Geo enrichment core: lookups, reasons, snapshots, and the conversation-level rule."""

from __future__ import annotations

import ipaddress
import random
import re
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from wildchat_dag.defs.geo.geo import (
    DEFAULT_SUBDIVISION,
    SPECIAL_NETWORKS,
    GeoDatabaseError,
    GeoStatus,
    conversation_locations,
    locate,
    open_snapshots,
    status_counts,
)
from wildchat_dag.defs.geo.geo_reference import ReferenceLocator
from wildchat_dag.defs.geo.resource import GeoIpDatabase
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
    ("81.2.69.142", "United Kingdom", "Brent", GeoStatus.LOCATED),
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
    ("2a02:1810::1", "Belgium", "Antwerp", GeoStatus.LOCATED),
    # IPv4-mapped, as ipaddress writes it compressed: located as 81.2.69.142.
    ("::ffff:5102:458e", "United Kingdom", "Brent", GeoStatus.LOCATED),
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


def test_state_is_the_most_specific_subdivision_unless_asked_for_the_top_level(tmp_path):
    path = write_city_database(tmp_path / "db.mmdb", NETWORKS, built=DAY)
    snapshots = open_snapshots(str(path))
    turns = turns_at(["81.2.69.142", "2a02:1810::1", "114.114.114.114", "77.88.55.55"])
    default = locate(turns, snapshots).turns["state"]
    top = locate(turns, snapshots, "top_level").turns["state"]
    # One level only (Jiangsu): both levels are the same name.
    assert default.to_list() == ["Brent", "Antwerp", "Jiangsu", None]
    assert top.to_list() == ["England", "Flanders", "Jiangsu", None]
    assert GeoIpDatabase().subdivision == DEFAULT_SUBDIVISION == "most_specific"
    reference = ReferenceLocator(snapshots)
    try:
        assert [reference.locate_one(ip, DAY)[1] for ip in turns["ip"]] == default.to_list()
    finally:
        reference.close()


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
        ("United Kingdom", "Brent"),
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


# -- names from the naming snapshot ------------------------------------------------------------

BEFORE, AFTER = date(2024, 1, 2), date(2024, 6, 1)  # build dates of the two snapshots
TURKEY, MARMARA, ISTANBUL = 298795, 11, 745042  # geoname_ids, as GeoNames numbers them
NETHERLANDS, NORTH_HOLLAND = 2750405, 2749879
ESWATINI, HHOHHO = 934841, 934995


def write_renaming_snapshots(folder: Path) -> Path:
    """Turkey and the Netherlands renamed in the newer snapshot; 5.5.5.0/24 moved from
    Swaziland to South Africa, and Swaziland, renamed Eswatini, is held only at another address;
    Atlantis's ids are unknown to the newer snapshot; Germany has no ids in the older one."""
    write_city_database(
        folder / "GeoLite2-City_20240102" / "GeoLite2-City.mmdb",
        {
            "81.2.69.0/24": city(
                "Turkey", "Marmara Region", "Istanbul Province",
                iso="TR", geonames=(TURKEY, MARMARA, ISTANBUL),
            ),
            "145.0.0.0/16": city(
                "Netherlands", "North Holland", iso="NL", geonames=(NETHERLANDS, NORTH_HOLLAND)
            ),
            "5.5.5.0/24": city("Swaziland", "Hhohho", iso="SZ", geonames=(ESWATINI, HHOHHO)),
            "6.6.6.0/24": city("Atlantis", "Deep", geonames=(1, 2)),
            "7.7.7.0/24": city("Germany", "Bavaria", iso="DE"),
        },
        built=BEFORE,
    )  # fmt: skip
    write_city_database(
        folder / "GeoLite2-City_20240601" / "GeoLite2-City.mmdb",
        {
            "81.2.69.0/24": city(
                "Türkiye", "Marmara", "Istanbul", iso="TR", geonames=(TURKEY, MARMARA, ISTANBUL)
            ),
            "145.0.0.0/16": city(
                "The Netherlands", "North Holland", iso="NL",
                geonames=(NETHERLANDS, NORTH_HOLLAND),
            ),
            "5.5.5.0/24": city("South Africa", "Gauteng", iso="ZA", geonames=(953987, 1085594)),
            "9.9.9.0/24": city("Eswatini", "Hhohho", iso="SZ", geonames=(ESWATINI, HHOHHO)),
            "7.7.7.0/24": city("Germany", "Bavaria", iso="DE", geonames=(2921044, 2951839)),
        },
        built=AFTER,
    )  # fmt: skip
    return folder


def turns_on(rows: list[tuple[str | None, date]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ip": [ip for ip, _ in rows],
            "timestamp": [datetime(d.year, d.month, d.day, 12, tzinfo=UTC) for _, d in rows],
        },
        schema={"ip": pl.String, "timestamp": pl.Datetime("us", "UTC")},
    )


RENAMING_TURNS = [
    ("81.2.69.142", date(2024, 3, 1)),
    ("145.0.1.1", date(2024, 3, 1)),
    ("5.5.5.5", date(2024, 3, 1)),
    ("6.6.6.6", date(2024, 3, 1)),
    ("7.7.7.7", date(2024, 3, 1)),
    ("81.2.69.142", date(2024, 7, 1)),
    ("10.0.0.1", date(2024, 3, 1)),
]


def test_names_come_from_the_newest_snapshot_by_geoname_id(tmp_path):
    snapshots = open_snapshots(str(write_renaming_snapshots(tmp_path / "snapshots")))
    turns = turns_on(RENAMING_TURNS)
    named = locate(turns, snapshots)
    assert list(named.turns.select("country", "state").iter_rows()) == [
        ("Türkiye", "Istanbul"),
        ("The Netherlands", "North Holland"),
        # The address moved; the place it was located at is named as the newest snapshot
        # names it elsewhere.
        ("Eswatini", "Hhohho"),
        ("Atlantis", "Deep"),  # ids the newest snapshot does not know: the dated names
        ("Germany", "Bavaria"),  # no ids in the dated record: the dated names
        ("Türkiye", "Istanbul"),  # located by the newest snapshot itself
        (None, None),
    ]
    # Located by the snapshot current on the day, whoever named it.
    assert named.turns["geoip_snapshot"].to_list() == [BEFORE] * 5 + [AFTER, BEFORE]
    assert named.stats["turns_renamed"] == 3
    # Eswatini's ids are held only at an address no turn came from: the whole database was read.
    assert named.stats["naming_snapshot_walked"] is True
    unmoved = locate(turns_on(RENAMING_TURNS[:2]), snapshots)
    assert unmoved.turns["country"].to_list() == ["Türkiye", "The Netherlands"]
    assert unmoved.stats["naming_snapshot_walked"] is False

    top = locate(turns, snapshots, "top_level")
    assert top.turns["state"].to_list()[:2] == ["Marmara", "North Holland"]

    dated = locate(turns, snapshots, newest_names=False)
    assert list(dated.turns.select("country", "state").iter_rows())[:5] == [
        ("Turkey", "Istanbul Province"),
        ("Netherlands", "North Holland"),
        ("Swaziland", "Hhohho"),
        ("Atlantis", "Deep"),
        ("Germany", "Bavaria"),
    ]
    assert dated.stats["turns_renamed"] == 0

    for subdivision in ("most_specific", "top_level"):
        for newest_names in (True, False):
            got = locate(turns, snapshots, subdivision, newest_names).turns
            reference = ReferenceLocator(snapshots, subdivision, newest_names)
            try:
                expected = [(ip, *reference.locate_one(ip, day)) for ip, day in RENAMING_TURNS]
            finally:
                reference.close()
            assert answers(got) == expected, (subdivision, newest_names)


def test_one_database_names_what_it_locates(tmp_path):
    """With one snapshot there is nothing newer to name by: its names, ids or not."""
    folder = write_renaming_snapshots(tmp_path / "snapshots")
    older = open_snapshots(str(folder / "GeoLite2-City_20240102" / "GeoLite2-City.mmdb"))
    result = locate(turns_on(RENAMING_TURNS[:2]), older)
    assert result.turns["country"].to_list() == ["Turkey", "Netherlands"]
    assert result.stats["turns_renamed"] == 0


def test_the_names_description_says_which_snapshot_named_the_values(tmp_path):
    shipped = open_snapshots(None)
    assert shipped.names_description() == "GeoLite2-City built 2018-07-03 (the embedded snapshot)"
    folder = write_renaming_snapshots(tmp_path / "snapshots")
    snapshots = open_snapshots(str(folder))
    assert snapshots.naming.build_date == AFTER
    described = snapshots.names_description()
    assert described.startswith("GeoLite2-City built 2024-06-01 (the newest of 2 snapshots")
    assert snapshots.names_description(newest_names=False) == (
        "each turn's own snapshot (GeoLite2-City built 2024-01-02 to GeoLite2-City built "
        "2024-06-01)"
    )
    single = open_snapshots(str(folder / "GeoLite2-City_20240601" / "GeoLite2-City.mmdb"))
    assert single.names_description(False) == "GeoLite2-City built 2024-06-01"
    # No path: the description goes into metadata and the release card.
    for text in (described, single.names_description()):
        assert str(tmp_path) not in text and ".mmdb" not in text


def renamed(record: dict) -> dict:
    """``record`` as a later snapshot might name it: every English name changed."""
    out = {**record}
    for key in ("country",):
        if key in out:
            out[key] = {**out[key], "names": {"en": out[key]["names"]["en"] + " (new)"}}
    if "subdivisions" in out:
        out["subdivisions"] = [
            {**s, "names": {"en": s["names"]["en"] + " (new)"}} for s in out["subdivisions"]
        ]
    return out


@pytest.mark.parametrize("subdivision", ["most_specific", "top_level"])
def test_the_vectorised_renaming_equals_the_per_row_loop(tmp_path, subdivision):
    """Two snapshots of NETWORKS with ids, the newer renaming every place and moving one
    network: random turns on either side of the newer one's build date."""
    with_ids = {
        "81.2.69.0/24": city("United Kingdom", "England", "Brent", geonames=(10, 11, 12)),
        "114.114.0.0/16": city("China", "Jiangsu", geonames=(20, 21)),
        "77.88.0.0/16": city("Russia", geonames=(30,)),
        "2001:4860::/32": city("United States", "California", geonames=(40, 41)),
        "2a02:1800::/24": city("Belgium", "Flanders", "Antwerp", geonames=(50, 51, 52)),
        "1.0.0.0/24": city(None),
    }
    folder = tmp_path / "snapshots"
    write_city_database(folder / "old.mmdb", with_ids, built=BEFORE)
    newer = {k: renamed(v) for k, v in with_ids.items() if k != "114.114.0.0/16"}
    newer["114.114.0.0/17"] = renamed(with_ids["77.88.0.0/16"])  # moved to Russia
    newer["8.8.8.0/24"] = renamed(with_ids["114.114.0.0/16"])  # China, held elsewhere
    write_city_database(folder / "new.mmdb", newer, built=AFTER)
    snapshots = open_snapshots(str(folder))

    rng = random.Random(3)
    pool = [c[0] for c in CASES_V4 + CASES_V6] + random_addresses(2_000, seed=5)
    pool += [f"114.114.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(200)]
    rows = [(ip, rng.choice([date(2024, 3, 1), date(2024, 7, 1)])) for ip in pool]
    got = locate(turns_on(rows), snapshots, subdivision)
    reference = ReferenceLocator(snapshots, subdivision)
    try:
        expected = [(ip, *reference.locate_one(ip, day)) for ip, day in rows]
    finally:
        reference.close()
    assert answers(got.turns) == expected
    countries = set(got.turns["country"].drop_nulls())
    assert {"China (new)", "Russia (new)", "United Kingdom (new)"} <= countries
    assert not countries & {"China", "United Kingdom"}  # every place renamed
    assert got.stats["turns_renamed"] > 0


# -- WildChat's level, on the real sample -------------------------------------------------------


@pytest.fixture(scope="module")
def embedded_places() -> dict[str, dict[tuple[str, str], str]]:
    """For each level ('top_level', 'most_specific'): (country, subdivision name) -> an address
    the embedded 2018 snapshot places there at that level. One walk over the whole database
    (about 40 s): a sampled set of addresses would miss small subdivisions."""
    import maxminddb

    places: dict[str, dict[tuple[str, str], str]] = {"top_level": {}, "most_specific": {}}
    reader = maxminddb.open_database(open_snapshots(None).naming.path)
    try:
        for network, record in reader:
            country = (record.get("country") or {}).get("names", {}).get("en")
            subdivisions = record.get("subdivisions") or []
            if country is None or not subdivisions:
                continue
            for level, index in (("top_level", 0), ("most_specific", -1)):
                name = subdivisions[index].get("names", {}).get("en")
                known = places[level].get((country, name))
                # An IPv4 address where there is one: as most clients in the sample.
                if name and (known is None or (":" in known and network.version == 4)):
                    places[level][(country, name)] = str(network.network_address)
    finally:
        reader.close()
    return places


def test_wildchats_states_are_the_most_specific_subdivision_and_the_default(
    wildchat_sample, embedded_places
):
    """WildChat's (country, state) pairs against the embedded GeoLite2 snapshot: those that
    name a subdivision at one level only name the most specific one, and the default setting
    gives every pair found at that level, where the top level misses them."""
    pairs = {(c["country"], c["state"]) for c in wildchat_sample if c["country"] and c["state"]}
    top, specific = embedded_places["top_level"], embedded_places["most_specific"]
    only_top = sorted(p for p in pairs if p in top and p not in specific)
    only_specific = sorted(p for p in pairs if p in specific and p not in top)
    assert only_top == [], f"{len(only_top)} of {len(pairs)} states are top-level names only"
    assert len(only_specific) >= 10, only_specific  # 18 of 113 in the 187 conversations
    assert ("Italy", "Province of Messina") in only_specific

    found = sorted(p for p in pairs if p in specific)
    addresses = [specific[p] for p in found]
    snapshots = open_snapshots(None)
    default = locate(turns_at(addresses), snapshots).turns
    assert list(default.select("country", "state").iter_rows()) == found
    top_level = locate(turns_at(addresses), snapshots, "top_level").turns
    at_top = set(top_level.select("country", "state").iter_rows())
    assert not at_top & set(only_specific)


def test_geoname_ids_stored_otherwise_than_maxmind_fail_naming_the_file(tmp_path):
    """A home-made database whose ids are not uint32 cannot be named by id: said, with the way
    out, and without the addresses."""
    folder = write_renaming_snapshots(tmp_path / "snapshots")
    odd = folder / "odd" / "GeoLite2-City.mmdb"
    record = city("Turkey", iso="TR")
    record["country"]["geoname_id"] = 7  # mmdb-writer stores a small int as uint16
    write_city_database(odd, {"81.2.69.0/24": record}, built=date(2023, 1, 1))
    snapshots = open_snapshots(str(folder))
    turns = turns_on([("81.2.69.142", date(2023, 6, 1))])
    with pytest.raises(GeoDatabaseError, match="names_from_newest off") as failure:
        locate(turns, snapshots)
    assert str(odd) in str(failure.value) and "81.2.69" not in str(failure.value)
    assert locate(turns, snapshots, newest_names=False).turns["country"].to_list() == ["Turkey"]
    # The same, where the naming snapshot is the odd one.
    newest = tmp_path / "newest"
    write_city_database(newest / "old.mmdb", {"81.2.69.0/24": city("Turkey", iso="TR",
                        geonames=(TURKEY,))}, built=BEFORE)  # fmt: skip
    write_city_database(newest / "new.mmdb", {"81.2.69.0/24": record}, built=AFTER)
    with pytest.raises(
        GeoDatabaseError, match=re.escape(f"{newest / 'new.mmdb'}: its geoname_ids")
    ):
        locate(turns_on([("81.2.69.142", date(2024, 3, 1))]), open_snapshots(str(newest)))
