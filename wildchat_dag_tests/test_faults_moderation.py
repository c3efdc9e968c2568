"""API faults through the real ``openai`` client against the local Moderation API server
(127.0.0.1), each run through ``score_day`` and the real results cache in DuckDB.

For every fault: the final status of every input (scored once, or a status that is never
clean), how many times each text was sent (the server counts them: an answered text is never
sent again), that the cache holds only validated results, and what a second run sends. Then the
``openai`` resource: a misconfiguration fails clearly, run config cannot pick the key's source
or send it elsewhere, and no text or key appears in an error. Deterministic: no backoff
(``backoff_base_s=0``) and only generous timeouts.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from datetime import date

import openai
import polars as pl
import pytest
from dagster import asset, materialize

from wildchat_dag.defs.moderation.moderation import (
    ResultCache,
    ScoredText,
    Unconfigured,
    openai_moderation_table,
    score_day,
    toxic_flags,
)
from wildchat_dag.defs.moderation.openai_moderation import (
    ModerationSettings,
    OpenAIModerationScorer,
    result_problem,
)
from wildchat_dag.defs.moderation.resource import (
    OpenAIConfigError,
    OpenAIModerationResource,
    base_url_problem,
)
from wildchat_dag.resources.duckdb_io import locked_connection
from wildchat_dag_tests.moderation_server import Fault, ModerationServer

DAY = date(2024, 5, 1)
KEY = "sk-test-0123456789abcdefSECRET"
SALT = "ip-salt-do-not-send-0123456789"
TEXTS = ("the first text", "I will kill the process", "a third, calm text")


@pytest.fixture
def server() -> Iterator[ModerationServer]:
    with ModerationServer() as s:
        yield s


@pytest.fixture
def cache(tmp_path) -> ResultCache:
    return ResultCache(functools.partial(locked_connection, str(tmp_path / "cache.duckdb")))


def linked(*texts: str) -> pl.DataFrame:
    """One linked conversation per text (a user turn each)."""
    return pl.DataFrame(
        [
            {
                "conversation_id": 100 + n,
                "conversation": [{"turn_identifier": 100 + n, "role": "user", "content": text}],
            }
            for n, text in enumerate(texts)
        ]
    )


def scorer(server: ModerationServer, timeout_s: float = 10.0, slot=None, **settings):
    client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=timeout_s)
    config = {"backoff_base_s": 0.0, "backoff_max_s": 0.0, "max_attempts": 3, **settings}
    return OpenAIModerationScorer(
        client, settings=ModerationSettings(**config), seed=0, request_slot=slot
    )


def statuses(scores) -> dict[str, str]:
    table = scores.utterances
    return dict(zip(table["content"].to_list(), table["status"].to_list(), strict=True))


def cached(cache: ResultCache, model: str = "omni-moderation-latest") -> dict[str, dict]:
    """The cache's rows by sha: status and result, as stored."""
    with cache.connect() as con:
        rows = con.execute(
            "SELECT content_sha256, coalesce(status, 'scored'), result FROM main.moderation_cache "
            "WHERE scorer = 'openai' AND model = ?",
            [model],
        ).fetchall()
    return {sha: {"status": status, "result": json.loads(result)} for sha, status, result in rows}


def assert_cache_valid(cache: ResultCache) -> None:
    for row in cached(cache).values():
        if row["status"] == "scored":
            assert result_problem(row["result"]) is None
        else:
            assert row["status"] == "rejected" and row["result"] == {}


def sent(server: ModerationServer, *texts: str) -> list[int]:
    return [server.sent_count(t) for t in texts]


def never_clean(day_scores) -> None:
    """Every utterance OpenAI did not score is unknown to the toxic rule (with no Detoxify),
    never clean, and has no flag."""
    table = openai_moderation_table(day_scores).utterances
    no_detoxify = table.select(
        "conversation_id", "utterance_index", "content_sha256", status=pl.lit("not_configured")
    ).with_columns(toxicity=pl.lit(None, pl.Float64))
    contents = day_scores.utterances["content"].to_list()
    flags = toxic_flags(DAY, linked(*contents), table, no_detoxify).utterances
    unscored = table.filter(pl.col("status") != "scored")
    assert unscored.height and unscored["flagged"].is_null().all()
    unknown = flags.join(unscored.select("conversation_id"), on="conversation_id")
    assert unknown.height == unscored.height and unknown["toxic"].is_null().all()


