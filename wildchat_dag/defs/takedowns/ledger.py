"""The takedown ledger: requests to remove conversations from every release, kept as a file.

One JSON object per line, appended and never rewritten, so the file's history is the ledger's
(``git`` or a backup shows who added what), and its hash is the version a release records::

    {"request_id": "td-0001", "requested_on": "2024-10-17", "reason": "pii_found",
     "key_type": "conversation_hash", "keys": ["7f3c..."], "note": "Breaking News article"}

- ``key_type``: what ``keys`` name. ``conversation_hash`` (a released conversation),
  ``turn_identifier`` (every conversation holding that turn, branches that inherit it
  included), or ``hashed_ip`` (all of one user's conversations, on every day, past and future).
- Operators may name a raw IP instead (``takedown add --raw-ip``): it is hashed on entry with
  the deployment's salt, in every notation ingest may have stored it, and only the hashes are
  written. A raw turn id is this pipeline's ``turn_identifier`` (the log's turn id is released
  unchanged, as WildChat's is), so it is stored as one.
- A ``conversation_hash`` request also stores the conversation's first turn id
  (``resolved``), looked up when it is added in the warehouse and in every released version: a
  conversation's hash changes with its text (new redaction rules), its first turn id never, and
  every conversation holding that turn (its branches too) is named by it.
- ``reason``: one of ``REASONS``; ``note``: an optional short public text for the changelog. It
  is published, so a note that holds anything the text exit would mask (an IP, an e-mail
  address, a secret, a long number) is refused.

A malformed line is an error naming the file and line: a ledger that cannot be read must stop
a release, never be skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from wildchat_dag.core.ip_addresses import canonical_ip, hash_ip, notations
from wildchat_dag.core.sanitize import normalize_text, sanitize_text

REASONS = {
    "consent_withdrawn": "consent withdrawn",
    "pii_found": "PII found",
    "illegal_content": "illegal content",
    "policy": "policy",
}
KEY_TYPES = ("conversation_hash", "turn_identifier", "hashed_ip")
NOTE_MAX_CHARS = 200
# The ledger version of a missing or empty ledger.
EMPTY_VERSION = "empty"

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_REQUEST_ID = re.compile(r"td-[0-9]{4,}")
_FIELDS = {"request_id", "requested_on", "reason", "key_type", "keys", "note", "resolved"}
_OPTIONAL = {"note", "resolved"}

LEDGER_SCHEMA = pl.Schema(
    {
        "request_id": pl.String,
        "requested_on": pl.Date,
        "reason": pl.String,
        "key_type": pl.String,
        "key": pl.String,
        "note": pl.String,
    }
)

# What matching needs of each conversation.
MATCHABLE_SCHEMA = pl.Schema(
    {
        "conversation_id": pl.Int64,
        "conversation_hash": pl.String,
        "turn_identifiers": pl.List(pl.Int64),
        "hashed_ips": pl.List(pl.String),
    }
)
MATCH_SCHEMA = pl.Schema({"conversation_id": pl.Int64, "request_id": pl.String})


class LedgerError(ValueError):
    """The ledger or a request is invalid; the message names the file and line, or the field."""


@dataclass(frozen=True)
class TakedownRequest:
    request_id: str
    requested_on: date
    reason: str
    key_type: str
    keys: tuple[str, ...]
    note: str | None = None
    # For a conversation_hash: the conversation's first turn_identifier, found when the request
    # was added. A hash changes when the text does (new redaction rules); the turn id does not,
    # so the conversation cannot come back under its new hash.
    resolved: tuple[str, ...] = ()

    def as_json(self) -> str:
        record = {
            "request_id": self.request_id,
            "requested_on": self.requested_on.isoformat(),
            "reason": self.reason,
            "key_type": self.key_type,
            "keys": list(self.keys),
        }
        if self.note is not None:
            record["note"] = self.note
        if self.resolved:
            record["resolved"] = [int(turn) for turn in self.resolved]
        return json.dumps(record, ensure_ascii=False, sort_keys=True)


def check_key(key_type: str, key: object) -> str:
    """The key in the ledger's form (lower-case hex; a turn id as decimal digits)."""
    if key_type not in KEY_TYPES:
        raise LedgerError(f"key_type must be one of {', '.join(KEY_TYPES)}, not {key_type!r}")
    if key_type == "turn_identifier":
        # bool is an int in Python: refuse it, and any float or string that is not digits.
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise LedgerError(f"a turn_identifier is an integer, not {type(key).__name__}")
        text = str(key)
        if not text.isascii() or not text.isdigit() or not 0 < int(text) < 2**63:
            raise LedgerError("a turn_identifier is a positive 64-bit integer")
        return str(int(text))
    if not isinstance(key, str):
        raise LedgerError(f"a {key_type} is a string of hex digits, not {type(key).__name__}")
    value = key.strip().lower()
    pattern = _HEX32 if key_type == "conversation_hash" else _HEX64
    if not pattern.fullmatch(value):
        digits = 32 if key_type == "conversation_hash" else 64
        raise LedgerError(f"a {key_type} is {digits} hex digits")
    return value


