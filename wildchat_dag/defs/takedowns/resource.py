"""The takedowns step's resource: the ledger file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from dagster import ConfigurableResource
from pydantic import Field

from wildchat_dag.defs.takedowns.ledger import (
    TakedownRequest,
    ledger_frame,
    ledger_version,
    read_ledger,
)


class TakedownLedger(ConfigurableResource):
    """The takedown ledger: removal requests by conversation_hash, turn_identifier or
    hashed_ip, one JSON line each. release_records leaves out what it names; the exports refuse
    to cut a release that still holds any of it."""

    path: str = Field(description="The ledger file (WILDCHAT_TAKEDOWN_LEDGER).")

    def requests(self) -> list[TakedownRequest]:
        return read_ledger(self.path)

    def frame(self) -> pl.DataFrame:
        return ledger_frame(self.requests())

    def version(self) -> str:
        return ledger_version(self.path)

    @property
    def file_name(self) -> str:
        return Path(self.path).name
