"""Canonical JSON and the history hashes that link turns into conversations.

WildChat linked a request to a conversation by comparing two sha256 hashes over canonical JSON:
``prev`` over the history before the request's new user message, ``current`` over that history
plus the new user message and the assistant's reply.

Canonical JSON here is ``json.dumps(messages, ensure_ascii=False, separators=(",", ":"))`` of a
list of ``{"role": ..., "content": ...}`` objects, keys in that order, encoded as UTF-8. The
vectorised ingest path builds the same bytes with polars (``json_array_body``);
``wildchat_dag_tests/test_hashing.py`` checks the two agree on arbitrary text.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import polars as pl


def canonical_messages_json(messages: Iterable[Mapping[str, str]]) -> str:
    return json.dumps(
        [{"role": m["role"], "content": m["content"]} for m in messages],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def json_array_body(messages: pl.Expr) -> pl.Expr:
    """Canonical JSON of a list-of-messages column without its brackets, vectorised.

    polars encodes a struct in one pass, so the list is wrapped as ``{"m": [...]}`` and the
    wrapper cut off: ``{"m":[`` is 6 characters, ``]}`` is 2.
    """
    return pl.struct(m=messages).struct.json_encode().str.slice(6).str.head(-2)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_column(texts: pl.Series) -> pl.Series:
    """sha256 of each text (UTF-8). Texts are hashed as they come, duplicates too: looking a
    long text up in a table of digests costs more than hashing it again."""
    if texts.null_count():
        raise ValueError(f"sha256_column: {texts.null_count()} null text(s) in {texts.name!r}")
    sha256 = hashlib.sha256
    return pl.Series(
        texts.name,
        [sha256(b).hexdigest() for b in texts.cast(pl.Binary).to_list()],
        dtype=pl.String,
    )


def history_hashes(messages: list[Mapping[str, str]], response: str) -> tuple[str, str]:
    """``(prev, current)`` for one request, computed one request at a time."""
    prev = sha256_hex(canonical_messages_json(messages[:-1]))
    current = sha256_hex(
        canonical_messages_json([*messages, {"role": "assistant", "content": response}])
    )
    return prev, current


EMPTY_HISTORY_HASH = sha256_hex("[]")


@functools.cache
def file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256, read in 1 MiB blocks; remembered per (path, size, mtime), so a model
    file is hashed once per process unless it changes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_provenance(path: Path | str) -> str:
    """A file as a card names it: its name and a content hash, the same on every machine (a
    path would say where the release was built, and nothing a reader can check)."""
    path = Path(path)
    stat = path.stat()
    return f"{path.name}, sha256 {file_sha256(str(path), stat.st_size, stat.st_mtime_ns)[:16]}"
