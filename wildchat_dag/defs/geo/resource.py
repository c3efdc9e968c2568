"""The geo step's resource: the GeoIP databases."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from wildchat_dag.defs.geo.geo import (
    DEFAULT_SUBDIVISION,
    GeoSnapshots,
    Subdivision,
    open_snapshots,
)


class GeoIpDatabase(ConfigurableResource):
    """GeoLite2 / GeoIP2 City databases, read with maxminddb: one file, or a folder of dated
    snapshots (each turn is located with the newest one built no later than its date, and named
    by default as the newest snapshot names that place). The default is the GeoLite2-City
    snapshot of 2018-07-03 shipped in maxminddb-geolite2, with a warning whenever it is used."""

    path: str | None = Field(
        default=None,
        description="A GeoLite2-City or GeoIP2-City .mmdb file, or a folder of them (searched "
        "recursively; each snapshot's date is its build date). Default: the 2018 snapshot "
        "shipped in maxminddb-geolite2. Set by WILDCHAT_GEOIP_PATH.",
    )
    subdivision: Subdivision = Field(
        default=DEFAULT_SUBDIVISION,
        description="Which subdivision names `state`: the most specific one (WildChat's values: "
        "Liverpool, Province of Messina, California; for 81.2.69.142, Brent) or the top-level "
        "one (England, Sicily; for 81.2.69.142, England).",
    )
    names_from_newest: bool = Field(
        default=True,
        description="With a folder of snapshots: name country and state as the newest snapshot "
        "names the place (by its geoname_id) that the turn's dated snapshot located it at, so "
        "that renamed countries carry their current names (Türkiye, The Netherlands) as in "
        "WildChat; a place the newest snapshot does not know keeps its dated name. Off: each "
        "turn is named by its dated snapshot.",
    )

    def snapshots(self) -> GeoSnapshots:
        return open_snapshots(self.path)
