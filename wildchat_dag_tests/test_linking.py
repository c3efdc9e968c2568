import json
from datetime import date, datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wildchat_dag.defs.ingest.parsing import ingest_day
from wildchat_dag.defs.linking.linking import (
    CONTENT_KEY_COLUMNS,
    COPY_COLUMNS,
    LIGHT_WINDOW_SCHEMA,
    MESSAGE_COUNT,
    ContentChangedError,
    link_window,
)
from wildchat_dag.defs.linking.linking_reference import link_sequential
from wildchat_dag.loggen import generate_logs
from wildchat_dag_tests.conftest import RequestFactory, raw_frame

D1, D2, D3 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)


def link_all_days(frame: pl.DataFrame, days: list[date], lookahead: int = 1):
    return {d: link_window(frame, d, lookahead_days=lookahead) for d in days}


def owned_turn_ids(results) -> list[int]:
    ids = []
    for r in results.values():
        ids += r.conversations["own_turn_ids"].explode().drop_nulls().to_list()
        ids += r.orphans["turn_id"].to_list()
    return ids


def test_chain_crossing_midnight_is_whole_once(requests_factory: RequestFactory):
    f = requests_factory
    a = f.first("hi", "hello", "2024-01-01T23:59:00")
    b = f.follow(a, "and?", "more", "2024-01-02T00:00:30", ip="203.0.113.50")
    c = f.follow(b, "thanks", "bye", "2024-01-02T00:01:00", ip="198.51.100.7")
    frame = raw_frame([a, b, c])
    results = link_all_days(frame, [D1, D2, D3])
    conv = results[D1].conversations.row(0, named=True)
    assert conv["own_turn_ids"] == [1, 2, 3] and conv["turn"] == 3
    assert [u["content"] for u in conv["conversation"]] == [
        "hi",
        "hello",
        "and?",
        "more",
        "thanks",
        "bye",
    ]
    assert [u["turn_identifier"] for u in conv["conversation"]] == [1, 1, 2, 2, 3, 3]
    assert conv["ip"] == "198.51.100.7"  # 2 of 3 user turns
    assert [u["ip"] for u in conv["conversation"]] == [
        "198.51.100.7",
        None,
        "203.0.113.50",
        None,
        "198.51.100.7",
        None,
    ]
    assert results[D2].conversations.is_empty() and results[D2].orphans.is_empty()
    assert results[D2].stats["requests_owned_by_earlier_days"] == 2
    assert sorted(owned_turn_ids(results)) == [1, 2, 3]


def test_same_ip_is_preferred_then_relaxed(requests_factory: RequestFactory):
    f = requests_factory
    # Two users with the same device and identical first exchange, on two IPs.
    a = f.first("hi", "hello", "2024-01-01T10:00:00", ip="198.51.100.1")
    b = f.first("hi", "hello", "2024-01-01T10:00:10", ip="198.51.100.2")
    # The second user continues first: the latest end is b, on its own IP.
    b2 = f.follow(b, "q", "r", "2024-01-01T10:01:00", ip="198.51.100.2")
    # The first user continues from a new IP: no same-IP end, so the latest free end (a).
    a2 = f.follow(a, "q", "r2", "2024-01-01T10:02:00", ip="198.51.100.9")
    result = link_window(raw_frame([a, b, b2, a2]), D1, lookahead_days=1)
    decisions = dict(result.decisions.select("turn_id", "parent_turn_id").iter_rows())
    assert decisions[b2["turn_id"]] == b["turn_id"]
    assert decisions[a2["turn_id"]] == a["turn_id"]


def test_fingerprint_and_model_separate_users_behind_one_ip(requests_factory):
    f = requests_factory
    a = f.first("hi", "hello", "2024-01-01T10:00:00", ua="UA-A")
    b = f.first("hi", "hello", "2024-01-01T10:00:01", ua="UA-B")
    c = f.first("hi", "hello", "2024-01-01T10:00:02", ua="UA-A", model="gpt-3.5-turbo-0613")
    a2 = f.follow(a, "x", "y", "2024-01-01T10:05:00")
    b2 = f.follow(b, "x", "y", "2024-01-01T10:05:01")
    c2 = f.follow(c, "x", "y", "2024-01-01T10:05:02", model="gpt-3.5-turbo-0613")
    result = link_window(raw_frame([a, b, c, a2, b2, c2]), D1, lookahead_days=1)
    owned = {tuple(ids) for ids in result.conversations["own_turn_ids"].to_list()}
    assert owned == {
        (a["turn_id"], a2["turn_id"]),
        (b["turn_id"], b2["turn_id"]),
        (c["turn_id"], c2["turn_id"]),
    }


