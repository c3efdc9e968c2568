"""Versioned releases: every export is kept as a numbered version, so a takedown or a new
redaction rule shows up as a diff and a changelog line instead of a silently different folder.

A release folder (``<release_root>/<release>/``) is swapped in whole at each export, so its
history cannot live inside it. Versions live beside it::

    <release_root>/history/<release>/<version>/
        manifest.json            what the export says about itself (files, counts, rules...)
        conversations.parquet    the version's conversation index (INDEX_SCHEMA)
        removals.parquet         optional: why conversations of the previous version are gone

A version is named ``YYYY-MM-DD.N``: the day it was built and a counter from 1 for that day.
A version folder appears whole or not at all (written beside it, then renamed), and the
manifest holds the sha256 of the files beside it, so an edited index is caught when read.

Pure logic on polars frames and files: no dagster, so the command line and the tests use it
without an instance.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from wildchat_dag.defs.release.release_schema import RELEASES
from wildchat_dag.defs.takedowns.ledger import REASONS

MANIFEST = "manifest.json"
INDEX_FILE = "conversations.parquet"
REMOVALS_FILE = "removals.parquet"
HISTORY = "history"

INDEX_SCHEMA = pl.Schema(
    {
        "conversation_hash": pl.String,
        "conversation_id": pl.Int64,
        "partition_day": pl.Date,
        "hashed_ip": pl.String,
        "turn_identifiers": pl.List(pl.Int64),
    }
)
# Without these a row cannot be matched (id), compared (hash) or dated (day) across versions.
INDEX_REQUIRED = ("conversation_id", "conversation_hash", "partition_day")
REMOVALS_SCHEMA = pl.Schema({"conversation_id": pl.Int64, "reason": pl.String})

# write_version sets these; a caller's manifest may not say otherwise.
RESERVED_KEYS = ("version", "release", "conversations", "index_sha256", "removals_sha256")

# How a removed conversation that removal_reasons does not explain is counted.
NO_REASON = "not in this version's records"

# The ledger's reasons, as the changelog words them.
TAKEDOWN_REASONS = REASONS

# Strict on purpose: no leading zeros (``.01`` would sort with ``.1``), no sign, no spaces, so a
# name maps to exactly one (date, N) and nothing like ``..`` can pass for a version.
_VERSION = re.compile(r"(\d{4}-\d{2}-\d{2})\.([1-9]\d{0,8})")


def parse_version(name: str) -> tuple[date, int] | None:
    """``(day, N)`` of a version name, or None for anything else (a temporary folder, a typo,
    an impossible date such as 2024-13-40)."""
    match = _VERSION.fullmatch(name)
    if match is None:
        return None
    try:
        day = date.fromisoformat(match.group(1))
    except ValueError:
        return None
    return day, int(match.group(2))


def history_root_of(release_root: Path) -> Path:
    """Where the versions of the releases under ``release_root`` live: beside the release
    folders, since those are replaced whole at every export."""
    return Path(release_root) / HISTORY


def release_history(history_root: Path, release: str) -> Path:
    """The folder of ``release``'s versions; only a known release name, since it becomes part
    of a path."""
    if release not in RELEASES:
        raise ValueError(f"unknown release {release!r}; the releases are {', '.join(RELEASES)}")
    return Path(history_root) / release


def version_folder(history_root: Path, release: str, version: str) -> Path:
    """The folder of ``version``; a name that is not a version never becomes a path, so no
    argument can point outside the history."""
    if parse_version(version) is None:
        raise ValueError(f"not a version name (YYYY-MM-DD.N): {version!r}")
    return release_history(history_root, release) / version


def _version_names(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return [p.name for p in folder.iterdir() if p.is_dir() and parse_version(p.name) is not None]


def next_version(history_root: Path, release: str, today: date) -> str:
    """The name the next version of ``release`` built ``today`` gets: ``today.N``.

    N follows the highest N of that day among the folders there, finished or not: a folder
    without a manifest (written by hand, or by a copy that was cut short) is no version, but
    reusing its name would mix two builds in one folder. Taking the highest rather than the
    first free number keeps the numbers in the order the versions were built.
    """
    parsed = [
        parse_version(name) for name in _version_names(release_history(history_root, release))
    ]
    taken = [p[1] for p in parsed if p is not None and p[0] == today]
    return f"{today.isoformat()}.{max(taken, default=0) + 1}"


def conversation_index(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per released conversation, in INDEX_SCHEMA, sorted by conversation_id: what
    two versions are compared on. Raises ValueError on a missing column, a value that does not
    cast, a null key, or a conversation_id that appears twice (a diff by id would then count
    the conversation once and lose the other row silently)."""
    missing = [name for name in INDEX_SCHEMA.names() if name not in frame.columns]
    if missing:
        raise ValueError(
            f"the conversation index needs the column(s) {', '.join(missing)}; "
            f"the frame has {', '.join(frame.columns) or 'no columns'}"
        )
    try:
        index = frame.select(
            pl.col(name).cast(dtype, strict=True) for name, dtype in INDEX_SCHEMA.items()
        )
    except pl.exceptions.PolarsError as error:
        types = ", ".join(f"{name} {dtype}" for name, dtype in INDEX_SCHEMA.items())
        raise ValueError(
            f"the conversation index's columns do not cast to {types}: {error}"
        ) from None
    for name in INDEX_REQUIRED:
        if nulls := index[name].null_count():
            raise ValueError(f"the conversation index has {nulls} null {name} value(s)")
    duplicated = (
        index.filter(pl.col("conversation_id").is_duplicated())["conversation_id"].unique().sort()
    )
    if duplicated.len():
        examples = ", ".join(str(v) for v in duplicated.head(5).to_list())
        raise ValueError(
            f"{duplicated.len()} conversation_id value(s) appear more than once in the "
            f"conversation index (e.g. {examples}); it needs one row per conversation"
        )
    return index.sort("conversation_id")


