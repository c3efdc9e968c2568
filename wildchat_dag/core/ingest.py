"""Parse and validate one collection day of raw request logs.

Every line read ends up in exactly one of two frames: ``requests`` (valid, typed, hashed) or
``quarantine`` (with the file, line number, a reason, and a truncated excerpt).

Two paths, one verdict. The fast path decodes well-formed lines in bulk with polars. Any chunk
polars cannot decode, and any row with a missing, null or possibly coerced value, goes to the
strict path: DuckDB SQL that inspects JSON types and names the exact problem. A test holds the two
paths to the same answers. Hashes are built with polars and computed with hashlib.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import ipaddress
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from wildchat_dag.core.hashing import json_array_body
from wildchat_dag.core.log_contract import (
    EXCERPT_CHARS,
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    RFC3339_PATTERN,
    SCHEMA_VERSION,
    QuarantineReason,
    list_log_files,
)
from wildchat_dag.core.schema import (
    MESSAGE,
    QUARANTINE_SCHEMA,
    RAW_REQUESTS_SCHEMA,
    partition_day_value,
)


class LogFileError(Exception):
    """A whole file cannot be read: the message names the file."""


@dataclass
class IngestResult:
    requests: pl.DataFrame
    quarantine: pl.DataFrame
    files: list[str] = field(default_factory=list)
    lines_read: int = 0
    invalid_ips: int = 0

    @property
    def quarantined_by_reason(self) -> dict[str, int]:
        if self.quarantine.is_empty():
            return {}
        counts = self.quarantine.group_by("reason").len().sort("reason")
        return dict(zip(counts["reason"].to_list(), counts["len"].to_list(), strict=True))


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise LogFileError(f"{path}: not a readable gzip file ({exc})") from exc
    return data


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


def _file_lines(path: Path, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A file's lines, and the quarantine rows for lines that are not UTF-8."""
    data = _read_bytes(path)
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
    return frame, bad_utf8


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

# Every top-level field as raw JSON, so the strict path can name wrong types.
_FIELDS_AS_JSON = (
    "{" + ",".join(f'"{name}":"JSON"' for name in (*REQUIRED_FIELDS, *OPTIONAL_FIELDS)) + "}"
)


def _header(name: str) -> str:
    # Header names are case-insensitive in HTTP; take the first match. TRY_CAST: DuckDB may
    # evaluate the cast for rows whose headers are not an object (the CASE around it does not
    # stop it), and those rows are quarantined as invalid_field:headers instead.
    return (
        "list_filter(map_entries(TRY_CAST(f.headers AS MAP(VARCHAR, JSON))), "
        f"lambda e: lower(e.key) = '{name}')[1].value"
    )


_R = QuarantineReason

