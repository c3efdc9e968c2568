import gzip
import json
import re
from datetime import date

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wildchat_dag.core.hashing import history_hashes
from wildchat_dag.defs.ingest.parsing import (
    _CANONICAL_IPV4,
    LogFileError,
    _fast_path,
    ingest_day,
    normalize_ip,
)

DAY = date(2024, 3, 1)


def good(tid: int, **changes):
    line = {
        "schema_version": 1,
        "turn_id": tid,
        "timestamp": "2024-03-01T12:00:00.5Z",
        "model": "gpt-4-0314",
        "headers": {
            "User-Agent": "Mozilla/5.0",
            "Accept-Language": "fr-FR",
            "X-Forwarded-For": "203.0.113.9, 10.0.0.1",
        },
        "messages": [{"role": "user", "content": "Bonjour é 中文"}],
        "response": "Salut",
        "response_timestamp": "2024-03-01T12:00:03Z",
    }
    for key, value in changes.items():
        if value is KeyError:
            del line[key]
        else:
            line[key] = value
    return json.dumps(line, ensure_ascii=False)


# (line, reason, detail) for every kind of malformed line.
MALFORMED = [
    ('{"turn_id": 1, "timestamp": ', "invalid_json", None),
    ("[1, 2, 3]", "not_an_object", None),
    ("   ", "blank_line", None),
    (good(2, schema_version=2), "unsupported_schema_version", "2"),
    (good(3, turn_id=KeyError), "missing_field", "turn_id"),
    (good(4, turn_id="4"), "invalid_field", "turn_id"),
    (good(5, turn_id=5.5), "invalid_field", "turn_id"),
    (good(6, timestamp="yesterday"), "invalid_field", "timestamp"),
    (good(7, timestamp="2024-03-01T12:00:00"), "invalid_field", "timestamp"),
    (good(8, response_timestamp=KeyError), "missing_field", "response_timestamp"),
    (good(9, model=""), "invalid_field", "model"),
    (good(10, headers=KeyError), "missing_field", "headers"),
    (good(11, headers={"user-agent": "x"}), "missing_field", "headers.x-forwarded-for"),
    (
        good(12, headers={"user-agent": 5, "x-forwarded-for": "1.1.1.1"}),
        "invalid_field",
        "headers.user-agent",
    ),
    (good(13, messages=KeyError), "missing_field", "messages"),
    (good(14, messages="hi"), "invalid_field", "messages"),
    (good(15, messages=[]), "empty_messages", None),
    (good(16, messages=[{"role": "user", "content": 7}]), "invalid_field", "messages"),
    (good(17, messages=[{"role": "user"}]), "invalid_field", "messages"),
    (good(18, messages=[{"role": "assistant", "content": "x"}]), "roles_not_alternating", None),
    (
        good(
            19,
            messages=[
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "user", "content": "c"},
            ],
        ),
        "roles_not_alternating",
        None,
    ),
    (
        good(
            20, messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
        ),
        "roles_not_alternating",
        None,
    ),
    (good(21, response=KeyError), "missing_field", "response"),
    (good(22, response=None), "missing_field", "response"),
    (good(23, response=["x"]), "invalid_field", "response"),
    (good(24, timestamp="2024-03-02T00:00:00Z"), "timestamp_outside_day", None),
    (good(100), "duplicate_turn_id", None),
    (good(25, ip=12), "invalid_field", "ip"),
    # Headers of the wrong JSON type, one carrying an IP: quarantined, not a failed day.
    (good(26, headers="203.0.113.9 Mozilla/5.0"), "invalid_field", "headers"),
    (good(27, headers=["203.0.113.9"]), "invalid_field", "headers"),
    (good(28, headers=7), "invalid_field", "headers"),
    (good(29, headers=True), "invalid_field", "headers"),
]


def write_day(tmp_path, lines: list[bytes], name="requests-00.jsonl", gz=False):
    folder = tmp_path / DAY.isoformat()
    folder.mkdir(exist_ok=True)
    data = b"\n".join(lines) + b"\n"
    (folder / name).write_bytes(gzip.compress(data) if gz else data)
    return folder


