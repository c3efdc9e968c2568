"""Serve the review app: ``python -m wildchat_dag.browse`` (scripts/browse.sh).

Search, filter and read the conversations of a release, and, on the operator's machine with the
warehouse, review why each span was redacted and what another version of the rules would
change. It binds to 127.0.0.1 unless told otherwise: the review pages read the warehouse.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wildchat_dag import settings
from wildchat_dag.defs.release.release_schema import RELEASES


def parse_rules(values: list[str]) -> dict[str, Path]:
    """``NAME=PATH`` pairs, after the configured rules, named ``current``."""
    rules = {"current": settings.redaction_rules_path()}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--rules takes NAME=PATH, not {value!r}")
        if name in rules:
            raise SystemExit(f"--rules: the name {name!r} is taken")
        if not Path(path).is_file():
            raise SystemExit(f"--rules {name}: no file {path}")
        rules[name] = Path(path).resolve()
    return rules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wildchat_dag.browse", description=__doc__)
    parser.add_argument("--release", choices=RELEASES, default="public")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--release-root", default=settings.release_root())
    parser.add_argument("--search-root", default=settings.search_root())
    parser.add_argument(
        "--warehouse",
        default=settings.default_duckdb_path(),
        help="The DuckDB file of the pipeline, for the redaction review (default: the "
        "configured one, when it exists).",
    )
    parser.add_argument(
        "--no-review", action="store_true", help="Serve the release only: no warehouse pages."
    )
    parser.add_argument(
        "--rules",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="Another version of the redaction rules to compare with the current one (repeatable).",
    )
    args = parser.parse_args(argv)

    import uvicorn

    from wildchat_dag.browse.app import BrowseConfig, create_app

    config = BrowseConfig(
        release=args.release,
        release_root=Path(args.release_root),
        search_root=Path(args.search_root),
        database=None if args.no_review else args.warehouse,
        rules=parse_rules(args.rules),
    )
    index = config.search_root / config.release
    if not index.is_dir():
        print(
            f"No search index at {index}: materialize {config.release}_search_index "
            "(bash scripts/demo.sh builds it).",
            file=sys.stderr,
        )
        return 1
    print(f"Serving the {config.release} release on http://{args.host}:{args.port}")
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