def removal_reasons_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """``conversation_id, reason``, one reason per conversation: with two, which one a removal
    is counted under would depend on row order."""
    missing = [name for name in REMOVALS_SCHEMA.names() if name not in frame.columns]
    if missing:
        raise ValueError(f"removal reasons need the column(s) {', '.join(missing)}")
    try:
        reasons = frame.select(
            pl.col(name).cast(dtype, strict=True) for name, dtype in REMOVALS_SCHEMA.items()
        )
    except pl.exceptions.PolarsError as error:
        raise ValueError(
            f"removal reasons do not cast to conversation_id, reason: {error}"
        ) from None
    if nulls := reasons["conversation_id"].null_count():
        raise ValueError(f"removal reasons have {nulls} null conversation_id value(s)")
    duplicated = reasons.filter(pl.col("conversation_id").is_duplicated())["conversation_id"]
    if duplicated.len():
        examples = ", ".join(str(v) for v in duplicated.unique().sort().head(5).to_list())
        raise ValueError(
            f"removal reasons give more than one reason for conversation_id {examples}; "
            "one reason per conversation"
        )
    return reasons.sort("conversation_id")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        # Shards are up to gigabytes: never read one whole.
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_entries(folder: Path) -> list[dict]:
    """Every file under ``folder`` (a release folder): ``path`` (relative, posix), ``bytes``
    and ``sha256``, sorted by path, so a manifest says exactly what was published and two
    manifests compare file by file."""
    folder = Path(folder)
    entries = []
    for directory, _, names in os.walk(folder):
        for name in names:
            path = Path(directory) / name
            entries.append(
                {
                    "path": path.relative_to(folder).as_posix(),
                    "bytes": path.stat().st_size,
                    "sha256": sha256_of(path),
                }
            )
    return sorted(entries, key=lambda entry: entry["path"])


def _json_default(value: Any) -> str:
    # Build dates and paths come in naturally; anything else is a mistake worth a TypeError.
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return value.as_posix()
    raise TypeError(f"a manifest value must be JSON (or a date or path): {type(value).__name__}")


def manifest_text(manifest: Mapping[str, Any]) -> str:
    return (
        json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, default=_json_default)
        + "\n"
    )


