"""Tests for the synthetic request-log generator and the conversation replayer."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from collections import defaultdict
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest

from wildchat_dag.defs.ingest.log_contract import REQUIRED_FIELDS
from wildchat_dag.loggen import (
    FeatureRates,
    fill_missing_turns,
    generate_logs,
    replay_conversations,
)
from wildchat_dag.loggen.cli import main
from wildchat_dag.loggen.generator import MODELS, DayShardWriter

START = date(2024, 1, 1)
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
SHARD_RE = re.compile(r"^requests-\d{2}\.jsonl(\.gz)?$")
TOP_KEYS = {"schema_version", *REQUIRED_FIELDS}


def read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def log_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def load_requests(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """(folder name, record) for every line under ``root``."""
    out = []
    for path in log_files(root):
        for line in read_bytes(path).splitlines():
            out.append((path.parent.name, orjson.loads(line)))
    return out


def load_truth(path: Path) -> dict[int, dict[str, Any]]:
    return {row["turn_id"]: row for row in map(orjson.loads, path.read_bytes().splitlines())}


def parse_ts(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")


def client_ip(record: dict[str, Any]) -> str:
    return record["ip"] if "ip" in record else xff_client(record)


def xff_client(record: dict[str, Any]) -> str:
    first = record["headers"]["x-forwarded-for"].split(",")[0].strip()
    if first.startswith("["):
        return first[1 : first.index("]")]
    if first.count(":") == 1:
        return first.split(":")[0]
    return first


def fingerprint(record: dict[str, Any]) -> tuple[str, str]:
    headers = record["headers"]
    return headers["user-agent"], headers["accept-language"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("demo")
    truth_path = root / "truth.jsonl"
    logs = root / "logs"
    # A higher late-continuation rate so a 900-conversation run contains a few for sure.
    summary = generate_logs(
        logs,
        start_date=START,
        days=3,
        conversations_per_day=300,
        seed=7,
        truth_path=truth_path,
        rates=FeatureRates(late_continuation=0.02),
    )
    requests = load_requests(logs)
    return {
        "root": logs,
        "summary": summary,
        "requests": requests,
        "by_id": {r["turn_id"]: r for _, r in requests},
        "truth": load_truth(truth_path),
    }


# --- determinism --------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in log_files(root)}


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"start_date": START, "days": 2, "conversations_per_day": 80}
    generate_logs(tmp_path / "a" / "logs", seed=3, truth_path=tmp_path / "a" / "t.jsonl", **kwargs)
    generate_logs(tmp_path / "b" / "logs", seed=3, truth_path=tmp_path / "b" / "t.jsonl", **kwargs)
    generate_logs(tmp_path / "c" / "logs", seed=4, **kwargs)
    a, b, c = (_snapshot(tmp_path / x / "logs") for x in "abc")
    assert a and a == b
    assert (tmp_path / "a" / "t.jsonl").read_bytes() == (tmp_path / "b" / "t.jsonl").read_bytes()
    assert a.keys() == c.keys() and a != c


def test_rerun_overwrites_stale_shards(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"start_date": START, "days": 1, "conversations_per_day": 40}
    generate_logs(tmp_path, seed=1, shards_per_day=3, **kwargs)
    summary = generate_logs(tmp_path, seed=1, gzip=False, **kwargs)
    assert log_files(tmp_path) == summary.files == [tmp_path / "2024-01-01" / "requests-00.jsonl"]


def test_writer_abort_leaves_no_partial_day(tmp_path: Path) -> None:
    writer = DayShardWriter(tmp_path, gzip=True, shards=2)
    writer.write(19723, 0, b'{"a": 1}\n')
    writer.write(19724, 1, b'{"a": 2}\n')
    writer.abort()
    # The first day was complete when the second began; the second is dropped.
    assert [p.relative_to(tmp_path).as_posix() for p in log_files(tmp_path)] == [
        "2024-01-01/requests-00.jsonl.gz"
    ]
    with pytest.raises(ValueError, match="timestamp order"):
        other = DayShardWriter(tmp_path / "x", gzip=False, shards=1)
        other.write(5, 0, b"{}\n")
        other.write(4, 0, b"{}\n")
    other.close()


# --- the contract -------------------------------------------------------------------------


def test_files_layout_and_order(demo: dict[str, Any]) -> None:
    root: Path = demo["root"]
    files = log_files(root)
    assert files == sorted(demo["summary"].files)
    assert {p.parent.name for p in files} == {"2024-01-01", "2024-01-02", "2024-01-03"}
    for path in files:
        assert SHARD_RE.match(path.name), path
        data = read_bytes(path)
        assert data.endswith(b"\n")
        keys = [(r["timestamp"], r["turn_id"]) for r in map(orjson.loads, data.splitlines())]
        assert keys == sorted(keys), f"{path} is not sorted by timestamp, turn_id"


def test_every_line_follows_the_contract(demo: dict[str, Any]) -> None:
    requests = demo["requests"]
    ids = [r["turn_id"] for _, r in requests]
    assert len(ids) == len(set(ids)) == demo["summary"].requests
    for folder, r in requests:
        assert TOP_KEYS <= r.keys() <= TOP_KEYS | {"ip"}
        assert r["schema_version"] == 1
        assert isinstance(r["turn_id"], int) and r["turn_id"] > 0
        assert TS_RE.match(r["timestamp"]) and TS_RE.match(r["response_timestamp"])
        assert folder == r["timestamp"][:10]
        ts, rts = parse_ts(r["timestamp"]), parse_ts(r["response_timestamp"])
        assert timedelta(0) < rts - ts < timedelta(minutes=2)
        assert r["model"] in MODELS
        assert set(r["headers"]) == {"user-agent", "accept-language", "x-forwarded-for"}
        messages = r["messages"]
        assert len(messages) % 2 == 1
        for i, m in enumerate(messages):
            assert m.keys() == {"role", "content"}
            assert m["role"] == ("user" if i % 2 == 0 else "assistant")
            assert isinstance(m["content"], str)
        assert isinstance(r["response"], str) and r["response"]
        if "ip" in r:
            assert r["ip"] == xff_client(r)


def test_history_matches_ground_truth(demo: dict[str, Any]) -> None:
    by_id, truth = demo["by_id"], demo["truth"]
    assert truth.keys() == by_id.keys()
    per_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for turn_id, row in truth.items():
        r = by_id[turn_id]
        assert row["day"] == r["timestamp"][:10]
        per_key[row["conversation_key"]].append(r)
        parent_id = row["parent_turn_id"]
        if parent_id is None:
            assert len(r["messages"]) == 1
            continue
        parent = by_id[parent_id]
        expected = [*parent["messages"], {"role": "assistant", "content": parent["response"]}]
        # A regeneration has the same parent as the request it regenerates.
        assert r["messages"][:-1] == expected
        assert r["timestamp"] > parent["response_timestamp"]
        assert truth[parent_id]["conversation_key"] == row["conversation_key"]
    for requests in per_key.values():
        assert len({fingerprint(r) for r in requests}) == 1
        assert len({r["model"] for r in requests}) == 1


def test_regenerations_resend_identical_history(demo: dict[str, Any]) -> None:
    by_id, truth = demo["by_id"], demo["truth"]
    children: dict[int, list[int]] = defaultdict(list)
    for turn_id, row in truth.items():
        if row["parent_turn_id"] is not None:
            children[row["parent_turn_id"]].append(turn_id)
    regens = [t for t, row in truth.items() if row["is_regeneration"]]
    assert regens
    for turn_id in regens:
        r = by_id[turn_id]
        row = truth[turn_id]
        earlier = [
            other
            for other, o in truth.items()
            if o["conversation_key"] == row["conversation_key"]
            and other < turn_id
            and by_id[other]["messages"] == r["messages"]
        ]
        assert earlier, "a regeneration must repeat an earlier request's messages"
        assert all(by_id[e]["response"] != r["response"] for e in earlier)
        # The abandoned reply is never continued from.
        assert all(e not in children for e in earlier)


# --- special features, read from the data itself ------------------------------------------


def _by_conversation(demo: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for turn_id in sorted(demo["truth"]):
        groups[demo["truth"][turn_id]["conversation_key"]].append(demo["by_id"][turn_id])
    return groups


def test_multi_turn_and_heavy_tail(demo: dict[str, Any]) -> None:
    turns = [max(len(r["messages"]) for r in rs) // 2 + 1 for rs in _by_conversation(demo).values()]
    assert sum(t > 1 for t in turns) > 0.3 * len(turns)
    assert max(turns) >= 15
    assert 2.0 < sum(turns) / len(turns) < 3.5


def test_ip_changes_within_a_conversation(demo: dict[str, Any]) -> None:
    changed = [
        rs
        for rs in _by_conversation(demo).values()
        if len({client_ip(r) for r in rs}) > 1 and len({fingerprint(r) for r in rs}) == 1
    ]
    assert changed
    assert demo["summary"].ip_changes >= len(changed) > 0


def test_many_user_agents_behind_one_ip_at_overlapping_times(demo: dict[str, Any]) -> None:
    spans: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
    for _, r in demo["requests"]:
        ua = r["headers"]["user-agent"]
        lo, hi = spans[client_ip(r)].get(ua, (r["timestamp"], r["timestamp"]))
        spans[client_ip(r)][ua] = (min(lo, r["timestamp"]), max(hi, r["timestamp"]))
    crowded = 0
    for by_ua in spans.values():
        if len(by_ua) < 3:
            continue
        windows = sorted(by_ua.values())
        if any(b[0] <= a[1] for a, b in pairwise(windows)):
            crowded += 1
    assert crowded > 0


def test_identical_messages_with_different_responses(demo: dict[str, Any]) -> None:
    responses: dict[tuple[str, str, bytes], list[str]] = defaultdict(list)
    for _, r in sorted(demo["requests"], key=lambda fr: fr[1]["turn_id"]):
        key = (client_ip(r), r["headers"]["user-agent"], orjson.dumps(r["messages"]))
        responses[key].append(r["response"])
    regenerated = {k: v for k, v in responses.items() if len(set(v)) > 1}
    assert regenerated
    # Conversations go on from the regenerated (last) reply, never from the abandoned one.
    histories = {(fingerprint(r), orjson.dumps(r["messages"][:-1])) for _, r in demo["requests"]}
    continued = 0
    for (_, ua, messages), replies in regenerated.items():
        base = orjson.loads(messages)
        accept_language = next(
            r["headers"]["accept-language"]
            for _, r in demo["requests"]
            if r["headers"]["user-agent"] == ua and orjson.dumps(r["messages"]) == messages
        )

        def history_with(
            reply: str,
            base: list[dict[str, str]] = base,
            fp: tuple[str, str] = (ua, accept_language),
        ) -> tuple[tuple[str, str], bytes]:
            return fp, orjson.dumps([*base, {"role": "assistant", "content": reply}])

        assert not any(history_with(reply) in histories for reply in replies[:-1])
        continued += history_with(replies[-1]) in histories
    assert continued > 0


def test_conversations_cross_midnight(demo: dict[str, Any]) -> None:
    crossing = 0
    for rs in _by_conversation(demo).values():
        stamps = [parse_ts(r["timestamp"]) for r in rs]
        if stamps[0].date() != stamps[-1].date() and stamps[-1] - stamps[0] < timedelta(hours=3):
            crossing += 1
    assert crossing > 0
    assert demo["summary"].midnight_crossings >= crossing


def test_late_continuations(demo: dict[str, Any]) -> None:
    by_id, truth = demo["by_id"], demo["truth"]
    late = [t for t, row in truth.items() if row["late_continuation"]]
    assert late and len(late) == demo["summary"].late_continuations
    for turn_id in late:
        parent = by_id[truth[turn_id]["parent_turn_id"]]
        gap = parse_ts(by_id[turn_id]["timestamp"]) - parse_ts(parent["response_timestamp"])
        assert gap > timedelta(days=2)


def test_text_features(demo: dict[str, Any]) -> None:
    user_texts = [
        m["content"] for _, r in demo["requests"] for m in r["messages"] if m["role"] == "user"
    ]
    blob = "\n".join(user_texts)
    assert "" in user_texts
    for script in (r"[\u4e00-\u9fff]", r"[\u0400-\u04ff]", r"[\u0600-\u06ff]", r"[\uac00-\ud7af]"):
        assert re.search(script, blob), script
    assert re.search(r"[\w.]+@[\w.]+\.\w+", blob)
    assert re.search(r"(?i)card\D{0,20}\d{4} ?\d{4} ?\d{4} ?\d{4}", blob)
    assert re.search(r"(?i)(ref|number is|use) \d{16}\b", blob)
    assert re.search(r"https://www\.linkedin\.com/in/[a-z]+-[a-z]+-\d+", blob)
    assert re.search(r"(My name is|Regards,|Sincerely,) [A-Z][a-z]+ [A-Z][a-z]+", blob)
    assert re.search(r"(phone|Tel|Call me at|number is|WeChat|微信)\D{0,6}[+(]?\d", blob)
    assert re.search(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", blob)
    conversations_with = defaultdict(set)
    for turn_id, row in demo["truth"].items():
        for m in demo["by_id"][turn_id]["messages"]:
            for celeb in ("Taylor Swift", "Elon Musk"):
                if celeb in m["content"]:
                    conversations_with[celeb].add(row["conversation_key"])
    assert max(len(v) for v in conversations_with.values()) >= 3


def test_language_mix_and_ip_forms(demo: dict[str, Any]) -> None:
    firsts = [r["messages"][0]["content"] for _, r in demo["requests"] if len(r["messages"]) == 1]
    ascii_share = sum(t.isascii() for t in firsts if t) / len(firsts)
    assert 0.45 < ascii_share < 0.8
    xffs = [r["headers"]["x-forwarded-for"] for _, r in demo["requests"]]
    assert any(x.startswith("[") for x in xffs) or any(":" in x for x in xffs)
    assert any("," in x for x in xffs)
    assert any(":" in client_ip(r) for _, r in demo["requests"])
    assert any("ip" in r for _, r in demo["requests"])


def test_summary_counts(demo: dict[str, Any]) -> None:
    s = demo["summary"]
    assert s.conversations == 900
    assert sum(s.requests_per_day.values()) == s.requests == len(demo["requests"])
    assert s.regenerations == sum(row["is_regeneration"] for row in demo["truth"].values())
    assert s.shared_ip_groups > 0 and s.empty_user_messages > 0 and sum(s.pii.values()) > 0
    assert "requests:" in s.describe()


def test_shards_and_plain_jsonl(tmp_path: Path) -> None:
    summary = generate_logs(
        tmp_path,
        start_date=START,
        days=2,
        conversations_per_day=150,
        seed=2,
        gzip=False,
        shards_per_day=3,
    )
    names = {p.name for p in summary.files}
    assert names == {"requests-00.jsonl", "requests-01.jsonl", "requests-02.jsonl"}
    total = 0
    for path in summary.files:
        lines = path.read_bytes().splitlines()
        stamps = [orjson.loads(x)["timestamp"] for x in lines]
        assert stamps == sorted(stamps)
        assert all(s[:10] == path.parent.name for s in stamps)
        total += len(lines)
    assert total == summary.requests


def test_message_length_follows_mean(tmp_path: Path) -> None:
    def mean_len(chars: int) -> float:
        root = tmp_path / str(chars)
        generate_logs(
            root,
            start_date=START,
            days=1,
            conversations_per_day=100,
            seed=0,
            mean_message_chars=chars,
        )
        texts = [r["response"] for _, r in load_requests(root)]
        return sum(map(len, texts)) / len(texts)

    assert mean_len(100) * 3 < mean_len(800)


# --- replay -------------------------------------------------------------------------------


def _conv(*contents: str) -> list[dict[str, str]]:
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": c}
        for i, c in enumerate(contents)
    ]


def test_fill_missing_turns() -> None:
    assert fill_missing_turns([{"role": "assistant", "content": "hi"}]) == _conv("", "hi")
    assert fill_missing_turns(
        [
            {"role": "user", "content": "a", "timestamp": 1, "language": "English"},
            {"role": "assistant", "content": "b"},
            {"role": "assistant", "content": "c"},
            {"role": "user", "content": "d"},
            {"role": "user", "content": None},
        ]
    ) == _conv("a", "b", "", "c", "d", "", "", "")
    assert fill_missing_turns(_conv("a", "b")) == _conv("a", "b")
    assert fill_missing_turns([]) == []
    with pytest.raises(ValueError, match="role"):
        fill_missing_turns([{"role": "system", "content": "x"}])


def _reconstruct(root: Path) -> dict[int, dict[str, Any]]:
    return {r["turn_id"]: r for _, r in load_requests(root)}


def test_replay_round_trip(tmp_path: Path) -> None:
    conversations = [
        {
            "conversation": _conv("hello", "Hi! How can I help?"),
            "model": "gpt-4-0314",
            "conversation_hash": "h0",
        },
        {
            "conversation": _conv("写一首诗", "床前明月光", "再来一首", "春眠不觉晓", "", "好的"),
            "model": "gpt-3.5-turbo-0613",
            "conversation_hash": "h1",
        },
        {"conversation": _conv(*"abababab"), "model": "gpt-4-0125-preview"},
    ] + [
        {
            "conversation": _conv(f"question {i}", f"answer {i}", "more", f"detail {i}"),
            "model": "gpt-3.5-turbo-0301",
            "conversation_hash": f"x{i}",
        }
        for i in range(40)
    ]
    replayed = replay_conversations(conversations, tmp_path, start_date=START, days=3, seed=5)
    assert [c.source_index for c in replayed] == list(range(len(conversations)))
    records = _reconstruct(tmp_path)
    assert sorted(records) == sorted(t for c in replayed for t in c.turn_ids)
    for conv, rc in zip(conversations, replayed, strict=True):
        assert rc.conversation_hash == conv.get("conversation_hash")
        assert rc.messages == conv["conversation"]
        assert len(rc.turn_ids) == len(conv["conversation"]) // 2
        requests = [records[t] for t in rc.turn_ids]
        for k, r in enumerate(requests, start=1):
            assert r["messages"] == conv["conversation"][: 2 * k - 1]
            assert r["response"] == conv["conversation"][2 * k - 1]["content"]
            assert r["model"] == conv["model"]
        for a, b in pairwise(requests):
            assert b["timestamp"] > a["response_timestamp"]
        ips = {client_ip(r) for r in requests}
        assert (len(ips) > 1) == rc.ip_changed
        assert len({fingerprint(r) for r in requests}) == 1
        days = {r["timestamp"][:10] for r in requests}
        assert (len(days) > 1) == rc.crosses_midnight
    # Each conversation not sharing an IP on purpose has an IP no other conversation uses.
    ip_users: dict[str, set[int]] = defaultdict(set)
    for rc in replayed:
        for t in rc.turn_ids:
            ip_users[client_ip(records[t])].add(rc.source_index)
    for rc in replayed:
        first_ip = client_ip(records[rc.turn_ids[0]])
        assert (len(ip_users[first_ip]) > 1) == rc.shared_ip
    assert any(rc.shared_ip for rc in replayed)
    assert any(rc.ip_changed for rc in replayed)
    assert any(rc.crosses_midnight for rc in replayed)
    fingerprints = {fingerprint(records[rc.turn_ids[0]]) for rc in replayed}
    assert len(fingerprints) == len(replayed)


def test_replay_is_deterministic(tmp_path: Path) -> None:
    conversations = [
        {"conversation": _conv(f"q{i}", f"a{i}", "x", "y"), "model": "m"} for i in range(10)
    ]
    replay_conversations(conversations, tmp_path / "a", start_date=START, seed=1, gzip=True)
    replay_conversations(conversations, tmp_path / "b", start_date=START, seed=1, gzip=True)
    assert _snapshot(tmp_path / "a") == _snapshot(tmp_path / "b")


@pytest.mark.parametrize(
    "messages",
    [
        _conv("a", "b", "c"),
        [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}],
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        [],
    ],
)
def test_replay_rejects_non_alternating(tmp_path: Path, messages: list[dict[str, str]]) -> None:
    conversations = [
        {"conversation": _conv("ok", "fine"), "model": "m"},
        {"conversation": messages, "model": "m"},
    ]
    with pytest.raises(ValueError, match="conversation 1"):
        replay_conversations(conversations, tmp_path, start_date=START)
    assert not log_files(tmp_path)


# --- CLI ----------------------------------------------------------------------------------


def test_cli_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "logs"
    truth = tmp_path / "truth.jsonl"
    argv = ["--out", str(out), "--start", "2024-02-28", "--days", "2"]
    argv += ["--conversations-per-day", "30", "--seed", "9", "--truth", str(truth), "--no-gzip"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "requests:" in printed and "conversations:" in printed
    assert {p.parent.name for p in log_files(out)} == {"2024-02-28", "2024-02-29"}
    assert all(p.suffix == ".jsonl" for p in log_files(out))
    assert len(load_truth(truth)) == len(load_requests(out))


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--start", "2024-13-01"])
    with pytest.raises(SystemExit):
        main(["--days", "1"])


def test_module_entry_point_and_no_dagster(tmp_path: Path) -> None:
    code = (
        "import sys, runpy; sys.argv = ['x', '--out', sys.argv[1], '--days', '1', "
        "'--conversations-per-day', '5']; "
        "runpy.run_module('wildchat_dag.loggen', run_name='__main__')"
    )
    probe = "import sys, wildchat_dag.loggen.cli; print('dagster' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert log_files(tmp_path)
    no_dagster = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert no_dagster.stdout.strip() == "False"
