"""Canonical JSON and the history hashes that link turns into conversations.

WildChat linked a request to a conversation by comparing two sha256 hashes over canonical JSON:
``prev`` over the history before the request's new user message, ``current`` over that history
plus the new user message and the assistant's reply.

Canonical JSON here is a compact array of ``{"role": ..., "content": ...}`` objects (keys in that
order, no spaces), UTF-8, escaping only what RFC 8259 requires: ``"``, ``\\``, and control
characters, with ``\\b \\f \\n \\r \\t`` short forms and ``\\u00XX`` (upper-case hex) for the rest. That
is byte for byte what DuckDB's ``to_json`` writes, so the vectorised ingest path and this reference
agree; ``wildchat_dag_tests/test_hashing.py`` checks it on arbitrary text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

_ESCAPES = {i: f"\\u{i:04X}" for i in range(0x20)}
_ESCAPES.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"})
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\"})

EMPTY_HISTORY_JSON = "[]"


def canonical_string(text: str) -> str:
    return '"' + text.translate(_ESCAPES) + '"'


def canonical_messages_json(messages: Iterable[Mapping[str, str]]) -> str:
    return (
        "["
        + ",".join(
            '{"role":' + canonical_string(m["role"]) + ',"content":'
            + canonical_string(m["content"]) + "}"
            for m in messages
        )
        + "]"
    )


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def history_hashes(messages: list[Mapping[str, str]], response: str) -> tuple[str, str]:
    """``(prev, current)`` for one request, computed one request at a time."""
    prev = sha256_hex(canonical_messages_json(messages[:-1]))
    current = sha256_hex(
        canonical_messages_json([*messages, {"role": "assistant", "content": response}])
    )
    return prev, current


EMPTY_HISTORY_HASH = sha256_hex(EMPTY_HISTORY_JSON)
