"""The anonymization step's resource: the keyed IP hasher."""

from __future__ import annotations

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field

from wildchat_dag.core.ip_addresses import check_salt, salt_fingerprint


class IpHasher(ConfigurableResource):
    """Keyed hashing of client IPs: hashed_ip = sha256(salt + ip), WildChat's scheme."""

    salt: str = Field(
        description="The secret salt, from the WILDCHAT_IP_SALT environment variable. Required: "
        "an unsalted hash of an IPv4 address is reversed by hashing all 2^32 addresses."
    )
    salt_source: str = Field(
        default="environment variable WILDCHAT_IP_SALT",
        description="Where the salt came from, for the materialization's metadata.",
    )

    def setup_for_execution(self, context: InitResourceContext) -> None:
        check_salt(self.salt)

    @property
    def fingerprint(self) -> str:
        return salt_fingerprint(self.salt)
