"""The plain per-row GeoIP loop: ``ipaddress`` and ``maxminddb``'s reader, one turn at a time.

The vectorised path (``geo.py``) is held to this in the tests, and measured against it in
``benchmarks/bench_enrichment.py``. Its classification uses the same ``SPECIAL_NETWORKS`` table,
through ``ipaddress`` containment instead of polars arithmetic; its names from the naming
snapshot come from one walk over that whole database, where ``geo.py`` asks it only about the
addresses at hand first.
"""

from __future__ import annotations

import ipaddress
from datetime import date

import maxminddb

from wildchat_dag.defs.geo.geo import (
    DEFAULT_SUBDIVISION,
    GLOBAL_UNICAST_V6,
    NAME_LANGUAGE,
    SPECIAL_NETWORKS,
    GeoSnapshots,
    GeoStatus,
    Subdivision,
)

_NETWORKS = [(ipaddress.ip_network(n), status) for n, status in SPECIAL_NETWORKS]


def reference_status(ip: str | None) -> tuple[str | None, str | None]:
    """(the address to look up, or None; why it cannot be located, or None)."""
    if ip is None:
        return None, GeoStatus.INVALID
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None, GeoStatus.INVALID
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network, status in _NETWORKS:
        if address.version == network.version and address in network:
            return None, status
    if address.version == 6 and address not in GLOBAL_UNICAST_V6:
        return None, GeoStatus.RESERVED
    return str(address), None


def _every_name(reader: maxminddb.Reader) -> dict[int, str]:
    """geoname_id -> English name of every country and subdivision the database holds."""
    names: dict[int, str] = {}
    for _, record in reader:
        places = [record.get("country"), record.get("registered_country")]
        places += record.get("subdivisions") or []
        for place in places:
            if place and "geoname_id" in place and NAME_LANGUAGE in place.get("names", {}):
                names.setdefault(place["geoname_id"], place["names"][NAME_LANGUAGE])
    return names


class ReferenceLocator:
    def __init__(
        self,
        snapshots: GeoSnapshots,
        subdivision: Subdivision = DEFAULT_SUBDIVISION,
        newest_names: bool = True,
    ) -> None:
        self.snapshots = snapshots
        self.readers = [maxminddb.open_database(s.path) for s in snapshots.snapshots]
        self.subdivision = subdivision
        self.naming_index = len(self.readers) - 1
        self.names = _every_name(self.readers[-1]) if snapshots.renames(newest_names) else {}

    def close(self) -> None:
        for reader in self.readers:
            reader.close()

    def reader_for(self, day: date) -> int:
        chosen = 0
        for index, snapshot in enumerate(self.snapshots.snapshots):
            if snapshot.build_date <= day:
                chosen = index
        return chosen

    def name(self, place: dict, index: int) -> str | None:
        """The place's name: the naming snapshot's for its geoname_id when it has one."""
        dated = place.get("names", {}).get(NAME_LANGUAGE)
        if index == self.naming_index or "geoname_id" not in place:
            return dated
        return self.names.get(place["geoname_id"], dated)

    def locate_one(self, ip: str | None, day: date) -> tuple[str | None, str | None, str]:
        """(country, state, geo_status) of one turn."""
        address, status = reference_status(ip)
        if status is not None:
            return None, None, status
        index = self.reader_for(day)
        if self.snapshots.snapshots[index].ip_version == 4 and ":" in str(address):
            return None, None, GeoStatus.NOT_IN_DATABASE
        record = self.readers[index].get(address)
        if record is None:
            return None, None, GeoStatus.NOT_IN_DATABASE
        dated_country = record.get("country", {}).get("names", {}).get(NAME_LANGUAGE)
        subdivisions = record.get("subdivisions") or []
        chosen = subdivisions[0 if self.subdivision == "top_level" else -1] if subdivisions else {}
        state = self.name(chosen, index)
        if dated_country is None:
            return None, state, GeoStatus.NO_COUNTRY
        return self.name(record["country"], index), state, GeoStatus.LOCATED