def test_every_malformed_kind_is_quarantined_with_its_reason(tmp_path):
    lines = [good(100).encode(), good(101).encode()]
    lines += [line.encode() for line, _, _ in MALFORMED]
    lines.append(b'{"turn_id": 200, "x": "\xff\xfe"}')
    lines.append(good(201, response="x" * 5000).encode())
    folder = write_day(tmp_path, lines)

    result = ingest_day(folder, DAY, max_line_bytes=4096)

    assert result.lines_read == len(lines)
    assert result.requests.height + result.quarantine.height == len(lines)
    assert result.requests["turn_id"].to_list() == [100, 101]
    got = {
        row["line_number"]: (row["reason"], row["detail"])
        for row in result.quarantine.iter_rows(named=True)
    }
    expected = {i + 3: (reason, detail) for i, (_, reason, detail) in enumerate(MALFORMED)}
    expected[len(lines) - 1] = ("invalid_utf8", "line is not valid UTF-8")
    expected[len(lines)] = ("line_too_large", "over 4096 bytes")
    for line_number, (reason, detail) in expected.items():
        assert got[line_number][0] == reason, (line_number, got[line_number])
        if detail is not None and reason not in ("timestamp_outside_day",):
            assert got[line_number][1] == detail, (line_number, got[line_number])
    assert len(got) == len(expected)
    duplicate = next(
        i for i, (_, reason, _) in enumerate(MALFORMED) if reason == "duplicate_turn_id"
    )
    assert "first seen at 2024-03-01/requests-00.jsonl:1" in got[duplicate + 3][1]
    excerpts = result.quarantine["raw_excerpt"].str.len_chars()
    assert excerpts.max() <= 300
    assert set(result.quarantine["source_file"]) == {"2024-03-01/requests-00.jsonl"}


def test_valid_lines_are_typed_and_hashed(tmp_path):
    folder = write_day(
        tmp_path,
        [good(1).encode(), good(2, ip="[2001:db8::1]:443").encode()],
        gz=True,
        name="a.jsonl.gz",
    )
    result = ingest_day(folder, DAY, max_line_bytes=1 << 20)
    rows = result.requests.sort("turn_id").to_dicts()
    assert [r["ip"] for r in rows] == ["203.0.113.9", "2001:db8::1"]
    assert rows[0]["user_agent"] == "Mozilla/5.0" and rows[0]["accept_language"] == "fr-FR"
    assert str(rows[0]["timestamp"]) == "2024-03-01 12:00:00.500000+00:00"
    prev, current = history_hashes(rows[0]["messages"], rows[0]["response"])
    assert (rows[0]["prev_hash"], rows[0]["current_hash"]) == (prev, current)
    assert rows[0]["source_file"] == "2024-03-01/a.jsonl.gz" and rows[0]["line_number"] == 1


def test_crlf_line_endings_and_files_in_order(tmp_path):
    folder = write_day(tmp_path, [good(1).encode() + b"\r"], name="b.jsonl")
    write_day(tmp_path, [good(2).encode()], name="a.jsonl")
    result = ingest_day(folder, DAY, max_line_bytes=1 << 20)
    assert result.quarantine.is_empty()
    assert result.requests["source_file"].to_list() == ["2024-03-01/a.jsonl", "2024-03-01/b.jsonl"]


def test_odd_ips_are_kept_with_a_null_ip():
    assert normalize_ip(" 198.51.100.4:8080") == "198.51.100.4"
    assert normalize_ip("[2001:DB8:0::5]:443") == "2001:db8::5"
    assert normalize_ip("2001:db8::5") == "2001:db8::5"
    assert normalize_ip("unknown") is None
    assert normalize_ip("") is None
    assert normalize_ip("999.1.1.1") is None


def test_missing_day_folder_names_the_expected_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "2024-03-01")):
        ingest_day(tmp_path / "2024-03-01", DAY, max_line_bytes=1024)