def test_regenerated_reply_starts_a_branch_with_inherited_turns(requests_factory):
    f = requests_factory
    a = f.first("write a poem", "roses", "2024-01-01T10:00:00")
    b1 = f.follow(a, "shorter", "rose", "2024-01-01T10:01:00")
    b2 = f.follow(a, "shorter", "a rose", "2024-01-01T10:01:30")  # regenerate
    c = f.follow(b2, "thanks", "welcome", "2024-01-01T10:02:00")
    result = link_window(raw_frame([a, b1, b2, c]), D1, lookahead_days=1)
    rows = {r["conversation_id"]: r for r in result.conversations.iter_rows(named=True)}
    assert rows[1]["own_turn_ids"] == [1, 2] and rows[1]["branch_of_turn_id"] is None
    branch = rows[3]
    assert branch["own_turn_ids"] == [3, 4]
    assert branch["branch_of_turn_id"] == 1 and branch["inherited_turns"] == 1
    assert branch["turn"] == 3
    assert [u["turn_identifier"] for u in branch["conversation"]] == [1, 1, 3, 3, 4, 4]
    assert [u["content"] for u in branch["conversation"]][2:4] == ["shorter", "a rose"]
    assert sorted(owned_turn_ids({D1: result})) == [1, 2, 3, 4]


def test_orphans_and_beyond_lookahead_are_kept_with_reasons(requests_factory):
    f = requests_factory
    lost = f.first("lost", "never logged", "2023-12-01T00:00:00")  # not in the logs
    o1 = f.follow(lost, "continue", "ok", "2024-01-02T09:00:00")
    o2 = f.follow(o1, "more", "ok", "2024-01-02T09:01:00")
    a = f.first("hi", "hello", "2024-01-01T08:00:00")
    late = f.follow(a, "back after two days", "welcome back", "2024-01-03T08:00:00")
    frame = raw_frame([o1, o2, a, late])
    results = link_all_days(frame, [D1, D2, D3, D3 + timedelta(days=1)])
    assert results[D2].orphans.select("turn_id", "reason").rows() == [
        (o1["turn_id"], "predecessor_not_found"),
        (o2["turn_id"], "follows_orphan"),
    ]
    assert results[D3].orphans.select("turn_id", "reason").rows() == [
        (late["turn_id"], "beyond_lookahead")
    ]
    assert results[D1].conversations["own_turn_ids"].to_list() == [[a["turn_id"]]]
    assert sorted(owned_turn_ids(results)) == sorted(frame["turn_id"].to_list())


def test_duplicate_turn_id_across_days_is_set_aside_not_fatal(requests_factory):
    """More cases in test_faults_linking.py."""
    f = requests_factory
    a = f.first("hi", "hello", "2024-01-01T10:00:00", turn_id=7)
    b = f.first("hey", "hello", "2024-01-02T10:00:00", turn_id=7)
    results = link_all_days(raw_frame([a, b]), [D1, D2])
    assert results[D1].conversations["own_turn_ids"].to_list() == [[7]]
    assert results[D2].orphans.select("turn_id", "reason", "detail").rows() == [
        (7, "duplicate_turn_id", "first seen at 2024-01-01/test.jsonl:1")
    ]


@st.composite
def scenarios(draw):
    """Requests with many collisions: tiny vocabularies, shared devices, regenerations."""
    f = RequestFactory()
    users = [("UA-1", "198.51.100.1"), ("UA-1", "198.51.100.2"), ("UA-2", "198.51.100.1")]
    t = datetime(2024, 1, 2, 0, 0)
    made: list[dict] = []
    for _ in range(draw(st.integers(1, 40))):
        t += timedelta(seconds=draw(st.integers(0, 3)))
        ua, ip = draw(st.sampled_from(users))
        text = draw(st.sampled_from(["hi", "ok", "more"]))
        reply = draw(st.sampled_from(["hello", "sure"]))
        model = draw(st.sampled_from(["m1", "m1", "m2"]))
        at = t.isoformat()
        if made and draw(st.booleans()):
            prev = draw(st.sampled_from(made))
            made.append(f.follow(prev, text, reply, at, ip=ip, ua=ua, model=model))
        else:
            made.append(f.first(text, reply, at, ip=ip, ua=ua, model=model))
    return made


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_vectorised_linking_equals_the_sequential_rule(requests):
    frame = raw_frame(requests)
    result = link_window(frame, D2, lookahead_days=1)
    expected = link_sequential(frame.to_dicts())
    got = {}
    for turn_id, parent, branch_of, kind, _root in result.decisions.iter_rows():
        if parent is not None:
            got[turn_id] = ("link", parent)
        elif kind == "branch":
            got[turn_id] = ("branch", branch_of)
        else:
            got[turn_id] = (kind, None)
    assert got == {t: (d.kind, d.other) for t, d in expected.items()}
    assert sorted(owned_turn_ids({D2: result})) == sorted(frame["turn_id"].to_list())


