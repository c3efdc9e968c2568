"""Parse and validate one collection day of raw request logs.

Every line read ends up in exactly one of two frames: ``requests`` (valid, typed, hashed) or
``quarantine`` (with the file, line number, a reason, and a truncated excerpt).

Before any decoder sees a line, lines that are blank, too large or nested too deep (a cheap
bracket count, then an exact scan of the few lines with many brackets) are quarantined: a native
JSON decoder recurses, and a deep enough line crashes the process instead of raising.

Two paths, one verdict. The fast path decodes well-formed lines in bulk with polars and keeps
only rows whose every value is certainly what the strict path would read: polars coerces (1.5 to
1, a number to its text), takes the first of two duplicate keys and turns a lone surrogate into
NUL, so raw-text checks defer any row where that could have happened. Everything else, and a
chunk polars cannot decode (split in halves until the bad lines are isolated), goes to the strict
path: Python's ``json`` with exact JSON types, which is the contract's reference. The verdict on a
line therefore never depends on its neighbours; ``test_faults_ingest`` holds both paths to it.
Hashes are built with polars and computed with hashlib.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import ipaddress
import json
import lzma
import os
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from wildchat_dag.core.hashing import json_array_body
from wildchat_dag.core.schema import (
    MESSAGE,
    QUARANTINE_SCHEMA,
    REQUESTS_SCHEMA,
    partition_day_value,
)
from wildchat_dag.defs.ingest.log_contract import (
    EXCERPT_CHARS,
    MAX_JSON_DEPTH,
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    RFC3339_PATTERN,
    RFC3339_RE,
    SCHEMA_VERSION,
    EntryOutcome,
    FolderEntry,
    QuarantineReason,
    scan_day_folder,
)


class LogFileError(Exception):
    """A whole file cannot be read: the message names the file, never its content."""


class ConservationError(RuntimeError):
    """Lines read and lines accounted for differ: a bug, named by file, never swallowed."""


@dataclass
class FileCounts:
    source_file: str
    lines_read: int = 0
    kept: int = 0
    quarantined: int = 0
    line_endings: str = "lf"

    def describe(self) -> dict[str, Any]:
        return {
            "file": self.source_file,
            "lines_read": self.lines_read,
            "kept": self.kept,
            "quarantined": self.quarantined,
            "line_endings": self.line_endings,
        }


@dataclass
class IngestResult:
    requests: pl.DataFrame
    quarantine: pl.DataFrame
    files: list[str] = field(default_factory=list)
    lines_read: int = 0
    invalid_ips: int = 0
    entries: list[FolderEntry] = field(default_factory=list)
    file_counts: list[FileCounts] = field(default_factory=list)

    @property
    def quarantined_by_reason(self) -> dict[str, int]:
        if self.quarantine.is_empty():
            return {}
        counts = self.quarantine.group_by("reason").len().sort("reason")
        return dict(zip(counts["reason"].to_list(), counts["len"].to_list(), strict=True))

    @property
    def skipped_entries(self) -> list[FolderEntry]:
        return [e for e in self.entries if e.outcome == EntryOutcome.SKIPPED]


_DECOMPRESSORS = {
    ".gz": (gzip.decompress, (OSError, EOFError, zlib.error), "gzip"),
    ".bz2": (bz2.decompress, (OSError, EOFError, ValueError), "bzip2"),
    ".xz": (lzma.decompress, (lzma.LZMAError, EOFError), "xz"),
}


def _read_bytes(path: Path, source: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        # strerror only: the OSError's own text repeats the full path, which is fine, but a
        # uniform message is easier to search for.
        raise LogFileError(
            f"{source}: cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    for suffix, (decompress, errors, label) in _DECOMPRESSORS.items():
        if path.name.lower().endswith(suffix):
            try:
                return decompress(data)
            except errors as exc:
                # The exception's type only: gzip's own message quotes the file's first bytes.
                raise LogFileError(
                    f"{source}: not a readable {label} file ({type(exc).__name__})"
                ) from None
    return data


_BOM = b"\xef\xbb\xbf"


def _normalize_line_endings(data: bytes) -> tuple[bytes, str]:
    """The data to split on LF, and the file's line endings, for the metadata.

    LF and CRLF split on LF (the CR is stripped per line later). A file with CRs and no LF at all
    (classic Mac) splits on CR: read as one line it would merge every request into one
    ``invalid_json`` row. In a file with LFs, a lone CR stays in its line, where JSON allows it
    as whitespace; a line that holds two requests so joined is ``invalid_json``, and its detail
    says it holds a carriage return.
    """
    if b"\r" not in data:
        return data, "lf"
    if b"\n" not in data:
        return data.replace(b"\r", b"\n"), "cr"
    crlf = data.count(b"\r\n")
    if crlf == data.count(b"\n") and crlf == data.count(b"\r"):
        return data, "crlf"
    return data, "mixed"


def _split_lines_python(data: bytes) -> tuple[list[str | None], list[bytes] | None]:
    """Lines as text, None where a line is not UTF-8. Also the raw lines when any is not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raw = data.split(b"\n")
        if raw and raw[-1] == b"":
            raw.pop()
        lines: list[str | None] = []
        for chunk in raw:
            try:
                lines.append(chunk.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(None)
        return lines, raw
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines, None


def _split_lines_fast(data: bytes) -> pl.Series | None:
    """Lines via polars' multi-threaded CSV reader, one column split on a byte JSON never holds
    raw. None when the file needs the careful path (a NUL or non-UTF-8 byte), or when the line
    count does not match, so that no line can be merged, split or skipped."""
    if b"\x00" in data:
        return None
    try:
        lines = pl.read_csv(
            io.BytesIO(data),
            has_header=False,
            separator="\x00",
            quote_char=None,
            schema={"line": pl.String},
            eol_char="\n",
        ).to_series()
    except pl.exceptions.PolarsError:
        return None
    expected = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    return lines.fill_null("") if lines.len() == expected else None


def _file_lines(path: Path, source: str) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """A file's lines, the quarantine rows for lines that are not UTF-8, and its line endings."""
    data = _read_bytes(path, source)
    # A UTF-8 byte-order mark opens files saved by some Windows tools; it is not part of the
    # first request. Anywhere else it is content, and a line starting with one is invalid JSON.
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    data, endings = _normalize_line_endings(data)
    bad_utf8 = pl.DataFrame(
        schema={
            "source_file": pl.String,
            "line_number": pl.Int64,
            "excerpt": pl.String,
            "line_bytes": pl.Int64,
        }
    )
    fast = _split_lines_fast(data)
    if fast is not None:
        lines, raw = fast, None
    else:
        split, raw = _split_lines_python(data)
        lines = pl.Series(split, dtype=pl.String)
    del data
    frame = pl.DataFrame({"line": lines}).with_columns(
        source_file=pl.lit(source),
        line_number=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
    )
    if raw is not None:
        bad = frame.filter(pl.col("line").is_null())["line_number"].to_list()
        bad_utf8 = pl.DataFrame(
            {
                "source_file": [source] * len(bad),
                "line_number": bad,
                "excerpt": [
                    raw[i - 1][: EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS]
                    for i in bad
                ],
                "line_bytes": [len(raw[i - 1]) for i in bad],
            },
            schema=bad_utf8.schema,
        )
    return frame, bad_utf8, endings


def normalize_ip(text: str | None) -> str | None:
    """A client address as logged (maybe with a port or brackets) to its canonical form."""
    if text is None:
        return None
    candidate = text.strip()
    if candidate.startswith("["):
        end = candidate.find("]")
        candidate = candidate[1:end] if end > 0 else ""
    elif candidate.count(":") == 1:
        candidate = candidate.split(":", 1)[0]
    try:
        return ipaddress.ip_address(candidate).compressed
    except ValueError:
        return None


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_CANONICAL_IPV4 = rf"^{_OCTET}(?:\.{_OCTET}){{3}}$"


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


_R = QuarantineReason

# --- Nesting guard --------------------------------------------------------------------------
# A JSON string, closed or not (an unclosed one runs to the end of the line): brackets inside it
# are text, not nesting.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth(line: str, limit: int) -> int:
    """The deepest nesting of brackets outside strings, counted up to ``limit + 1``.

    Pure Python on purpose: it must not recurse and must not hand the line to a native decoder.
    Unbalanced closers are ignored (the line is invalid JSON; the decoder will say so).
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", line))
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif depth:
            depth -= 1
    return deepest


def _too_deep(lines: pl.DataFrame, max_depth: int) -> pl.DataFrame:
    """``k, problem`` for lines nested deeper than ``max_depth``.

    A line with at most ``max_depth`` opening brackets cannot nest deeper, whatever is in its
    strings, so only lines with more (code in a message, say) get the exact scan.
    """
    opening = pl.col("line").str.count_matches("[", literal=True) + pl.col(
        "line"
    ).str.count_matches("{", literal=True)
    suspects = lines.filter(opening > max_depth)
    deep = [
        k
        for k, line in zip(suspects["k"], suspects["line"], strict=True)
        if json_depth(line, max_depth) > max_depth
    ]
    return pl.DataFrame(
        {"k": deep, "problem": [f"{_R.NESTING_TOO_DEEP}:over {max_depth} levels"] * len(deep)},
        schema={"k": pl.Int64, "problem": pl.String},
    )


# --- Strict path: the contract, one JSON type at a time ----------------------------------------
_SURROGATE = re.compile("[\ud800-\udfff]")
_HEADERS = ("user-agent", "accept-language", "x-forwarded-for")
_INT64_MAX = 2**63 - 1


class _Object(dict[str, Any]):
    """A decoded JSON object that remembers which of its names occurred more than once."""

    duplicates: frozenset[str] = frozenset()


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        obj.duplicates = frozenset(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number with a fraction or exponent"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class _Problem(Exception):
    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason if detail is None else f"{reason}:{detail}")


def _text(obj: dict[str, Any], name: str, label: str, *, required: bool) -> str | None:
    """A string field: None when absent or null (an error when required), never another type,
    never a lone surrogate (which UTF-8, and so the table, cannot hold)."""
    value = obj.get(name)
    if value is None:
        if required:
            raise _Problem(_R.MISSING_FIELD, label)
        return None
    if not isinstance(value, str):
        raise _Problem(_R.INVALID_FIELD, label)
    if _SURROGATE.search(value):
        raise _Problem(_R.INVALID_FIELD, f"{label}: lone surrogate")
    return value


def _timestamp(obj: dict[str, Any], name: str) -> str:
    value = _text(obj, name, name, required=True)
    assert value is not None
    if not RFC3339_RE.match(value):
        raise _Problem(_R.INVALID_FIELD, name)
    return value


def _validate(line: str) -> dict[str, Any]:
    """One line against the contract: the candidate row, or ``_Problem`` naming the field."""
    try:
        obj = json.loads(line, object_pairs_hook=_object, parse_constant=_reject_constant)
    except RecursionError:  # the depth guard runs first; this is belt and braces
        raise _Problem(_R.NESTING_TOO_DEEP, "too deep to decode") from None
    except ValueError as exc:
        # JSONDecodeError's msg is a fixed phrase and pos a number: no raw value in either.
        where = f" at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else "NaN or Infinity"
        cr = "; the line holds a carriage return (mixed line endings?)" if "\r" in line else ""
        raise _Problem(_R.INVALID_JSON, f"{message}{where}{cr}") from None
    if not isinstance(obj, dict):
        raise _Problem(_R.NOT_AN_OBJECT, _json_type(obj))
    # Two values for one name: which one counts is up to the decoder, so neither is taken.
    for name in (*OPTIONAL_FIELDS, *REQUIRED_FIELDS):
        if name in obj.duplicates:
            raise _Problem(_R.DUPLICATE_KEY, name)
    version = obj.get("schema_version")
    if version is not None and not (type(version) is int and version == SCHEMA_VERSION):
        shown = str(version) if type(version) is int and 0 <= version < 1000 else None
        raise _Problem(_R.UNSUPPORTED_SCHEMA_VERSION, shown or f"a JSON {_json_type(version)}")
    turn_id = obj.get("turn_id")
    if turn_id is None:
        raise _Problem(_R.MISSING_FIELD, "turn_id")
    if type(turn_id) is not int or not 0 < turn_id <= _INT64_MAX:
        raise _Problem(_R.INVALID_FIELD, "turn_id")
    timestamp = _timestamp(obj, "timestamp")
    response_timestamp = _timestamp(obj, "response_timestamp")
    model = _text(obj, "model", "model", required=True)
    if model == "":
        raise _Problem(_R.INVALID_FIELD, "model")
    headers = obj.get("headers")
    if headers is None:
        raise _Problem(_R.MISSING_FIELD, "headers")
    if not isinstance(headers, dict):
        raise _Problem(_R.INVALID_FIELD, "headers")
    # Header names are case-insensitive in HTTP: two spellings of one name are a duplicate.
    found: dict[str, list[str]] = {}
    for key in headers:
        if key.lower() in _HEADERS:
            found.setdefault(key.lower(), []).append(key)
    for name, keys in found.items():
        if len(keys) > 1 or keys[0] in headers.duplicates:
            raise _Problem(_R.DUPLICATE_KEY, f"headers.{name}")
    values = {name: headers[keys[0]] for name, keys in found.items()}
    user_agent = _text(values, "user-agent", "headers.user-agent", required=False)
    accept_language = _text(values, "accept-language", "headers.accept-language", required=False)
    ip = _text(obj, "ip", "ip", required=False)
    xff = None
    if ip is None:
        xff = _text(values, "x-forwarded-for", "headers.x-forwarded-for", required=True)
    messages = obj.get("messages")
    if messages is None:
        raise _Problem(_R.MISSING_FIELD, "messages")
    if not isinstance(messages, list):
        raise _Problem(_R.INVALID_FIELD, "messages")
    if not messages:
        raise _Problem(_R.EMPTY_MESSAGES)
    for message in messages:
        if not isinstance(message, dict):
            raise _Problem(_R.INVALID_FIELD, "messages")
        if message.duplicates & {"role", "content"}:
            raise _Problem(_R.DUPLICATE_KEY, "messages")
        if not (isinstance(message.get("role"), str) and isinstance(message.get("content"), str)):
            raise _Problem(_R.INVALID_FIELD, "messages")
        if _SURROGATE.search(message["role"]) or _SURROGATE.search(message["content"]):
            raise _Problem(_R.INVALID_FIELD, "messages: lone surrogate")
    if len(messages) % 2 == 0 or any(
        m["role"] != ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(messages)
    ):
        raise _Problem(_R.ROLES_NOT_ALTERNATING)
    response = _text(obj, "response", "response", required=True)
    return {
        "turn_id": turn_id,
        "timestamp_text": timestamp,
        "response_timestamp_text": response_timestamp,
        "model": model,
        "ip_field": ip,
        "xff": xff,
        "user_agent": user_agent,
        "accept_language": accept_language,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "response": response,
    }


_CANDIDATE_SCHEMA = pl.Schema(
    {
        "k": pl.Int64,
        "turn_id": pl.Int64,
        "timestamp_text": pl.String,
        "response_timestamp_text": pl.String,
        "model": pl.String,
        "ip_field": pl.String,
        "xff": pl.String,
        "user_agent": pl.String,
        "accept_language": pl.String,
        "messages": pl.List(MESSAGE),
        "response": pl.String,
    }
)
_CANDIDATE_COLUMNS = tuple(_CANDIDATE_SCHEMA)
_PROBLEM_SCHEMA = {"k": pl.Int64, "problem": pl.String}


def _strict_path(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate lines one by one against the contract: (valid rows, problems)."""
    rows: list[dict[str, Any]] = []
    problems: list[tuple[int, str]] = []
    for k, line in zip(lines["k"], lines["line"], strict=True):
        try:
            row = _validate(line)
        except _Problem as problem:
            problems.append((k, str(problem)))
        else:
            row["k"] = k
            rows.append(row)
    return (
        pl.DataFrame(rows, schema=_CANDIDATE_SCHEMA),
        pl.DataFrame(problems, schema=_PROBLEM_SCHEMA, orient="row"),
    )


# --- Fast path ----------------------------------------------------------------------------------
_FAST_DTYPE = pl.Struct(
    {
        "schema_version": pl.Int64,
        "turn_id": pl.Int64,
        "timestamp": pl.String,
        "model": pl.String,
        "ip": pl.String,
        # The two usual spellings; any other goes through the strict, case-insensitive path.
        "headers": pl.Struct(
            {
                name: pl.String
                for header in _HEADERS
                for name in (header, "-".join(p.capitalize() for p in header.split("-")))
            }
        ),
        "messages": pl.List(MESSAGE),
        "response": pl.String,
        "response_timestamp": pl.String,
    }
)
_FAST_CHUNK_LINES = 4096
# A chunk polars cannot decode is halved until its pieces are this small; those go strict.
_BISECT_MIN_LINES = 32
_STRING_FIELDS = (
    "timestamp",
    "response_timestamp",
    "model",
    "response",
    "ip",
    *_HEADERS,
    "role",
    "content",
)
# Names the contract reads, as keys. Inside a JSON string a quote is escaped, so ``"name":``
# is a key (or, at worst, a string ending in the name: the count is then off and the row waits
# for the strict path).
_KEYS = r'(?i)"(?:schema_version|turn_id|' + "|".join(_STRING_FIELDS) + r'|headers|messages)"\s*:'
_KEY_NAME = r'^"([^"]*)"'
# A value of a string field that is not a string: polars would read a number as its text.
_NOT_A_STRING = r'(?i)"(?:' + "|".join(_STRING_FIELDS) + r')"\s*:\s*[^"\s]'
# A key spelled with an escaped ASCII character (``"turn\u005fid"``) is the same name to a JSON
# parser but not to the key count above, nor to polars.
_ESCAPED_ASCII = r"\\u00[2-7][0-9a-fA-F]"
# polars decodes a lone high surrogate, and a real U+0000, to NUL; only Python tells them apart.
_MAY_HOLD_NUL = r"\\u(?:0000|[dD][89abAB])"
_TOP_LEVEL_ONCE = ("schema_version", "turn_id", "timestamp", "response_timestamp", "model")
_TOP_LEVEL_ONCE += ("response", "ip", *_HEADERS, "headers", "messages")


def _decode(chunk: pl.DataFrame) -> list[tuple[pl.DataFrame, bool]]:
    """``(frame, decoded)`` pieces of a chunk: decoded by polars, or lines polars refused.

    A chunk polars refuses is halved until the refused lines are isolated, so one bad line
    sends a few dozen neighbours to the strict path, not thousands.
    """
    try:
        return [
            (
                chunk.select("k", "line", r=pl.col("line").str.json_decode(_FAST_DTYPE)).unnest(
                    "r"
                ),
                True,
            )
        ]
    except pl.exceptions.PolarsError:
        pass
    if chunk.height <= _BISECT_MIN_LINES:
        return [(chunk, False)]
    half = chunk.height // 2
    return _decode(chunk.slice(0, half)) + _decode(chunk.slice(half))


def _raw_text_checks(frame: pl.DataFrame) -> pl.Series:
    """True where the raw line shows the decoded row is exactly what the strict path reads."""
    literal = r"\s*:\s*([^\s,}\]]*)"
    # Computed once: each expression below would otherwise scan every line again.
    frame = frame.select(
        "turn_id",
        n_messages=pl.col("messages").list.len(),
        keys=pl.col("line")
        .str.extract_all(_KEYS)
        .list.eval(pl.element().str.extract(_KEY_NAME).str.to_lowercase()),
        turn_id_text=pl.col("line").str.extract(r'"turn_id"' + literal),
        version_text=pl.col("line").str.extract(r'"schema_version"' + literal),
        plain=~pl.col("line").str.contains(_NOT_A_STRING)
        & ~pl.col("line").str.contains(_ESCAPED_ASCII),
    )
    keys, turn_id_text, version_text = (
        pl.col("keys"),
        pl.col("turn_id_text"),
        pl.col("version_text"),
    )
    return frame.select(
        (
            pl.all_horizontal(keys.list.count_matches(name) <= 1 for name in _TOP_LEVEL_ONCE)
            & (keys.list.count_matches("role") == pl.col("n_messages"))
            & (keys.list.count_matches("content") == pl.col("n_messages"))
            # An integer literal, not 1.0, 1e3 or true, equal to what polars read.
            & turn_id_text.str.contains(r"^[1-9][0-9]{0,18}$")
            & (turn_id_text.cast(pl.Int64, strict=False) == pl.col("turn_id"))
            & (version_text.is_null() | (version_text == str(SCHEMA_VERSION)))
            & pl.col("plain")
        ).fill_null(False)
    ).to_series()


def _holds_nul(frame: pl.DataFrame) -> pl.Series:
    headers = pl.col("headers")
    return frame.select(
        (
            pl.any_horizontal(
                pl.col(c).str.contains("\x00", literal=True)
                for c in ("timestamp", "response_timestamp", "model", "response", "ip")
            )
            | pl.any_horizontal(
                headers.struct.field(h).str.contains("\x00", literal=True) for h in _HEADERS
            )
            | pl.col("messages")
            .list.eval(
                pl.element().struct.field("role").str.contains("\x00", literal=True)
                | pl.element().struct.field("content").str.contains("\x00", literal=True)
            )
            .list.any()
        ).fill_null(False)
    ).to_series()


def _fast_path(candidates: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decode well-formed lines with polars; return (accepted rows, lines for the strict path).

    Any row with a missing, null, non-string, possibly coerced or duplicated value, and every
    line of a piece polars cannot decode, goes to the strict path, which names the exact
    problem. Rows accepted here are exactly rows the strict path would accept, with the same
    values.
    """
    chunks = list(candidates.iter_slices(_FAST_CHUNK_LINES))
    # polars releases the GIL while decoding, so chunks decode in parallel.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = [piece for pieces in pool.map(_decode, chunks) for piece in pieces]
    decoded = [frame for frame, ok in results if ok and frame.height]
    strict = [frame.select("k", "line") for frame, ok in results if not ok]
    empty = pl.DataFrame(schema=_CANDIDATE_SCHEMA)
    if not decoded:
        return empty, candidates.select("k", "line")
    frame = pl.concat(decoded).with_columns(
        pl.struct(
            pl.coalesce(
                pl.col("headers").struct.field(h),
                pl.col("headers").struct.field("-".join(p.capitalize() for p in h.split("-"))),
            ).alias(h)
            for h in _HEADERS
        ).alias("headers")
    )
    headers = pl.col("headers")
    role_expected = (
        pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.lit("user")).otherwise(pl.lit("assistant"))
    )
    strings = ("timestamp", "response_timestamp", "model", "response")
    accepted = (
        (pl.col("schema_version").is_null() | (pl.col("schema_version") == SCHEMA_VERSION))
        & (pl.col("turn_id") > 0)
        & pl.all_horizontal(pl.col(c).is_not_null() for c in strings)
        & (pl.col("model") != "")
        & headers.is_not_null()
        & pl.all_horizontal(headers.struct.field(h).is_not_null() for h in _HEADERS)
        & (pl.col("messages").list.len() % 2 == 1)
        & pl.col("messages")
        .list.eval(
            (pl.element().struct.field("role") == role_expected)
            & pl.element().struct.field("content").is_not_null()
        )
        .list.all()
    ).fill_null(False)
    frame = frame.with_columns(accepted=accepted)
    frame = frame.with_columns(
        accepted=pl.col("accepted") & _raw_text_checks(frame.select("line", "messages", "turn_id"))
    )
    suspect = frame.select(pl.col("accepted") & pl.col("line").str.contains(_MAY_HOLD_NUL))
    if suspect.to_series().any():
        nul = _holds_nul(frame)
        frame = frame.with_columns(accepted=pl.col("accepted") & ~nul)
    strict.append(frame.filter(~pl.col("accepted")).select("k", "line"))
    frame = frame.filter("accepted")
    ok = frame.select(
        "k",
        "turn_id",
        "model",
        "messages",
        "response",
        timestamp_text="timestamp",
        response_timestamp_text="response_timestamp",
        ip_field="ip",
        xff=headers.struct.field("x-forwarded-for"),
        user_agent=headers.struct.field("user-agent"),
        accept_language=headers.struct.field("accept-language"),
    ).select(_CANDIDATE_COLUMNS)
    return ok, pl.concat(strict)


_TIMESTAMP_SQL = f"""
SELECT k,
    regexp_matches(timestamp_text, '{RFC3339_PATTERN}') AND ts IS NOT NULL AS ts_ok,
    regexp_matches(response_timestamp_text, '{RFC3339_PATTERN}') AND rts IS NOT NULL AS rts_ok,
    ts AS "timestamp", rts AS response_timestamp
FROM (
    -- upper(): the contract allows a lower-case t and z, DuckDB's cast does not.
    SELECT k, timestamp_text, response_timestamp_text,
        TRY_CAST(upper(timestamp_text) AS TIMESTAMPTZ) AS ts,
        TRY_CAST(upper(response_timestamp_text) AS TIMESTAMPTZ) AS rts
    FROM stamps
)
"""

_HASH_CHUNK_ROWS = 50_000


def _digest_pairs(prefixes: list[bytes], tails: list[bytes]) -> tuple[list[str], list[str]]:
    """sha256 of ``[`` + prefix + ``]`` and of ``[`` + prefix + tail, hashing the prefix once."""
    prev, current = [], []
    for prefix, tail in zip(prefixes, tails, strict=True):
        h = hashlib.sha256(b"[")
        h.update(prefix)
        before = h.copy()
        before.update(b"]")
        h.update(tail)
        prev.append(before.hexdigest())
        current.append(h.hexdigest())
    return prev, current


def _history_hashes(valid: pl.DataFrame) -> pl.DataFrame:
    """prev/current hashes (see hashing.py): JSON built by polars, hashed with hashlib.

    The history before the new user message is the common prefix of both texts, so it is
    encoded and hashed once; hashlib's state is copied where the ``prev`` text ends.
    """
    n = pl.col("messages").list.len()
    reply = pl.struct(role=pl.lit("assistant"), content=pl.col("response"))
    last_exchange = pl.concat_list(pl.col("messages").list.last(), reply)
    schema = {"prev_hash": pl.String, "current_hash": pl.String}
    workers = os.cpu_count() or 1
    out = []
    # hashlib releases the GIL on large inputs, so slices of a chunk hash in parallel.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for chunk in valid.iter_slices(_HASH_CHUNK_ROWS):
            texts = chunk.select(
                prefix=json_array_body(pl.col("messages").list.head(n - 1)),
                tail=pl.when(n > 1).then(pl.lit(",")).otherwise(pl.lit(""))
                + json_array_body(last_exchange)
                + "]",
            )
            step = -(-texts.height // workers)
            parts = list(
                pool.map(
                    lambda part: _digest_pairs(
                        part["prefix"].cast(pl.Binary).to_list(),
                        part["tail"].cast(pl.Binary).to_list(),
                    ),
                    texts.iter_slices(step) if texts.height else [],
                )
            )
            out.append(
                pl.DataFrame(
                    {
                        "prev_hash": [h for prev, _ in parts for h in prev],
                        "current_hash": [h for _, current in parts for h in current],
                    },
                    schema=schema,
                )
            )
    return pl.concat(out) if out else pl.DataFrame(schema=schema)


def _quarantine_rows(frame: pl.DataFrame, day: date) -> pl.DataFrame:
    """Shape rows with ``source_file, line_number, reason, detail, excerpt, line_bytes``."""
    return frame.select(
        partition_day=pl.lit(partition_day_value(day)),
        source_file=pl.col("source_file"),
        line_number=pl.col("line_number"),
        reason=pl.col("reason"),
        detail=pl.col("detail"),
        raw_excerpt=pl.col("excerpt").str.slice(0, EXCERPT_CHARS),
        line_bytes=pl.col("line_bytes"),
    ).cast(QUARANTINE_SCHEMA)  # type: ignore[arg-type]


def parse_lines(
    lines: pl.DataFrame, day: date, *, max_line_bytes: int, max_depth: int = MAX_JSON_DEPTH
) -> IngestResult:
    """Validate ``lines`` (``source_file, line_number, line``) collected for ``day``.

    The message history is the bulk of every line, so those columns are decoded once and then
    only filtered, never joined: every decision is made on a light frame keyed by ``k``.
    """
    lines_read = lines.height
    read_by_file = _count_by_file(lines)
    lines = lines.with_columns(k=pl.int_range(pl.len(), dtype=pl.Int64))
    # Each of these would copy every line, so only where it changes something.
    if lines["line"].str.ends_with("\r").any():
        lines = lines.with_columns(pl.col("line").str.strip_suffix("\r"))
    lines = lines.with_columns(line_bytes=pl.col("line").str.len_bytes().cast(pl.Int64))
    problems = lines.select(
        "k",
        problem=pl.when(pl.col("line_bytes") > max_line_bytes)
        .then(pl.lit(f"{QuarantineReason.LINE_TOO_LARGE}:over {max_line_bytes} bytes"))
        .when(pl.col("line").str.strip_chars() == "")
        .then(pl.lit(QuarantineReason.BLANK_LINE)),
    ).filter(pl.col("problem").is_not_null())
    candidates = lines.select("k", "line")
    if problems.height:
        candidates = candidates.filter(~pl.col("k").is_in(problems["k"].implode()))
    # Before any decoder: a deep line crashes a native one instead of raising.
    deep = _too_deep(candidates, max_depth)
    if deep.height:
        problems = pl.concat([problems, deep])
        candidates = candidates.filter(~pl.col("k").is_in(deep["k"].implode()))
    fast, strict_lines = _fast_path(candidates)
    del candidates
    strict, strict_problems = _strict_path(strict_lines)
    del strict_lines
    valid = pl.concat([fast, strict]).sort("k") if strict.height else fast
    del fast, strict
    # One rule for both paths: the client is ``ip``, else the first x-forwarded-for entry.
    valid = valid.with_columns(
        ip_text=pl.coalesce("ip_field", pl.col("xff").str.split(",").list.first().str.strip_chars())
    )

    con = _connect()
    stamps = valid.select("k", "timestamp_text", "response_timestamp_text")  # noqa: F841
    light = (
        valid.select("k", "turn_id", "ip_text")
        .join(con.sql(_TIMESTAMP_SQL).pl(), on="k")
        .join(lines.select("k", "source_file", "line_number"), on="k")
        .sort("k")
    )
    con.close()
    bad_time = light.filter(~pl.col("ts_ok") | ~pl.col("rts_ok")).select(
        "k",
        problem=pl.when(~pl.col("ts_ok"))
        .then(pl.lit(QuarantineReason.INVALID_FIELD + ":timestamp"))
        .otherwise(pl.lit(QuarantineReason.INVALID_FIELD + ":response_timestamp")),
    )
    light = light.filter(pl.col("ts_ok") & pl.col("rts_ok"))
    outside = light.filter(pl.col("timestamp").dt.date() != day).select(
        "k",
        problem=pl.lit(QuarantineReason.TIMESTAMP_OUTSIDE_DAY + ":")
        + pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ")
        + pl.lit(f" is not on {day.isoformat()}"),
    )
    light = light.filter(pl.col("timestamp").dt.date() == day)
    # Keep the first occurrence of a turn_id (by file, line); later copies are quarantined.
    first_seen = light.group_by("turn_id", maintain_order=True).agg(
        first_k=pl.col("k").first(),
        first_at=pl.col("source_file").first()
        + ":"
        + pl.col("line_number").first().cast(pl.String),
    )
    light = light.join(first_seen, on="turn_id", maintain_order="left")
    duplicates = light.filter(pl.col("k") != pl.col("first_k")).select(
        "k",
        problem=pl.lit(QuarantineReason.DUPLICATE_TURN_ID + ":first seen at ") + pl.col("first_at"),
    )
    light = light.filter(pl.col("k") == pl.col("first_k"))

    problems = pl.concat(
        [
            problems,
            strict_problems,
            bad_time,
            outside,
            duplicates,
        ]
    )
    quarantine = _quarantine_rows(
        lines.join(problems, on="k").with_columns(
            reason=pl.col("problem").str.splitn(":", 2).struct.field("field_0"),
            detail=pl.col("problem").str.splitn(":", 2).struct.field("field_1"),
            excerpt=pl.col("line").str.slice(0, EXCERPT_CHARS),
        ),
        day,
    )
    del lines

    # A dotted quad is already canonical; only the rest (IPv6, ports, junk) needs ipaddress.
    distinct = light.select(pl.col("ip_text").unique())
    plain = pl.col("ip_text").str.contains(_CANONICAL_IPV4)
    ip_map = pl.concat(
        [
            distinct.filter(plain).with_columns(ip=pl.col("ip_text")),
            distinct.filter(~plain | pl.col("ip_text").is_null()).with_columns(
                ip=pl.col("ip_text").map_elements(normalize_ip, return_dtype=pl.String)
            ),
        ]
    )
    light = light.join(ip_map, on="ip_text", how="left", nulls_equal=True, maintain_order="left")
    if light.height != valid.height:
        valid = valid.filter(pl.col("k").is_in(light["k"]))
    hashes = _history_hashes(valid)
    requests = pl.concat(
        [
            light.select(
                partition_day=pl.lit(partition_day_value(day)),
                turn_id="turn_id",
                timestamp=pl.col("timestamp").dt.convert_time_zone("UTC"),
                response_timestamp=pl.col("response_timestamp").dt.convert_time_zone("UTC"),
            ),
            valid.select("model"),
            light.select("ip", ip_valid=pl.col("ip").is_not_null()),
            valid.select("user_agent", "accept_language", "messages", "response"),
            hashes.select("prev_hash", "current_hash"),
            light.select("source_file", "line_number"),
        ],
        how="horizontal",
    ).cast(REQUESTS_SCHEMA)  # type: ignore[arg-type]
    quarantine = quarantine.sort("source_file", "line_number")
    return IngestResult(
        requests=requests,
        quarantine=quarantine,
        lines_read=lines_read,
        invalid_ips=requests.filter(~pl.col("ip_valid")).height,
        file_counts=account_for_lines(read_by_file, requests, quarantine),
    )


def _count_by_file(frame: pl.DataFrame) -> dict[str, int]:
    if frame.is_empty():
        return {}
    counts = frame.group_by("source_file").len()
    return dict(zip(counts["source_file"].to_list(), counts["len"].to_list(), strict=True))


def account_for_lines(
    read_by_file: dict[str, int], requests: pl.DataFrame, quarantine: pl.DataFrame
) -> list[FileCounts]:
    """Per file: lines read = kept + quarantined, or ``ConservationError`` naming the file."""
    kept, quarantined = _count_by_file(requests), _count_by_file(quarantine)
    counts = []
    for source in sorted(read_by_file.keys() | kept.keys() | quarantined.keys()):
        entry = FileCounts(
            source, read_by_file.get(source, 0), kept.get(source, 0), quarantined.get(source, 0)
        )
        if entry.lines_read != entry.kept + entry.quarantined:
            raise ConservationError(
                f"{source}: {entry.lines_read:,} lines read but {entry.kept:,} kept and "
                f"{entry.quarantined:,} quarantined"
            )
        counts.append(entry)
    return counts


def ingest_day(
    folder: Path, day: date, *, max_line_bytes: int, max_depth: int = MAX_JSON_DEPTH
) -> IngestResult:
    """Read every log file of one day folder. A missing folder is an error naming the path.

    Every entry of the folder is listed in ``entries`` with its outcome (read, skipped and
    why); an entry that looks like a log but cannot be read (a dangling symlink, an unsupported
    compression) fails the day, naming every such entry.
    """
    if not folder.is_dir():
        raise FileNotFoundError(
            f"No log folder for {day.isoformat()}: expected {folder} (one folder per UTC day, "
            "named YYYY-MM-DD, under the log root)"
        )
    entries = scan_day_folder(folder)
    failed = [e for e in entries if e.outcome == EntryOutcome.FAILED]
    if failed:
        listed = ", ".join(f"{folder.name}/{e.name} ({e.reason})" for e in failed)
        raise LogFileError(f"cannot read log entries of {folder.name}: {listed}")
    files = [e.path for e in entries if e.outcome == EntryOutcome.READ]
    frames, bad_utf8, endings = [], [], {}
    for path in files:
        source = f"{folder.name}/{path.name}"
        lines, bad, endings[source] = _file_lines(path, source)
        frames.append(lines)
        bad_utf8.append(bad)
    lines = (
        pl.concat(frames)
        if frames
        else pl.DataFrame(
            schema={"line": pl.String, "source_file": pl.String, "line_number": pl.Int64}
        )
    )
    read_by_file = {
        f"{folder.name}/{p.name}": frame.height for p, frame in zip(files, frames, strict=True)
    }
    del frames
    non_utf8 = lines["line"].null_count()
    if non_utf8:  # filtering copies every line, so only when there is something to drop
        lines = lines.filter(pl.col("line").is_not_null())
    result = parse_lines(lines, day, max_line_bytes=max_line_bytes, max_depth=max_depth)
    if non_utf8:
        extra = _quarantine_rows(
            pl.concat(bad_utf8).with_columns(
                reason=pl.lit(QuarantineReason.INVALID_UTF8),
                detail=pl.lit("line is not valid UTF-8"),
            ),
            day,
        )
        result.quarantine = pl.concat([result.quarantine, extra]).sort("source_file", "line_number")
        result.lines_read += non_utf8
    counts = {
        c.source_file: c
        for c in account_for_lines(read_by_file, result.requests, result.quarantine)
    }
    # A file with no line still gets its row: read, and empty.
    result.file_counts = [counts.get(s) or FileCounts(s) for s in read_by_file]
    for c in result.file_counts:
        c.line_endings = endings[c.source_file]
    if result.lines_read != result.requests.height + result.quarantine.height:
        raise ConservationError(
            f"{folder.name}: {result.lines_read:,} lines read but {result.requests.height:,} "
            f"kept and {result.quarantine.height:,} quarantined"
        )
    result.files = list(read_by_file)
    result.entries = entries
    return result