def check_note(note: object) -> str | None:
    """The note as published, or a LedgerError saying why it cannot be."""
    if note is None:
        return None
    if not isinstance(note, str):
        raise LedgerError(f"note must be a string, not {type(note).__name__}")
    text = " ".join(normalize_text(note).split())
    if not text:
        return None
    if len(text) > NOTE_MAX_CHARS:
        raise LedgerError(f"note is longer than {NOTE_MAX_CHARS} characters")
    if sanitize_text(text, max_chars=NOTE_MAX_CHARS) != text:
        raise LedgerError(
            "note holds what the text exit would mask (an IP, an e-mail address, a secret, a "
            "long number or a quoted value): it is published in the release's changelog"
        )
    return text


def parse_request(record: object) -> TakedownRequest:
    if not isinstance(record, dict):
        raise LedgerError(f"a request is a JSON object, not {type(record).__name__}")
    unknown = set(record) - _FIELDS
    if unknown:
        raise LedgerError(f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    missing = sorted(_FIELDS - _OPTIONAL - set(record))
    if missing:
        raise LedgerError(f"missing field(s): {', '.join(missing)}")
    request_id = record["request_id"]
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise LedgerError("request_id must look like td-0001")
    try:
        requested_on = date.fromisoformat(str(record["requested_on"]))
    except ValueError:
        raise LedgerError("requested_on must be a date, YYYY-MM-DD") from None
    reason = record["reason"]
    if reason not in REASONS:
        raise LedgerError(f"reason must be one of {', '.join(REASONS)}, not {reason!r}")
    keys = record["keys"]
    if not isinstance(keys, list) or not keys:
        raise LedgerError("keys must be a non-empty list")
    key_type = record["key_type"]
    checked = tuple(dict.fromkeys(check_key(key_type, key) for key in keys))
    resolved = record.get("resolved", [])
    if not isinstance(resolved, list):
        raise LedgerError("resolved must be a list of turn identifiers")
    if resolved and key_type != "conversation_hash":
        raise LedgerError("only a conversation_hash request has resolved turn identifiers")
    turns = tuple(dict.fromkeys(check_key("turn_identifier", turn) for turn in resolved))
    return TakedownRequest(
        request_id,
        requested_on,
        reason,
        key_type,
        checked,
        check_note(record.get("note")),
        turns,
    )


def load_ledger(path: Path | str) -> tuple[list[TakedownRequest], str]:
    """Every request of the ledger, in file order, and the version of exactly those bytes
    (one read, so a request appended meanwhile cannot make the two disagree). No file: none,
    ``empty``."""
    path = Path(path)
    if not path.exists():
        return [], EMPTY_VERSION
    content = path.read_bytes()
    version = hashlib.sha256(content).hexdigest()[:16] if content.strip() else EMPTY_VERSION
    requests: list[TakedownRequest] = []
    seen: dict[str, int] = {}
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        line = content[: error.start].count(b"\n") + 1
        raise LedgerError(f"{path}:{line}: not UTF-8 (byte {error.start})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            request = parse_request(json.loads(line))
        except (LedgerError, json.JSONDecodeError, RecursionError) as error:
            raise LedgerError(f"{path}:{number}: {error}") from None
        if request.request_id in seen:
            raise LedgerError(
                f"{path}:{number}: {request.request_id} is already on line "
                f"{seen[request.request_id]}"
            )
        seen[request.request_id] = number
        requests.append(request)
    return requests, version


def read_ledger(path: Path | str) -> list[TakedownRequest]:
    """Every request of the ledger, in file order; none when the file does not exist."""
    return load_ledger(path)[0]


def ledger_version(path: Path | str) -> str:
    """The first 16 hex digits of the file's sha256, or ``empty`` when there is no request."""
    return load_ledger(path)[1]


def ledger_frame(requests: Iterable[TakedownRequest]) -> pl.DataFrame:
    """One row per key of each request (``LEDGER_SCHEMA``); a hash's resolved turn ids are
    turn_identifier keys of the same request."""
    rows = [
        (r.request_id, r.requested_on, r.reason, key_type, key, r.note)
        for r in requests
        for key_type, keys in ((r.key_type, r.keys), ("turn_identifier", r.resolved))
        for key in keys
    ]
    return pl.DataFrame(rows, schema=LEDGER_SCHEMA, orient="row")


def raw_ip_keys(literal: str, salt: str) -> tuple[str, ...]:
    """The hashed_ip of a raw IP in every notation ingest may have stored it; the IP itself
    goes no further."""
    address = canonical_ip(literal.strip())
    if address is None:
        raise LedgerError("--raw-ip is not an IP address")
    return tuple(hash_ip(form, salt) for form in notations(address))


def next_request_id(requests: Iterable[TakedownRequest]) -> str:
    highest = max((int(r.request_id[3:]) for r in requests), default=0)
    return f"td-{highest + 1:04d}"


def add_request(
    path: Path | str,
    requested_on: date,
    reason: str,
    key_type: str,
    keys: Iterable[object],
    note: str | None = None,
    resolved: Iterable[int] = (),
) -> TakedownRequest:
    """Append a request under the next id. The ledger is locked meanwhile, so two operators
    adding at once get two ids, and read whole first, so a bad ledger is never appended to."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        existing = read_ledger(path)
        request = parse_request(
            {
                "request_id": next_request_id(existing),
                "requested_on": requested_on.isoformat(),
                "reason": reason,
                "key_type": key_type,
                "keys": list(keys),
                **({"note": note} if note is not None else {}),
                **({"resolved": list(resolved)} if resolved else {}),
            }
        )
        line = request.as_json() + "\n"
        if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            line = "\n" + line
        with path.open("a", encoding="utf-8") as ledger:
            ledger.write(line)
            ledger.flush()
            os.fsync(ledger.fileno())
    return request


def match_requests(ledger: pl.DataFrame, conversations: pl.DataFrame) -> pl.DataFrame:
    """``(conversation_id, request_id)`` for every conversation a request names
    (``MATCH_SCHEMA``), each pair once. ``conversations`` has ``MATCHABLE_SCHEMA``'s columns:
    its hash, every turn id it holds (inherited ones too) and every hashed_ip of its turns."""
    if ledger.is_empty() or conversations.is_empty():
        return pl.DataFrame(schema=MATCH_SCHEMA)
    conversations = conversations.select(MATCHABLE_SCHEMA.names()).cast(dict(MATCHABLE_SCHEMA))
    keys = ledger.select("request_id", "key_type", "key")
    found = []
    by_hash = keys.filter(pl.col("key_type") == "conversation_hash")
    if by_hash.height:
        found.append(
            conversations.select("conversation_id", key=pl.col("conversation_hash")).join(
                by_hash, on="key"
            )
        )
    by_turn = keys.filter(pl.col("key_type") == "turn_identifier")
    if by_turn.height:
        found.append(
            conversations.select("conversation_id", "turn_identifiers")
            .explode("turn_identifiers")
            .select("conversation_id", key=pl.col("turn_identifiers").cast(pl.String))
            .join(by_turn, on="key")
        )
    by_ip = keys.filter(pl.col("key_type") == "hashed_ip")
    if by_ip.height:
        found.append(
            conversations.select("conversation_id", "hashed_ips")
            .explode("hashed_ips")
            .select("conversation_id", key=pl.col("hashed_ips"))
            .join(by_ip, on="key")
        )
    if not found:
        return pl.DataFrame(schema=MATCH_SCHEMA)
    return (
        pl.concat([f.select(MATCH_SCHEMA.names()) for f in found])
        .unique()
        .sort("conversation_id", "request_id")
    )