def test_linking_recovers_the_generators_ground_truth(tmp_path):
    """On generated logs, every request links to the request its history really continues."""
    log_root, truth_path = tmp_path / "logs", tmp_path / "truth.jsonl"
    generate_logs(
        log_root,
        start_date=D1,
        days=3,
        conversations_per_day=300,
        seed=8,
        truth_path=truth_path,
    )
    frame = pl.concat(
        ingest_day(log_root / d.isoformat(), d, max_line_bytes=1 << 24).requests
        for d in (D1, D2, D3)
    )
    truth = {t["turn_id"]: t for t in map(json.loads, truth_path.read_text().splitlines())}
    assert frame.height == len(truth)
    # One window holding all three days: no lookahead bound in the way.
    decisions = link_window(frame, D1 + timedelta(days=1), lookahead_days=2).decisions
    wrong = []
    kinds: dict[str, int] = {}
    for turn_id, parent, branch_of, kind, _root in decisions.iter_rows():
        t = truth[turn_id]
        if t["parent_turn_id"] is None:
            expected = (None, None, "start")
        elif t["is_regeneration"]:
            expected = (None, t["parent_turn_id"], "branch")
        else:
            expected = (t["parent_turn_id"], None, None)
        kinds[expected[2] or "link"] = kinds.get(expected[2] or "link", 0) + 1
        if (parent, branch_of, kind) != expected:
            wrong.append((turn_id, t, (parent, branch_of, kind)))
    assert not wrong, wrong[:5]
    assert kinds["branch"] > 0 and kinds["link"] > kinds["start"] > 0


def light(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` as the asset reads its window: no content, the length of each history."""
    return frame.with_columns(pl.col("messages").list.len().alias(MESSAGE_COUNT)).select(
        LIGHT_WINDOW_SCHEMA.names()
    )


def fetch_from(frame: pl.DataFrame, asked: list[int] | None = None):
    """A content fetcher over ``frame``, as the asset's SQL reads it; ``asked`` counts rows."""

    def fetch(keys: pl.DataFrame) -> pl.DataFrame:
        if asked is not None:
            asked.append(keys.height)
        found = keys.with_row_index("position").join(
            frame.drop("current_hash"), on=list(COPY_COLUMNS)
        )
        return found.sort("position").select(*CONTENT_KEY_COLUMNS, "messages", "response")

    return fetch


def test_a_light_window_links_exactly_as_the_whole_one_reading_only_the_kept_rows(tmp_path):
    log_root = tmp_path / "logs"
    generate_logs(log_root, start_date=D1, days=3, conversations_per_day=200, seed=11)
    frame = pl.concat(
        ingest_day(log_root / d.isoformat(), d, max_line_bytes=1 << 24).requests
        for d in (D1, D2, D3)
    )
    for day in (D1, D2, D3):
        whole = link_window(frame, day, lookahead_days=1)
        asked: list[int] = []
        lean = link_window(light(frame), day, lookahead_days=1, fetch=fetch_from(frame, asked))
        assert lean.conversations.equals(whole.conversations)
        assert lean.orphans.equals(whole.orphans)
        assert lean.decisions.equals(whole.decisions)
        assert lean.set_aside.equals(whole.set_aside)
        assert lean.stats == whole.stats
        # One row per conversation (its last request) and per orphan, not the window.
        assert asked == [whole.orphans.height, whole.conversations.height]
        assert sum(asked) < frame.height / 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_a_light_window_of_colliding_requests_links_as_the_whole_one(requests):
    frame = raw_frame(requests)
    whole = link_window(frame, D2, lookahead_days=1)
    lean = link_window(light(frame), D2, lookahead_days=1, fetch=fetch_from(frame))
    assert lean.conversations.equals(whole.conversations)
    assert lean.orphans.equals(whole.orphans)
    assert lean.decisions.equals(whole.decisions)


@pytest.mark.parametrize("change", ["row_gone", "other_history", "other_hash", "reordered"])
def test_content_that_is_not_the_linked_rows_is_refused(requests_factory, change):
    """A day written again between the window's read and the content's (a late log file): the
    content must be of the very rows linked, or linking stops instead of mixing the two."""
    f = requests_factory
    a = f.first("hi", "hello", "2024-01-01T10:00:00")
    b = f.follow(a, "and?", "more", "2024-01-01T10:01:00")
    c = f.first("other", "reply", "2024-01-01T11:00:00", ip="203.0.113.9", ua="UA-2")
    frame = raw_frame([a, b, c])
    fetch = fetch_from(frame)

    def changed(keys: pl.DataFrame) -> pl.DataFrame:
        got = fetch(keys)
        if change == "row_gone":
            return got.head(-1)
        if change == "other_history":
            return got.with_columns(pl.col("messages").list.head(0))
        if change == "other_hash":
            return got.with_columns(current_hash=pl.lit("rewritten"))
        return got.reverse()

    # The whole window links the two conversations with no fetch at all.
    assert link_window(frame, D1, lookahead_days=1).conversations.height == 2
    with pytest.raises(ContentChangedError, match="raw_requests of 2024-01-01 were written again"):
        link_window(light(frame), D1, lookahead_days=1, fetch=changed)


def test_a_light_window_without_its_history_lengths_is_refused(requests_factory):
    frame = raw_frame([requests_factory.first("hi", "hello", "2024-01-01T10:00:00")])
    with pytest.raises(ValueError, match=MESSAGE_COUNT):
        link_window(light(frame).drop(MESSAGE_COUNT), D1, lookahead_days=1, fetch=fetch_from(frame))