def _fsync(path: Path) -> None:
    # A rename is only as durable as what it renames: flush the files first, then the folder
    # that records the rename.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_version(
    history_root: Path,
    release: str,
    version: str,
    manifest: Mapping[str, Any],
    index: pl.DataFrame,
    removals: pl.DataFrame | None = None,
) -> Path:
    """Store ``version`` of ``release`` and return its folder.

    The files are written into a hidden folder beside it, then renamed into place, so a reader
    sees the whole version or none of it. An existing version (finished or not) is never
    overwritten: FileExistsError; take a name from next_version. The manifest written is
    ``manifest`` plus version, release, conversations (rows of the index), index_sha256 and,
    with ``removals`` (conversation_id, reason), removals_sha256.

    Two writers that picked the same name race to the rename: one wins, the other gets
    FileExistsError and leaves nothing behind.
    """
    final = version_folder(history_root, release, version)
    clash = [k for k in RESERVED_KEYS if k in manifest]
    if clash:
        raise ValueError(f"write_version sets {', '.join(clash)}; leave them out of the manifest")
    index = conversation_index(index)
    removals = removal_reasons_frame(removals) if removals is not None else None
    if final.exists():
        raise FileExistsError(f"version {version} of {release} already exists: {final}")
    final.parent.mkdir(parents=True, exist_ok=True)
    # Hidden and not a version name: load_versions and next_version never see it.
    staging = final.with_name(f".{version}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        index.write_parquet(staging / INDEX_FILE, compression="zstd")
        written: dict[str, Any] = {
            **manifest,
            "version": version,
            "release": release,
            "conversations": index.height,
            "index_sha256": sha256_of(staging / INDEX_FILE),
        }
        files = [INDEX_FILE]
        if removals is not None:
            removals.write_parquet(staging / REMOVALS_FILE, compression="zstd")
            written["removals_sha256"] = sha256_of(staging / REMOVALS_FILE)
            files.append(REMOVALS_FILE)
        (staging / MANIFEST).write_text(manifest_text(written), encoding="utf-8")
        for name in [*files, MANIFEST]:
            _fsync(staging / name)
        _fsync(staging)
        # rename() would silently replace an empty folder that appeared meanwhile; check again
        # as close to it as possible (a non-empty one makes rename fail on its own).
        if final.exists():
            raise FileExistsError(f"version {version} of {release} already exists: {final}")
        try:
            staging.rename(final)
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            raise FileExistsError(
                f"version {version} of {release} appeared while it was written: {final}"
            ) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync(final.parent)
    return final


@dataclass
class VersionInfo:
    """A stored version: its name, its folder and its manifest."""

    version: str
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def built_on(self) -> date:
        parsed = parse_version(self.version)
        assert parsed is not None  # load_versions only makes VersionInfo of version names
        return parsed[0]

    @property
    def number(self) -> int:
        parsed = parse_version(self.version)
        assert parsed is not None
        return parsed[1]


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a version folder. ValueError, naming the file, when it is not a JSON
    object or names another version than its folder: a copied or edited manifest would
    otherwise vouch for files it was not written with."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} is not a JSON object")
    if manifest.get("version") != folder.name:
        raise ValueError(
            f"{path} is the manifest of version {manifest.get('version')!r}, not {folder.name!r}"
        )
    return manifest


def load_versions(history_root: Path, release: str) -> list[VersionInfo]:
    """The stored versions of ``release``, oldest first by (date, N) as numbers, so
    2024-01-01.10 comes after 2024-01-01.9. Folders without a manifest (not finished) and
    names that are not versions are skipped; a manifest that does not read raises ValueError."""
    folder = release_history(history_root, release)
    names = sorted(_version_names(folder), key=parse_version)
    return [
        VersionInfo(name, folder / name, read_manifest(folder / name))
        for name in names
        if (folder / name / MANIFEST).is_file()
    ]


def _verified(info: VersionInfo, name: str, key: str) -> Path:
    path = info.path / name
    expected = info.manifest.get(key)
    if not path.is_file():
        raise ValueError(f"{path} is missing (version {info.version})")
    if not isinstance(expected, str):
        raise ValueError(f"{info.path / MANIFEST} has no {key} for {path}")
    if sha256_of(path) != expected:
        raise ValueError(
            f"{path} does not match its manifest ({key}): the file was changed after version "
            f"{info.version} was written"
        )
    return path


def load_index(info: VersionInfo) -> pl.DataFrame:
    """The version's conversation index, after checking its sha256 against the manifest."""
    path = _verified(info, INDEX_FILE, "index_sha256")
    index = pl.read_parquet(path)
    if index.schema != INDEX_SCHEMA:
        raise ValueError(f"{path} is not a conversation index: {index.schema}")
    return index


