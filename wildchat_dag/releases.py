"""The stored versions of the releases, from the command line: what was published when, and
what changed between two versions.

    python -m wildchat_dag.releases list [--release public|full] [--root DIR]
    python -m wildchat_dag.releases diff RELEASE OLD NEW [--root DIR]
    python -m wildchat_dag.releases show RELEASE VERSION [--root DIR]
    python -m wildchat_dag.releases changelog RELEASE [--root DIR]

DIR is the release root ($WILDCHAT_RELEASE_ROOT, .wildchat/releases by default); the versions
are under DIR/history/<release>/. Exit status: 0, 1 when a stored version does not read (a
manifest or index that was edited), 2 for a bad argument or an unknown version.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wildchat_dag.defs.release.release_schema import RELEASES
from wildchat_dag.defs.release.release_versions import (
    VersionInfo,
    changelog,
    changelog_markdown,
    diff_versions,
    history_root_of,
    load_index,
    load_removals,
    load_versions,
    manifest_text,
    render_diff,
)

UNKNOWN = 2
UNREADABLE = 1


class UnknownVersion(Exception):
    pass


def _find(versions: list[VersionInfo], release: str, version: str) -> VersionInfo:
    for info in versions:
        if info.version == version:
            return info
    there = ", ".join(info.version for info in versions) or "none"
    raise UnknownVersion(f"no version {version!r} of the {release} release; there are: {there}")


def _rules(manifest: dict) -> str:
    hashes = manifest.get("redaction_rules_hashes")
    if isinstance(hashes, str):
        hashes = [hashes]
    if not isinstance(hashes, list) or not hashes:
        return "-"
    # 12 hex digits tell rules files apart; `show` prints them whole.
    return ",".join(str(h)[:12] for h in hashes)


def list_versions(root: Path, releases: list[str]) -> str:
    rows = [["release", "version", "built", "conversations", "ledger", "rules (sha256, 12)"]]
    for release in releases:
        for info in load_versions(history_root_of(root), release):
            conversations = info.manifest.get("conversations")
            ledger = info.manifest.get("takedown_ledger_version")
            rows.append(
                [
                    release,
                    info.version,
                    info.built_on.isoformat(),
                    f"{conversations:,}" if isinstance(conversations, int) else "-",
                    "-" if ledger is None else str(ledger),
                    _rules(info.manifest),
                ]
            )
    if len(rows) == 1:
        return f"no versions of {' or '.join(releases)} under {history_root_of(root)}\n"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    numeric = {3}
    lines = [
        "  ".join(
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def diff_text(root: Path, release: str, old: str, new: str) -> str:
    versions = load_versions(history_root_of(root), release)
    old_info, new_info = _find(versions, release, old), _find(versions, release, new)
    diff = diff_versions(
        load_index(old_info),
        load_index(new_info),
        # The newer version's folder says why conversations left it.
        load_removals(new_info),
        old_info.manifest,
        new_info.manifest,
    )
    return f"{release} release\n" + render_diff(diff)


def main(argv: list[str] | None = None) -> int:
    from wildchat_dag import settings

    parser = argparse.ArgumentParser(
        prog="python -m wildchat_dag.releases", description=__doc__.split("\n\n")[0]
    )
    root_help = (
        "the release root (default: $WILDCHAT_RELEASE_ROOT, or releases/ under $WILDCHAT_HOME)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the stored versions, oldest first")
    listing.add_argument("--release", choices=RELEASES, help="one release (default: both)")
    listing.add_argument("--root", type=Path, help=root_help)
    diff = commands.add_parser("diff", help="what changed between two versions of a release")
    diff.add_argument("release", choices=RELEASES)
    diff.add_argument("old", help="version, YYYY-MM-DD.N")
    diff.add_argument("new", help="version, YYYY-MM-DD.N")
    diff.add_argument("--root", type=Path, help=root_help)
    show = commands.add_parser("show", help="a version's manifest")
    show.add_argument("release", choices=RELEASES)
    show.add_argument("version", help="version, YYYY-MM-DD.N")
    show.add_argument("--root", type=Path, help=root_help)
    log = commands.add_parser("changelog", help="the changelog section the card carries")
    log.add_argument("release", choices=RELEASES)
    log.add_argument("--root", type=Path, help=root_help)
    args = parser.parse_args(argv)
    root = args.root if args.root is not None else Path(settings.release_root())

    try:
        if args.command == "list":
            text = list_versions(root, [args.release] if args.release else list(RELEASES))
        elif args.command == "diff":
            text = diff_text(root, args.release, args.old, args.new)
        elif args.command == "show":
            versions = load_versions(history_root_of(root), args.release)
            text = manifest_text(_find(versions, args.release, args.version).manifest)
        else:
            versions = load_versions(history_root_of(root), args.release)
            text = changelog_markdown(changelog(versions)) or "no changelog entries\n"
    except UnknownVersion as error:
        print(error, file=sys.stderr)
        return UNKNOWN
    except (ValueError, OSError) as error:
        print(f"cannot read the stored versions: {error}", file=sys.stderr)
        return UNREADABLE
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
