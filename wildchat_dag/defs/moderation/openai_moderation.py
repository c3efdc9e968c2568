"""OpenAI Moderation over the official client: batched, concurrent, retried, split when refused.

- Batches: up to ``batch_size`` texts (and ``batch_chars`` characters) per request, with at most
  ``max_in_flight`` requests at once.
- Answers are checked before anything is kept: the body must be JSON with a ``results`` list of
  exactly one result per input, each with a boolean ``flagged`` and every category the spec
  lists as a boolean flag and a finite score in [0, 1]. An answer that fails (an HTML error
  page, a short or long list, ``categories: {}``, ``flagged: null``, a NaN score) is never read
  as clean. A wrong count or an unreadable body makes the whole answer untrustworthy (results
  are positional), so the request is sent again; where only some results fail, the valid ones
  are kept and only the others are sent again. A text whose answers stay invalid through every
  attempt ends ``invalid_answer``: not scored, not cached, sent again by the next run.
- Retries: 429, 5xx, timeouts, dropped connections and invalid answers are retried with
  exponential backoff and jitter, waiting at least what ``Retry-After`` asks. A 429 pauses every
  worker, not only the one that got it. An exhausted quota, a bad key or a missing model is not
  retried: it fails the partition at once, saying so. A retry sends only the inputs still
  unanswered.
- Refused inputs (HTTP 400): a refused batch is halved until the refused text is alone; a text
  refused alone is split in half near a space and the halves are scored (WildChat's method),
  the merged result OR-ing the flags and keeping the highest scores. A text too short to split
  is ``rejected``, with the API's message: a final status, cached like a result, so a re-run
  does not send it again.
- Every final result (scored or rejected) is handed to ``save`` as soon as it arrives, so a
  failure, a retry or a crash never bills an answered input again.
"""

from __future__ import annotations

import contextlib
import email.utils
import itertools
import json
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from wildchat_dag.core.sanitize import sanitize_text
from wildchat_dag.core.schema import OPENAI_CATEGORIES
from wildchat_dag.defs.moderation.moderation import (
    INVALID_ANSWER,
    REJECTED,
    SCORED,
    ScoredText,
    ScoringReport,
    merge_openai_results,
)

if TYPE_CHECKING:
    import openai

DEFAULT_MODEL = "omni-moderation-latest"
_KEPT = ("flagged", "categories", "category_scores")
# Category names an answer may carry and an error message may name; any other key is a
# server's own, possibly anything, and is not echoed.
_KNOWN_CATEGORIES = frozenset(
    (*OPENAI_CATEGORIES, "illicit", "illicit/violent", "self-harm/instructions")
)
_MEDIA_TYPE = re.compile(r"[\w.+-]{1,40}/[\w.+-]{1,60}")
# The API's own messages are kept this short in details and errors.
_MESSAGE_CHARS = 200

RequestSlot = Callable[[], contextlib.AbstractContextManager[object]]


@dataclass(frozen=True)
class ModerationSettings:
    batch_size: int = 32
    batch_chars: int = 100_000
    max_in_flight: int = 4
    max_attempts: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    # A refused text shorter than this is not split: the refusal is not about its length.
    split_min_chars: int = 1_000
    # This many refused (or invalid-answer) texts before any success, cache hits included:
    # the API refuses everything (a wrong model?) or is not the API (a wrong base URL?).
    refusals_before_giving_up: int = 20
    # At most this many seconds between two saves to the cache (a result arriving wakes the
    # saver at once; this bounds how long a save waits for the next one).
    save_every_s: float = 1.0


class ModerationFailed(RuntimeError):
    """The API could not score the texts; what was scored before is cached."""


class _Refused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Stopped(Exception):
    """Another batch failed for good: send nothing more."""


