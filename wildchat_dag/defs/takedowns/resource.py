"""The takedowns step's resource: the ledger file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from dagster import ConfigurableResource
from pydantic import Field

from wildchat_dag.defs.takedowns.ledger import (
    TakedownRequest,
    ledger_frame,
    load_ledger,
)


class TakedownLedger(ConfigurableResource):
    """The takedown ledger: removal requests by conversation_hash, turn_identifier or
    hashed_ip, one JSON line each. release_records leaves out what it names; the exports refuse
    to cut a release that still holds any of it."""

    path: str = Field(description="The ledger file (WILDCHAT_TAKEDOWN_LEDGER).")

    def snapshot(self) -> tuple[list[TakedownRequest], str]:
        """The requests and the version of one read of the file: what a step applies and the
        version it records are the same."""
        return load_ledger(self.path)

    def requests(self) -> list[TakedownRequest]:
        return self.snapshot()[0]

    def frame(self) -> pl.DataFrame:
        return ledger_frame(self.requests())

    def version(self) -> str:
        return self.snapshot()[1]

    @property
    def file_name(self) -> str:
        return Path(self.path).name