def test_corrupt_gzip_names_the_file(tmp_path):
    folder = tmp_path / DAY.isoformat()
    folder.mkdir()
    payload = b"\n".join(good(i).encode() for i in range(1, 200))
    compressed = gzip.compress(payload)
    (folder / "broken.jsonl.gz").write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(LogFileError, match=r"broken\.jsonl\.gz"):
        ingest_day(folder, DAY, max_line_bytes=1024)


def test_empty_folder_gives_empty_tables(tmp_path):
    folder = tmp_path / DAY.isoformat()
    folder.mkdir()
    result = ingest_day(folder, DAY, max_line_bytes=1024)
    assert result.lines_read == 0 and result.requests.is_empty()
    assert result.quarantine.is_empty()


def test_fast_and_strict_paths_agree(tmp_path):
    """Well-formed lines are decoded by polars in bulk; a chunk holding one broken line goes,
    whole, through DuckDB's strict path. Both must accept and reject exactly the same lines."""
    lines = [
        good(1),
        good(2, messages=[{"role": "user", "content": "7"}]),  # a user may type a number
        good(3, messages=[{"role": "user", "content": 7}]),  # but content must be a string
        good(4, response=5),
        good(5, response="true"),
        good(6, headers={"User-Agent": "UA", "x-forwarded-for": "203.0.113.1"}),
        good(7, headers={"x-forwarded-for": "unknown"}),
        good(8, model=True),
        good(9, ip="198.51.100.1"),
        good(11, timestamp="2024-03-01 12:00:00+01:00"),
        good(12, messages=[{"role": "user", "content": "a", "name": "x"}]),
    ]
    fast_dir, strict_dir = tmp_path / "fast", tmp_path / "strict"
    fast_dir.mkdir()
    strict_dir.mkdir()
    write_day(fast_dir, [line.encode() for line in lines])
    write_day(strict_dir, [line.encode() for line in [*lines, "{broken"]])
    fast = ingest_day(fast_dir / DAY.isoformat(), DAY, max_line_bytes=1 << 20)
    strict = ingest_day(strict_dir / DAY.isoformat(), DAY, max_line_bytes=1 << 20)

    assert fast.requests.drop("source_file").equals(strict.requests.drop("source_file"))
    assert fast.quarantine.drop("source_file").equals(
        strict.quarantine.drop("source_file").filter(pl.col("reason") != "invalid_json")
    )
    assert fast.requests["turn_id"].to_list() == [1, 2, 5, 6, 7, 9, 11, 12]
    reasons = dict(fast.quarantine.select("line_number", "detail").iter_rows())
    assert reasons == {3: "messages", 4: "response", 8: "model"}
    # The premise: polars decoded the first file in bulk and deferred only the odd rows: values
    # that are not strings in the raw text, and headers that are missing or oddly spelled. A
    # string that looks like a number ("7", "true") is a string in the raw text: kept fast.
    accepted, deferred = _fast_path(pl.DataFrame({"k": range(len(lines)), "line": lines}))
    assert sorted(accepted["k"]) == [0, 1, 4, 8, 9, 10]
    assert sorted(deferred["k"]) == [2, 3, 5, 6, 7]
    by_id = {r["turn_id"]: r for r in fast.requests.iter_rows(named=True)}
    assert by_id[6]["user_agent"] == "UA" and by_id[6]["accept_language"] is None
    assert by_id[7]["ip"] is None and by_id[9]["ip"] == "198.51.100.1"
    assert str(by_id[11]["timestamp"]) == "2024-03-01 11:00:00+00:00"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.ip_addresses(v=4).map(str), st.text(alphabet="0123456789.:", max_size=16)))
def test_vectorised_ipv4_shortcut_agrees_with_ipaddress(text):
    if re.match(_CANONICAL_IPV4, text):
        assert normalize_ip(text) == text


