"""The OpenAI scorer: the real ``openai`` client against a local server that speaks the
Moderation API (127.0.0.1 only), with faults switched on per request."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from wildchat_dag.defs.moderation.moderation import merge_openai_results
from wildchat_dag.defs.moderation.openai_moderation import (
    ModerationFailed,
    ModerationSettings,
    OpenAIModerationScorer,
    retry_after_seconds,
    split_in_half,
)
from wildchat_dag_tests.moderation_server import Fault, ModerationServer
from wildchat_dag_tests.scoring import SavedResults, texts

FAST = dict(backoff_base_s=0.01, backoff_max_s=0.05)
KEPT = ("flagged", "categories", "category_scores")


@pytest.fixture
def server() -> Iterator[ModerationServer]:
    with ModerationServer() as s:
        yield s


class Sleeps:
    """Records each wait, and waits it."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)


def scorer(server: ModerationServer, timeout_s: float = 5.0, sleep=time.sleep, **settings):
    client = openai.OpenAI(
        base_url=server.base_url, api_key="test-key", max_retries=0, timeout=timeout_s
    )
    return OpenAIModerationScorer(
        client, settings=ModerationSettings(**{**FAST, **settings}), sleep=sleep, seed=0
    )


def expected(text: str) -> dict:
    result = ModerationServer.expected_result(text)
    return {k: result[k] for k in KEPT}


def test_batches_go_out_concurrently_and_every_text_comes_back(server):
    server.latency_s = 0.2
    contents = [f"text number {i}" for i in range(50)] + ["I will kill the process"]
    saved = SavedResults()
    report = scorer(server, batch_size=8, max_in_flight=4).score(texts(*contents), saved)

    assert len(server.requests) == 7 and max(len(r) for r in server.requests) == 8
    # Four requests in flight at once, never more.
    assert server.peak_in_flight == 4
    assert sorted(server.scored_inputs) == sorted(contents)
    assert {r.content_sha256 for r in saved} == set(texts(*contents)["content_sha256"])
    results = {text: saved.of(text) for text in contents}
    for text, scored in results.items():
        assert scored.result == expected(text)
        assert scored.model_version == server.model_version and scored.parts == 1
    assert results["I will kill the process"].result["flagged"] is True
    assert report.stats["api_requests"] == 7 and report.stats["retries"] == {}


def test_batches_are_cut_by_characters_too(server):
    s = scorer(server, batch_size=100, batch_chars=1_000)
    batches = s.batches(texts(*["x" * 400 + str(i) for i in range(5)], "y" * 5_000, "z"))
    assert [b.height for b in batches] == [2, 2, 1, 1, 1]


def test_429_waits_at_least_retry_after_and_pauses_every_worker(server):
    server.inject(Fault("rate_limit", retry_after=0.4))
    sleeps = Sleeps()
    saved = SavedResults()
    report = scorer(server, sleep=sleeps, batch_size=2, max_in_flight=2).score(
        texts("a", "b", "c", "d"), saved
    )
    assert len(saved) == 4
    assert report.stats["retries"] == {"rate_limit": 1}
    # The backoff alone is at most 0.05 s: the wait is Retry-After's.
    assert max(sleeps.waits) >= 0.35


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault("server_error"), "server_error"),
        (Fault("malformed"), "invalid_answer"),
        (Fault("slow", delay_s=1.5), "timeout"),
        (Fault("rate_limit"), "rate_limit"),
    ],
)
def test_transient_faults_are_retried(server, fault, reason):
    server.inject(fault, fault)
    saved = SavedResults()
    report = scorer(server, timeout_s=0.5).score(texts("hello", "I hate you"), saved)
    assert report.stats["retries"] == {reason: 2}
    assert report.stats["api_requests"] == 3
    assert {r.result["flagged"] for r in saved} == {False, True}


def test_exhausted_retries_fail_loudly_after_saving_what_was_paid_for(server):
    server.fail_after(2)
    saved = SavedResults()
    contents = [f"t{i}" for i in range(10)]
    with pytest.raises(ModerationFailed) as failed:
        scorer(server, batch_size=2, max_in_flight=1, max_attempts=3).score(texts(*contents), saved)
    message = str(failed.value)
    assert "server_error after 3 attempts" in message
    assert "4 of 10 texts were scored and cached first" in message
    # What the API answered (and billed) is saved; nothing else.
    assert sorted(r.content_sha256 for r in saved) == sorted(
        texts(*server.scored_inputs)["content_sha256"]
    )
    # The queued batches were not sent once the failure was known.
    assert len(server.requests) == 2 + 3


def test_a_text_refused_as_too_long_is_split_and_merged(server):
    server.max_input_chars = 300
    long_text = ("calm words " * 45) + "and then I kill it " + ("calm words " * 45)
    assert len(long_text) > 900
    saved = SavedResults()
    report = scorer(server, batch_size=4, split_min_chars=100).score(
        texts("short one", long_text, "short two"), saved
    )
    results = {text: saved.of(text) for text in ("short one", long_text, "short two")}
    assert results["short one"].result == expected("short one")
    split = results[long_text]
    assert split.parts == 4
    # The merged result equals OR-ing and maxing the parts the server actually scored.
    parts = [t for t in server.scored_inputs if t not in ("short one", "short two")]
    assert "".join(parts) == long_text
    assert split.result == merge_openai_results(expected(p) for p in parts)
    assert split.result["flagged"] is True
    assert split.result["category_scores"]["violence"] == pytest.approx(0.9)
    assert report.stats["splits"] == 3 and report.stats["rejected_texts"] == 0


def test_a_short_text_refused_for_good_is_rejected_with_the_reason(server):
    server.inject(Fault("too_long"), Fault("too_long"))
    saved = SavedResults()
    report = scorer(server, batch_size=2).score(texts("odd", "fine"), saved)
    # The batch is halved: "odd" is refused alone, "fine" goes through.
    assert server.requests == [["odd", "fine"], ["odd"], ["fine"]]
    [(sha, reason)] = report.rejected.items()
    assert sha == texts("odd")["content_sha256"][0]
    assert "refused by the API: 400" in reason and "maximum" in reason
    # The refusal is final, so it is saved (cached) too, with no result: a re-run skips it.
    assert saved.of("fine").status == "scored"
    refusal = saved.of("odd")
    assert refusal.status == "rejected" and refusal.result == {} and refusal.detail == reason


def test_an_api_that_refuses_everything_stops_the_run(server):
    server.max_input_chars = 0
    with pytest.raises(ModerationFailed, match="refused the first 5 texts and accepted none"):
        scorer(server, refusals_before_giving_up=5, batch_size=1, max_in_flight=1).score(
            texts(*[f"t{i}" for i in range(30)]), SavedResults()
        )
    assert len(server.requests) < 10


def test_a_wrong_key_or_model_is_not_retried(server):
    client = openai.OpenAI(base_url=server.base_url + "/nowhere", api_key="k", max_retries=0)
    with pytest.raises(ModerationFailed, match="answered 404"):
        OpenAIModerationScorer(client).score(texts("a"), SavedResults())


def test_retry_after_forms():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert (
        retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470) == 10
    )
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds(None) is None


def test_split_in_half_cuts_at_a_space_near_the_middle():
    assert split_in_half("aaaa bbbb") == ("aaaa", " bbbb")
    assert split_in_half("x" * 10) == ("x" * 5, "x" * 5)
    left, right = split_in_half("word " * 101)
    assert left + right == "word " * 101 and abs(len(left) - len(right)) <= 5
