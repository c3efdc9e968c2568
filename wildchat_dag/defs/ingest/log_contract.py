"""The raw request-log contract, version 1.

One JSON object per line, one line per chatbot request, in JSON Lines files (optionally gzipped)
under ``<log_root>/YYYY-MM-DD/``. The folder is the UTC collection day, and a line's ``timestamp``
must fall on that day. README.md documents the contract with an example line.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from datetime import date
from pathlib import Path

SCHEMA_VERSION = 1

# Matched case-insensitively: ``requests.JSONL`` is a log file whoever named it, and skipping it
# would lose a day's requests without a word.
LOG_FILE_SUFFIXES = (
    ".jsonl",
    ".jsonl.gz",
    ".jsonl.bz2",
    ".jsonl.xz",
    ".ndjson",
    ".ndjson.gz",
    ".ndjson.bz2",
    ".ndjson.xz",
)
COMPRESSIONS = (".gz", ".bz2", ".xz")
# A log file compressed in a format the standard library cannot read: failing names it, where
# skipping would lose its requests.
UNSUPPORTED_COMPRESSIONS = (".zst", ".zstd", ".lz4", ".zip", ".7z", ".br", ".z", ".sz", ".lzo")
# Names of files still being written or left behind by an interrupted upload or editor.
TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".swp", ".swx", "~")

REQUIRED_FIELDS = (
    "turn_id",
    "timestamp",
    "model",
    "headers",
    "messages",
    "response",
    "response_timestamp",
)
OPTIONAL_FIELDS = ("schema_version", "ip")

# An RFC 3339 date-time with an explicit offset. A naive time would be guessed in some zone, and
# a guess is how a request slides into the wrong day.
RFC3339_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
RFC3339_RE = re.compile(RFC3339_PATTERN)

DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024
# The contract nests three levels (line, messages, message). JSON decoders recurse, and polars'
# overflows its stack (SIGSEGV, no exception) somewhere below 10,000 levels: a line nested deeper
# than this is quarantined before any decoder sees it.
MAX_JSON_DEPTH = 64
EXCERPT_CHARS = 300


class QuarantineReason:
    """Why a log line was set aside instead of ingested. The values are stored in the table."""

    INVALID_UTF8 = "invalid_utf8"
    LINE_TOO_LARGE = "line_too_large"
    BLANK_LINE = "blank_line"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    EMPTY_MESSAGES = "empty_messages"
    ROLES_NOT_ALTERNATING = "roles_not_alternating"
    TIMESTAMP_OUTSIDE_DAY = "timestamp_outside_day"
    DUPLICATE_TURN_ID = "duplicate_turn_id"
    NESTING_TOO_DEEP = "nesting_too_deep"
    DUPLICATE_KEY = "duplicate_key"


def day_folder(log_root: str | Path, day: date) -> Path:
    return Path(log_root) / day.isoformat()


class EntryOutcome:
    """What ingest does with one entry of a day folder. Every entry gets one."""

    READ = "read"
    SKIPPED = "skipped"
    FAILED = "failed"


class SkipReason:
    UNRECOGNIZED_SUFFIX = "unrecognized_suffix"
    TEMPORARY_FILE = "temporary_file"
    HIDDEN_FILE = "hidden_file"
    SUBFOLDER = "subfolder"
    BROKEN_SYMLINK = "broken_symlink"
    NOT_A_REGULAR_FILE = "not_a_regular_file"


class FailReason:
    BROKEN_SYMLINK = "broken_symlink"
    NOT_A_REGULAR_FILE = "not_a_regular_file"
    UNSUPPORTED_COMPRESSION = "unsupported_compression"


@dataclass(frozen=True)
class FolderEntry:
    """One entry of a day folder and what ingest does with it. ``reason`` is None when read."""

    path: Path
    outcome: str
    reason: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def describe(self) -> dict[str, str | None]:
        return {"name": self.name, "outcome": self.outcome, "reason": self.reason}


def _log_base(name: str) -> str:
    """The name without one compression suffix, lower-cased."""
    lower = name.lower()
    for suffix in (*COMPRESSIONS, *UNSUPPORTED_COMPRESSIONS):
        if lower.endswith(suffix):
            return lower[: -len(suffix)]
    return lower


def _looks_like_log(name: str) -> bool:
    return _log_base(name).endswith((".jsonl", ".ndjson"))


def classify_entry(path: Path) -> FolderEntry:
    """Decide one folder entry's fate from its name and kind (never its content)."""
    name = path.name
    lower = name.lower()
    try:
        mode = path.stat().st_mode  # follows a symlink: a link to a log file is read
    except OSError:
        mode = None
    if mode is None:
        # Only a dangling (or looping) symlink gets here: the entry is listed, its target is not.
        if _looks_like_log(name) and not lower.endswith(TEMPORARY_SUFFIXES):
            return FolderEntry(path, EntryOutcome.FAILED, FailReason.BROKEN_SYMLINK)
        return FolderEntry(path, EntryOutcome.SKIPPED, SkipReason.BROKEN_SYMLINK)
    if stat.S_ISDIR(mode):
        return FolderEntry(path, EntryOutcome.SKIPPED, SkipReason.SUBFOLDER)
    if name.startswith("."):
        return FolderEntry(path, EntryOutcome.SKIPPED, SkipReason.HIDDEN_FILE)
    if lower.endswith(TEMPORARY_SUFFIXES):
        return FolderEntry(path, EntryOutcome.SKIPPED, SkipReason.TEMPORARY_FILE)
    if not stat.S_ISREG(mode):
        # A FIFO named like a log would block the read forever.
        if _looks_like_log(name):
            return FolderEntry(path, EntryOutcome.FAILED, FailReason.NOT_A_REGULAR_FILE)
        return FolderEntry(path, EntryOutcome.SKIPPED, SkipReason.NOT_A_REGULAR_FILE)
    if lower.endswith(LOG_FILE_SUFFIXES):
        return FolderEntry(path, EntryOutcome.READ)
    if _looks_like_log(name):
        return FolderEntry(path, EntryOutcome.FAILED, FailReason.UNSUPPORTED_COMPRESSION)
    return FolderEntry(path, EntryOutcome.SKIPPED, SkipReason.UNRECOGNIZED_SUFFIX)


def scan_day_folder(folder: Path) -> list[FolderEntry]:
    """Every entry of a day folder with its outcome, in name order (so line numbers and re-runs
    agree)."""
    return [classify_entry(p) for p in sorted(folder.iterdir(), key=lambda p: p.name)]


def list_log_files(folder: Path) -> list[Path]:
    """Log files of one day folder, in a stable order so line numbers and re-runs agree."""
    return [e.path for e in scan_day_folder(folder) if e.outcome == EntryOutcome.READ]
