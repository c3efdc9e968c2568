"""Small GeoLite2-City-shaped databases, written with mmdb-writer, for the geo tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from mmdb_writer import MmdbU32, MMDBWriter
from netaddr import IPSet


class _DatedWriter(MMDBWriter):
    """mmdb-writer stamps the build time with the clock; a snapshot needs a date of its own."""

    def __init__(self, built: date, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.build_epoch = int(datetime(built.year, built.month, built.day, tzinfo=UTC).timestamp())

    def _build_meta(self) -> dict[str, Any]:
        return {**super()._build_meta(), "build_epoch": self.build_epoch}


def city(
    country: str | None, *subdivisions: str, iso: str = "XX", geonames: Sequence[int] = ()
) -> dict[str, Any]:
    """A City record as MaxMind shapes it; subdivisions from the largest to the most specific.
    ``country`` None gives a record with a continent only (no country). ``geonames``: the
    geoname_id of the country, then of each subdivision, as far as given (none by default, as
    a database without ids), stored as MaxMind stores them: uint32."""
    ids = iter(geonames)
    record: dict[str, Any] = {"continent": {"code": "EU", "names": {"en": "Europe"}}}
    if country is not None:
        record["country"] = {"iso_code": iso, "names": {"en": country, "de": f"{country} (de)"}}
        if (geoname_id := next(ids, None)) is not None:
            record["country"]["geoname_id"] = MmdbU32(geoname_id)
    if subdivisions:
        record["subdivisions"] = [
            {"iso_code": name[:3].upper(), "names": {"en": name}} for name in subdivisions
        ]
        for subdivision, geoname_id in zip(record["subdivisions"], ids, strict=False):
            subdivision["geoname_id"] = MmdbU32(geoname_id)
    return record


def write_city_database(
    path: Path,
    networks: dict[str, dict[str, Any]],
    *,
    built: date,
    ip_version: int = 6,
    database_type: str = "GeoLite2-City",
) -> Path:
    """``networks``: CIDR -> record. An IPv6 database also answers IPv4 lookups."""
    writer = _DatedWriter(
        built,
        ip_version=ip_version,
        ipv4_compatible=ip_version == 6,
        database_type=database_type,
        languages=["en", "de"],
        description="wildchat-dag test database",
    )
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), record)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.to_db_file(str(path))
    return path