def test_ingest_metadata_lists_every_folder_entry_and_warns_on_skips(tmp_path):
    from wildchat_dag_tests.pipeline import Pipeline, materializations

    (tmp_path / "logs").mkdir()
    folder = write_day(tmp_path / "logs", [good(1).encode(), good(2).encode()])
    (folder / "late.jsonl.tmp").write_bytes(good(3).encode())
    (folder / "extra").mkdir()
    pipeline = Pipeline(tmp_path / "logs", tmp_path / "warehouse.duckdb")
    pipeline.ingest(DAY.isoformat())

    [raw] = materializations(pipeline, "raw_requests")
    meta = {k: v.value for k, v in raw.metadata.items()}
    assert meta["folder_entries"] == [
        {"name": "extra", "outcome": "skipped", "reason": "subfolder"},
        {"name": "late.jsonl.tmp", "outcome": "skipped", "reason": "temporary_file"},
        {"name": "requests-00.jsonl", "outcome": "read", "reason": None},
    ]
    assert meta["entries_skipped"] == 2
    assert meta["file_counts"] == [
        {
            "file": "2024-03-01/requests-00.jsonl",
            "lines_read": 2,
            "kept": 2,
            "quarantined": 0,
            "line_endings": "lf",
        }
    ]
    run_id = pipeline.instance.get_runs()[0].run_id
    warnings = [r.user_message for r in pipeline.instance.all_logs(run_id) if r.level >= 30]
    assert any("late.jsonl.tmp" in w and "temporary_file" in w for w in warnings), warnings


# --- each text stored once (message_texts.py) --------------------------------------------------


def texts_day(tmp_path, conversations: int = 60):
    from wildchat_dag.loggen import generate_logs

    generate_logs(tmp_path, start_date=DAY, days=1, conversations_per_day=conversations, seed=9)
    return ingest_day(tmp_path / DAY.isoformat(), DAY, max_line_bytes=1 << 24).requests


def test_stored_requests_with_their_texts_put_back_are_the_parsed_requests(tmp_path):
    from wildchat_dag.core.hashing import sha256_column
    from wildchat_dag.core.schema import RAW_MESSAGE_TEXTS_SCHEMA, RAW_REQUESTS_SCHEMA
    from wildchat_dag.defs.ingest.message_texts import split_texts, text_share, with_texts

    requests = texts_day(tmp_path)
    # Hostile texts too: other scripts, zero-width and control characters, an empty reply, and
    # one text that is both a message and, elsewhere, a reply.
    odd = ["", "مرحبا \u202e 你好", "a\u200bb\x00c", "😀" * 3000, "same text"]
    extra = requests.head(len(odd)).with_columns(
        turn_id=pl.col("turn_id") + 10**9,
        line_number=pl.col("line_number") + 10**6,
        messages=pl.Series([[{"role": "user", "content": t}] for t in odd]),
        response=pl.Series(["same text", "", "x", "same text", "y"]),
    )
    requests = pl.concat([requests, extra])
    stored, texts = split_texts(requests)
    assert stored.schema == RAW_REQUESTS_SCHEMA and texts.schema == RAW_MESSAGE_TEXTS_SCHEMA
    assert "messages" not in stored.columns and "response" not in stored.columns
    assert with_texts(stored, texts).equals(requests)
    # Each text once, keyed by its sha256, and many fewer than the logs hold.
    assert texts["text_sha256"].is_unique().all()
    assert texts["text_sha256"].equals(sha256_column(texts["content"]).alias("text_sha256"))
    share = text_share(requests, texts)
    assert share["texts_stored"] == texts.height < share["texts_logged"]
    assert share["characters_stored"] * 2 < share["characters_logged"]
    # Stored alike whatever the order the lines came in.
    again = split_texts(requests.reverse())
    assert again[1].equals(texts) and again[0].reverse().equals(stored)


def test_a_missing_text_is_an_error_naming_its_day_never_a_shorter_history(tmp_path):
    from wildchat_dag.defs.ingest.message_texts import MissingTextError, split_texts, with_texts

    stored, texts = split_texts(texts_day(tmp_path, conversations=5))
    with pytest.raises(MissingTextError, match="not in raw_message_texts of 2024-03-01"):
        with_texts(stored, texts.slice(1))
    empty = (
        texts_day(tmp_path / "e", conversations=2)
        .head(1)
        .with_columns(
            messages=pl.Series(
                [[]], dtype=pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
            )
        )
    )
    with pytest.raises(ValueError, match=r"requests without messages .*2024-03-01/"):
        split_texts(empty)