def load_removals(info: VersionInfo) -> pl.DataFrame | None:
    """The version's removal reasons (conversation_id, reason), checked against the manifest;
    None when the version was stored without them."""
    if "removals_sha256" not in info.manifest:
        if (info.path / REMOVALS_FILE).exists():
            raise ValueError(
                f"{info.path / REMOVALS_FILE} is not in its manifest (no removals_sha256)"
            )
        return None
    return removal_reasons_frame(pl.read_parquet(_verified(info, REMOVALS_FILE, "removals_sha256")))


Count = int | float


@dataclass
class VersionDiff:
    """What changed between two versions of a release.

    ``*_ids`` are conversation_ids, sorted. A conversation in both versions whose
    conversation_hash differs (its text changed, e.g. redacted again under new rules) is
    ``changed``, neither added nor removed. ``reasons_still_present`` lists conversations that
    removal_reasons says were removed but the new version still holds: a takedown that did not
    take.
    """

    old_version: str | None
    new_version: str | None
    old_conversations: int
    new_conversations: int
    added_ids: list[int]
    removed_ids: list[int]
    changed_ids: list[int]
    removed_by_reason: dict[str, int]
    added_by_day: dict[str, int]
    removed_by_day: dict[str, int]
    count_changes: dict[str, tuple[Count, Count, Count]]
    reasons_still_present: list[int] = field(default_factory=list)

    @property
    def added(self) -> int:
        return len(self.added_ids)

    @property
    def removed(self) -> int:
        return len(self.removed_ids)

    @property
    def changed(self) -> int:
        return len(self.changed_ids)


def _by_day(frame: pl.DataFrame) -> dict[str, int]:
    counts = frame.group_by("partition_day").len().sort("partition_day")
    return {day.isoformat(): n for day, n in counts.iter_rows()}