# Reasons come from QuarantineReason, so the strict path and the table agree on their names.
_VALIDATE_SQL = f"""
WITH parsed AS (
    SELECT k, from_json(line, '{_FIELDS_AS_JSON}') AS f
    FROM objects
),
typed AS (
    SELECT
        k, f,
        CASE WHEN json_type(f.messages) = 'ARRAY'
             THEN from_json(f.messages, '[{{"role":"JSON","content":"JSON"}}]') END AS m,
        CASE WHEN json_type(f.headers) = 'OBJECT' THEN {_header("user-agent")} END AS ua,
        CASE WHEN json_type(f.headers) = 'OBJECT' THEN {_header("accept-language")} END AS lang,
        CASE WHEN json_type(f.headers) = 'OBJECT' THEN {_header("x-forwarded-for")} END AS xff
    FROM parsed
),
checked AS (
    SELECT *,
        CASE
            WHEN f.schema_version IS NOT NULL AND NOT coalesce(
                json_type(f.schema_version) IN ('UBIGINT', 'BIGINT')
                AND f.schema_version::VARCHAR = '{SCHEMA_VERSION}', false)
                THEN '{_R.UNSUPPORTED_SCHEMA_VERSION}:' || f.schema_version::VARCHAR
            WHEN f.turn_id IS NULL THEN '{_R.MISSING_FIELD}:turn_id'
            WHEN json_type(f.turn_id) NOT IN ('UBIGINT', 'BIGINT')
                 OR TRY_CAST(f.turn_id::VARCHAR AS BIGINT) IS NULL
                 OR TRY_CAST(f.turn_id::VARCHAR AS BIGINT) <= 0
                THEN '{_R.INVALID_FIELD}:turn_id'
            WHEN f.timestamp IS NULL THEN '{_R.MISSING_FIELD}:timestamp'
            WHEN json_type(f.timestamp) <> 'VARCHAR'
                 OR NOT regexp_matches((f.timestamp->>'$'), '{RFC3339_PATTERN}')
                 OR TRY_CAST((f.timestamp->>'$') AS TIMESTAMPTZ) IS NULL
                THEN '{_R.INVALID_FIELD}:timestamp'
            WHEN f.response_timestamp IS NULL THEN '{_R.MISSING_FIELD}:response_timestamp'
            WHEN json_type(f.response_timestamp) <> 'VARCHAR'
                 OR NOT regexp_matches((f.response_timestamp->>'$'), '{RFC3339_PATTERN}')
                 OR TRY_CAST((f.response_timestamp->>'$') AS TIMESTAMPTZ) IS NULL
                THEN '{_R.INVALID_FIELD}:response_timestamp'
            WHEN f.model IS NULL THEN '{_R.MISSING_FIELD}:model'
            WHEN json_type(f.model) <> 'VARCHAR' OR (f.model->>'$') = ''
                THEN '{_R.INVALID_FIELD}:model'
            WHEN f.headers IS NULL THEN '{_R.MISSING_FIELD}:headers'
            WHEN json_type(f.headers) <> 'OBJECT' THEN '{_R.INVALID_FIELD}:headers'
            WHEN ua IS NOT NULL AND json_type(ua) <> 'VARCHAR'
                THEN '{_R.INVALID_FIELD}:headers.user-agent'
            WHEN lang IS NOT NULL AND json_type(lang) <> 'VARCHAR'
                THEN '{_R.INVALID_FIELD}:headers.accept-language'
            WHEN f.ip IS NOT NULL AND json_type(f.ip) <> 'VARCHAR' THEN '{_R.INVALID_FIELD}:ip'
            WHEN f.ip IS NULL AND xff IS NULL THEN '{_R.MISSING_FIELD}:headers.x-forwarded-for'
            WHEN f.ip IS NULL AND json_type(xff) <> 'VARCHAR'
                THEN '{_R.INVALID_FIELD}:headers.x-forwarded-for'
            WHEN f.messages IS NULL THEN '{_R.MISSING_FIELD}:messages'
            WHEN m IS NULL THEN '{_R.INVALID_FIELD}:messages'
            WHEN len(m) = 0 THEN '{_R.EMPTY_MESSAGES}'
            WHEN NOT list_bool_and(list_transform(m, lambda x: coalesce(
                    json_type(x.role) = 'VARCHAR' AND json_type(x.content) = 'VARCHAR', false)))
                THEN '{_R.INVALID_FIELD}:messages'
            WHEN len(m) % 2 = 0 OR NOT list_bool_and(list_transform(m, lambda x, i:
                    (x.role->>'$') = CASE WHEN i % 2 = 1 THEN 'user' ELSE 'assistant' END))
                THEN '{_R.ROLES_NOT_ALTERNATING}'
            WHEN f.response IS NULL THEN '{_R.MISSING_FIELD}:response'
            WHEN json_type(f.response) <> 'VARCHAR' THEN '{_R.INVALID_FIELD}:response'
        END AS problem
    FROM typed
)
SELECT
    k,
    problem,
    TRY_CAST(f.turn_id::VARCHAR AS BIGINT) AS turn_id,
    (f.timestamp->>'$') AS timestamp_text,
    (f.response_timestamp->>'$') AS response_timestamp_text,
    (f.model->>'$') AS model,
    coalesce((f.ip->>'$'), trim(split_part((xff->>'$'), ',', 1))) AS ip_text,
    (ua->>'$') AS user_agent,
    (lang->>'$') AS accept_language,
    list_transform(m, lambda x: {{'role': (x.role->>'$'), 'content': (x.content->>'$')}})
        AS messages,
    (f.response->>'$') AS response
FROM checked
"""


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