# -- one result of an answer is broken: the others are kept, only it is sent again ----------------

RESULT_FAULTS = [
    "empty_categories",
    "null_flagged",
    "missing_category",
    "score_out_of_range",
    "nan_score",
    "string_score",
]


@pytest.mark.parametrize("kind", RESULT_FAULTS)
def test_a_broken_result_is_sent_again_alone_and_its_neighbours_are_kept(server, cache, kind):
    server.inject(Fault(kind, index=1))  # type: ignore[arg-type]
    scores = score_day(DAY, linked(*TEXTS), scorer(server), cache)
    assert statuses(scores) == dict.fromkeys(TEXTS, "scored")
    # The broken one once more, alone; its neighbours were answered and are never re-sent.
    assert sent(server, *TEXTS) == [1, 2, 1]
    assert server.requests == [list(TEXTS), [TEXTS[1]]]
    assert scores.stats["retries"] == {"invalid_answer": 1}
    assert_cache_valid(cache)
    assert len(cached(cache)) == 3
    table = openai_moderation_table(scores).utterances.sort("conversation_id")
    assert table["flagged"].to_list() == [False, True, False]


def test_a_result_broken_every_time_is_invalid_never_clean_and_not_cached(server, cache):
    # The first answer breaks the middle result; both retries (it alone) break it again.
    server.inject(Fault("null_flagged", index=1), Fault("empty_categories"), Fault("nan_score"))
    scores = score_day(DAY, linked(*TEXTS), scorer(server, max_attempts=3), cache)
    assert statuses(scores) == {
        TEXTS[0]: "scored",
        TEXTS[1]: "invalid_answer",
        TEXTS[2]: "scored",
    }
    assert sent(server, *TEXTS) == [1, 3, 1]
    detail = scores.utterances.filter(pl.col("status") == "invalid_answer")["detail"][0]
    assert "invalid answer after 3 attempts" in detail and TEXTS[1] not in detail
    assert_cache_valid(cache)
    assert len(cached(cache)) == 2  # the invalid one is not cached
    never_clean(scores)

    # The next run sends only the unscored text.
    server.reset_log()
    again = score_day(DAY, linked(*TEXTS), scorer(server), cache)
    assert server.requests == [[TEXTS[1]]]
    assert statuses(again) == dict.fromkeys(TEXTS, "scored")


# -- the whole answer is unusable: the request is sent again ----------------------------------

WHOLE_ANSWER_FAULTS = [
    ("html_body", "invalid_answer"),
    ("wrong_content_type", "invalid_answer"),
    ("wrong_json_type", "invalid_answer"),
    ("short_answer", "invalid_answer"),
    ("long_answer", "invalid_answer"),
    ("malformed", "invalid_answer"),
    ("reset", "connection"),
    ("close", "connection"),
    ("server_error", "server_error"),
    ("rate_limit", "rate_limit"),
]


@pytest.mark.parametrize(("kind", "reason"), WHOLE_ANSWER_FAULTS)
def test_an_unusable_answer_is_retried_and_never_read_as_clean(server, cache, kind, reason):
    server.inject(Fault(kind))  # type: ignore[arg-type]
    scores = score_day(DAY, linked(*TEXTS), scorer(server), cache)
    assert statuses(scores) == dict.fromkeys(TEXTS, "scored")
    # Results are positional: an answer of the wrong length or shape cannot be matched to the
    # inputs, so the request goes again, once, and is answered.
    assert sent(server, *TEXTS) == [2, 2, 2]
    assert scores.stats["retries"] == {reason: 1}
    assert_cache_valid(cache)
    assert len(cached(cache)) == 3


def test_an_html_answer_every_time_ends_invalid_and_the_next_run_sends_it_again(server, cache):
    server.inject(*[Fault("html_body")] * 3)
    scores = score_day(DAY, linked(*TEXTS), scorer(server, max_attempts=3), cache)
    assert statuses(scores) == dict.fromkeys(TEXTS, "invalid_answer")
    assert "not JSON (content type text/html)" in scores.utterances["detail"][0]
    assert sent(server, *TEXTS) == [3, 3, 3]
    assert cached(cache) == {}
    never_clean(scores)
    server.reset_log()
    again = score_day(DAY, linked(*TEXTS), scorer(server), cache)
    assert statuses(again) == dict.fromkeys(TEXTS, "scored")
    assert sent(server, *TEXTS) == [1, 1, 1]


