"""Fault injection on ingest: every kind of malformed input, one case each, whatever its neighbours.

Each line fault is parsed in four placements: between two good lines (the fast path decodes
the chunk), alone, next to an undecodable line (the chunk goes to the strict path) and in the
middle of a long chunk with an undecodable line (polars refuses the chunk, which is halved until
the bad lines are isolated). Every placement must give the same verdict, keep the good
neighbours, and account for every line: lines read = kept + quarantined. Byte-level faults
(encodings, line endings, compression) and folder-entry faults go through ``ingest_day``.

Planted values (an e-mail, a client IP) must never reach a quarantine ``detail`` or an error.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from wildchat_dag.defs.ingest.log_contract import MAX_JSON_DEPTH
from wildchat_dag.defs.ingest.log_folders import day_fingerprints
from wildchat_dag.defs.ingest.parsing import IngestResult, LogFileError, ingest_day, parse_lines

DAY = date(2024, 3, 1)
SECRET = "alice.secret@example.com"
CLIENT_IP = "203.0.113.9"
MAX_LINE_BYTES = 1 << 20
BROKEN = '{"turn_id": 9, "timestamp": '  # undecodable: sends its chunk to the strict path
BAD_ID = 500


def record(tid: int = BAD_ID, **changes: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "schema_version": 1,
        "turn_id": tid,
        "timestamp": "2024-03-01T12:00:00.5Z",
        "model": "gpt-4-0314",
        "headers": {
            "User-Agent": "Mozilla/5.0",
            "Accept-Language": "fr-FR",
            "X-Forwarded-For": f"{CLIENT_IP}, 10.0.0.1",
        },
        "messages": [{"role": "user", "content": f"Bonjour, je suis {SECRET}"}],
        "response": "Salut",
        "response_timestamp": "2024-03-01T12:00:03Z",
    }
    for key, value in changes.items():
        if value is KeyError:
            del line[key]
        else:
            line[key] = value
    return line


def good(tid: int = BAD_ID, **changes: Any) -> str:
    return json.dumps(record(tid, **changes), ensure_ascii=False)


def raw(old: str, new: str, **changes: Any) -> str:
    """A good line with raw JSON text swapped in (for what ``json.dumps`` cannot write)."""
    line = good(**changes)
    assert old in line, old
    return line.replace(old, new, 1)


def messages(*pairs: tuple[Any, Any]) -> list[dict[str, Any]]:
    return [{"role": role, "content": content} for role, content in pairs]


def deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@dataclass(frozen=True)
class Fault:
    kind: str
    line: str
    reason: str | None  # None: kept
    detail: str | None = None  # checked when given
    kept: dict[str, Any] = field(default_factory=dict)  # columns of the kept row


KEPT = None
TOO_DEEP = ("nesting_too_deep", f"over {MAX_JSON_DEPTH} levels")

LINE_FAULTS = [
    # Not JSON, or not an object
    Fault("truncated_json", good()[:40], "invalid_json"),
    Fault("trailing_garbage", good() + " x", "invalid_json"),
    Fault("two_objects_on_a_line", good() + good(501), "invalid_json"),
    Fault("trailing_comma", good()[:-1] + ",}", "invalid_json"),
    Fault("single_quotes", good().replace('"model"', "'model'"), "invalid_json"),
    Fault("nan_in_unknown_field", good()[:-1] + ', "extra": NaN}', "invalid_json"),
    Fault("bom_inside_file", "\ufeff" + good(), "invalid_json"),
    Fault("json_array", "[1, 2, 3]", "not_an_object", "array"),
    Fault("json_number", "42", "not_an_object", "integer"),
    Fault("json_string", '"hello"', "not_an_object", "string"),
    Fault("json_null", "null", "not_an_object", "null"),
    Fault("blank_line", "", "blank_line"),
    Fault("whitespace_only", " \t  ", "blank_line"),
    Fault("huge_line", good(response="x" * (MAX_LINE_BYTES + 1)), "line_too_large"),
    # Nesting: quarantined before any decoder, never counted inside strings
    Fault("deep_array_10k", deep_array(10_000), *TOO_DEEP),
    Fault("deep_array_100k", deep_array(100_000), *TOO_DEEP),
    Fault("deep_object_10k", deep_object(10_000), *TOO_DEEP),
    Fault("deep_object_100k", deep_object(100_000), *TOO_DEEP),
    Fault("deep_unclosed_10k", "[" * 10_000, *TOO_DEEP),
    Fault("deep_in_unknown_field", good()[:-1] + f', "extra": {deep_array(10_000)}}}', *TOO_DEEP),
    Fault(
        "brackets_inside_a_string",
        good(messages=messages(("user", "[{" * 50_000))),
        KEPT,
        kept={"messages": messages(("user", "[{" * 50_000))},
    ),
    Fault(
        "nesting_at_the_limit", good()[:-1] + ', "x": ' + deep_array(MAX_JSON_DEPTH - 1) + "}", KEPT
    ),
    # turn_id: a positive JSON integer within int64, nothing coerced
    Fault("turn_id_float", good(turn_id=1.5), "invalid_field", "turn_id"),
    Fault(
        "turn_id_integral_float",
        raw(f'"turn_id": {BAD_ID}', '"turn_id": 7.0'),
        "invalid_field",
        "turn_id",
    ),
    Fault(
        "turn_id_exponent",
        raw(f'"turn_id": {BAD_ID}', '"turn_id": 1e3'),
        "invalid_field",
        "turn_id",
    ),
    Fault("turn_id_true", good(turn_id=True), "invalid_field", "turn_id"),
    Fault("turn_id_zero", good(turn_id=0), "invalid_field", "turn_id"),
    Fault("turn_id_negative", good(turn_id=-5), "invalid_field", "turn_id"),
    Fault("turn_id_beyond_int64", good(turn_id=2**63), "invalid_field", "turn_id"),
    Fault("turn_id_string", good(turn_id="500"), "invalid_field", "turn_id"),
    Fault("turn_id_fullwidth_digits", good(turn_id="５００"), "invalid_field", "turn_id"),
    Fault("turn_id_null", good(turn_id=None), "missing_field", "turn_id"),
    Fault("turn_id_int64_max", good(turn_id=2**63 - 1), KEPT, kept={"turn_id": 2**63 - 1}),
    Fault(
        "turn_id_escaped_key", raw('"turn_id"', '"turn\\u005fid"'), KEPT, kept={"turn_id": BAD_ID}
    ),
    # schema_version: absent, null or the integer 1
    Fault(
        "schema_version_float",
        raw('"schema_version": 1', '"schema_version": 1.0'),
        "unsupported_schema_version",
        "a JSON number with a fraction or exponent",
    ),
    Fault("schema_version_2", good(schema_version=2), "unsupported_schema_version", "2"),
    Fault(
        "schema_version_string",
        good(schema_version="1"),
        "unsupported_schema_version",
        "a JSON string",
    ),
    Fault(
        "schema_version_true",
        good(schema_version=True),
        "unsupported_schema_version",
        "a JSON boolean",
    ),
    Fault("schema_version_absent", good(schema_version=KeyError), KEPT),
    Fault("schema_version_null", good(schema_version=None), KEPT),
    # Duplicate keys: which value counts is up to the decoder, so neither is taken
    Fault("duplicate_key_turn_id", good()[:-1] + ', "turn_id": 501}', "duplicate_key", "turn_id"),
    Fault("duplicate_key_model", good()[:-1] + ', "model": "gpt-3.5"}', "duplicate_key", "model"),
    Fault(
        "duplicate_key_escaped", good()[:-1] + ', "turn\\u005fid": 501}', "duplicate_key", "turn_id"
    ),
    Fault(
        "duplicate_header_spellings",
        good(headers={"User-Agent": "a", "user-agent": "b", "x-forwarded-for": CLIENT_IP}),
        "duplicate_key",
        "headers.user-agent",
    ),
    Fault(
        "duplicate_key_in_message",
        raw('"role": "user"', '"role": "user", "role": "assistant"'),
        "duplicate_key",
        "messages",
    ),
    Fault("duplicate_unknown_key", good()[:-1] + ', "extra": 1, "extra": 2}', KEPT),
    # Strings: a JSON string, never a number, boolean, array or object
    Fault("model_number", good(model=4), "invalid_field", "model"),
    Fault("model_empty", good(model=""), "invalid_field", "model"),
    Fault("model_array", good(model=["gpt-4"]), "invalid_field", "model"),
    Fault("response_number", good(response=5), "invalid_field", "response"),
    Fault("response_bool", good(response=False), "invalid_field", "response"),
    Fault("response_numeric_text", good(response="7"), KEPT, kept={"response": "7"}),
    Fault("response_empty", good(response=""), KEPT, kept={"response": ""}),
    Fault("messages_object", good(messages={"role": "user"}), "invalid_field", "messages"),
    Fault("messages_of_strings", good(messages=["hi"]), "invalid_field", "messages"),
    Fault("role_number", good(messages=messages((1, "hi"))), "invalid_field", "messages"),
    Fault("content_number", good(messages=messages(("user", 7))), "invalid_field", "messages"),
    Fault("content_null", good(messages=messages(("user", None))), "invalid_field", "messages"),
    Fault("content_numeric_text", good(messages=messages(("user", "7"))), KEPT),
    Fault(
        "header_value_number",
        good(headers={"user-agent": 5, "x-forwarded-for": CLIENT_IP}),
        "invalid_field",
        "headers.user-agent",
    ),
    Fault("headers_string", good(headers=f"{CLIENT_IP} Mozilla"), "invalid_field", "headers"),
    Fault("ip_number", good(ip=12), "invalid_field", "ip"),
    # Missing or null required fields
    *(
        Fault(f"missing_{name}", good(**{name: KeyError}), "missing_field", name)
        for name in ("timestamp", "model", "headers", "messages", "response", "response_timestamp")
    ),
    Fault("missing_turn_id", good(turn_id=KeyError), "missing_field", "turn_id"),
    *(
        Fault(f"null_{name}", good(**{name: None}), "missing_field", name)
        for name in ("timestamp", "model", "headers", "messages", "response")
    ),
    Fault(
        "missing_client_ip",
        good(headers={"user-agent": "x"}),
        "missing_field",
        "headers.x-forwarded-for",
    ),
    # Conversation shape
    Fault("empty_messages", good(messages=[]), "empty_messages"),
    Fault(
        "starts_with_assistant",
        good(messages=messages(("assistant", "x"))),
        "roles_not_alternating",
    ),
    Fault(
        "even_message_count",
        good(messages=messages(("user", "a"), ("assistant", "b"))),
        "roles_not_alternating",
    ),
    Fault(
        "two_user_turns",
        good(messages=messages(("user", "a"), ("user", "b"), ("user", "c"))),
        "roles_not_alternating",
    ),
    Fault("role_upper_case", good(messages=messages(("User", "a"))), "roles_not_alternating"),
    # Timestamps: RFC 3339 with an offset, on the folder's day, a real date
    Fault("timestamp_naive", good(timestamp="2024-03-01T12:00:00"), "invalid_field", "timestamp"),
    Fault("timestamp_not_a_date", good(timestamp="yesterday"), "invalid_field", "timestamp"),
    Fault(
        "timestamp_february_30",
        good(timestamp="2024-02-30T12:00:00Z"),
        "invalid_field",
        "timestamp",
    ),
    Fault(
        "timestamp_hour_25", good(timestamp="2024-03-01T25:00:00Z"), "invalid_field", "timestamp"
    ),
    Fault("timestamp_number", good(timestamp=1709294400), "invalid_field", "timestamp"),
    Fault(
        "response_timestamp_naive",
        good(response_timestamp="2024-03-01 12:00:03"),
        "invalid_field",
        "response_timestamp",
    ),
    Fault("timestamp_wrong_day", good(timestamp="2024-03-02T00:00:00Z"), "timestamp_outside_day"),
    Fault(
        "timestamp_offset_to_wrong_day",
        good(timestamp="2024-03-01T00:30:00+01:00"),
        "timestamp_outside_day",
    ),
    Fault(
        "timestamp_lower_case_t_z",
        good(timestamp="2024-03-01t12:00:00.5z", response_timestamp="2024-03-01t12:00:03z"),
        KEPT,
        kept={"timestamp": "2024-03-01 12:00:00.500000+00:00"},
    ),
    Fault(
        "timestamp_space_separator",
        good(timestamp="2024-03-01 12:00:00.5Z"),
        KEPT,
        kept={"timestamp": "2024-03-01 12:00:00.500000+00:00"},
    ),
    # Unicode: lone surrogates are quarantined (UTF-8 cannot hold them), everything else kept
    Fault(
        "lone_high_surrogate_content",
        raw("Bonjour", "\\ud800Bonjour"),
        "invalid_field",
        "messages: lone surrogate",
    ),
    Fault(
        "lone_low_surrogate_content",
        raw("Bonjour", "\\udc00Bonjour"),
        "invalid_field",
        "messages: lone surrogate",
    ),
    Fault(
        "lone_surrogate_response",
        raw('"Salut"', '"\\ud83dSalut"'),
        "invalid_field",
        "response: lone surrogate",
    ),
    Fault(
        "lone_surrogate_model",
        raw('"gpt-4-0314"', '"gpt-4\\udfff"'),
        "invalid_field",
        "model: lone surrogate",
    ),
    Fault(
        "lone_surrogate_user_agent",
        raw('"Mozilla/5.0"', '"Mozilla\\ud800"'),
        "invalid_field",
        "headers.user-agent: lone surrogate",
    ),
    Fault(
        "lone_surrogate_before_escape",
        raw("Bonjour", "\\ud800\\u0041"),
        "invalid_field",
        "messages: lone surrogate",
    ),
    Fault(
        "surrogate_pair_escaped",
        raw("Bonjour", "\\ud83d\\ude00"),
        KEPT,
        kept={"messages": messages(("user", f"😀, je suis {SECRET}"))},
    ),
    Fault(
        "escaped_nul",
        raw("Bonjour", "\\u0000"),
        KEPT,
        kept={"messages": messages(("user", f"\x00, je suis {SECRET}"))},
    ),
    Fault(
        "zero_width_chars",
        good(messages=messages(("user", "a\u200bb\u200d\ufeffc"))),
        KEPT,
        kept={"messages": messages(("user", "a\u200bb\u200d\ufeffc"))},
    ),
    Fault(
        "rtl_and_cjk",
        good(messages=messages(("user", "مرحبا بالعالم \u202e 你好，世界 こんにちは"))),
        KEPT,
        kept={"messages": messages(("user", "مرحبا بالعالم \u202e 你好，世界 こんにちは"))},
    ),
    Fault(
        "key_text_inside_content",
        good(messages=messages(("user", '{"role": "x", "turn_id": 1}'))),
        KEPT,
        kept={"messages": messages(("user", '{"role": "x", "turn_id": 1}'))},
    ),
    Fault("escaped_ascii_in_content", raw("Bonjour", "\\u0042onjour"), KEPT),
    # Client IPs: odd notations are kept; the IP is canonical or null
    Fault("ip_with_port", good(ip="198.51.100.4:8080"), KEPT, kept={"ip": "198.51.100.4"}),
    Fault("ipv6_brackets_port", good(ip="[2001:DB8::5]:443"), KEPT, kept={"ip": "2001:db8::5"}),
    Fault("ipv6_zone", good(ip="fe80::1%eth0"), KEPT, kept={"ip": "fe80::1%eth0"}),
    Fault("ip_junk", good(ip="unknown"), KEPT, kept={"ip": None, "ip_valid": False}),
    Fault(
        "xff_junk",
        good(headers={"x-forwarded-for": "  , 10.0.0.1"}),
        KEPT,
        kept={"ip": None, "ip_valid": False},
    ),
    Fault("unknown_field", good()[:-1] + ', "extra": {"a": [1, 2]}}', KEPT),
]


def _row_of(result: IngestResult, line_number: int) -> tuple[str, Any]:
    kept = result.requests.filter(pl.col("line_number") == line_number)
    quarantined = result.quarantine.filter(pl.col("line_number") == line_number)
    assert kept.height + quarantined.height == 1, (line_number, kept, quarantined)
    if kept.height:
        return "kept", kept.row(0, named=True)
    return "quarantined", quarantined.row(0, named=True)


def _placements(line: str) -> dict[str, tuple[list[str], int, list[int]]]:
    """name: (lines, line number of the fault, line numbers of good neighbours)."""
    return {
        "between_good_lines": ([good(1), line, good(2)], 2, [1, 3]),
        "alone": ([line], 1, []),
        "next_to_undecodable": ([good(1), line, BROKEN], 2, [1]),
    }


def _parse(lines: list[str]) -> IngestResult:
    frame = pl.DataFrame(
        {
            "line": lines,
            "source_file": "2024-03-01/a.jsonl",
            "line_number": list(range(1, len(lines) + 1)),
        }
    )
    return parse_lines(frame, DAY, max_line_bytes=MAX_LINE_BYTES)


def _assert_conserved(result: IngestResult, total: int) -> None:
    assert result.lines_read == total
    assert result.requests.height + result.quarantine.height == total
    for counts in result.file_counts:
        assert counts.lines_read == counts.kept + counts.quarantined


def _assert_no_raw_values(result: IngestResult) -> None:
    for detail in result.quarantine["detail"].drop_nulls():
        assert SECRET not in detail and CLIENT_IP not in detail and "Bonjour" not in detail


@pytest.mark.parametrize("fault", LINE_FAULTS, ids=[f.kind for f in LINE_FAULTS])
def test_line_fault_has_one_verdict_whatever_its_neighbours(fault: Fault) -> None:
    verdicts = {}
    for placement, (lines, at, neighbours) in _placements(fault.line).items():
        result = _parse(lines)
        _assert_conserved(result, len(lines))
        _assert_no_raw_values(result)
        for n in neighbours:
            assert _row_of(result, n)[0] == "kept", (placement, n)
        outcome, row = _row_of(result, at)
        if fault.reason is None:
            assert outcome == "kept", (placement, row)
            for column, expected in fault.kept.items():
                value = row[column]
                got = str(value) if column == "timestamp" else value
                assert got == expected, (placement, column)
            verdicts[placement] = (
                "kept",
                {k: v for k, v in row.items() if k not in ("source_file", "line_number")},
            )
        else:
            assert outcome == "quarantined", (placement, fault.kind)
            assert row["reason"] == fault.reason, (placement, row["reason"], row["detail"])
            if fault.detail is not None:
                assert row["detail"] == fault.detail, (placement, row["detail"])
            verdicts[placement] = (row["reason"], row["detail"])
    assert len({json.dumps(v, default=str, sort_keys=True) for v in verdicts.values()}) == 1, (
        verdicts
    )


def _verdict(result: IngestResult, line_number: int) -> tuple[str, str | None]:
    outcome, row = _row_of(result, line_number)
    return ("kept", None) if outcome == "kept" else (row["reason"], row["detail"])


def test_every_fault_in_one_long_file_gets_the_same_verdict_as_alone() -> None:
    """All faults in one file, each between good lines and every tenth next to an undecodable
    line: polars refuses most chunks, which are halved until the bad lines are isolated."""
    lines: list[str] = []
    at: dict[str, int] = {}
    for i, fault in enumerate(LINE_FAULTS):
        lines.append(good(10_000 + 3 * i))
        at[fault.kind] = len(lines) + 1
        lines.append(fault.line.replace(f'"turn_id": {BAD_ID}', f'"turn_id": {10_001 + 3 * i}'))
        lines.append(BROKEN if i % 10 == 0 else good(10_002 + 3 * i))
    result = _parse(lines)
    _assert_conserved(result, len(lines))
    for fault in LINE_FAULTS:
        reason, detail = _verdict(result, at[fault.kind])
        assert reason == (fault.reason or "kept"), fault.kind
        if fault.detail is not None:
            assert detail == fault.detail, fault.kind
    good_lines = [n for n in range(1, len(lines) + 1) if n not in at.values()]
    kept = set(result.requests["line_number"])
    assert [n for n in good_lines if n not in kept and lines[n - 1] != BROKEN] == []


def test_duplicate_turn_id_keeps_the_first_in_any_placement() -> None:
    for placement, (lines, at, _) in _placements(good(1)).items():
        if 1 in [json.loads(x).get("turn_id") for x in lines[: at - 1] if x != BROKEN]:
            frame = pl.DataFrame(
                {"line": lines, "source_file": "d/a.jsonl", "line_number": range(1, len(lines) + 1)}
            )
            result = parse_lines(frame, DAY, max_line_bytes=MAX_LINE_BYTES)
            outcome, row = _row_of(result, at)
            assert (outcome, row["reason"]) == ("quarantined", "duplicate_turn_id"), placement
            assert row["detail"] == "first seen at d/a.jsonl:1"


# --- Bytes in files -----------------------------------------------------------------------


def _day(tmp_path: Path) -> Path:
    folder = tmp_path / DAY.isoformat()
    folder.mkdir(exist_ok=True)
    return folder


GOOD_1, GOOD_2, GOOD_3 = (good(i).encode() for i in (1, 2, 3))


@dataclass(frozen=True)
class FileFault:
    kind: str
    name: str
    data: bytes
    # line number -> reason ("kept" for kept)
    verdicts: dict[int, str]
    line_endings: str = "lf"


FILE_FAULTS = [
    FileFault(
        "invalid_utf8",
        "a.jsonl",
        GOOD_1 + b"\n" + good(5).encode()[:-3] + b"\xff\xfe}\n" + GOOD_2 + b"\n",
        {1: "kept", 2: "invalid_utf8", 3: "kept"},
    ),
    FileFault(
        "nul_byte",
        "a.jsonl",
        GOOD_1 + b"\n" + GOOD_3.replace(b"Salut", b"Sa\x00lut") + b"\n" + GOOD_2 + b"\n",
        {1: "kept", 2: "invalid_json", 3: "kept"},
    ),
    FileFault(
        "cr_only_endings",
        "a.jsonl",
        GOOD_1 + b"\r" + GOOD_2 + b"\r" + GOOD_3 + b"\r",
        {1: "kept", 2: "kept", 3: "kept"},
        "cr",
    ),
    FileFault(
        "crlf_endings",
        "a.jsonl",
        GOOD_1 + b"\r\n" + GOOD_2 + b"\r\n",
        {1: "kept", 2: "kept"},
        "crlf",
    ),
    FileFault(
        "lone_cr_in_lf_file",
        "a.jsonl",
        GOOD_1 + b"\r" + GOOD_2 + b"\n" + GOOD_3 + b"\n",
        {1: "invalid_json", 2: "kept"},
        "mixed",
    ),
    FileFault(
        "bom_at_file_start",
        "a.jsonl",
        b"\xef\xbb\xbf" + GOOD_1 + b"\n" + GOOD_2 + b"\n",
        {1: "kept", 2: "kept"},
    ),
    FileFault("no_final_newline", "a.jsonl", GOOD_1 + b"\n" + GOOD_2, {1: "kept", 2: "kept"}),
    FileFault(
        "blank_lines_at_end",
        "a.jsonl",
        GOOD_1 + b"\n\n\n",
        {1: "kept", 2: "blank_line", 3: "blank_line"},
    ),
    FileFault("empty_file", "a.jsonl", b"", {}),
    FileFault("gzip", "a.jsonl.gz", gzip.compress(GOOD_1 + b"\n", mtime=0), {1: "kept"}),
    FileFault("bzip2", "a.jsonl.bz2", bz2.compress(GOOD_1 + b"\n"), {1: "kept"}),
    FileFault("xz", "a.ndjson.xz", lzma.compress(GOOD_1 + b"\n"), {1: "kept"}),
    FileFault("upper_case_suffix", "A.JSONL", GOOD_1 + b"\n", {1: "kept"}),
]


@pytest.mark.parametrize("fault", FILE_FAULTS, ids=[f.kind for f in FILE_FAULTS])
def test_file_fault(tmp_path: Path, fault: FileFault) -> None:
    folder = _day(tmp_path)
    (folder / fault.name).write_bytes(fault.data)
    result = ingest_day(folder, DAY, max_line_bytes=MAX_LINE_BYTES)
    got = {r["line_number"]: "kept" for r in result.requests.iter_rows(named=True)}
    got |= {r["line_number"]: r["reason"] for r in result.quarantine.iter_rows(named=True)}
    assert got == fault.verdicts
    _assert_conserved(result, len(fault.verdicts))
    _assert_no_raw_values(result)
    [counts] = result.file_counts
    assert counts.source_file == f"2024-03-01/{fault.name}"
    assert counts.line_endings == fault.line_endings
    if fault.kind == "lone_cr_in_lf_file":
        assert "carriage return" in result.quarantine["detail"][0]


# Named by kind: a test id must be the same in every process that collects it (pytest-xdist's
# workers compare theirs), and gzip's header holds the time it was written.
@pytest.mark.parametrize(
    "kind,data",
    [
        pytest.param("gzip_truncated", gzip.compress(GOOD_1 + b"\n" + GOOD_2, mtime=0)[:60]),
        pytest.param("gzip_not_gzip", GOOD_1 + b"\n"),
        pytest.param("bzip2_truncated", bz2.compress(GOOD_1)[:30]),
    ],
    ids=["gzip_truncated", "gzip_not_gzip", "bzip2_truncated"],
)
def test_unreadable_compressed_file_fails_naming_it_without_content(
    tmp_path: Path, kind: str, data: bytes
) -> None:
    name = "broken.jsonl.bz2" if kind.startswith("bzip2") else "broken.jsonl.gz"
    (_day(tmp_path) / name).write_bytes(data)
    with pytest.raises(LogFileError) as error:
        ingest_day(tmp_path / DAY.isoformat(), DAY, max_line_bytes=MAX_LINE_BYTES)
    message = str(error.value)
    assert f"2024-03-01/{name}" in message
    assert '{"' not in message and "turn_id" not in message and CLIENT_IP not in message


# --- Folder entries -------------------------------------------------------------------------


def _symlink(target: str) -> Callable[[Path, str], None]:
    """A symlink to ``target`` outside the day folder; a ``.jsonl`` target holds a good line."""

    def make(folder: Path, name: str) -> None:
        if target.endswith(".jsonl"):
            (folder.parent / target).write_bytes(GOOD_2 + b"\n")
        (folder / name).symlink_to(folder.parent / target)

    return make


def _file(data: bytes) -> Callable[[Path, str], None]:
    return lambda folder, name: (folder / name).write_bytes(data)


ENTRY_FAULTS = [
    # (kind, entry name, how to make it, outcome, reason)
    ("upper_case_suffix", "b.JSONL", _file(GOOD_2 + b"\n"), "read", None),
    ("mixed_case_gzip", "b.Jsonl.GZ", _file(gzip.compress(GOOD_2 + b"\n", mtime=0)), "read", None),
    ("bzip2", "b.jsonl.bz2", _file(bz2.compress(GOOD_2 + b"\n")), "read", None),
    ("json_suffix", "b.json", _file(GOOD_2 + b"\n"), "skipped", "unrecognized_suffix"),
    ("text_file", "README.txt", _file(b"notes"), "skipped", "unrecognized_suffix"),
    ("temporary_upload", "b.jsonl.tmp", _file(GOOD_2), "skipped", "temporary_file"),
    ("partial_download", "b.jsonl.part", _file(GOOD_2), "skipped", "temporary_file"),
    ("editor_backup", "b.jsonl~", _file(GOOD_2), "skipped", "temporary_file"),
    ("hidden_file", ".b.jsonl", _file(GOOD_2), "skipped", "hidden_file"),
    ("subfolder", "sub", lambda f, n: (f / n).mkdir(), "skipped", "subfolder"),
    ("subfolder_named_like_a_log", "c.jsonl", lambda f, n: (f / n).mkdir(), "skipped", "subfolder"),
    ("symlink_to_a_log", "b.jsonl", _symlink("elsewhere.jsonl"), "read", None),
    ("dangling_symlink_other", "latest", _symlink("gone"), "skipped", "broken_symlink"),
    ("dangling_symlink_log", "b.jsonl", _symlink("gone.jsonl.missing"), "failed", "broken_symlink"),
    (
        "unsupported_compression",
        "b.jsonl.zst",
        _file(b"\x28\xb5\x2f\xfd"),
        "failed",
        "unsupported_compression",
    ),
    (
        "fifo_named_like_a_log",
        "b.jsonl",
        lambda f, n: os.mkfifo(f / n),
        "failed",
        "not_a_regular_file",
    ),
    ("fifo_other", "pipe", lambda f, n: os.mkfifo(f / n), "skipped", "not_a_regular_file"),
]


@pytest.mark.parametrize(
    "kind,name,make,outcome,reason", ENTRY_FAULTS, ids=[e[0] for e in ENTRY_FAULTS]
)
def test_every_folder_entry_has_a_listed_outcome(
    tmp_path: Path,
    kind: str,
    name: str,
    make: Callable[[Path, str], None],
    outcome: str,
    reason: str | None,
) -> None:
    folder = _day(tmp_path)
    (folder / "a.jsonl").write_bytes(GOOD_1 + b"\n")
    before = day_fingerprints(tmp_path)
    make(folder, name)
    if outcome == "failed":
        with pytest.raises(
            LogFileError, match=f"2024-03-01/{name.replace('.', '[.]')} [(]{reason}"
        ):
            ingest_day(folder, DAY, max_line_bytes=MAX_LINE_BYTES)
        assert day_fingerprints(tmp_path) != before  # the sensor sees it, and the run says why
        return
    result = ingest_day(folder, DAY, max_line_bytes=MAX_LINE_BYTES)
    entries = {e.name: (e.outcome, e.reason) for e in result.entries}
    assert entries == {"a.jsonl": ("read", None), name: (outcome, reason)}
    kept = 2 if outcome == "read" else 1
    assert result.requests.height == kept
    _assert_conserved(result, kept)
    assert [c.source_file for c in result.file_counts] == result.files
    changed = day_fingerprints(tmp_path) != before
    # Read files and temporary files (a partial upload, renamed when done) count; a README or
    # a sub-folder cannot change what ingest reads.
    assert changed == (outcome == "read" or reason == "temporary_file")
