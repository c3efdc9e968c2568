"""What the log root holds now: one fingerprint per day folder, so a scan can tell new and
changed days from days already processed."""

from __future__ import annotations

import os
import re
import time
from datetime import date
from pathlib import Path

from wildchat_dag.core.hashing import sha256_hex
from wildchat_dag.core.log_contract import list_log_files

# Where the fingerprint of the files a day was ingested from is kept (raw_requests metadata).
LOG_FINGERPRINT = "log_fingerprint"

DAY_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def day_fingerprints(
    root: str | Path, settle_seconds: float = 0.0, now: float | None = None
) -> dict[str, str]:
    """``{day: fingerprint}`` of every day folder whose log files have all settled.

    The fingerprint hashes each log file's name, size and modification time: a new, grown,
    rewritten or removed file changes it. A folder with a file modified less than
    ``settle_seconds`` ago is left out, because the service may still be writing to it.
    """
    root = Path(root)
    if not root.is_dir():
        return {}
    now = time.time() if now is None else now
    found: dict[str, str] = {}
    for folder in sorted(root.iterdir()):
        if not (folder.is_dir() and DAY_FOLDER.match(folder.name)):
            continue
        try:
            date.fromisoformat(folder.name)
        except ValueError:
            continue
        stats = _file_stats(folder)
        if any(now - s.st_mtime < settle_seconds for _, s in stats):
            continue
        found[folder.name] = _fingerprint(stats)
    return found


NO_LOGS = "no-logs"


def folder_fingerprint(folder: Path) -> str:
    """The fingerprint of one day folder as it is now ("no-logs" when there is none)."""
    return _fingerprint(_file_stats(folder)) if folder.is_dir() else NO_LOGS


def _file_stats(folder: Path) -> list[tuple[str, os.stat_result]]:
    return [(f.name, f.stat()) for f in list_log_files(folder)]


def _fingerprint(stats: list[tuple[str, os.stat_result]]) -> str:
    listing = "\n".join(f"{name}\t{s.st_size}\t{s.st_mtime_ns}" for name, s in stats)
    return sha256_hex(listing)[:16]


def changed_days(seen: dict[str, str], now: dict[str, str]) -> list[str]:
    """Days that are new, or whose files changed, since ``seen``, oldest first."""
    return sorted(day for day, fingerprint in now.items() if seen.get(day) != fingerprint)