_HEADERS = ("user-agent", "accept-language", "x-forwarded-for")
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
# polars reads a JSON number or boolean into a string field as its text. A string that looks like
# one is therefore checked again by the strict path, which sees the JSON types.
_LOOKS_COERCED = r"^(?:-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false)$"

_CANDIDATE_SCHEMA = pl.Schema(
    {
        "k": pl.Int64,
        "turn_id": pl.Int64,
        "timestamp_text": pl.String,
        "response_timestamp_text": pl.String,
        "model": pl.String,
        "ip_text": pl.String,
        "user_agent": pl.String,
        "accept_language": pl.String,
        "messages": pl.List(MESSAGE),
        "response": pl.String,
    }
)
_CANDIDATE_COLUMNS = (
    "k",
    "turn_id",
    "timestamp_text",
    "response_timestamp_text",
    "model",
    "ip_text",
    "user_agent",
    "accept_language",
    "messages",
    "response",
)


def _coerced(column: pl.Expr) -> pl.Expr:
    return (column.str.len_bytes() <= 40) & column.str.contains(_LOOKS_COERCED)


def _fast_path(candidates: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decode well-formed lines with polars; return (accepted rows, lines for the strict path).

    A chunk that polars cannot decode, and any row with a missing, null or suspicious value, goes
    to the strict path, which names the exact problem. Rows accepted here are exactly rows the
    strict path would accept.
    """

    def decode(chunk: pl.DataFrame) -> pl.DataFrame | None:
        try:
            return chunk.select("k", "line", r=pl.col("line").str.json_decode(_FAST_DTYPE)).unnest(
                "r"
            )
        except pl.exceptions.PolarsError:
            return None

    chunks = list(candidates.iter_slices(_FAST_CHUNK_LINES))
    # polars releases the GIL while decoding, so chunks decode in parallel.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(pool.map(decode, chunks))
    decoded = [r for r in results if r is not None]
    strict = [c for c, r in zip(chunks, results, strict=True) if r is None]
    if not decoded:
        return pl.DataFrame(), candidates
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
        (pl.col("schema_version").is_null() | (pl.col("schema_version") == 1))
        & (pl.col("turn_id") > 0)
        & pl.all_horizontal(pl.col(c).is_not_null() & ~_coerced(pl.col(c)) for c in strings)
        & (pl.col("model") != "")
        & headers.is_not_null()
        & pl.all_horizontal(
            headers.struct.field(h).is_not_null() & ~_coerced(headers.struct.field(h))
            for h in _HEADERS
        )
        & (pl.col("ip").is_null() | ~_coerced(pl.col("ip")))
        & (pl.col("messages").list.len() % 2 == 1)
        & pl.col("messages")
        .list.eval(
            (pl.element().struct.field("role") == role_expected)
            & pl.element().struct.field("content").is_not_null()
            & ~_coerced(pl.element().struct.field("content"))
        )
        .list.all()
    ).fill_null(False)
    frame = frame.with_columns(accepted=accepted)
    rejected = frame.filter(~pl.col("accepted")).select("k", "line")
    strict.append(rejected)
    if rejected.height:
        frame = frame.filter("accepted")
    ok = frame.select(
        "k",
        "turn_id",
        "model",
        "messages",
        "response",
        timestamp_text="timestamp",
        response_timestamp_text="response_timestamp",
        ip_text=pl.coalesce(
            "ip",
            headers.struct.field("x-forwarded-for").str.split(",").list.first().str.strip_chars(),
        ),
        user_agent=headers.struct.field("user-agent"),
        accept_language=headers.struct.field("accept-language"),
    )
    return ok, pl.concat(strict)


def _strict_path(
    con: duckdb.DuckDBPyConnection, lines: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate lines one JSON type at a time in DuckDB: (valid rows, problems)."""
    if lines.is_empty():
        return pl.DataFrame(), pl.DataFrame(schema={"k": pl.Int64, "problem": pl.String})
    json_ok = con.sql(
        "SELECT k, json_valid(line) AS ok, regexp_matches(line, '^\\s*\\{') AS is_object FROM lines"
    ).pl()
    objects = lines.join(json_ok.filter("ok", "is_object"), on="k").select("k", "line")  # noqa: F841
    validated = con.sql(_VALIDATE_SQL).pl()
    problems = pl.concat(
        [
            json_ok.filter(~pl.col("ok") | ~pl.col("is_object")).select(
                "k",
                problem=pl.when("ok")
                .then(pl.lit(QuarantineReason.NOT_AN_OBJECT))
                .otherwise(pl.lit(QuarantineReason.INVALID_JSON)),
            ),
            validated.filter(pl.col("problem").is_not_null()).select("k", "problem"),
        ]
    )
    valid = validated.filter(pl.col("problem").is_null()).select(_CANDIDATE_COLUMNS)
    return valid, problems


_TIMESTAMP_SQL = f"""
SELECT k,
    regexp_matches(timestamp_text, '{RFC3339_PATTERN}') AND ts IS NOT NULL AS ts_ok,
    regexp_matches(response_timestamp_text, '{RFC3339_PATTERN}') AND rts IS NOT NULL AS rts_ok,
    ts AS "timestamp", rts AS response_timestamp
FROM (
    SELECT k, timestamp_text, response_timestamp_text,
        TRY_CAST(timestamp_text AS TIMESTAMPTZ) AS ts,
        TRY_CAST(response_timestamp_text AS TIMESTAMPTZ) AS rts
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


def parse_lines(lines: pl.DataFrame, day: date, *, max_line_bytes: int) -> IngestResult:
    """Validate ``lines`` (``source_file, line_number, line``) collected for ``day``.

    The message history is the bulk of every line, so those columns are decoded once and then
    only filtered, never joined: every decision is made on a light frame keyed by ``k``.
    """
    lines_read = lines.height
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
    )
    con = _connect()
    unparsed = problems.filter(pl.col("problem").is_not_null())["k"]
    candidates = lines.select("k", "line")
    if unparsed.len():
        candidates = candidates.filter(~pl.col("k").is_in(unparsed))
    fast, strict_lines = _fast_path(candidates)
    del candidates
    strict, strict_problems = _strict_path(con, strict_lines)
    del strict_lines
    if not fast.height:
        valid = strict.sort("k") if strict.height else pl.DataFrame(schema=_CANDIDATE_SCHEMA)
    elif strict.height:
        valid = pl.concat([fast.select(_CANDIDATE_COLUMNS), strict]).sort("k")
    else:
        valid = fast.select(_CANDIDATE_COLUMNS)
    del fast, strict

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
            problems.filter(pl.col("problem").is_not_null()),
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
    ).cast(RAW_REQUESTS_SCHEMA)  # type: ignore[arg-type]
    return IngestResult(
        requests=requests,
        quarantine=quarantine.sort("source_file", "line_number"),
        lines_read=lines_read,
        invalid_ips=requests.filter(~pl.col("ip_valid")).height,
    )


def ingest_day(folder: Path, day: date, *, max_line_bytes: int) -> IngestResult:
    """Read every log file of one day folder. A missing folder is an error naming the path."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"No log folder for {day.isoformat()}: expected {folder} (one folder per UTC day, "
            "named YYYY-MM-DD, under the log root)"
        )
    files = list_log_files(folder)
    frames, bad_utf8 = [], []
    for path in files:
        source = f"{folder.name}/{path.name}"
        lines, bad = _file_lines(path, source)
        frames.append(lines)
        bad_utf8.append(bad)
    lines = (
        pl.concat(frames)
        if frames
        else pl.DataFrame(
            schema={"line": pl.String, "source_file": pl.String, "line_number": pl.Int64}
        )
    )
    non_utf8 = lines["line"].null_count()
    if non_utf8:  # filtering copies every line, so only when there is something to drop
        lines = lines.filter(pl.col("line").is_not_null())
    result = parse_lines(lines, day, max_line_bytes=max_line_bytes)
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
    result.files = [f"{folder.name}/{p.name}" for p in files]
    return result
