"""Embedded defaults, each overridable by an environment variable.

Partitions and the lookahead are fixed when the code location loads, so they are read here;
paths are resource configuration and can also be changed per run in the launchpad.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("WILDCHAT_HOME", Path.cwd() / ".wildchat")).resolve()


def default_log_root() -> str:
    return os.environ.get("WILDCHAT_LOG_ROOT", str(home() / "logs"))


def default_duckdb_path() -> str:
    return os.environ.get("WILDCHAT_DUCKDB_PATH", str(home() / "warehouse.duckdb"))


def partitions_start_date() -> date:
    return date.fromisoformat(os.environ.get("WILDCHAT_START_DATE", "2024-01-01"))


def link_lookahead_days() -> int:
    days = int(os.environ.get("WILDCHAT_LINK_LOOKAHEAD_DAYS", "1"))
    if days < 1:
        raise ValueError("WILDCHAT_LINK_LOOKAHEAD_DAYS must be at least 1")
    return days