def test_a_base_url_that_never_answers_the_api_stops_the_run(server, cache):
    server.inject(*[Fault("html_body")] * 10)
    many = [f"text {i}" for i in range(6)]
    s = scorer(server, max_attempts=2, batch_size=2, max_in_flight=1, refusals_before_giving_up=4)
    with pytest.raises(Exception, match="answers were invalid for the first 4 texts") as failed:
        score_day(DAY, linked(*many), s, cache)
    assert not any(t in str(failed.value) for t in many)
    assert cached(cache) == {}


def test_a_timeout_sends_the_request_again_once(server, cache):
    # The server answers after 3 s, long after the 1 s timeout: a generous margin either way.
    server.inject(Fault("slow", delay_s=3.0))
    scores = score_day(DAY, linked(*TEXTS), scorer(server, timeout_s=1.0), cache)
    assert statuses(scores) == dict.fromkeys(TEXTS, "scored")
    assert sent(server, *TEXTS) == [2, 2, 2]
    assert scores.stats["retries"] == {"timeout": 1}


def test_429_waits_for_retry_after_then_sends_again(server, cache):
    waits: list[float] = []
    server.inject(Fault("rate_limit", retry_after=0.2))
    s = scorer(server)
    s._sleep = lambda seconds: waits.append(seconds)  # recorded, not slept: deterministic
    scores = score_day(DAY, linked(*TEXTS), s, cache)
    assert statuses(scores) == dict.fromkeys(TEXTS, "scored")
    assert sent(server, *TEXTS) == [2, 2, 2]
    assert waits and max(waits) >= 0.15


# -- sub-batches: a failure never re-bills what another part of the batch was answered ---------


def test_a_failure_after_part_of_a_refused_batch_was_answered_bills_nothing_twice(server, cache):
    # The batch is refused whole; its first half is answered; the second half meets an outage.
    many = [f"text {i}" for i in range(4)]
    server.inject(Fault("too_long"))
    server.fail_after(1)
    s = scorer(server, batch_size=4, max_in_flight=1, max_attempts=2)
    with pytest.raises(Exception, match="server_error after 2 attempts"):
        score_day(DAY, linked(*many), s, cache)
    assert sent(server, *many) == [2, 2, 3, 3]
    # The answered half is cached at once, though its batch failed.
    assert len(cached(cache)) == 2
    server.fail_after(None)
    server.reset_log()
    scores = score_day(DAY, linked(*many), scorer(server), cache)
    assert server.requests == [many[2:]]
    assert set(statuses(scores).values()) == {"scored"}
    assert scores.stats["cache_hits"] == 2


# -- refusals are final, cached, and a re-run makes progress past them --------------------------


def test_a_refused_text_is_rejected_cached_and_not_sent_again(server, cache):
    server.inject(Fault("too_long"), Fault("too_long"))
    day = linked("odd", "fine")
    scores = score_day(DAY, day, scorer(server, batch_size=2), cache)
    assert statuses(scores) == {"odd": "rejected", "fine": "scored"}
    assert server.requests == [["odd", "fine"], ["odd"], ["fine"]]
    assert sorted(row["status"] for row in cached(cache).values()) == ["rejected", "scored"]
    assert_cache_valid(cache)
    never_clean(scores)
    server.reset_log()
    again = score_day(DAY, day, scorer(server, batch_size=2), cache)
    assert server.requests == []
    assert statuses(again) == {"odd": "rejected", "fine": "scored"}
    assert "refused by the API: 400" in again.utterances["detail"][0]


def test_a_day_with_many_refusals_always_makes_progress(server, cache):
    # Texts longer than the API's limit and too short to split: refused for good. 24 of them
    # come first, so the first run gives up after 20 refusals with nothing accepted.
    server.max_input_chars = 20
    refused = [f"a refused text, long enough {i:02d}" for i in range(24)]
    fine = [f"ok {i}" for i in range(5)]
    day = linked(*refused, *fine)
    settings = dict(batch_size=1, max_in_flight=1, split_min_chars=1_000)
    with pytest.raises(Exception, match="refused the first 20 texts and accepted none"):
        score_day(DAY, day, scorer(server, **settings), cache)
    assert len(cached(cache)) == 20
    # The re-run does not send the 20 cached refusals; the rest go through.
    server.reset_log()
    scores = score_day(DAY, day, scorer(server, **settings), cache)
    assert sorted(t for [t] in server.requests) == sorted([*refused[20:], *fine])
    by_status = scores.stats["by_status"]
    assert by_status == {"rejected": 24, "scored": 5}
    # Cache hits count as progress: with all of it cached, a third run sends nothing at all.
    server.reset_log()
    score_day(DAY, day, scorer(server, **settings), cache)
    assert server.requests == []