def _numeric_counts(manifest: Mapping[str, Any] | None) -> dict[str, Count]:
    counts = (manifest or {}).get("counts")
    if not isinstance(counts, Mapping):
        return {}
    # bool is an int to Python, but True is no count.
    return {
        str(k): v
        for k, v in counts.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def count_changes(
    old_manifest: Mapping[str, Any] | None, new_manifest: Mapping[str, Any] | None
) -> dict[str, tuple[Count, Count, Count]]:
    """``name -> (old, new, new - old)`` for every number under "counts" in either manifest; a
    count one of them lacks is 0 there (a new exclusion reason starts from none)."""
    old, new = _numeric_counts(old_manifest), _numeric_counts(new_manifest)
    return {
        name: (old.get(name, 0), new.get(name, 0), new.get(name, 0) - old.get(name, 0))
        for name in sorted(old.keys() | new.keys())
    }


def diff_versions(
    old_index: pl.DataFrame,
    new_index: pl.DataFrame,
    removal_reasons: pl.DataFrame | None = None,
    old_manifest: Mapping[str, Any] | None = None,
    new_manifest: Mapping[str, Any] | None = None,
) -> VersionDiff:
    """Compare two versions' conversation indexes by conversation_id.

    ``removal_reasons`` (conversation_id, reason) explains removals; a removed conversation it
    does not name counts under NO_REASON, so the reasons always add up to the removals.
    """
    old, new = conversation_index(old_index), conversation_index(new_index)
    reasons = removal_reasons_frame(removal_reasons) if removal_reasons is not None else None
    key = "conversation_id"
    added = new.join(old.select(key), on=key, how="anti")
    removed = old.join(new.select(key), on=key, how="anti")
    changed = old.select(key, "conversation_hash").join(
        new.select(key, "conversation_hash"), on=key, how="inner", suffix="_new"
    )
    changed = changed.filter(pl.col("conversation_hash") != pl.col("conversation_hash_new"))
    by_reason: dict[str, int] = {}
    still_present: list[int] = []
    if removed.height:
        if reasons is not None:
            labelled = removed.select(key).join(reasons, on=key, how="left")
        else:
            labelled = removed.select(key).with_columns(reason=pl.lit(None, pl.String))
        counts = (
            labelled.with_columns(pl.col("reason").fill_null(NO_REASON))
            .group_by("reason")
            .len()
            .sort(["len", "reason"], descending=[True, False])
        )
        by_reason = dict(counts.iter_rows())
    if reasons is not None:
        still_present = reasons.join(new.select(key), on=key, how="semi")[key].to_list()
    return VersionDiff(
        old_version=(old_manifest or {}).get("version"),
        new_version=(new_manifest or {}).get("version"),
        old_conversations=old.height,
        new_conversations=new.height,
        added_ids=added[key].to_list(),
        removed_ids=removed[key].to_list(),
        changed_ids=changed[key].sort().to_list(),
        removed_by_reason=by_reason,
        added_by_day=_by_day(added),
        removed_by_day=_by_day(removed),
        count_changes=count_changes(old_manifest, new_manifest),
        reasons_still_present=still_present,
    )


def _plain(text: Any) -> str:
    """One line of printable text: a reason or key read from a file must not move the cursor
    or inject a terminal escape."""
    collapsed = " ".join(str(text).split())
    return "".join(c for c in collapsed if unicodedata.category(c) != "Cc")


def _number(value: Count) -> str:
    return f"{value:,}"


def _signed(value: Count) -> str:
    return f"{value:+,}"


def _text_table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    # First column left-aligned (names), the others right-aligned (numbers).
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return (indent + "  ".join([first, *rest])).rstrip()

    return [line(header), *(line(r) for r in rows)]


def render_diff(diff: VersionDiff) -> str:
    """The diff as plain text, for the command line."""
    old_name = diff.old_version or "old"
    new_name = diff.new_version or "new"
    delta = diff.new_conversations - diff.old_conversations
    lines = [f"{_plain(old_name)} -> {_plain(new_name)}", ""]
    lines += _text_table(
        ["", "conversations"],
        [
            [_plain(old_name), _number(diff.old_conversations)],
            [_plain(new_name), _number(diff.new_conversations)],
            ["delta", _signed(delta)],
            ["added", _number(diff.added)],
            ["removed", _number(diff.removed)],
            ["changed (same id, new conversation_hash)", _number(diff.changed)],
        ],
        indent="",
    )
    if diff.removed_by_reason:
        lines += ["", "removed, by reason:"]
        lines += _text_table(
            ["reason", "conversations"],
            [[_plain(r), _number(n)] for r, n in diff.removed_by_reason.items()],
        )
    for title, by_day in (("added", diff.added_by_day), ("removed", diff.removed_by_day)):
        if by_day:
            lines += ["", f"{title}, by day:"]
            lines += _text_table(
                ["day", "conversations"], [[d, _number(n)] for d, n in by_day.items()]
            )
    if diff.count_changes:
        lines += ["", "counts (manifests):"]
        lines += _text_table(
            ["count", "old", "new", "delta"],
            [
                [_plain(name), _number(a), _number(b), _signed(d)]
                for name, (a, b, d) in diff.count_changes.items()
            ],
        )
    if diff.reasons_still_present:
        shown = ", ".join(str(i) for i in diff.reasons_still_present[:10])
        more = len(diff.reasons_still_present) - 10
        lines += [
            "",
            f"WARNING: {len(diff.reasons_still_present):,} conversation(s) with a removal "
            f"reason are still in {_plain(new_name)}: {shown}"
            + (f" and {more:,} more" if more > 0 else ""),
        ]
    return "\n".join(lines) + "\n"


# Bidi embeddings, overrides and isolates: one left open in a note would reorder everything
# after it on the line (the counts), so a note's own are dropped and the note is isolated.
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_FIRST_STRONG_ISOLATE, _POP_DIRECTIONAL_ISOLATE = "\u2068", "\u2069"
# Backslash first, so the escapes added after it are not escaped again.
_MARKDOWN_SPECIALS = "\\`*_|[]<>~"


def markdown_inline(text: Any) -> str:
    """``text`` as one line of literal markdown inside a bullet: whitespace (newlines included)
    collapsed to single spaces, control characters dropped, the characters markdown acts on
    escaped (emphasis, code, links, tables, HTML), and right-to-left text set in a bidi isolate
    so the bullet's punctuation and numbers stay in place."""
    collapsed = " ".join(str(text).split())
    kept = "".join(
        c for c in collapsed if c not in _BIDI_CONTROLS and unicodedata.category(c) != "Cc"
    )
    escaped = "".join(f"\\{c}" if c in _MARKDOWN_SPECIALS else c for c in kept)
    if any(unicodedata.bidirectional(c) in ("R", "AL") for c in escaped):
        escaped = f"{_FIRST_STRONG_ISOLATE}{escaped}{_POP_DIRECTIONAL_ISOLATE}"
    return escaped


def _conversations(n: int) -> str:
    return f"{n:,} conversation{'' if n == 1 else 's'}"


def _request_label(request: Mapping[str, Any]) -> str:
    reason = request.get("reason")
    if reason not in TAKEDOWN_REASONS:
        raise ValueError(
            f"takedown request {request.get('request_id')!r}: unknown reason {reason!r}; "
            f"one of {', '.join(TAKEDOWN_REASONS)}"
        )
    parts = [markdown_inline(request["request_id"]), TAKEDOWN_REASONS[reason]]
    requested_on = request.get("requested_on")
    if requested_on:
        day = requested_on if isinstance(requested_on, date) else None
        if day is None:
            try:
                day = date.fromisoformat(str(requested_on))
            except ValueError:
                raise ValueError(
                    f"takedown request {request['request_id']!r}: requested_on is not a date "
                    f"(YYYY-MM-DD): {requested_on!r}"
                ) from None
        parts.append(f"requested {day.isoformat()}")
    note = request.get("note")
    if note is not None and " ".join(str(note).split()):
        parts.append(f'"{markdown_inline(note)}"')
    return ", ".join(parts)


def _takedowns(requests: Iterable[Mapping[str, Any]], verb: str) -> tuple[int, str | None]:
    # A request that removed nothing from this release (the conversation was never in it, e.g.
    # a toxic one outside the public release) is left out: the line would only say it existed.
    removing = [r for r in requests if int(r.get("removed") or 0) > 0]
    if not removing:
        return 0, None
    total = sum(int(r["removed"]) for r in removing)
    details = "; ".join(f"{_request_label(r)}: {int(r['removed']):,}" for r in removing)
    noun = "takedown requests" if len(removing) > 1 else "a takedown request"
    return total, f"{_conversations(total)} {verb} at {noun} ({details})"


def changelog_entry(
    version: str,
    built_on: date,
    diff: VersionDiff | None,
    requests: list[dict],
    conversations: int | None = None,
) -> str:
    """One markdown bullet for the card's changelog, in WildChat-1M's manner: when, which
    version, and what a user of the previous version finds gone or new.

    ``requests`` are the takedown requests applied to this version (request_id, requested_on,
    reason, note, removed: how many of the previous version's conversations it removed from
    this release). The first version has no diff; ``conversations`` gives its size. Raises
    ValueError when the requests remove more than the diff does: the line would be false.
    """
    head = f"- {built_on.isoformat()} (version {markdown_inline(version)}): "
    if diff is None:
        total, takedowns = _takedowns(requests, "left out")
        first = "first release" + (
            f", {_conversations(conversations)}" if conversations is not None else ""
        )
        return head + "; ".join([first, *([takedowns] if takedowns else [])]) + "."
    total, takedowns = _takedowns(requests, "removed")
    if total > diff.removed:
        raise ValueError(
            f"the takedown requests remove {total:,} conversations, but version {version} "
            f"removed {diff.removed:,} of the previous one"
        )
    parts = [takedowns] if takedowns else []
    if others := diff.removed - total:
        parts.append(f"{_conversations(others)} removed for other reasons")
    if diff.added:
        parts.append(f"{diff.added:,} added")
    if diff.changed:
        parts.append(f"{diff.changed:,} changed (same conversation, new conversation_hash)")
    if not parts:
        parts.append("no conversations added, removed or changed")
    return head + "; ".join(parts) + "."


def changelog(versions: list[VersionInfo]) -> list[str]:
    """The stored changelog entries (manifest key "changelog_entry"), newest first; versions
    stored without one are skipped."""
    return [
        entry
        for info in reversed(versions)
        if isinstance(entry := info.manifest.get("changelog_entry"), str) and entry
    ]


def changelog_markdown(entries: list[str]) -> str:
    """A "## Changelog" section for the card, or "" without entries."""
    if not entries:
        return ""
    return "## Changelog\n\n" + "\n".join(entries) + "\n"
