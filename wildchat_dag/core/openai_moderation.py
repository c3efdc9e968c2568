"""OpenAI Moderation over the official client: batched, concurrent, retried, split when refused.

- Batches: up to ``batch_size`` texts (and ``batch_chars`` characters) per request, with at most
  ``max_in_flight`` requests at once.
- Retries: 429, 5xx, timeouts, dropped connections and unparseable answers are retried with
  exponential backoff and jitter, waiting at least what ``Retry-After`` asks. A 429 pauses every
  worker, not only the one that got it. An exhausted quota, a bad key or a missing model is not
  retried: it fails the partition at once, saying so.
- Refused inputs (HTTP 400): a refused batch is halved until the refused text is alone; a text
  refused alone is split in half near a space and the halves are scored (WildChat's method),
  the merged result OR-ing the flags and keeping the highest scores. A text too short to split
  is recorded as rejected, with the API's message.
- Results are handed to ``save`` as each batch completes, and on failure every result already
  received is saved before the error is raised.
"""

from __future__ import annotations

import email.utils
import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from wildchat_dag.core.moderation import ScoredText, ScoringReport, merge_openai_results

if TYPE_CHECKING:
    import openai

DEFAULT_MODEL = "omni-moderation-latest"
_KEPT = ("flagged", "categories", "category_scores")


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
    # This many refusals before any success: the API refuses everything (a wrong model?).
    refusals_before_giving_up: int = 20
    # At most this many seconds between two saves to the cache.
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
    result: dict[str, Any] | None
    parts: int
    detail: str | None = None
    model_version: str | None = None


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


