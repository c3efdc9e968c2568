"""A cross-process limit on requests in flight: a counting semaphore made of lock files.

Why not the Dagster pool: a pool admits *steps*, not requests, and on the default SQLite
instance its slot claim is a read followed by a separate write, so two runs can both claim the
last slot (see ``common/pools.py``). This limit is taken around each request, by every thread
of every process that shares the lock folder, whatever the instance storage.

Design:

- The limit ``n`` is ``n`` slot files, ``<lock_dir>/<name>/slot-<i>.lock`` for ``i < n``. A
  request holds one slot for its duration: an exclusive ``flock`` on that file.
- The kernel releases a ``flock`` when the last descriptor of the open file goes away, so a
  process that crashes or is killed frees its slots at once: nothing leaks, nothing to clean.
- Threads of one process also exclude each other through a process-local table of the slots it
  holds, so the limit does not rely on ``flock`` being per open file (it is on local
  filesystems; on some network filesystems it is per process).
- Taking a slot tries every slot without blocking, starting at a random one; when all are held,
  it sleeps a short, growing, jittered interval (5 ms doubling to 50 ms) and tries again. There
  is no queue and no fairness: the guarantee is the bound, not the order.
- Two processes configured with different limits by mistake stay safe: a process with limit
  ``n`` only uses slots ``0..n-1``, so the total in flight never exceeds the largest limit in
  use, and each process's own requests never exceed its own.
- A fork while a slot is held (a Celery prefork pool, ``multiprocessing``) would copy the
  locked descriptor into the child and keep the slot while the child lives; the child closes
  its copies at once, and it never releases the parent's slot.

The lock folder must be shared by every process that shares the API's rate limit. On one
machine any local folder works (the default is ``$WILDCHAT_HOME/locks``, next to the DuckDB
file's default). Across machines it must be on a filesystem whose ``flock`` excludes processes
on other machines (NFSv4 with working locks; not SMB/CIFS, sshfs or object-store FUSE mounts);
otherwise each machine gets its own ``n``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LOCK_DIR_ENV_VAR = "WILDCHAT_LOCK_DIR"

OPENAI_API = "openai_api"
"""The limit on OpenAI Moderation requests; named like the Dagster pool of the step."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class InflightLimitTimeout(TimeoutError):
    """No slot became free within the timeout."""


def default_lock_dir() -> Path:
    """``WILDCHAT_LOCK_DIR``, else ``$WILDCHAT_HOME/locks``: read where the request is made, so
    a step, a Celery worker and a test each resolve it in their own environment."""
    configured = os.environ.get(LOCK_DIR_ENV_VAR)
    if configured:
        return Path(configured)
    from wildchat_dag import settings  # the one home of WILDCHAT_HOME's default

    return settings.home() / "locks"


@dataclass(frozen=True)
class _Held:
    path: str
    fd: int
    pid: int


# The slots held by threads of this process, slot path -> descriptor. The lock is only ever held
# for non-blocking work (an open, a try-lock, a close).
_registry_lock = threading.Lock()
_held: dict[str, int] = {}


def _before_fork() -> None:
    _registry_lock.acquire()


def _after_fork_in_parent() -> None:
    _registry_lock.release()


def _after_fork_in_child() -> None:
    """The child shares the parent's locked open files; closing the child's copies leaves the
    parent's locks as they are, and means a slot is not kept after its holder exits."""
    global _registry_lock
    for fd in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()
    _registry_lock = threading.Lock()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


def _try_take(path: str) -> _Held | None:
    with _registry_lock:
        if path in _held:
            return None  # another thread of this process has it
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None  # another process has it
            raise
        _held[path] = fd
        return _Held(path, fd, os.getpid())


def _release(held: _Held) -> None:
    with _registry_lock:
        # In a forked child the slot was the parent's, and the descriptor is already closed.
        if os.getpid() != held.pid or _held.get(held.path) != held.fd:
            return
        del _held[held.path]
        try:
            fcntl.flock(held.fd, fcntl.LOCK_UN)
        finally:
            os.close(held.fd)


class InflightLimit:
    """At most ``limit`` holders of ``slot()`` at once, across the threads and processes that
    use the same ``lock_dir`` and ``name``.

    ``slot`` (or the instance itself: calling it returns ``slot()``) is a zero-argument factory
    of the context manager, so either can be passed where a
    ``request_slot: Callable[[], ContextManager[None]]`` is expected::

        limit = InflightLimit("openai_api", 4)
        with limit.slot():
            client.moderations.create(...)
    """

    def __init__(
        self,
        name: str,
        limit: int,
        lock_dir: Path | str | None = None,
        *,
        timeout_s: float | None = None,
        poll_s: float = 0.005,
        max_poll_s: float = 0.05,
    ) -> None:
        if not _NAME.match(name):
            raise ValueError(f"limit name {name!r}: use letters, digits, '_', '-' and '.'")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.name = name
        self.limit = limit
        self.folder = Path(lock_dir if lock_dir is not None else default_lock_dir()) / name
        self.timeout_s = timeout_s
        self._poll_s = poll_s
        self._max_poll_s = max_poll_s
        self._paths = [str(self.folder / f"slot-{i}.lock") for i in range(limit)]
        self._ready = False

    def __repr__(self) -> str:
        return f"InflightLimit({self.name!r}, {self.limit}, {str(self.folder.parent)!r})"

    def _prepare(self) -> None:
        if not self._ready:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._ready = True

    def try_acquire(self) -> _Held | None:
        """A free slot, or None when all ``limit`` are held; never waits."""
        self._prepare()
        # A random start spreads processes over the slots, so one try usually suffices.
        start = random.randrange(self.limit)
        for i in range(self.limit):
            held = _try_take(self._paths[(start + i) % self.limit])
            if held is not None:
                return held
        return None

    def acquire(self, timeout_s: float | None = None) -> _Held:
        """Wait for a free slot, at most ``timeout_s`` (default: the instance's; None: forever)."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        delay = self._poll_s
        while (held := self.try_acquire()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise InflightLimitTimeout(
                    f"no free slot of {self!r} within {timeout_s:g} s: {self.limit} requests "
                    f"are in flight in other threads or processes ({self.folder})"
                )
            # Polling, not a blocking flock on one slot: any slot freed anywhere can be taken.
            pause = delay * random.uniform(0.5, 1.0)
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            delay = min(self._max_poll_s, delay * 2)
        return held

    @staticmethod
    def release(held: _Held) -> None:
        _release(held)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the duration of the block (one request)."""
        held = self.acquire()
        try:
            yield
        finally:
            _release(held)

    def __call__(self) -> contextlib.AbstractContextManager[None]:
        return self.slot()


__all__ = [
    "LOCK_DIR_ENV_VAR",
    "OPENAI_API",
    "InflightLimit",
    "InflightLimitTimeout",
    "default_lock_dir",
]
