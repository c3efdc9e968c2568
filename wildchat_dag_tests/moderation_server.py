"""A local stand-in for OpenAI's Moderation API, for tests and benchmarks.

The real ``openai`` client can be pointed at it (``OpenAI(base_url=server.base_url, ...)``), so
the code under test runs its real request, parsing and error paths without the internet. Results
are derived from the text alone, so a test can predict them (``expected_result``), and faults can
be queued to exercise retries, timeouts and a mid-partition outage.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
"""What omni-moderation returns; the illicit* ones are beyond WildChat's list of categories."""

_EXTRA_CATEGORIES = frozenset({"illicit", "illicit/violent"})

# Trigger substring (matched case-insensitively) -> the scores it sets.
_TRIGGERS: dict[str, dict[str, float]] = {
    "kill": {"violence": 0.9},
    "hate you": {"harassment": 0.8},
    "suicide": {"self-harm": 0.85, "self-harm/intent": 0.7},
    "steal": {"illicit": 0.6},
    "underage": {"sexual": 0.7, "sexual/minors": 0.9},
}

_FLAG_THRESHOLD = 0.5

_ANSWER_FAULTS = frozenset(
    {
        "html_body",
        "wrong_content_type",
        "wrong_json_type",
        "short_answer",
        "long_answer",
        "empty_categories",
        "null_flagged",
        "missing_category",
        "score_out_of_range",
        "nan_score",
        "string_score",
        "reset",
    }
)

FaultKind = Literal[
    "rate_limit",
    "server_error",
    "slow",
    "malformed",
    "too_long",
    # 200 answers of the wrong shape (each billed, like a real answer):
    "html_body",  # a proxy's HTML error page, Content-Type text/html
    "wrong_content_type",  # a valid JSON body sent as text/plain
    "wrong_json_type",  # "results" is not a list
    "short_answer",  # one result fewer than inputs
    "long_answer",  # one result more than inputs
    "empty_categories",  # the first result's categories and scores are {}
    "null_flagged",  # the first result's flagged is null
    "missing_category",  # the first result lacks the "violence" category
    "score_out_of_range",  # the first result's violence score is 1.5
    "nan_score",  # the first result's violence score is NaN (json.dumps writes NaN)
    "string_score",  # the first result's violence score is "0.5"
    # Connection faults:
    "reset",  # headers and half the body sent, then the connection is closed
    "close",  # the connection is closed before any answer
]
"""Faults that bill the inputs (the server answered): the wrong-shape 200s and ``reset``."""


@dataclass
class Fault:
    """One injected fault, consumed by the next request that reaches the server."""

    kind: FaultKind
    retry_after: float | None = None
    """rate_limit: the Retry-After header in seconds (sent as a string); None sends none."""
    delay_s: float = 0.0
    """slow: sleep this long before answering normally (the client has usually hung up)."""
    index: int = 0
    """The per-result faults (empty_categories ... string_score): which result is broken."""


def _categories(extra_categories: bool) -> tuple[str, ...]:
    """The category keys of a result; legacy text-moderation models lack the illicit* ones."""
    if extra_categories:
        return CATEGORIES
    return tuple(c for c in CATEGORIES if c not in _EXTRA_CATEGORIES)