class _Retryable(Exception):
    def __init__(self, reason: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class _Outcome:
    """One input's final outcome: a validated result, or why there is none (``status``)."""

    result: dict[str, Any] | None
    parts: int
    detail: str | None = None
    model_version: str | None = None
    status: str = SCORED


def retry_after_seconds(
    headers: Mapping[str, str] | None, now: float | None = None
) -> float | None:
    """What ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date) asks, if anything."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def split_in_half(text: str) -> tuple[str, str]:
    """Two halves, cut at the whitespace nearest the middle (within a tenth of the text), so a
    word is not cut in two where that can be helped."""
    middle = len(text) // 2
    reach = max(1, len(text) // 10)
    for offset in range(reach):
        for at in (middle - offset, middle + offset):
            if 0 < at < len(text) and text[at].isspace():
                return text[:at], text[at:]
    return text[:middle], text[middle:]


# -- what a valid answer is ---------------------------------------------------------------------


def _category_name(name: object) -> str:
    return str(name) if name in _KNOWN_CATEGORIES else "an unknown category"


def _valid_score(score: object) -> bool:
    # bool is an int subclass: True is not a score.
    return (
        isinstance(score, int | float)
        and not isinstance(score, bool)
        and math.isfinite(score)
        and 0.0 <= score <= 1.0
    )


def result_problem(result: object) -> str | None:
    """Why ``result`` (one item of an answer's ``results``) is not a usable moderation result,
    or None. A usable one has a boolean ``flagged`` and, for every category of the spec, a
    boolean flag and a finite score in [0, 1]; any further category must be as well formed.
    The message names only known categories: a server's keys are not echoed."""
    if not isinstance(result, Mapping):
        return "a result is not an object"
    if not isinstance(result.get("flagged"), bool):
        return "flagged is not a boolean"
    categories, scores = result.get("categories"), result.get("category_scores")
    if not isinstance(categories, Mapping) or not isinstance(scores, Mapping):
        return "categories or category_scores is not an object"
    missing = [c for c in OPENAI_CATEGORIES if c not in categories or c not in scores]
    if missing:
        return f"{len(missing)} categories missing (such as {missing[0]})"
    for name, flag in categories.items():
        if not isinstance(flag, bool):
            return f"the flag of {_category_name(name)} is not a boolean"
    for name, score in scores.items():
        if not _valid_score(score):
            return f"the score of {_category_name(name)} is not a number in [0, 1]"
    return None


def _parse_answer(
    content_type: str | None, body: bytes, inputs: int
) -> tuple[list[Any], str | None]:
    """A 200 answer's results (still to validate one by one) and model, or ``_Retryable`` when
    the whole answer is unusable. Results are positional, so a list of the wrong length cannot
    be matched to the inputs: none of it is kept."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        shown = media_type if _MEDIA_TYPE.fullmatch(media_type) else "none or unreadable"
        raise _Retryable("invalid_answer", f"the answer is not JSON (content type {shown})")
    try:
        answer = json.loads(body)
    except ValueError:
        raise _Retryable("invalid_answer", "the answer is not valid JSON") from None
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise _Retryable("invalid_answer", "the answer's results are not a list")
    if len(results) != inputs:
        raise _Retryable("invalid_answer", f"{len(results)} results for {inputs} inputs")
    model = answer.get("model")
    return results, model if isinstance(model, str) else None


def _api_message(exc: openai.APIStatusError) -> str:
    """The status and the API's message, masked (an error page may echo an input or a key) and
    kept short."""
    body = exc.body
    message = None
    if isinstance(body, dict):
        message = body.get("message")
        error = body.get("error")
        if not message and isinstance(error, dict):
            message = error.get("message")
    text = f"{exc.status_code} {message}" if isinstance(message, str) else str(exc.status_code)
    return sanitize_text(text, _MESSAGE_CHARS)


def _classify(exc: Exception) -> Exception:
    """The client's error as: refused input, retryable fault, or a failure to stop on."""
    # Imported here: the client's types take a second to import, in every step process.
    import openai

    if isinstance(exc, _Retryable):
        return exc
    if isinstance(exc, openai.BadRequestError):
        return _Refused(_api_message(exc))
    if isinstance(exc, openai.RateLimitError):
        if exc.code == "insufficient_quota":
            return ModerationFailed(f"the API key's quota is used up: {_api_message(exc)}")
        headers = exc.response.headers if exc.response is not None else None
        return _Retryable("rate_limit", _api_message(exc), retry_after_seconds(headers))
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500:
            headers = exc.response.headers if exc.response is not None else None
            return _Retryable("server_error", _api_message(exc), retry_after_seconds(headers))
        return ModerationFailed(
            f"the API answered {_api_message(exc)} (check the API key, the base URL and the model)"
        )
    if isinstance(exc, openai.APITimeoutError):
        return _Retryable("timeout", "request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return _Retryable("connection", "connection failed or dropped mid-answer")
    if isinstance(exc, ValueError | openai.APIResponseValidationError):
        return _Retryable("invalid_answer", f"unparseable answer ({type(exc).__name__})")
    return exc


class OpenAIModerationScorer:
    """Scores texts with ``client.moderations.create``; the client should not retry itself
    (``max_retries=0``): the retry policy is this class's.

    ``request_slot``, when given, is entered around each HTTP request (each attempt, never the
    backoff between attempts): a limit on requests in flight shared with other processes.
    """

    name = "openai"
    # score_day passes the day's cached results, which count as the API accepting texts.
    counts_cache_hits = True

    def __init__(
        self,
        client: openai.OpenAI,
        model: str = DEFAULT_MODEL,
        settings: ModerationSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
        request_slot: RequestSlot | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.settings = settings or ModerationSettings()
        self._sleep = sleep
        self._random = random.Random(seed)
        self._request_slot: RequestSlot = request_slot or contextlib.nullcontext
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._counts: Counter[str] = Counter()
        self._stopped = threading.Event()
        # Final outcomes not yet saved, and the event that wakes the saver when one arrives.
        self._arrived: list[ScoredText] = []
        self._arrival = threading.Event()
        self._rejected: dict[str, str] = {}
        self._invalid: dict[str, str] = {}
        self._cache_hits = 0

    @staticmethod
    def cached_result_problem(result: Mapping[str, Any]) -> str | None:
        """Why a cached result is unusable (score_day drops such rows and scores again)."""
        return result_problem(result)

    # -- requests --------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(
            self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1)
        )
        with self._lock:
            delay = ceiling / 2 + self._random.uniform(0, ceiling / 2)
        return max(delay, retry_after or 0.0)

    def _wait_for_pause(self) -> None:
        while (wait_s := self._paused_until - time.monotonic()) > 0:
            self._sleep(wait_s)

    def _send(self, texts: list[str]) -> tuple[list[Any], str | None]:
        """One HTTP request, holding a request slot only while it is in flight. The raw body is
        read, not the client's typed object: that turns a non-JSON 200 into a str and a
        missing field into None, where this needs to tell them from a result."""
        with self._request_slot():
            raw = self.client.moderations.with_raw_response.create(input=texts, model=self.model)
            body = raw.content
        return _parse_answer(raw.headers.get("content-type"), body, len(texts))

    def _request(
        self, texts: list[str], final: Callable[[int, _Outcome], None]
    ) -> tuple[list[int], str | None]:
        """Send ``texts`` until each has a valid result (handed to ``final`` as it arrives),
        the API refuses what is left, or the attempts run out. A retry sends only the inputs
        still unanswered. Returns the refused inputs and the API's message."""
        todo = list(range(len(texts)))
        problem: _Retryable | None = None
        for attempt in range(1, self.settings.max_attempts + 1):
            self._wait_for_pause()
            if self._stopped.is_set():
                raise _Stopped()
            sending = [texts[i] for i in todo]
            self._count("api_requests")
            self._count("api_inputs", len(sending))
            try:
                results, version = self._send(sending)
            except Exception as exc:
                classified = _classify(exc)
                if isinstance(classified, _Refused):
                    return todo, classified.message
                if not isinstance(classified, _Retryable):
                    raise classified from exc
                problem = classified
            else:
                self._count("scored_requests")
                invalid: list[int] = []
                why = ""
                for i, result in zip(todo, results, strict=True):
                    reason = result_problem(result)
                    if reason is None:
                        # Only what the spec keeps: category_applied_input_types is "text".
                        kept = {k: result[k] for k in _KEPT}
                        final(i, _Outcome(kept, 1, model_version=version))
                    else:
                        invalid.append(i)
                        why = reason
                self._count("api_inputs_scored", len(todo) - len(invalid))
                if not invalid:
                    return [], None
                todo = invalid
                problem = _Retryable(
                    "invalid_answer", f"{len(invalid)} of {len(sending)} results invalid: {why}"
                )
            self._count(f"retries/{problem.reason}")
            if attempt == self.settings.max_attempts:
                break
            delay = self._backoff(attempt, problem.retry_after)
            if problem.reason == "rate_limit":
                with self._lock:
                    self._paused_until = max(self._paused_until, time.monotonic() + delay)
                self._wait_for_pause()
            else:
                self._sleep(delay)
        assert problem is not None
        attempts = self.settings.max_attempts
        if problem.reason != "invalid_answer":
            raise ModerationFailed(f"{problem.reason} after {attempts} attempts: {problem}")
        # The API answers, but not with results: these texts stay unscored (never clean) and
        # uncached, for the next run to send again.
        for i in todo:
            final(
                i,
                _Outcome(
                    None,
                    0,
                    f"invalid answer after {attempts} attempts: {problem}",
                    status=INVALID_ANSWER,
                ),
            )
        self._count("invalid_texts", len(todo))
        self._give_up_if_nothing_works()
        return [], None

    def _score_texts(self, texts: list[str], shas: list[str] | None) -> list[_Outcome]:
        """Final outcomes of ``texts``. ``shas`` names them when they are a day's texts (not
        parts of a split one): their outcomes are emitted, for saving, as each arrives."""
        outcomes: list[_Outcome | None] = [None] * len(texts)

        def final(i: int, outcome: _Outcome) -> None:
            outcomes[i] = outcome
            if shas is not None:
                self._emit(shas[i], outcome)

        refused, message = self._request(texts, final)
        if refused:
            self._count("refused_requests")
            if len(refused) > 1:
                half = len(refused) // 2
                for part in (refused[:half], refused[half:]):
                    sub = self._score_texts(
                        [texts[i] for i in part], [shas[i] for i in part] if shas else None
                    )
                    for i, outcome in zip(part, sub, strict=True):
                        outcomes[i] = outcome
            else:
                [i] = refused
                final(i, self._refused_alone(texts[i], message or "refused"))
        assert all(o is not None for o in outcomes)
        return outcomes  # type: ignore[return-value]

    def _refused_alone(self, text: str, message: str) -> _Outcome:
        """A text the API refused on its own: scored in halves (WildChat's method), or, too
        short to split, rejected for good."""
        if len(text) < max(2, self.settings.split_min_chars):
            self._count("rejected_texts")
            return _Outcome(None, 0, f"refused by the API: {message}", status=REJECTED)
        self._count("splits")
        halves = self._score_texts(list(split_in_half(text)), None)
        unscored = [h for h in halves if h.status != SCORED]
        if unscored:
            # A refused part makes the whole text refused for good; an invalid answer for a
            # part leaves it to the next run.
            worst = next((h for h in unscored if h.status == REJECTED), unscored[0])
            return _Outcome(None, 0, worst.detail, status=worst.status)
        merged = merge_openai_results(h.result for h in halves if h.result)
        parts = sum(h.parts for h in halves)
        return _Outcome(merged, parts, model_version=halves[0].model_version)

    def _give_up_if_nothing_works(self) -> None:
        """Stop when the API has accepted nothing: the first ``refusals_before_giving_up``
        texts all refused (a wrong model) or all answered invalidly (not the API: a wrong base
        URL). Cached results count as accepted, so a re-run always gets past old refusals."""
        with self._lock:
            rejected, invalid = self._counts["rejected_texts"], self._counts["invalid_texts"]
            scored = self._counts["api_inputs_scored"] + self._cache_hits
        limit = self.settings.refusals_before_giving_up
        if scored:
            return
        if rejected >= limit:
            raise ModerationFailed(
                f"the API refused the first {rejected} texts and accepted none: check the "
                "model name and the base URL"
            )
        if invalid >= limit:
            raise ModerationFailed(
                f"the API's answers were invalid for the first {invalid} texts and none was "
                "valid: check the base URL (is it the Moderation API?)"
            )

    def _emit(self, sha: str, outcome: _Outcome) -> None:
        """Queue a final outcome for saving and wake the saver. Refusals are cached like
        results (final: the next run does not send them again); invalid answers are not."""
        if outcome.status == SCORED and outcome.result is not None:
            scored = ScoredText(sha, outcome.result, outcome.parts, outcome.model_version)
        elif outcome.status == REJECTED:
            scored = ScoredText(sha, {}, 0, None, status=REJECTED, detail=outcome.detail)
        else:
            with self._lock:
                self._invalid[sha] = outcome.detail or "invalid answer"
            return
        with self._lock:
            if outcome.status == REJECTED:
                self._rejected[sha] = outcome.detail or "refused by the API"
                # Checked once the refusal is queued, so it is saved even if this stops the run.
            self._arrived.append(scored)
        self._arrival.set()
        if outcome.status == REJECTED:
            self._give_up_if_nothing_works()

    # -- a day's texts ---------------------------------------------------------------------

    def batches(self, texts: pl.DataFrame) -> list[pl.DataFrame]:
        """Consecutive runs of at most ``batch_size`` texts and ``batch_chars`` characters (a
        longer text goes alone)."""
        lengths = texts["content"].str.len_chars().to_list()
        cuts, count, chars = [0], 0, 0
        for i, n in enumerate(lengths):
            if count and (
                count == self.settings.batch_size or chars + n > self.settings.batch_chars
            ):
                cuts.append(i)
                count, chars = 0, 0
            count += 1
            chars += n
        cuts.append(len(lengths))
        return [texts.slice(a, b - a) for a, b in itertools.pairwise(cuts) if b > a]

    def _score_batch(self, batch: pl.DataFrame) -> None:
        """Score one batch; its outcomes reach the saver through ``_emit`` as they arrive."""
        try:
            self._score_texts(batch["content"].to_list(), batch["content_sha256"].to_list())
        except _Stopped:
            return
        except BaseException:
            self._stopped.set()
            raise

    def score(
        self,
        texts: pl.DataFrame,
        save: Callable[[list[ScoredText]], None],
        *,
        cache_hits: int = 0,
    ) -> ScoringReport:
        """Score ``texts``, saving each final outcome as it arrives. ``cache_hits``: the day's
        texts already scored (cached), which count as the API accepting texts."""
        started = time.perf_counter()
        self._counts = Counter()
        self._stopped.clear()
        self._arrived, self._rejected, self._invalid = [], {}, {}
        self._cache_hits = cache_hits
        saved = 0

        def flush() -> None:
            nonlocal saved
            with self._lock:
                arrived, self._arrived = self._arrived, []
            if arrived:
                save(arrived)
                saved += len(arrived)

        failure: BaseException | None = None
        with ThreadPoolExecutor(
            max_workers=max(1, self.settings.max_in_flight), thread_name_prefix="moderation"
        ) as pool:
            futures: list[Future[None]] = []
            for batch in self.batches(texts):
                future = pool.submit(self._score_batch, batch)
                future.add_done_callback(lambda _: self._arrival.set())
                futures.append(future)
            while futures:
                # Woken by each arrival and each finished batch: results are saved as they come.
                self._arrival.wait(self.settings.save_every_s)
                self._arrival.clear()
                try:
                    flush()
                except BaseException as exc:
                    # The cache is unreachable: stop sending, for nothing could be kept.
                    self._stopped.set()
                    failure = failure or exc
                done = [f for f in futures if f.done()]
                futures = [f for f in futures if not f.done()]
                for future in done:
                    error = None if future.cancelled() else future.exception()
                    if error is not None and failure is None:
                        failure = error
                        # Queued batches are not sent; those in flight are paid for and saved.
                        for queued in futures:
                            queued.cancel()
        try:
            flush()
        except Exception as exc:
            failure = failure or exc
        counts = dict(self._counts)
        report = ScoringReport(rejected=dict(self._rejected), invalid=dict(self._invalid))
        report.stats = {
            "texts_sent": texts.height,
            "api_requests": counts.get("api_requests", 0),
            "api_inputs": counts.get("api_inputs", 0),
            "api_inputs_scored": counts.get("api_inputs_scored", 0),
            "splits": counts.get("splits", 0),
            "refused_requests": counts.get("refused_requests", 0),
            "rejected_texts": len(report.rejected),
            "invalid_answer_texts": len(report.invalid),
            "retries": {
                k.split("/", 1)[1]: v for k, v in counts.items() if k.startswith("retries/")
            },
            "results_saved": saved,
            "api_seconds": round(time.perf_counter() - started, 3),
        }
        if failure is not None:
            raise ModerationFailed(
                f"OpenAI moderation stopped: {failure}. {saved} of {texts.height} texts were "
                "scored and cached first; a re-run sends only the others."
            ) from failure
        return report
