"""A Moderation API stand-in that holds every request until the test lets it go.

With requests held, the number in flight stops changing on its own, so a test can wait until
``n`` are held, look for an ``n+1``-th, and release them one at a time: what it asserts does not
depend on how fast the machine is. The answers are ``ModerationServer``'s, so the scorer parses
them as usual.

Each run can be given its own base URL, ``probe.base_url(tag)``
(``http://127.0.0.1:PORT/<tag>/v1``): the tag says whose request is in flight.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from wildchat_dag_tests.moderation_server import ModerationServer

MODEL_VERSION = "omni-moderation-2024-09-26"


@dataclass
class _Request:
    tag: str
    released: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API
    disable_nagle_algorithm = True
    server: _ProbeHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """No per-request lines on stderr."""

    def handle(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        inputs = payload.get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        path = self.path.rstrip("/")
        if not path.endswith("/v1/moderations"):
            self._send(404, {"error": {"message": "Not found", "type": "invalid_request_error"}})
            return
        tag = path.removesuffix("/v1/moderations").strip("/")
        self.server.probe._hold(tag)
        results = [ModerationServer.expected_result(text) for text in inputs]
        self._send(200, {"id": f"modr-{next(_ids)}", "model": MODEL_VERSION, "results": results})

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


_ids = itertools.count(1)


class _ProbeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a held request never keeps the test process alive
    block_on_close = False
    probe: InflightProbe


class InflightProbe:
    """``POST <base>/v1/moderations`` on 127.0.0.1 that holds each request until released.

    ``peak`` is the most requests in flight at once, counted when each request arrives, so an
    extra request is recorded however briefly it was in flight. ``mixed`` says whether requests
    of two tags were ever in flight together.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: list[_Request] = []  # oldest first
        self._open = False  # once open, requests pass straight through
        self.peak = 0
        self.requests: Counter[str] = Counter()
        self.mixed = False
        self._httpd: _ProbeHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._root = ""

    # -- server ------------------------------------------------------------------------------

    def start(self) -> InflightProbe:
        httpd = _ProbeHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.probe = self
        host, port = httpd.server_address[:2]
        self._root = f"http://{host}:{port}"
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> InflightProbe:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def base_url(self, tag: str) -> str:
        return f"{self._root}/{tag}/v1"

    # -- what the handler threads do ---------------------------------------------------------

    def _hold(self, tag: str) -> None:
        request = _Request(tag)
        with self._cond:
            self.requests[tag] += 1
            if self._open:
                return
            self._held.append(request)
            self.peak = max(self.peak, len(self._held))
            self.mixed = self.mixed or len({r.tag for r in self._held}) > 1
            self._cond.notify_all()
        request.released.wait()

    # -- what the test does ------------------------------------------------------------------

    @property
    def held(self) -> list[str]:
        """The tags of the requests held now, oldest first."""
        with self._cond:
            return [r.tag for r in self._held]

    def wait_held(self, n: int, timeout_s: float) -> list[str]:
        """Wait until at least ``n`` requests are held; their tags."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._held) >= n, timeout=timeout_s):
                raise TimeoutError(
                    f"{len(self._held)} requests held after {timeout_s:g} s, waiting for {n}; "
                    f"requests so far: {dict(self.requests)}"
                )
            return [r.tag for r in self._held]

    def stays_at_most(self, n: int, seconds: float) -> bool:
        """False as soon as more than ``n`` are held within ``seconds``; True otherwise."""
        deadline = time.monotonic() + seconds
        with self._cond:
            while (left := deadline - time.monotonic()) > 0:
                if len(self._held) > n:
                    return False
                self._cond.wait(timeout=left)
            return len(self._held) <= n

    def release_oldest(self) -> str:
        with self._cond:
            request = self._held.pop(0)
        request.released.set()
        return request.tag

    def release_all(self) -> None:
        """Answer the held requests and every later one at once."""
        with self._cond:
            self._open = True
            held, self._held = self._held, []
        for request in held:
            request.released.set()
