"""The raw request-log contract, version 1.

One JSON object per line, one line per chatbot request, in JSON Lines files (optionally gzipped)
under ``<log_root>/YYYY-MM-DD/``. The folder is the UTC collection day, and a line's ``timestamp``
must fall on that day. README.md documents the contract with an example line.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

SCHEMA_VERSION = 1

LOG_FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")

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


def day_folder(log_root: str | Path, day: date) -> Path:
    return Path(log_root) / day.isoformat()


def list_log_files(folder: Path) -> list[Path]:
    """Log files of one day folder, in a stable order so line numbers and re-runs agree."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(LOG_FILE_SUFFIXES))