def _classify(exc: Exception) -> Exception:
    """The client's error as: refused input, retryable fault, or a failure to stop on."""
    # Imported here: the client's types take a second to import, in every step process.
    import openai

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
            f"the API answered {exc.status_code}: {_api_message(exc)} (check the API key, the "
            "base URL and the model)"
        )
    if isinstance(exc, openai.APITimeoutError):
        return _Retryable("timeout", "request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return _Retryable("connection", str(exc))
    if isinstance(exc, ValueError | openai.APIResponseValidationError):
        # A body that is not JSON (json.JSONDecodeError is a ValueError), or not the expected
        # shape: a proxy's error page or a truncated answer.
        return _Retryable("malformed", f"unparseable answer: {exc}")
    return exc


def _api_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return f"{exc.status_code} {message}"
    return f"{exc.status_code} {exc}"


class OpenAIModerationScorer:
    """Scores texts with ``client.moderations.create``; the client should not retry itself
    (``max_retries=0``): the retry policy is this class's."""

    name = "openai"

    def __init__(
        self,
        client: openai.OpenAI,
        model: str = DEFAULT_MODEL,
        settings: ModerationSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.settings = settings or ModerationSettings()
        self._sleep = sleep
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._counts: Counter[str] = Counter()
        self._stopped = threading.Event()

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

    def _request(self, texts: list[str]) -> tuple[list[dict[str, Any]], str | None]:
        """One call, retried until it answers, refuses the input, or the attempts run out."""
        for attempt in range(1, self.settings.max_attempts + 1):
            self._wait_for_pause()
            if self._stopped.is_set():
                raise _Stopped()
            self._count("api_requests")
            self._count("api_inputs", len(texts))
            try:
                response = self.client.moderations.create(input=texts, model=self.model)
                dumped = [r.model_dump(by_alias=True, exclude_unset=True) for r in response.results]
                if len(dumped) != len(texts) or not all(
                    isinstance(r.get("categories"), dict) and "flagged" in r for r in dumped
                ):
                    raise ValueError(f"{len(dumped)} results for {len(texts)} inputs")
                # Only what the spec keeps: category_applied_input_types is always "text" here.
                results = [{k: r[k] for k in _KEPT if k in r} for r in dumped]
                self._count("api_inputs_scored", len(texts))
                return results, response.model
            except Exception as exc:
                problem = _classify(exc)
                if not isinstance(problem, _Retryable):
                    raise problem from exc
                self._count(f"retries/{problem.reason}")
                if attempt == self.settings.max_attempts:
                    raise ModerationFailed(
                        f"{problem.reason} after {attempt} attempts: {problem}"
                    ) from exc
                delay = self._backoff(attempt, problem.retry_after)
                if problem.reason == "rate_limit":
                    with self._lock:
                        self._paused_until = max(self._paused_until, time.monotonic() + delay)
                    self._wait_for_pause()
                else:
                    self._sleep(delay)
        raise AssertionError("unreachable")

    def _score_texts(self, texts: list[str]) -> list[_Outcome]:
        try:
            results, version = self._request(texts)
            self._count("scored_requests")
            return [_Outcome(r, 1, model_version=version) for r in results]
        except _Refused as refused:
            self._count("refused_requests")
            if len(texts) > 1:
                half = len(texts) // 2
                return self._score_texts(texts[:half]) + self._score_texts(texts[half:])
            text = texts[0]
            if len(text) < max(2, self.settings.split_min_chars):
                self._count("rejected_texts")
                self._give_up_if_everything_refused(refused.message)
                return [_Outcome(None, 0, f"refused by the API: {refused.message}")]
            self._count("splits")
            halves = self._score_texts(list(split_in_half(text)))
            failed = [h.detail for h in halves if h.result is None]
            if failed:
                return [_Outcome(None, 0, failed[0])]
            merged = merge_openai_results(h.result for h in halves if h.result)
            parts = sum(h.parts for h in halves)
            return [_Outcome(merged, parts, model_version=halves[0].model_version)]

    def _give_up_if_everything_refused(self, message: str) -> None:
        with self._lock:
            rejected, scored = self._counts["rejected_texts"], self._counts["scored_requests"]
        if rejected >= self.settings.refusals_before_giving_up and not scored:
            raise ModerationFailed(
                f"the API refused the first {rejected} texts and accepted none ({message}): "
                "check the model name and the base URL"
            )

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

    def _score_batch(self, batch: pl.DataFrame) -> tuple[list[ScoredText], dict[str, str]]:
        try:
            outcomes = self._score_texts(batch["content"].to_list())
        except _Stopped:
            return [], {}
        except BaseException:
            self._stopped.set()
            raise
        scored, rejected = [], {}
        for sha, outcome in zip(batch["content_sha256"].to_list(), outcomes, strict=True):
            if outcome.result is None:
                rejected[sha] = outcome.detail or "refused by the API"
                continue
            scored.append(ScoredText(sha, outcome.result, outcome.parts, outcome.model_version))
        return scored, rejected

    def score(self, texts: pl.DataFrame, save: Callable[[list[ScoredText]], None]) -> ScoringReport:
        started = time.perf_counter()
        self._counts = Counter()
        self._stopped.clear()
        report = ScoringReport()
        pending: list[ScoredText] = []
        saved = 0
        last_save = time.monotonic()

        def flush() -> None:
            nonlocal saved, last_save
            if pending:
                save(list(pending))
                saved += len(pending)
                pending.clear()
            last_save = time.monotonic()

        failure: BaseException | None = None
        with ThreadPoolExecutor(
            max_workers=max(1, self.settings.max_in_flight), thread_name_prefix="moderation"
        ) as pool:
            futures: set[Future] = {pool.submit(self._score_batch, b) for b in self.batches(texts)}
            while futures:
                done, futures = wait(
                    futures, timeout=self.settings.save_every_s, return_when=FIRST_EXCEPTION
                )
                for future in done:
                    try:
                        scored, rejected = future.result()
                    except BaseException as exc:
                        if failure is None:
                            failure = exc
                            # Queued batches are not sent; those in flight are paid for and saved.
                            for queued in futures:
                                queued.cancel()
                        continue
                    pending.extend(scored)
                    report.rejected.update(rejected)
                if time.monotonic() - last_save >= self.settings.save_every_s or not futures:
                    flush()
                futures = {f for f in futures if not f.cancelled()}
        flush()
        counts = dict(self._counts)
        report.stats = {
            "texts_sent": texts.height,
            "api_requests": counts.get("api_requests", 0),
            "api_inputs": counts.get("api_inputs", 0),
            "api_inputs_scored": counts.get("api_inputs_scored", 0),
            "splits": counts.get("splits", 0),
            "refused_requests": counts.get("refused_requests", 0),
            "rejected_texts": len(report.rejected),
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
