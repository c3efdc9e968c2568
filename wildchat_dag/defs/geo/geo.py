"""Where a user turn came from: GeoLite2 / GeoIP2 City lookups of its client IP, vectorised.

Values are WildChat's: ``country`` is the English country name (``"United States"``) and
``state`` the English name of a subdivision. By default that is the most specific subdivision,
the level WildChat's values hold (``"Liverpool"``, ``"Province of Messina"``, ``"Province of
Cavite"``, where the top level says England, Sicily, Calabarzon); where a country has one level
only, both are the same (``"California"``). The top level can be chosen instead: 81.2.69.142 is
in Brent by default, in England at the top level.

Addresses that no database should place are classified first, by the IANA special-purpose
registries (``SPECIAL_NETWORKS``): loopback, private (RFC 1918, carrier-grade NAT, link-local,
IPv6 unique-local) and reserved (documentation, benchmarking, multicast, the future-use block,
IPv6 outside global unicast). They get a null country and state whatever a database holds for
them, and are counted by reason. Everything else is looked up with ``maxminddb-polars``, once per
distinct address and snapshot; the misses get a second, projected lookup to tell an address the
database does not hold from one it holds without a country, and from a malformed one.

A folder of dated snapshots is also accepted: each turn is located with the newest snapshot
built no later than the turn's (UTC) date, as WildChat's later release did. A snapshot's date is
its build date, read from the database's own metadata. The names, though, come by default from
the newest snapshot of the folder (the *naming snapshot*): the place an older snapshot located a
turn at is looked up there by its ``geoname_id``, so that a country or subdivision renamed since
(Turkey to Türkiye, Netherlands to The Netherlands) carries the name WildChat's values use. A
place the naming snapshot does not know keeps the older snapshot's name.

This module reads raw client IPs, so it runs inside the privacy boundary; what it returns holds
no address, network or coordinates.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import maxminddb
import maxminddb_polars  # noqa: F401  (registers the ``.mmdb`` expression namespace)
import polars as pl

from wildchat_dag.core.schema import CONVERSATION_LOCATIONS_SCHEMA, USER_TURN_LOCATIONS_SCHEMA
from wildchat_dag.core.utterances import (
    EnrichedDay,
    check_conserved,
    conversation_table,
    conversation_utterances,
    counts_of,
    day_table,
    most_frequent,
)


class GeoStatus:
    """Why a user turn has, or has not, a country (``geo_status``)."""

    LOCATED = "located"
    NO_COUNTRY = "no_country"  # the database holds the address, but no country for it
    NOT_IN_DATABASE = "not_in_database"
    INVALID = "invalid"  # no address, or not an IP address
    LOOPBACK = "loopback"
    PRIVATE = "private"
    RESERVED = "reserved"

    UNLOCATABLE = (INVALID, LOOPBACK, PRIVATE, RESERVED)


# IANA's special-purpose address registries, by what they mean for locating a client. An IPv6
# address outside global unicast (2000::/3) is reserved too; IPv4-mapped IPv6 addresses are
# located as the IPv4 address they carry.
SPECIAL_NETWORKS: tuple[tuple[str, str], ...] = (
    ("127.0.0.0/8", GeoStatus.LOOPBACK),
    ("::1/128", GeoStatus.LOOPBACK),
    ("10.0.0.0/8", GeoStatus.PRIVATE),
    ("172.16.0.0/12", GeoStatus.PRIVATE),
    ("192.168.0.0/16", GeoStatus.PRIVATE),
    ("100.64.0.0/10", GeoStatus.PRIVATE),  # carrier-grade NAT, RFC 6598
    ("169.254.0.0/16", GeoStatus.PRIVATE),  # link-local
    ("fc00::/7", GeoStatus.PRIVATE),  # unique local
    ("fe80::/10", GeoStatus.PRIVATE),  # link-local
    ("0.0.0.0/8", GeoStatus.RESERVED),
    ("192.0.0.0/24", GeoStatus.RESERVED),
    ("192.0.2.0/24", GeoStatus.RESERVED),  # documentation
    ("192.88.99.0/24", GeoStatus.RESERVED),
    ("198.18.0.0/15", GeoStatus.RESERVED),  # benchmarking
    ("198.51.100.0/24", GeoStatus.RESERVED),  # documentation
    ("203.0.113.0/24", GeoStatus.RESERVED),  # documentation
    ("224.0.0.0/4", GeoStatus.RESERVED),  # multicast
    ("240.0.0.0/4", GeoStatus.RESERVED),  # future use, and the broadcast address
    ("2001::/23", GeoStatus.RESERVED),  # IETF protocol assignments (Teredo, ORCHID, ...)
    ("2001:db8::/32", GeoStatus.RESERVED),  # documentation
    ("ff00::/8", GeoStatus.RESERVED),  # multicast
)
GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_GLOBAL_UNICAST_TOP32 = (
    int(GLOBAL_UNICAST_V6.network_address) >> 96,
    int(GLOBAL_UNICAST_V6.broadcast_address) >> 96,
)

Subdivision = Literal["top_level", "most_specific"]
# WildChat's level: its states are the most specific subdivision names GeoLite2 gives.
DEFAULT_SUBDIVISION: Subdivision = "most_specific"
NAME_LANGUAGE = "en"


class GeoDatabaseError(ValueError):
    """A configured GeoIP database cannot be used; the message names the file."""


# -- databases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeoSnapshot:
    path: str
    build_date: date
    database_type: str
    ip_version: int


@dataclass(frozen=True)
class GeoSnapshots:
    """The databases to locate with, oldest first."""

    snapshots: tuple[GeoSnapshot, ...]
    embedded: bool = False
    source: str = ""

    def choose(self, days: pl.Series) -> pl.Series:
        """For each day, the index of the newest snapshot built no later than that day; the
        oldest for a day before every snapshot (counted as ``turns_before_first_snapshot``)."""
        built = pl.Series([s.build_date for s in self.snapshots], dtype=pl.Date)
        newest = built.search_sorted(days.cast(pl.Date), side="right").cast(pl.Int64) - 1
        return newest.clip(lower_bound=0).alias("snapshot")

    def first_date(self) -> date:
        return self.snapshots[0].build_date

    @property
    def naming(self) -> GeoSnapshot:
        """The snapshot whose names country and state carry by default: the newest."""
        return self.snapshots[-1]

    def renames(self, newest_names: bool) -> bool:
        """Whether some turn may be named by another snapshot than the one that located it."""
        return newest_names and len(self.snapshots) > 1

    def names_description(self, newest_names: bool = True) -> str:
        """Which snapshot named country and state, for metadata and the release card: no path,
        the database type and build date (``GeoLite2-City built 2018-07-03``)."""
        naming = self.naming
        if self.embedded:
            return f"{naming.database_type} built {naming.build_date} (the embedded snapshot)"
        if len(self.snapshots) == 1:
            return f"{naming.database_type} built {naming.build_date}"
        if newest_names:
            return (
                f"{naming.database_type} built {naming.build_date} (the newest of "
                f"{len(self.snapshots)} snapshots; each turn located with the one current on "
                "its date)"
            )
        first = self.snapshots[0]
        return (
            f"each turn's own snapshot ({first.database_type} built {first.build_date} to "
            f"{naming.database_type} built {naming.build_date})"
        )

    @property
    def warning(self) -> str | None:
        """Said whenever the embedded default database is used."""
        if not self.embedded:
            return None
        return (
            f"GeoIP: using the GeoLite2-City snapshot of {self.first_date()} shipped in "
            "maxminddb-geolite2; addresses reassigned since then are placed where they were. "
            "Set WILDCHAT_GEOIP_PATH (the geoip resource's path) to a current GeoLite2-City "
            "database or a folder of dated snapshots."
        )


def embedded_database_path() -> Path:
    try:
        from _maxminddb_geolite2 import geolite2_database
    except ImportError as exc:
        raise GeoDatabaseError(
            "No GeoIP database configured and maxminddb-geolite2 is not installed: set "
            "WILDCHAT_GEOIP_PATH to a GeoLite2-City .mmdb file or a folder of them"
        ) from exc
    return Path(geolite2_database())


def read_snapshot(path: Path) -> GeoSnapshot:
    try:
        reader = maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise GeoDatabaseError(f"{path}: not a readable MaxMind database ({exc})") from exc
    try:
        meta = reader.metadata()
    finally:
        reader.close()
    if "City" not in meta.database_type and "Enterprise" not in meta.database_type:
        raise GeoDatabaseError(
            f"{path}: a {meta.database_type} database; country and state need a GeoLite2-City "
            "or GeoIP2-City database"
        )
    return GeoSnapshot(
        path=str(path.resolve()),
        build_date=datetime.fromtimestamp(meta.build_epoch, UTC).date(),
        database_type=meta.database_type,
        ip_version=meta.ip_version,
    )


@functools.cache
def _embedded_snapshots() -> GeoSnapshots:
    embedded = embedded_database_path()
    return GeoSnapshots((read_snapshot(embedded),), embedded=True, source=str(embedded))


@functools.cache
def _read_snapshots(source: str, files: tuple[tuple[str, int, int], ...]) -> GeoSnapshots:
    """``files``: (path, mtime, size) of each database, so that a changed file is read again."""
    snapshots = sorted((read_snapshot(Path(f)) for f, _, _ in files), key=lambda s: s.build_date)
    for older, newer in itertools.pairwise(snapshots):
        if older.build_date == newer.build_date:
            raise GeoDatabaseError(
                f"{source}: {older.path} and {newer.path} were both built on "
                f"{older.build_date}; keep one snapshot per date"
            )
    return GeoSnapshots(tuple(snapshots), source=source)


def open_snapshots(path: str | None) -> GeoSnapshots:
    """The embedded default (``path`` None), one database file, or a folder of snapshots
    (every ``*.mmdb`` under it). Read again when a file changes."""
    if path is None:
        return _embedded_snapshots()
    root = Path(path)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(root.rglob("*.mmdb"))
        if not files:
            raise GeoDatabaseError(f"{root}: a snapshot folder with no .mmdb file in it")
    else:
        raise GeoDatabaseError(f"{root}: no such GeoIP database file or snapshot folder")
    stamps = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    return _read_snapshots(str(root), stamps)


# -- special-purpose addresses, vectorised -----------------------------------------------------


def _ranges(version: int, bits: int) -> list[tuple[int, int, str]]:
    """(first, last, status) of the special networks of one IP version, on their top ``bits``."""
    shift = (32 if version == 4 else 128) - bits
    return [
        (int(net.network_address) >> shift, int(net.broadcast_address) >> shift, status)
        for net, status in ((ipaddress.ip_network(n), s) for n, s in SPECIAL_NETWORKS)
        if net.version == version and net.prefixlen <= bits
    ]


def _in_ranges(value: pl.Expr, ranges: list[tuple[int, int, str]], otherwise: pl.Expr) -> pl.Expr:
    """The status of the first range holding ``value``; the most specific range comes first."""
    result = otherwise
    for first, last, status in sorted(ranges, key=lambda r: r[1] - r[0], reverse=True):
        result = pl.when(value.is_between(first, last)).then(pl.lit(status)).otherwise(result)
    return result


_V4 = r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$"
# Only a dotted quad starting with one of these first octets can be special; the rest of IPv4
# needs no arithmetic at all.
_V4_SPECIAL_FIRST = sorted(
    {
        octet
        for net in (ipaddress.ip_network(n) for n, _ in SPECIAL_NETWORKS)
        if net.version == 4
        for octet in range(int(net.network_address) >> 24, (int(net.broadcast_address) >> 24) + 1)
    }
)
_V4_CANDIDATE = "^(?:" + "|".join(map(str, _V4_SPECIAL_FIRST)) + r")\."
# An IPv6 address in hex notation, with at most one "::" (RFC 4291, 2.2, forms 1 and 2).
_H = "[0-9a-f]{1,4}"
_V6 = (
    f"^(?:(?:{_H}:){{7}}{_H}|(?:{_H}:){{1,7}}:|(?:{_H}:){{1,6}}:{_H}"
    + "".join(f"|(?:{_H}:){{1,{n}}}(?::{_H}){{1,{7 - n}}}" for n in range(5, 0, -1))
    + f"|:(?:(?::{_H}){{1,7}}|:))$"
)
_MAPPED = "::ffff:"


def ipv4_value(address: pl.Expr) -> pl.Expr:
    """A dotted-quad IPv4 address as an integer; null for anything else."""
    octets = address.str.extract_groups(_V4)
    parts = [octets.struct.field(str(i)).cast(pl.Int64) for i in range(1, 5)]
    value = parts[0] * (1 << 24) + parts[1] * (1 << 16) + parts[2] * (1 << 8) + parts[3]
    return pl.when(pl.all_horizontal(p <= 255 for p in parts)).then(value)


def unmapped(address: pl.Expr) -> pl.Expr:
    """An IPv4-mapped IPv6 address (``::ffff:5102:458e``, ``::ffff:81.2.69.142``) as the IPv4
    address it carries; other addresses unchanged."""
    halves = address.str.extract_groups(f"^{_MAPPED}([0-9a-f]{{1,4}}):([0-9a-f]{{1,4}})$")
    high = halves.struct.field("1").str.to_integer(base=16, strict=False)
    low = halves.struct.field("2").str.to_integer(base=16, strict=False)
    from_hex = pl.concat_str([high // 256, high % 256, low // 256, low % 256], separator=".")
    dotted = address.str.extract(f"^{_MAPPED}" + r"(\d{1,3}(?:\.\d{1,3}){3})$")
    return pl.coalesce(from_hex, dotted, address)


def ipv4_status(frame: pl.DataFrame) -> pl.DataFrame:
    """``special`` for dotted-quad ``address`` rows."""
    value = pl.col("value")
    return (
        frame.with_columns(value=ipv4_value(pl.col("address")))
        .with_columns(
            special=pl.when(value.is_null())
            .then(pl.lit(GeoStatus.INVALID))
            .otherwise(_in_ranges(value, _ranges(4, 32), pl.lit(None, pl.String)))
        )
        .drop("value")
    )


def ipv6_status(frame: pl.DataFrame) -> pl.DataFrame:
    """``special`` for IPv6 ``address`` rows; a zone id (``fe80::1%eth0``) is dropped."""
    address, top32 = pl.col("address"), pl.col("top32")
    frame = frame.with_columns(address.str.replace(r"%[^%]*$", ""))
    # The first 32 bits of an address in compressed notation: an empty group only ever stands
    # for zeros. Every special IPv6 network but ::1 is decided by them.
    groups = address.str.extract_groups(r"^([0-9a-f]{0,4}):([0-9a-f]{0,4})")
    high, low = (
        groups.struct.field(str(i)).str.to_integer(base=16, strict=False).fill_null(0)
        for i in (1, 2)
    )
    outside_global = (
        pl.when(top32.is_between(*_GLOBAL_UNICAST_TOP32))
        .then(pl.lit(None, pl.String))
        .otherwise(pl.lit(GeoStatus.RESERVED))
    )
    return (
        frame.with_columns(top32=high * 65536 + low)
        .with_columns(
            special=pl.when(~address.str.contains(_V6))
            .then(pl.lit(GeoStatus.INVALID))
            .when(address == "::1")
            .then(pl.lit(GeoStatus.LOOPBACK))
            .otherwise(_in_ranges(top32, _ranges(6, 32), outside_global))
        )
        .drop("top32")
    )


def classify(addresses: pl.DataFrame) -> pl.DataFrame:
    """``addresses`` (canonical ``ip``, as ingest stores it) with ``address``, what to look up
    (IPv4-mapped addresses unmapped), and ``special``: why it cannot be located, or null.

    Only the rows that can be special pay for parsing: IPv6 ones, and IPv4 ones whose first
    octet starts a special network. A malformed IPv4 string among the rest fails its lookup and
    is named invalid there.
    """
    ip, address = pl.col("ip"), pl.col("address")
    mapped = ip.str.starts_with(_MAPPED).fill_null(False)
    frame = pl.concat(
        [
            addresses.filter(~mapped).with_columns(address=ip),
            addresses.filter(mapped).with_columns(address=unmapped(ip)),
        ]
    ).with_columns(
        kind=pl.when(address.is_null())
        .then(pl.lit("none"))
        .when(address.str.contains(":", literal=True))
        .then(pl.lit("v6"))
        .when(address.str.contains(_V4_CANDIDATE))
        .then(pl.lit("v4"))
        .otherwise(pl.lit("plain"))
    )
    statuses = {
        "none": lambda part: part.with_columns(special=pl.lit(GeoStatus.INVALID)),
        "v6": ipv6_status,
        "v4": ipv4_status,
        "plain": lambda part: part.with_columns(special=pl.lit(None, pl.String)),
    }
    parts = frame.partition_by("kind", as_dict=True, include_key=False)
    return pl.concat(
        [
            frame.drop("kind").with_columns(special=pl.lit(None, pl.String)).clear(),
            *(statuses[kind](part) for (kind,), part in parts.items()),
        ]
    )


# -- locating -----------------------------------------------------------------------------------


def _subdivision_index(subdivision: Subdivision) -> int:
    return 0 if subdivision == "top_level" else -1


def _misses_status(snapshot: GeoSnapshot) -> pl.Expr:
    """For an address the lookup gave no country: malformed, absent from the database, or held
    there without a country. A projected whole-record lookup is null exactly for a miss."""
    address = pl.col("address")
    held = address.mmdb.lookup(
        snapshot.path, dtype={"continent": {"code": pl.String}}, strict=False
    ).is_not_null()
    # IPv6 addresses were checked by ``classify``; IPv4 ones not starting a special network
    # were not, and a malformed one fails its lookup.
    malformed = ~address.str.contains(":", literal=True) & ipv4_value(address).is_null()
    return (
        pl.when(malformed)
        .then(pl.lit(GeoStatus.INVALID))
        .when(held)
        .then(pl.lit(GeoStatus.NO_COUNTRY))
        .otherwise(pl.lit(GeoStatus.NOT_IN_DATABASE))
    )


_NO_IDS = {"country_id": pl.lit(None, pl.Int64), "state_id": pl.lit(None, pl.Int64)}


def _odd_ids(snapshot: GeoSnapshot) -> GeoDatabaseError:
    return GeoDatabaseError(
        f"{snapshot.path}: its geoname_ids are not stored as MaxMind stores them (uint32), so "
        "places cannot be named by id; turn the geoip resource's names_from_newest off"
    )


def _lookup(
    addresses: pl.DataFrame, snapshot: GeoSnapshot, subdivision: Subdivision, with_ids: bool
) -> pl.DataFrame:
    """``country``, ``state`` and ``geo_status`` for addresses worth looking up, and the
    geoname_id of country and state (``country_id``, ``state_id``) when ``with_ids``."""
    if snapshot.ip_version == 4:
        # maxminddb refuses IPv6 lookups in an IPv4-only database, even non-strict.
        ipv6 = pl.col("address").str.contains(":", literal=True)
        outside = addresses.filter(ipv6).with_columns(
            country=pl.lit(None, pl.String),
            state=pl.lit(None, pl.String),
            **_NO_IDS,
            geo_status=pl.lit(GeoStatus.NOT_IN_DATABASE),
        )
        inside = _lookup_in(addresses.filter(~ipv6), snapshot, subdivision, with_ids)
        return pl.concat([inside, outside])
    return _lookup_in(addresses, snapshot, subdivision, with_ids)


def _lookup_in(
    addresses: pl.DataFrame, snapshot: GeoSnapshot, subdivision: Subdivision, with_ids: bool
) -> pl.DataFrame:
    def path(parts: list[str | int], dtype: pl.DataType = pl.String) -> pl.Expr:
        return pl.col("address").mmdb.lookup_path(snapshot.path, parts, dtype=dtype, strict=False)

    level = _subdivision_index(subdivision)
    found = addresses.with_columns(
        country=path(["country", "names", NAME_LANGUAGE]),
        state=path(["subdivisions", level, "names", NAME_LANGUAGE]),
    )
    if with_ids:
        # Ids are only read where another snapshot will name the place: a lookup each costs.
        try:
            found = found.with_columns(
                country_id=path(["country", "geoname_id"], pl.UInt32).cast(pl.Int64),
                state_id=path(["subdivisions", level, "geoname_id"], pl.UInt32).cast(pl.Int64),
            )
        except pl.exceptions.ComputeError:
            raise _odd_ids(snapshot) from None  # polars' message may quote the data
    else:
        found = found.with_columns(**_NO_IDS)
    located = found.filter(pl.col("country").is_not_null()).with_columns(
        geo_status=pl.lit(GeoStatus.LOCATED)
    )
    misses = found.filter(pl.col("country").is_null())
    return pl.concat([located, misses.with_columns(geo_status=_misses_status(snapshot))])


# -- names from the naming snapshot ---------------------------------------------------------------

_NAMED = pl.Struct({"geoname_id": pl.UInt32, "names": pl.Struct({NAME_LANGUAGE: pl.String})})


def _names_at(snapshot: GeoSnapshot, addresses: pl.Series) -> dict[int, str]:
    """geoname_id -> English name of every country and subdivision ``snapshot`` places
    ``addresses`` in."""
    frame = pl.DataFrame({"address": addresses}).unique()
    if snapshot.ip_version == 4:
        frame = frame.filter(~pl.col("address").str.contains(":", literal=True))
    try:
        records = frame.select(
            record=pl.col("address").mmdb.lookup(
                snapshot.path,
                dtype={"country": _NAMED, "subdivisions": pl.List(_NAMED)},
                strict=False,
            )
        ).unnest("record")
    except pl.exceptions.ComputeError:
        raise _odd_ids(snapshot) from None  # polars' message may quote the data
    places = pl.concat(
        [
            records.select(place=pl.col("country")),
            records.select(place=pl.col("subdivisions").explode()),
        ]
    ).select(
        geoname_id=pl.col("place").struct.field("geoname_id").cast(pl.Int64),
        name=pl.col("place").struct.field("names").struct.field(NAME_LANGUAGE),
    )
    return dict(places.drop_nulls().unique("geoname_id").iter_rows())


@functools.lru_cache(maxsize=4)
def _all_names(path: str, mtime_ns: int, size: int) -> dict[int, str]:
    """geoname_id -> English name of every country and subdivision in a database, from a walk
    over all of its networks: about 40 s for a GeoLite2-City, once per process and file
    (``mtime_ns`` and ``size`` tell a replaced file)."""
    names: dict[int, str] = {}
    reader = maxminddb.open_database(path)
    try:
        for _, record in reader:
            if not isinstance(record, dict):
                continue
            places = [record.get(k) for k in ("country", "registered_country")]
            for place in [*places, *(record.get("subdivisions") or ())]:
                if not isinstance(place, dict) or "geoname_id" not in place:
                    continue
                name = (place.get("names") or {}).get(NAME_LANGUAGE)
                if name is not None:
                    names.setdefault(int(place["geoname_id"]), name)
    finally:
        reader.close()
    return names


def names_in(
    snapshot: GeoSnapshot, geoname_ids: set[int], addresses: pl.Series
) -> tuple[dict[int, str], bool]:
    """The English names ``snapshot`` gives the places ``geoname_ids``; a place it does not
    know is left out. First from where ``snapshot`` places ``addresses`` (the addresses that
    were located at those places: most have not moved, and then this is all it takes); for the
    rest, from a walk over the whole database. Also says whether that walk was needed."""
    found = _names_at(snapshot, addresses)
    missing = geoname_ids - found.keys()
    if missing:
        stat = Path(snapshot.path).stat()
        every = _all_names(snapshot.path, stat.st_mtime_ns, stat.st_size)
        found.update({i: every[i] for i in missing if i in every})
    return {i: found[i] for i in geoname_ids if i in found}, bool(missing)


def _rename(answers: pl.DataFrame, naming: GeoSnapshot) -> tuple[pl.DataFrame, bool]:
    """``answers`` with country and state named by ``naming`` where it knows their place, and
    ``renamed``: whether that changed a name. Rows without ids (located by ``naming`` itself,
    or by a database without geoname_ids) keep their names."""
    ids = pl.concat([answers["country_id"], answers["state_id"]]).drop_nulls()
    has_id = pl.col("country_id").is_not_null() | pl.col("state_id").is_not_null()
    names, walked = names_in(naming, set(ids.unique().to_list()), answers.filter(has_id)["address"])
    table = pl.DataFrame(
        {"geoname_id": list(names), "name": list(names.values())},
        schema={"geoname_id": pl.Int64, "name": pl.String},
    )

    def named(column: str, as_: str) -> pl.DataFrame:
        return table.rename({"geoname_id": column, "name": as_})

    renamed = (
        answers.join(named("country_id", "new_country"), on="country_id", how="left")
        .join(named("state_id", "new_state"), on="state_id", how="left")
        .with_columns(
            country=pl.coalesce("new_country", "country"),
            state=pl.coalesce("new_state", "state"),
        )
        .with_columns(
            renamed=pl.col("country").ne_missing(pl.col("dated_country"))
            | pl.col("state").ne_missing(pl.col("dated_state"))
        )
        .drop("new_country", "new_state")
    )
    return renamed, walked


@dataclass
class Located:
    turns: pl.DataFrame  # the input turns with country, state, geo_status, geoip_snapshot
    stats: dict[str, Any] = field(default_factory=dict)


def _attach(keyed: pl.DataFrame, answers: pl.DataFrame) -> pl.DataFrame:
    """Each turn's answer. The 64-bit key narrows the join; equality of the address decides it,
    and a key shared by two addresses sends every turn through the exact join instead."""
    joined = keyed.join(
        answers.rename({"ip": "answered_ip"}).drop("snapshot"), on="key", how="left"
    )
    if joined.select(pl.col("ip").eq_missing(pl.col("answered_ip")).all()).item():
        return joined.drop("key", "answered_ip", "snapshot")
    return keyed.join(
        answers.drop("key"), on=["ip", "snapshot"], how="left", nulls_equal=True
    ).drop("key", "snapshot")


def locate(
    turns: pl.DataFrame,
    snapshots: GeoSnapshots,
    subdivision: Subdivision = DEFAULT_SUBDIVISION,
    newest_names: bool = True,
) -> Located:
    """``turns`` with ``ip`` (canonical, as ingest stores it, or null) and ``timestamp``: each
    gets ``country``, ``state``, ``geo_status`` and ``geoip_snapshot`` (the build date of the
    database that located it). With ``newest_names``, the names are the naming snapshot's
    (``GeoSnapshots.naming``). Row order and count are kept; each distinct address and
    snapshot is looked up once."""
    dates = turns["timestamp"].dt.date()
    keyed = turns.with_columns(snapshots.choose(dates)).with_columns(
        key=pl.struct("ip", "snapshot").hash()
    )
    distinct = classify(keyed.select("key", "ip", "snapshot").unique("key"))
    parts = [
        distinct.filter(pl.col("special").is_not_null()).with_columns(
            country=pl.lit(None, pl.String),
            state=pl.lit(None, pl.String),
            **_NO_IDS,
            geo_status=pl.col("special"),
        )
    ]
    renames = snapshots.renames(newest_names)
    naming_index = len(snapshots.snapshots) - 1
    for index, snapshot in enumerate(snapshots.snapshots):
        worth = distinct.filter(pl.col("special").is_null() & (pl.col("snapshot") == index))
        parts.append(_lookup(worth, snapshot, subdivision, renames and index != naming_index))
    columns = ["key", "ip", "snapshot", "address", "country", "state", "country_id", "state_id"]
    answers = pl.concat([p.select(*columns, "geo_status") for p in parts]).with_columns(
        dated_country=pl.col("country"), dated_state=pl.col("state")
    )
    walked = False
    if renames:
        answers, walked = _rename(answers, snapshots.naming)
    else:
        answers = answers.with_columns(renamed=pl.lit(False))
    built = pl.DataFrame(
        {
            "snapshot": range(len(snapshots.snapshots)),
            "geoip_snapshot": [s.build_date for s in snapshots.snapshots],
        },
        schema={"snapshot": pl.Int64, "geoip_snapshot": pl.Date},
    )
    answers = answers.select(
        "key", "ip", "snapshot", "country", "state", "geo_status", "renamed"
    ).join(built, on="snapshot")
    located = _attach(keyed, answers)
    if located.height != turns.height:
        raise RuntimeError(f"locating {turns.height} turns gave {located.height} rows")
    ipv4_only = [i for i, s in enumerate(snapshots.snapshots) if s.ip_version == 4]
    ipv6 = pl.col("ip").str.contains(":", literal=True) & ~pl.col("ip").str.starts_with(_MAPPED)
    return Located(
        located.drop("renamed"),
        {
            "distinct_addresses": distinct.height,
            "turns_before_first_snapshot": int((dates < snapshots.first_date()).sum()),
            "ipv6_turns_in_ipv4_only_database": keyed.filter(
                pl.col("snapshot").is_in(ipv4_only) & ipv6
            ).height,
            # Turns whose country or state the naming snapshot names otherwise than the
            # snapshot that located them.
            "turns_renamed": int(located["renamed"].sum()),
            "naming_snapshot_walked": walked,
        },
    )


def conversation_locations(turns: pl.DataFrame) -> pl.DataFrame:
    """Per conversation: the most frequent country over its user turns, and the most frequent
    state among the turns in that country (so the pair is consistent); nulls do not count, and
    ties go to the earliest turn. ``turns``: conversation_id, utterance_index, country, state."""
    country = most_frequent(turns, "country", "utterance_index")
    in_country = turns.join(country, on=["conversation_id", "country"], how="semi")
    state = most_frequent(in_country, "state", "utterance_index")
    return country.join(state, on="conversation_id", how="left")


def status_counts(statuses: pl.Series) -> dict[str, int]:
    """Turns per ``geo_status``, every status named (zero when absent)."""
    counts = counts_of(statuses)
    every = (GeoStatus.LOCATED, GeoStatus.NO_COUNTRY, GeoStatus.NOT_IN_DATABASE)
    return {name: counts.get(name, 0) for name in (*every, *GeoStatus.UNLOCATABLE)}


def locate_day(
    day: date,
    linked: pl.DataFrame,
    snapshots: GeoSnapshots,
    subdivision: Subdivision = DEFAULT_SUBDIVISION,
    newest_names: bool = True,
) -> EnrichedDay:
    """``user_turn_locations`` and ``conversation_locations`` rows for one partition of
    ``linked_conversations``. The client IP is read here and goes no further."""
    started = time.perf_counter()
    user_turns = (
        conversation_utterances(linked)
        .filter(pl.col("role") == "user")
        .select("conversation_id", "utterance_index", "turn_identifier", "timestamp", "ip")
    )
    located = locate(user_turns, snapshots, subdivision, newest_names)
    turns = day_table(
        located.turns, day, USER_TURN_LOCATIONS_SCHEMA, "conversation_id", "utterance_index"
    )
    check_conserved(day, "user turns located", user_turns.height, turns.height)
    counts = turns.group_by("conversation_id").agg(
        user_turns=pl.len().cast(pl.Int64),
        located_turns=(pl.col("geo_status") == GeoStatus.LOCATED).sum().cast(pl.Int64),
    )
    conversations = conversation_table(
        linked,
        day,
        CONVERSATION_LOCATIONS_SCHEMA,
        [conversation_locations(turns), counts],
        ["user_turns", "located_turns"],
    )
    seconds = time.perf_counter() - started
    located_turns = int((turns["geo_status"] == GeoStatus.LOCATED).sum())
    return EnrichedDay(
        turns,
        conversations,
        {
            **located.stats,
            "user_turns": turns.height,
            "located_turns": located_turns,
            "located_share": round(located_turns / turns.height, 4) if turns.height else 0.0,
            "turns_with_state": int(turns["state"].is_not_null().sum()),
            "conversations": conversations.height,
            "conversations_with_country": int(conversations["country"].is_not_null().sum()),
            "by_status": status_counts(turns["geo_status"]),
            "countries": counts_of(turns["country"]),
            "turns_by_snapshot": counts_of(turns["geoip_snapshot"].cast(pl.String)),
            "seconds": round(seconds, 3),
            "turns_per_second": round(turns.height / seconds) if seconds else 0,
        },
    )