def _base_score(text: str, category: str) -> float:
    """A small, stable score in [0, 0.01): real scores are never exactly zero, and a hash keeps
    them deterministic across processes (``hash()`` is salted per process)."""
    digest = hashlib.blake2b(f"{category}\x00{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 0.01


def _result(text: str, extra_categories: bool) -> dict[str, Any]:
    """The moderation result for one input, shaped like the real API's."""
    categories = _categories(extra_categories)
    scores = {c: _base_score(text, c) for c in categories}
    lowered = text.lower()
    for trigger, raised in _TRIGGERS.items():
        if trigger in lowered:
            for category, score in raised.items():
                if category in scores:
                    scores[category] = max(scores[category], score)
    flags = {c: scores[c] >= _FLAG_THRESHOLD for c in categories}
    return {
        "flagged": any(flags.values()),
        "categories": flags,
        "category_scores": scores,
        "category_applied_input_types": {c: ["text"] for c in categories},
    }


def _too_long_error(limit: int | None) -> dict[str, Any]:
    """The real API's answer to an over-long input; it rejects the whole request."""
    maximum = f"the maximum of {limit}" if limit is not None else "the maximum number of"
    return {
        "error": {
            "message": f"Input too long: an input is longer than {maximum} characters.",
            "type": "invalid_request_error",
            "param": "input",
            "code": "string_above_max_length",
        }
    }


class _Handler(BaseHTTPRequestHandler):
    """Answers one request on behalf of the ``ModerationServer`` bound to its HTTP server."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; needs exact Content-Length
    # Headers and body go out in two writes; with Nagle's algorithm and delayed ACKs the second
    # waits ~40 ms on a keep-alive connection, which would swamp the simulated latency.
    disable_nagle_algorithm = True
    server: _BoundHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log lines on stderr, which drown test output."""

    def handle(self) -> None:
        """Clients that time out hang up mid-answer (the "slow" fault); that is expected."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != "/v1/moderations":
            self._send_json(404, _error("Not found", "invalid_request_error", "not_found"))
            return
        try:
            payload = json.loads(raw or b"{}")
            inputs = payload.get("input", [])
            inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        except (ValueError, AttributeError, TypeError):
            self._send_json(400, _error("Invalid JSON body", "invalid_request_error", None))
            return
        owner._handle(self, inputs)

    def do_GET(self) -> None:
        self._send_json(404, _error("Not found", "invalid_request_error", "not_found"))

    def _send_json(
        self, status: int, body: Any, headers: dict[str, str] | None = None, *, raw: bytes = b""
    ) -> None:
        """Send ``body`` as JSON (or ``raw`` bytes as given) with an exact Content-Length."""
        data = raw if raw else json.dumps(body).encode()
        headers = dict(headers or {})
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def _error(message: str, type_: str, code: str | None) -> dict[str, Any]:
    """An OpenAI-shaped error body, which the client turns into its exception's message."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class _BoundHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its ``ModerationServer``; daemon threads so that a
    hung request never keeps the test process alive."""

    daemon_threads = True
    block_on_close = False
    owner: ModerationServer

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Track open connections: keep-alive ones outlive ``shutdown()`` unless closed."""
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on every client, so a stopped server stops answering pooled connections."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up are expected (timeouts, ``stop()``); report anything else."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class ModerationServer:
    """OpenAI's ``POST /v1/moderations`` on 127.0.0.1, on a free port, from a daemon thread.

    ``requests`` logs the inputs of every request that reached the handler (failed ones too), and
    ``scored_inputs`` every input that got a 200 result, i.e. that the real API would bill; tests
    use them to check batching, retries and that nothing is scored twice.
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        max_input_chars: int | None = None,
        model_version: str = "omni-moderation-2024-09-26",
        extra_categories: bool = True,
    ) -> None:
        self.latency_s = latency_s
        self.max_input_chars = max_input_chars
        self.model_version = model_version
        self.extra_categories = extra_categories
        self.requests: list[list[str]] = []
        self.scored_inputs: list[str] = []
        # The most requests the server was handling at once.
        self.peak_in_flight = 0
        self._in_flight = 0
        self.base_url = ""
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._ok_left: int | None = None  # successes left before every request answers 500
        self._ids = itertools.count(1)
        self._httpd: _BoundHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ModerationServer:
        """Bind a free port on the loopback interface only and serve in the background."""
        if self._httpd is not None:
            return self
        httpd = _BoundHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        host, port = httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}/v1"
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"moderation-server-{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port; requests still sleeping finish on daemon threads."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> ModerationServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each later request takes the next one (FIFO) before normal handling."""
        with self._lock:
            self._faults.extend(faults)

    def fail_after(self, n_requests: int | None) -> None:
        """After ``n_requests`` more successful answers, answer every request with 500, until
        called with None: the API going down in the middle of a partition."""
        with self._lock:
            self._ok_left = n_requests

    def reset_log(self) -> None:
        """Forget the logged requests and scored inputs (faults and fail_after stay)."""
        with self._lock:
            self.requests.clear()
            self.scored_inputs.clear()
            self.peak_in_flight = 0

    @staticmethod
    def expected_result(text: str, *, extra_categories: bool = True) -> dict[str, Any]:
        """The result object the server returns for ``text``, for tests to compare against."""
        return _result(text, extra_categories)

    def sent_count(self, text: str) -> int:
        """How many requests carried ``text`` (refused and failed ones too)."""
        with self._lock:
            return sum(request.count(text) for request in self.requests)

    def billed_count(self, text: str) -> int:
        """How many times ``text`` was answered with a 200, i.e. billed."""
        with self._lock:
            return self.scored_inputs.count(text)

    def _answer_broken(self, handler: _Handler, inputs: list[str], fault: Fault) -> None:
        """A 200 answer of the wrong shape: the server answered, so the inputs are billed."""
        with self._lock:
            request_id = next(self._ids)
            self.scored_inputs.extend(inputs)
        results = [_result(text, self.extra_categories) for text in inputs]
        body: dict[str, Any] = {
            "id": f"modr-{request_id}",
            "model": self.model_version,
            "results": results,
        }
        kind = fault.kind
        if kind == "html_body":
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            handler._send_json(200, None, {"Content-Type": "text/html"}, raw=page)
            return
        if kind == "wrong_content_type":
            data = json.dumps(body).encode()
            handler._send_json(200, None, {"Content-Type": "text/plain"}, raw=data)
            return
        if kind == "wrong_json_type":
            body["results"] = {str(i): r for i, r in enumerate(results)}
        elif kind == "short_answer":
            body["results"] = results[:-1]
        elif kind == "long_answer":
            body["results"] = [*results, results[-1]]
        elif kind == "reset":
            data = json.dumps(body).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        else:
            broken = results[fault.index]
            if kind == "empty_categories":
                broken["categories"], broken["category_scores"] = {}, {}
            elif kind == "null_flagged":
                broken["flagged"] = None
            elif kind == "missing_category":
                del broken["categories"]["violence"], broken["category_scores"]["violence"]
            elif kind == "score_out_of_range":
                broken["category_scores"]["violence"] = 1.5
            elif kind == "nan_score":
                broken["category_scores"]["violence"] = float("nan")
            elif kind == "string_score":
                broken["category_scores"]["violence"] = "0.5"
        handler._send_json(200, body)

    def _handle(self, handler: _Handler, inputs: list[str]) -> None:
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            self._answer(handler, inputs)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, handler: _Handler, inputs: list[str]) -> None:
        """Decide the answer to one moderation request: fault, outage, rejection or results."""
        with self._lock:
            self.requests.append(list(inputs))
            fault = self._faults.popleft() if self._faults else None

        if self.latency_s > 0:
            time.sleep(self.latency_s)

        if fault is not None:
            if fault.kind == "rate_limit":
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                body = {
                    "error": {
                        "message": "Rate limit reached",
                        "type": "requests",
                        "param": None,
                        "code": "rate_limit_exceeded",
                    }
                }
                handler._send_json(429, body, headers)
                return
            if fault.kind == "server_error":
                handler._send_json(500, _error("Internal server error", "server_error", None))
                return
            if fault.kind == "malformed":
                handler._send_json(200, None, raw=b'{"id": "modr-broken", "results": [{"fla')
                return
            if fault.kind == "too_long":
                handler._send_json(400, _too_long_error(self.max_input_chars))
                return
            if fault.kind == "close":
                handler.close_connection = True
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault.kind in _ANSWER_FAULTS:
                self._answer_broken(handler, inputs, fault)
                return
            if fault.kind != "slow":
                raise ValueError(f"unknown fault kind {fault.kind!r}")
            time.sleep(fault.delay_s)

        too_long = self.max_input_chars is not None and any(
            len(text) > self.max_input_chars for text in inputs
        )
        with self._lock:
            # Check and count in one step, so concurrent requests cannot overshoot fail_after.
            down = self._ok_left is not None and self._ok_left <= 0
            if not down and not too_long:
                if self._ok_left is not None:
                    self._ok_left -= 1
                request_id = next(self._ids)
                # Billed once answered, even if the client has hung up meanwhile (as for real).
                self.scored_inputs.extend(inputs)
        if down:
            handler._send_json(500, _error("The server is down", "server_error", None))
            return
        if too_long:
            handler._send_json(400, _too_long_error(self.max_input_chars))
            return
        results = [_result(text, self.extra_categories) for text in inputs]
        body = {"id": f"modr-{request_id}", "model": self.model_version, "results": results}
        handler._send_json(200, body)