def test_refusals_with_only_cache_hits_as_successes_do_not_stop_the_run(server, cache):
    server.max_input_chars = 20
    fine = [f"ok {i}" for i in range(3)]
    score_day(DAY, linked(*fine), scorer(server), cache)
    refused = [f"a refused text, long enough {i:02d}" for i in range(4)]
    s = scorer(server, batch_size=1, max_in_flight=1, refusals_before_giving_up=2)
    scores = score_day(DAY, linked(*fine, *refused), s, cache)
    assert scores.stats["by_status"] == {"rejected": 4, "scored": 3}


# -- the cache, and the request slot -----------------------------------------------------------


def test_an_invalid_result_cached_by_an_older_version_is_scored_again(server, cache):
    [sha] = score_day(DAY, linked(TEXTS[1]), Unconfigured("openai", "-"), cache).utterances[
        "content_sha256"
    ]
    cache.put(
        "openai",
        "omni-moderation-latest",
        [ScoredText(sha, {"flagged": False, "categories": {}, "category_scores": {}})],
        DAY,
    )
    scores = score_day(DAY, linked(TEXTS[1]), scorer(server), cache)
    assert statuses(scores) == {TEXTS[1]: "scored"}
    assert scores.stats["invalid_cached_results_dropped"] == 1
    assert openai_moderation_table(scores).utterances["flagged"].to_list() == [True]
    assert_cache_valid(cache)


def test_each_request_holds_a_slot_only_while_in_flight(server, cache):
    held = {"now": 0, "entries": 0}
    sleeps_while_held: list[int] = []

    @contextlib.contextmanager
    def slot() -> Iterator[None]:
        held["now"] += 1
        held["entries"] += 1
        try:
            yield
        finally:
            held["now"] -= 1

    server.inject(Fault("server_error"), Fault("null_flagged", index=0))
    s = scorer(server, slot=slot, max_in_flight=1)
    s._sleep = lambda seconds: sleeps_while_held.append(held["now"])
    score_day(DAY, linked(*TEXTS), s, cache)
    # Three requests (500, an answer with one broken result, that one alone), three slots.
    assert held["entries"] == len(server.requests) == 3
    assert sleeps_while_held and set(sleeps_while_held) == {0}


# -- the resource: misconfiguration, where the key comes from, where it goes ----------------------


@pytest.fixture
def env(monkeypatch):
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_API_KEY_FILE",
        "OPENAI_BASE_URL",
        "WILDCHAT_OPENAI_BASE_URL_ALLOWLIST",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WILDCHAT_IP_SALT", SALT)
    return monkeypatch


def test_no_key_skips_openai_only_when_nothing_is_configured(env):
    assert isinstance(OpenAIModerationResource().scorer(), Unconfigured)
    with pytest.raises(OpenAIConfigError, match="settings of its own but no API key: set OPENAI"):
        OpenAIModerationResource(batch_size=2).scorer()
    with pytest.raises(OpenAIConfigError, match="api_key is empty"):
        OpenAIModerationResource(api_key="  ").scorer()
    # A launchpad config that leaves the key out still finds OPENAI_API_KEY.
    env.setenv("OPENAI_API_KEY", KEY)
    assert isinstance(OpenAIModerationResource(batch_size=2).scorer(), OpenAIModerationScorer)


def test_the_key_can_come_from_a_file(env, tmp_path):
    path = tmp_path / "openai_api_key"
    path.write_text(KEY + "\n")
    env.setenv("OPENAI_API_KEY_FILE", str(path))
    s = OpenAIModerationResource().scorer()
    assert isinstance(s, OpenAIModerationScorer) and s.client.api_key == KEY
    path.write_text("")
    with pytest.raises(OpenAIConfigError, match="OPENAI_API_KEY_FILE is empty"):
        OpenAIModerationResource().scorer()


