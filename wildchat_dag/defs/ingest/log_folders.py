"""What the log root holds now: one fingerprint per day folder, so a scan can tell new and
changed days from days already processed."""

from __future__ import annotations

import os
import re
import time
from datetime import date
from pathlib import Path

from wildchat_dag.core.hashing import sha256_hex
from wildchat_dag.defs.ingest.log_contract import (
    EntryOutcome,
    FolderEntry,
    SkipReason,
    scan_day_folder,
)

# Where the fingerprint of the files a day was ingested from is kept (raw_requests metadata).
LOG_FINGERPRINT = "log_fingerprint"

DAY_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def day_fingerprints(
    root: str | Path, settle_seconds: float = 0.0, now: float | None = None
) -> dict[str, str]:
    """``{day: fingerprint}`` of every day folder whose log files have all settled.

    The fingerprint hashes each log file's name, size and modification time: a new, grown,
    rewritten or removed file changes it. Entries ingest fails on (a dangling symlink named like
    a log, an unsupported compression) and temporary files (a partial upload that becomes a log
    file when renamed) count too; other skipped entries (``README.txt``, a sub-folder) cannot
    change what ingest reads and do not. A folder with a counted entry modified less than
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


def has_logs(folder: Path) -> bool:
    """Whether ingest has anything to read (or to fail on) in this day folder: a missing or
    empty folder, or one of only skipped entries (a README, a sub-folder), had no traffic."""
    return folder.is_dir() and bool(_file_stats(folder))


def _counted(entry: FolderEntry) -> bool:
    return entry.outcome != EntryOutcome.SKIPPED or entry.reason == SkipReason.TEMPORARY_FILE


def _file_stats(folder: Path) -> list[tuple[str, os.stat_result]]:
    stats = []
    for entry in scan_day_folder(folder):
        if not _counted(entry):
            continue
        # A read file is listed as before, so a folder of log files keeps its fingerprint; the
        # others carry their outcome, and lstat, which a dangling symlink still has.
        label = (
            entry.name if entry.outcome == EntryOutcome.READ else f"{entry.name}\t{entry.reason}"
        )
        try:
            info = entry.path.stat() if entry.outcome == EntryOutcome.READ else entry.path.lstat()
        except OSError:  # gone since the listing: the next scan sees the folder as it is then
            continue
        stats.append((label, info))
    return stats


def _fingerprint(stats: list[tuple[str, os.stat_result]]) -> str:
    listing = "\n".join(f"{name}\t{s.st_size}\t{s.st_mtime_ns}" for name, s in stats)
    return sha256_hex(listing)[:16]


def changed_days(seen: dict[str, str], now: dict[str, str]) -> list[str]:
    """Days that are new, or whose files changed, since ``seen``, oldest first."""
    return sorted(day for day, fingerprint in now.items() if seen.get(day) != fingerprint)
