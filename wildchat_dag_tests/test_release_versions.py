"""Versioned releases: numbering, atomic storage, tamper detection, diffs, the changelog, and the
``python -m wildchat_dag.releases`` command. No Dagster instance: the module is pure logic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from wildchat_dag.defs.release.release_versions import (
    INDEX_FILE,
    INDEX_SCHEMA,
    MANIFEST,
    NO_REASON,
    REMOVALS_FILE,
    VersionDiff,
    VersionInfo,
    changelog,
    changelog_entry,
    changelog_markdown,
    conversation_index,
    diff_versions,
    file_entries,
    load_index,
    load_removals,
    load_versions,
    markdown_inline,
    next_version,
    parse_version,
    render_diff,
    write_version,
)

REPO = Path(__file__).resolve().parents[1]
DAY = date(2026, 12, 6)


def index_of(rows: list[tuple[int, str, str]]) -> pl.DataFrame:
    """An index from (conversation_id, conversation_hash, partition_day) triples."""
    return pl.DataFrame(
        {
            "conversation_hash": [h for _, h, _ in rows],
            "conversation_id": [i for i, _, _ in rows],
            "partition_day": [date.fromisoformat(d) for _, _, d in rows],
            "hashed_ip": [f"ip{i}" for i, _, _ in rows],
            "turn_identifiers": [[i * 10, i * 10 + 1] for i, _, _ in rows],
        },
        schema=INDEX_SCHEMA,
    )


EMPTY = pl.DataFrame(schema=INDEX_SCHEMA)


def store(history: Path, version: str, index: pl.DataFrame | None = None, **manifest) -> Path:
    return write_version(
        history, "public", version, manifest, index if index is not None else EMPTY
    )


# Numbering


def test_versions_count_per_day_from_one(tmp_path):
    history = tmp_path / "history"
    assert next_version(history, "public", DAY) == "2026-12-06.1"
    store(history, next_version(history, "public", DAY))
    assert next_version(history, "public", DAY) == "2026-12-06.2"
    store(history, next_version(history, "public", DAY))
    assert next_version(history, "public", DAY) == "2026-12-06.3"
    # Another day starts again at 1; another release has a counter of its own.
    assert next_version(history, "public", date(2026, 12, 7)) == "2026-12-07.1"
    assert next_version(history, "full", DAY) == "2026-12-06.1"


def test_a_half_written_version_is_no_version_but_its_name_is_not_reused(tmp_path):
    history = tmp_path / "history"
    store(history, "2026-12-06.1")
    (history / "public" / "2026-12-06.2").mkdir()  # no manifest: cut short
    assert [v.version for v in load_versions(history, "public")] == ["2026-12-06.1"]
    assert next_version(history, "public", DAY) == "2026-12-06.3"
    with pytest.raises(FileExistsError):
        store(history, "2026-12-06.2")


def test_versions_order_numerically_so_ten_follows_nine(tmp_path):
    history = tmp_path / "history"
    for n in range(1, 12):
        store(history, f"2024-01-01.{n}")
    store(history, "2023-12-31.3")
    names = [v.version for v in load_versions(history, "public")]
    assert names == ["2023-12-31.3", *(f"2024-01-01.{n}" for n in range(1, 12))]
    assert next_version(history, "public", date(2024, 1, 1)) == "2024-01-01.12"


def test_names_that_are_not_versions_are_ignored_and_refused(tmp_path):
    history = tmp_path / "history"
    folder = history / "public"
    for name in ("2024-13-40.1", "2026-12-06.01", "2026-12-06.0", "..x", "notes", ".tmp"):
        (folder / name).mkdir(parents=True)
        (folder / name / MANIFEST).write_text(json.dumps({"version": name}))
    (history / "x").mkdir()
    assert load_versions(history, "public") == []
    assert next_version(history, "public", DAY) == "2026-12-06.1"
    assert parse_version("../x") is None and parse_version("2024-02-30.1") is None
    for bad in ("../x", "2024-13-40.1", "2026-12-06.01", "2026-12-06.1/../../x"):
        with pytest.raises(ValueError, match="not a version name"):
            store(history, bad)
    assert not (tmp_path / "x").exists() and sorted(p.name for p in history.iterdir()) == [
        "public",
        "x",
    ]
    with pytest.raises(ValueError, match="unknown release"):
        write_version(history, "../public", "2026-12-06.1", {}, EMPTY)


# Storage


def test_a_version_is_written_whole_and_never_overwritten(tmp_path):
    history = tmp_path / "history"
    index = index_of([(2, "b", "2026-12-01"), (1, "a", "2026-12-01")])
    removals = pl.DataFrame({"conversation_id": [9], "reason": ["td-0001"]})
    folder = write_version(
        history,
        "public",
        "2026-12-06.1",
        {"ledger_version": 3, "note": "中文 עברית", "built_at": DAY},
        index,
        removals,
    )
    assert folder == history / "public" / "2026-12-06.1"
    # Nothing but the version: the temporary folder was renamed, not copied.
    assert sorted(p.name for p in (history / "public").iterdir()) == ["2026-12-06.1"]
    assert sorted(p.name for p in folder.iterdir()) == [INDEX_FILE, MANIFEST, REMOVALS_FILE]
    text = (folder / MANIFEST).read_text(encoding="utf-8")
    manifest = json.loads(text)
    assert "中文 עברית" in text  # ensure_ascii=False
    assert text == json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert manifest["version"] == "2026-12-06.1" and manifest["release"] == "public"
    assert manifest["conversations"] == 2 and manifest["built_at"] == "2026-12-06"
    assert {e["path"]: e["sha256"] for e in file_entries(folder)}[INDEX_FILE] == manifest[
        "index_sha256"
    ]
    [info] = load_versions(history, "public")
    assert info.manifest == manifest and info.built_on == DAY and info.number == 1
    stored = load_index(info)
    assert stored.schema == INDEX_SCHEMA
    assert stored["conversation_id"].to_list() == [1, 2]  # sorted by id
    assert load_removals(info).to_dicts() == [{"conversation_id": 9, "reason": "td-0001"}]

    with pytest.raises(FileExistsError):
        write_version(history, "public", "2026-12-06.1", {}, EMPTY)
    assert load_index(load_versions(history, "public")[0]).height == 2
    assert sorted(p.name for p in (history / "public").iterdir()) == ["2026-12-06.1"]


def test_a_version_that_appears_during_the_write_is_not_replaced(tmp_path, monkeypatch):
    """rename() would replace an empty folder silently: the write checks again before it."""
    from wildchat_dag.defs.release import release_versions

    history = tmp_path / "history"
    final = history / "public" / "2026-12-06.1"
    hash_file = release_versions.sha256_of

    def meanwhile(path: Path) -> str:
        final.mkdir(exist_ok=True)  # another writer, or a copy, got there first
        (final / "theirs").write_text("kept")
        return hash_file(path)

    monkeypatch.setattr(release_versions, "sha256_of", meanwhile)
    with pytest.raises(FileExistsError):
        store(history, "2026-12-06.1")
    assert sorted(p.name for p in (history / "public").iterdir()) == ["2026-12-06.1"]
    assert [p.name for p in final.iterdir()] == ["theirs"]


def test_a_failed_write_leaves_nothing(tmp_path):
    history = tmp_path / "history"
    with pytest.raises(TypeError):
        store(history, "2026-12-06.1", unserializable=object())
    assert list((history / "public").iterdir()) == []
    assert next_version(history, "public", DAY) == "2026-12-06.1"
    with pytest.raises(ValueError, match="index_sha256"):
        store(history, "2026-12-06.1", index_sha256="0" * 64)


def test_an_empty_index_is_a_version(tmp_path):
    history = tmp_path / "history"
    store(history, "2026-12-06.1", EMPTY)
    [info] = load_versions(history, "public")
    assert info.manifest["conversations"] == 0 and load_index(info).is_empty()
    assert load_removals(info) is None
    diff = diff_versions(EMPTY, load_index(info))
    assert (diff.added, diff.removed, diff.changed) == (0, 0, 0)
    assert diff.added_by_day == diff.removed_by_day == diff.removed_by_reason == {}
    assert "conversations" in render_diff(diff)


def test_file_entries_list_every_file_with_size_and_sha256(tmp_path):
    folder = tmp_path / "public"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train-00001-of-00002.parquet").write_bytes(b"b" * 10)
    (folder / "data" / "train-00000-of-00002.parquet").write_bytes(b"a" * 3)
    (folder / "README.md").write_text("card")
    entries = file_entries(folder)
    assert [e["path"] for e in entries] == [
        "README.md",
        "data/train-00000-of-00002.parquet",
        "data/train-00001-of-00002.parquet",
    ]
    assert entries[1]["bytes"] == 3
    assert entries[1]["sha256"] == (
        "9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0"
    )


# Index validation


def test_the_index_is_cast_sorted_and_validated():
    frame = index_of([(3, "c", "2026-12-01"), (1, "a", "2026-12-02")]).with_columns(
        pl.col("conversation_id").cast(pl.Int32), extra=pl.lit("dropped")
    )
    index = conversation_index(frame)
    assert index.schema == INDEX_SCHEMA and index["conversation_id"].to_list() == [1, 3]
    assert conversation_index(EMPTY).is_empty()

    with pytest.raises(ValueError, match="hashed_ip, turn_identifiers"):
        conversation_index(frame.drop("hashed_ip", "turn_identifiers"))
    duplicated = pl.concat([index_of([(1, "a", "2026-12-01")])] * 2 + [index])
    with pytest.raises(ValueError, match=r"1 conversation_id value\(s\) appear more than once.*1"):
        conversation_index(duplicated)
    with pytest.raises(ValueError, match="null conversation_hash"):
        conversation_index(index.with_columns(conversation_hash=pl.lit(None, pl.String)))
    with pytest.raises(ValueError, match="do not cast"):
        conversation_index(index.with_columns(conversation_id=pl.lit("x")))


# Tamper detection


def test_an_edited_index_or_manifest_is_caught_naming_the_file(tmp_path):
    history = tmp_path / "history"
    folder = store(history, "2026-12-06.1", index_of([(1, "a", "2026-12-01")]))
    index_path = folder / INDEX_FILE
    index_of([(1, "a", "2026-12-01"), (2, "b", "2026-12-01")]).write_parquet(index_path)
    [info] = load_versions(history, "public")
    with pytest.raises(ValueError, match=re.escape(str(index_path))):
        load_index(info)

    index_path.unlink()
    with pytest.raises(ValueError, match="missing"):
        load_index(info)

    manifest = folder / MANIFEST
    manifest.write_text(manifest.read_text()[:-5])
    with pytest.raises(ValueError, match=re.escape(str(manifest)) + ".*not valid JSON"):
        load_versions(history, "public")
    manifest.write_text(json.dumps({"version": "2026-12-06.9"}))
    with pytest.raises(ValueError, match=re.escape("not '2026-12-06.1'")):
        load_versions(history, "public")


def test_removals_the_manifest_does_not_vouch_for_are_caught(tmp_path):
    history = tmp_path / "history"
    folder = store(history, "2026-12-06.1")
    pl.DataFrame({"conversation_id": [1], "reason": ["x"]}).write_parquet(folder / REMOVALS_FILE)
    with pytest.raises(ValueError, match="not in its manifest"):
        load_removals(load_versions(history, "public")[0])


# Diff


def test_diff_counts_added_removed_changed_by_reason_and_by_day():
    old = index_of(
        [
            (1, "a", "2026-12-01"),
            (2, "b", "2026-12-01"),
            (3, "c", "2026-12-02"),
            (4, "d", "2026-12-02"),
            (5, "e", "2026-12-02"),
        ]
    )
    new = index_of(
        [
            (1, "a", "2026-12-01"),
            (3, "c-redacted-again", "2026-12-02"),
            (6, "f", "2026-12-03"),
            (7, "g", "2026-12-03"),
            (8, "h", "2026-12-04"),
        ]
    )
    reasons = pl.DataFrame(
        {"conversation_id": [2, 4, 99], "reason": ["td-0002", "td-0002", "td-0009"]}
    )
    diff = diff_versions(
        old,
        new,
        reasons,
        {"version": "2026-12-05.1", "counts": {"toxic": 10, "sexual_minors": 1, "flag": True}},
        {"version": "2026-12-06.1", "counts": {"toxic": 12, "not_screened": 3, "x": "n/a"}},
    )
    assert isinstance(diff, VersionDiff)
    assert (diff.old_conversations, diff.new_conversations) == (5, 5)
    assert diff.added_ids == [6, 7, 8] and diff.added == 3
    assert diff.removed_ids == [2, 4, 5] and diff.removed == 3
    assert diff.changed_ids == [3] and diff.changed == 1
    assert diff.removed_by_reason == {"td-0002": 2, NO_REASON: 1}
    assert diff.added_by_day == {"2026-12-03": 2, "2026-12-04": 1}
    assert diff.removed_by_day == {"2026-12-01": 1, "2026-12-02": 2}
    assert diff.count_changes == {
        "not_screened": (0, 3, 3),
        "sexual_minors": (1, 0, -1),
        "toxic": (10, 12, 2),
    }
    assert diff.reasons_still_present == []
    text = render_diff(diff)
    assert "2026-12-05.1 -> 2026-12-06.1" in text
    assert "td-0002" in text and NO_REASON in text and "+2" in text and "WARNING" not in text

    # Without reasons, every removal is unexplained.
    assert diff_versions(old, new).removed_by_reason == {NO_REASON: 3}


def test_diff_warns_of_a_removal_reason_for_a_conversation_still_there():
    old = index_of([(1, "a", "2026-12-01"), (2, "b", "2026-12-01")])
    new = index_of([(1, "a", "2026-12-01")])
    reasons = pl.DataFrame({"conversation_id": [1, 2], "reason": ["td-1", "td-2"]})
    diff = diff_versions(old, new, reasons)
    assert diff.reasons_still_present == [1] and diff.removed_by_reason == {"td-2": 1}
    assert "WARNING: 1 conversation(s) with a removal reason are still in new: 1" in (
        render_diff(diff)
    )
    with pytest.raises(ValueError, match="more than one reason"):
        diff_versions(old, new, pl.concat([reasons, reasons]))


# Changelog

REQUESTS = [
    {
        "request_id": "td-0002",
        "requested_on": "2026-12-01",
        "reason": "consent_withdrawn",
        "note": None,
        "removed": 2,
    },
    {
        "request_id": "td-0003",
        "requested_on": "2026-12-02",
        "reason": "pii_found",
        "note": "phone number",
        "removed": 1,
    },
    # Nothing of it was in this release: no word of it.
    {
        "request_id": "td-0004",
        "requested_on": "2026-12-02",
        "reason": "policy",
        "note": None,
        "removed": 0,
    },
]


def diff_with(removed: int, added: int, changed: int = 0) -> VersionDiff:
    return VersionDiff(
        "2026-12-05.1",
        "2026-12-06.2",
        100,
        100 - removed + added,
        list(range(1000, 1000 + added)),
        list(range(removed)),
        list(range(500, 500 + changed)),
        {},
        {},
        {},
        {},
    )


def test_the_first_versions_changelog_entry():
    assert (
        changelog_entry("2026-12-06.1", DAY, None, [], conversations=1234)
        == "- 2026-12-06 (version 2026-12-06.1): first release, 1,234 conversations."
    )


def test_a_changelog_entry_with_takedowns():
    entry = changelog_entry("2026-12-06.2", DAY, diff_with(removed=8, added=10), REQUESTS)
    assert entry == (
        "- 2026-12-06 (version 2026-12-06.2): 3 conversations removed at takedown requests "
        "(td-0002, consent withdrawn, requested 2026-12-01: 2; td-0003, PII found, requested "
        '2026-12-02, "phone number": 1); 5 conversations removed for other reasons; 10 added.'
    )
    one = changelog_entry("2026-12-06.2", DAY, diff_with(removed=1, added=0, changed=4), [
        {**REQUESTS[0], "removed": 1}
    ])  # fmt: skip
    assert one == (
        "- 2026-12-06 (version 2026-12-06.2): 1 conversation removed at a takedown request "
        "(td-0002, consent withdrawn, requested 2026-12-01: 1); 4 changed (same conversation, "
        "new conversation_hash)."
    )
    assert changelog_entry("2026-12-06.2", DAY, diff_with(0, 0), []).endswith(
        "no conversations added, removed or changed."
    )
    with pytest.raises(ValueError, match="remove 3 conversations"):
        changelog_entry("2026-12-06.2", DAY, diff_with(removed=2, added=0), REQUESTS)
    with pytest.raises(ValueError, match="unknown reason"):
        changelog_entry("v", DAY, diff_with(1, 0), [{**REQUESTS[0], "reason": "x", "removed": 1}])


def test_a_hostile_note_stays_inside_its_bullet():
    note = "第一行\n\r\tשלום עולם | `rm -rf` **bold** _it_ [link](http://x) <script>\u202e~~s~~"
    request = {**REQUESTS[1], "note": note, "request_id": "td|*5*"}
    entry = changelog_entry("2026-12-06.2", DAY, diff_with(1, 0), [request])
    assert "\n" not in entry and "\r" not in entry and "\t" not in entry
    assert "\u202e" not in entry
    assert entry.startswith("- 2026-12-06 (version 2026-12-06.2): 1 conversation removed at ")
    assert entry.endswith('": 1).')
    assert "td\\|\\*5\\*" in entry
    # Each markdown character is escaped: none acts, none is lost.
    for literal in (
        "\\|",
        "\\`rm -rf\\`",
        "\\*\\*bold\\*\\*",
        "\\_it\\_",
        "\\[link\\]",
        "\\<script\\>",
    ):
        assert literal in entry
    assert "\\~\\~s\\~\\~" in entry
    assert "第一行 \u2068" not in entry  # the isolate wraps the whole note, not a part
    # Hebrew is isolated so the counts after it keep their place.
    assert '"\u2068第一行 שלום עולם' in entry and '\u2069": 1)' in entry
    # Unescaped pipes would split a table row; unescaped backticks open code.
    stripped = entry.replace("\\|", "").replace("\\`", "").replace("\\*", "").replace("\\_", "")
    assert "|" not in stripped and "`" not in stripped and "*" not in stripped
    assert "_" not in stripped
    assert markdown_inline("plain text") == "plain text"


def test_changelog_is_newest_first_and_renders_as_a_section(tmp_path):
    history = tmp_path / "history"
    store(history, "2026-12-06.1", changelog_entry="- first")
    store(history, "2026-12-06.2")  # no entry
    store(history, "2026-12-06.10", changelog_entry="- third")
    versions = load_versions(history, "public")
    assert changelog(versions) == ["- third", "- first"]
    assert changelog_markdown(changelog(versions)) == "## Changelog\n\n- third\n- first\n"
    assert changelog_markdown([]) == ""
    assert changelog([VersionInfo("2026-12-06.1", tmp_path, {})]) == []


# The command


def releases(*args: str, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WILDCHAT_RELEASE_ROOT": str(root), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "wildchat_dag.releases", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )


def test_the_command_lists_diffs_and_shows_versions(tmp_path):
    root = tmp_path / "releases"
    history = root / "history"
    old = index_of([(1, "a", "2026-12-01"), (2, "b", "2026-12-01"), (3, "c", "2026-12-02")])
    new = index_of([(1, "a", "2026-12-01"), (3, "c2", "2026-12-02"), (4, "d", "2026-12-03")])
    rules = ["ab" * 32]
    write_version(
        history,
        "public",
        "2026-12-05.1",
        {"takedown_ledger_version": 1, "redaction_rules_hashes": rules, "counts": {"toxic": 4}},
        old,
    )
    write_version(
        history,
        "public",
        "2026-12-06.1",
        {"takedown_ledger_version": 2, "redaction_rules_hashes": rules, "counts": {"toxic": 5}},
        new,
        pl.DataFrame({"conversation_id": [2], "reason": ["td-0002"]}),
    )
    write_version(history, "full", "2026-12-06.1", {}, new)

    listed = releases("list", root=root)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:4] == ["release", "version", "built", "conversations"]
    assert lines[1].split() == ["public", "2026-12-05.1", "2026-12-05", "3", "1", "ab" * 6]
    assert lines[3].split() == ["full", "2026-12-06.1", "2026-12-06", "3", "-", "-"]
    only_full = releases("list", "--release", "full", "--root", str(root), root=tmp_path)
    assert only_full.returncode == 0 and len(only_full.stdout.splitlines()) == 2
    empty = releases("list", root=tmp_path / "nothing")
    assert empty.returncode == 0 and "no versions" in empty.stdout

    diff = releases("diff", "public", "2026-12-05.1", "2026-12-06.1", root=root)
    assert diff.returncode == 0, diff.stderr
    assert "2026-12-05.1 -> 2026-12-06.1" in diff.stdout
    assert "td-0002" in diff.stdout and "toxic" in diff.stdout
    reasons = diff.stdout.split("removed, by reason:")[1].split("\n\n")[0]
    assert "td-0002" in reasons and NO_REASON not in reasons

    shown = releases("show", "public", "2026-12-06.1", root=root)
    assert shown.returncode == 0, shown.stderr
    manifest = json.loads(shown.stdout)
    assert manifest["takedown_ledger_version"] == 2 and "removals_sha256" in manifest

    for args in (
        ("diff", "public", "2026-12-05.1", "2026-12-07.1"),
        ("show", "public", "../x"),
        ("show", "public", "2024-13-40.1"),
    ):
        unknown = releases(*args, root=root)
        assert unknown.returncode == 2, unknown
        assert f"no version {args[-1]!r} of the public release" in unknown.stderr
        assert "there are: 2026-12-05.1, 2026-12-06.1" in unknown.stderr
    assert releases("show", "nope", "2026-12-06.1", root=root).returncode == 2

    # An edited index: exit 1, naming the file.
    new.head(1).write_parquet(history / "public" / "2026-12-06.1" / INDEX_FILE)
    tampered = releases("diff", "public", "2026-12-05.1", "2026-12-06.1", root=root)
    assert tampered.returncode == 1 and INDEX_FILE in tampered.stderr


def test_the_release_versions_module_imports_no_dagster():
    code = (
        "import sys, wildchat_dag.defs.release.release_versions, wildchat_dag.releases; "
        "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('dagster')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