def test_the_ip_salt_is_never_sent_as_the_key(env):
    with pytest.raises(OpenAIConfigError, match="equals WILDCHAT_IP_SALT") as refused:
        OpenAIModerationResource(api_key=SALT).scorer()
    assert SALT not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.openai.com/v1", True),
        ("https://api.openai.com/v1/", True),
        ("http://127.0.0.1:8080/v1", True),
        ("http://[::1]:8080/v1", True),
        ("http://localhost:4000/v1", True),
        ("http://api.openai.com/v1", False),  # the key in clear text
        ("https://api.openai.com.evil.example/v1", False),
        ("https://evil.example/v1", False),
        ("https://user:pw@api.openai.com/v1", False),
        ("https://gateway.internal/openai/v1", True),  # listed host
        ("http://litellm:4000/v1", True),  # listed URL prefix
        ("http://litellm:4001/v1", False),
        ("ftp://127.0.0.1/v1", False),
        (SALT, False),
    ],
)
def test_base_url_allowlist(url, allowed):
    listed = ("gateway.internal", "http://litellm:4000/v1")
    problem = base_url_problem(url, listed)
    assert (problem is None) is allowed
    if problem:
        assert url not in problem and "WILDCHAT_OPENAI_BASE_URL_ALLOWLIST" in problem


def test_the_resource_refuses_a_base_url_outside_the_allowlist(env):
    with pytest.raises(OpenAIConfigError, match="base_url is not allowed") as refused:
        OpenAIModerationResource(api_key=KEY, base_url="https://evil.example/v1").scorer()
    assert "evil" not in str(refused.value) and KEY not in str(refused.value)
    env.setenv("WILDCHAT_OPENAI_BASE_URL_ALLOWLIST", "https://evil.example")
    assert OpenAIModerationResource(api_key=KEY, base_url="https://evil.example/v1").scorer()
    env.delenv("WILDCHAT_OPENAI_BASE_URL_ALLOWLIST")
    # The operator's own OPENAI_BASE_URL is theirs to choose.
    env.setenv("OPENAI_BASE_URL", "https://proxy.example/v1")
    assert OpenAIModerationResource(api_key=KEY, base_url="https://proxy.example/v1").scorer()


@asset
def probe(openai: OpenAIModerationResource) -> str:
    """Builds the scorer the way openai_moderation does."""
    return type(openai.scorer()).__name__


def launch(run_config: dict) -> tuple[bool, str]:
    """Materialize ``probe`` with ``run_config`` (as the launchpad would); the failure text."""
    result = materialize(
        [probe],
        resources={"openai": OpenAIModerationResource()},
        run_config=run_config,
        raise_on_error=False,
    )
    failures = [e for e in result.all_events if e.is_failure]
    text = " ".join(f.event_specific_data.error.to_string() for f in failures)  # type: ignore[union-attr]
    return result.success, text


def openai_config(**config) -> dict:
    return {"resources": {"openai": {"config": config}}}


def test_run_config_cannot_choose_where_the_key_comes_from(env):
    env.setenv("OPENAI_API_KEY", KEY)
    ok, _ = launch(openai_config(api_key={"env": "OPENAI_API_KEY"}, batch_size=2))
    assert ok
    for config, setting in (
        ({"api_key": {"env": "WILDCHAT_IP_SALT"}}, "config.api_key reads an environment"),
        ({"model": {"env": "WILDCHAT_IP_SALT"}}, "config.model reads an environment"),
        ({"api_key": KEY}, "config.api_key is given as a value in run config"),
        ({"api_key_file": "/etc/hostname"}, "config.api_key_file is given as a value"),
        (
            {"api_key": {"env": "OPENAI_API_KEY"}, "base_url": "https://evil.example/v1"},
            "base_url is not allowed",
        ),
    ):
        ok, text = launch(openai_config(**config))
        assert not ok and setting in text, config
        assert SALT not in text and KEY not in text and "evil" not in text


def test_a_launchpad_config_without_a_key_fails_the_run_instead_of_skipping(env):
    ok, text = launch(openai_config(batch_size=2))
    assert not ok and "settings of its own but no API key: set OPENAI_API_KEY" in text
    # Nothing configured and no key: the demo, which skips OpenAI and says so.
    ok, _ = launch({})
    assert ok
