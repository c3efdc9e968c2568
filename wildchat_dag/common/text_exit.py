"""The Dagster side of the one exit for text (``wildchat_dag/core/sanitize.py``).

Whatever a step says ends up in the instance: its log messages, and when it fails, its error,
which Dagster serializes with the whole chain of causes into the ``STEP_FAILURE`` event and
prints into the step's compute log. A DuckDB or polars error quotes the value it could not
convert, so an error escaping a step as it is carries raw values out of the raw layer.

``text_exit`` wraps every asset and check function (and ``text_exit_scope`` the IO manager's
reads and writes): an exception leaving them is replaced by ``dagster.Failure`` whose
description is the sanitized ``"<type>: <message>"``, raised ``from None``. Dagster's error
serializer drops ``__context__`` when ``__suppress_context__`` is set, so the original message
is in neither the event log nor the compute log. The stack frames are kept (they hold code,
not values). ``RetryRequested`` and interrupts pass through, a ``Failure`` raised on purpose
keeps its metadata and retry setting, and its description is sanitized too.

``log_info``/``log_warning`` are the only way asset modules log: ``test_sanitize`` fails on a
direct ``context.log`` call in a step's ``assets.py``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from dagster import Failure, RetryRequested

from wildchat_dag.common.metadata import sanitize_metadata
from wildchat_dag.core.sanitize import sanitize_text

# Set on every function ``text_exit`` wraps, so a test can tell that each op is behind it.
TEXT_EXIT_ATTRIBUTE = "__wildchat_text_exit__"

F = TypeVar("F", bound=Callable[..., Any])


class SanitizedCause(Exception):
    """Stands in for the cause of a ``RetryRequested``: its type and sanitized message only."""


def sanitized_exception(exc: Exception) -> Exception:
    """What leaves a step instead of ``exc``: nothing in it holds a raw value."""
    if isinstance(exc, RetryRequested):
        retry = RetryRequested(max_retries=exc.max_retries, seconds_to_wait=exc.seconds_to_wait)
        cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if cause is not None:
            retry.__cause__ = SanitizedCause(_described(cause))
        return retry
    if isinstance(exc, Failure):
        return Failure(
            description=sanitize_text(exc.description) if exc.description else None,
            metadata=sanitize_metadata(exc.metadata),
            allow_retries=exc.allow_retries,
        )
    return Failure(
        description=_described(exc),
        metadata={"error_type": type(exc).__name__, "message_sanitized": True},
    )


def _described(exc: BaseException) -> str:
    return sanitize_text(f"{type(exc).__name__}: {exc}")


def text_exit(fn: F) -> F:
    """Wrap an asset or check function (plain or generator) in the exit; Dagster still sees
    its signature (``functools.wraps``), so context, resources and inputs resolve as before."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                result = yield from fn(*args, **kwargs)
            except Exception as exc:  # every error leaves sanitized
                replacement, traceback = sanitized_exception(exc), exc.__traceback__
            else:
                return result
            raise replacement.with_traceback(traceback) from replacement.__cause__

        wrapped: Callable[..., Any] = generator
    else:

        @functools.wraps(fn)
        def function(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # every error leaves sanitized
                replacement, traceback = sanitized_exception(exc), exc.__traceback__
            # Raised outside the handler, its cause set (None but for a retry's sanitized
            # one) and its context suppressed: the original is nobody's cause or context.
            raise replacement.with_traceback(traceback) from replacement.__cause__

        wrapped = function
    setattr(wrapped, TEXT_EXIT_ATTRIBUTE, True)
    return wrapped  # type: ignore[return-value]


def is_behind_text_exit(fn: Callable[..., Any]) -> bool:
    return bool(getattr(fn, TEXT_EXIT_ATTRIBUTE, False))


class text_exit_scope:  # lower case: used like a function, ``with text_exit_scope():``
    """``text_exit`` for a block: the IO manager's ``handle_output`` and ``load_input``."""

    def __enter__(self) -> text_exit_scope:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if not isinstance(exc, Exception):
            return False  # no error, or an interrupt: as it is
        replacement = sanitized_exception(exc)
        raise replacement.with_traceback(traceback) from replacement.__cause__


def log_info(context: Any, message: str) -> None:
    context.log.info(sanitize_text(message))


def log_warning(context: Any, message: str) -> None:
    context.log.warning(sanitize_text(message))


__all__ = [
    "TEXT_EXIT_ATTRIBUTE",
    "is_behind_text_exit",
    "log_info",
    "log_warning",
    "sanitized_exception",
    "text_exit",
    "text_exit_scope",
]
