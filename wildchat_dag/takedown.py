"""Takedown requests: add them to the ledger, list them, apply them.

    python -m wildchat_dag.takedown add --reason consent_withdrawn --hashed-ip 3f2a... [--note ..]
    python -m wildchat_dag.takedown add --reason pii_found --conversation-hash 7f3c...
    python -m wildchat_dag.takedown add --reason consent_withdrawn --raw-ip 203.0.113.7
    python -m wildchat_dag.takedown list
    python -m wildchat_dag.takedown apply [--workspace workspace.yaml]

``add`` appends a request (``--raw-ip`` is hashed with the deployment's salt on entry, in every
notation ingest may have stored it; the IP is written nowhere) and says how many released
records it names now. ``apply`` finds the days that still hold a conversation the ledger names
(in release_records or anonymized_conversations), and submits one asset backfill: on those days
withdrawn_conversations and every step after it (the takedown_records job's assets), then the
statistics and both releases, for a running daemon. With no
such day it re-cuts the releases alone, so their manifests record the ledger's new version.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from wildchat_dag.core.ip_addresses import SALT_ENV_VAR, SaltError, check_salt
from wildchat_dag.defs.release.release_versions import history_root_of
from wildchat_dag.defs.takedowns.application import resolve_hashes
from wildchat_dag.defs.takedowns.ledger import (
    KEY_TYPES,
    REASONS,
    LedgerError,
    add_request,
    check_key,
    ledger_frame,
    ledger_version,
    raw_ip_keys,
    read_ledger,
)

# Cut once, after the named days are rebuilt.
RELEASE_ASSETS = ["release_statistics", "public_release", "full_release"]


def named_now(database: str, ledger: pl.DataFrame) -> pl.DataFrame:
    """Records of the warehouse that ``ledger`` names; none when there is no warehouse yet."""
    from wildchat_dag.defs.takedowns.application import NAMED_SCHEMA, named_records

    run = warehouse_query(database)
    return pl.DataFrame(schema=NAMED_SCHEMA) if run is None else named_records(run, ledger)


def warehouse_query(database: str):
    """A query function on the warehouse (one locked transaction per query), or None when
    there is no warehouse file yet."""
    from wildchat_dag.core.sql import query
    from wildchat_dag.resources.duckdb_io import locked_connection

    if not Path(database).exists():
        return None

    def run(sql: str) -> pl.DataFrame:
        with locked_connection(database) as con:
            return query(con, sql)

    return run


def _add(args: argparse.Namespace) -> int:
    from wildchat_dag import settings

    given = [
        (name, value)
        for name, value in (
            ("conversation_hash", args.conversation_hash),
            ("turn_identifier", args.turn_identifier),
            ("hashed_ip", args.hashed_ip),
            ("raw_ip", args.raw_ip),
            ("raw_turn_id", args.raw_turn_id),
        )
        if value
    ]
    if len(given) != 1:
        print("name exactly one kind of key (see --help)", file=sys.stderr)
        return 2
    kind, values = given[0]
    try:
        if kind == "raw_ip":
            settings.ip_salt_source()  # demo mode: the per-install salt
            salt = check_salt(settings.env_or_none(SALT_ENV_VAR))
            key_type = "hashed_ip"
            keys: list[object] = [k for value in values for k in raw_ip_keys(value, salt)]
        elif kind == "raw_turn_id":
            # The log's turn id is released unchanged as turn_identifier.
            key_type, keys = "turn_identifier", list(values)
        else:
            key_type, keys = kind, list(values)
        resolved: list[int] = []
        if key_type == "conversation_hash":
            hashes = [check_key(key_type, key) for key in keys]
            found = resolve_hashes(
                warehouse_query(args.database), history_root_of(args.release_root), hashes
            )
            resolved = sorted(set(found.values()))
            if unknown := len(set(hashes) - set(found)):
                print(
                    f"warning: {unknown} of {len(set(hashes))} conversation_hash(es) are in no "
                    "release_records row and no stored release version: the request names them "
                    "by hash only",
                    file=sys.stderr,
                )
        request = add_request(
            args.ledger,
            args.date or datetime.now(UTC).date(),
            args.reason,
            key_type,
            keys,
            args.note,
            resolved,
        )
    except (LedgerError, ValueError, SaltError) as error:
        # The error names the field, never the raw value.
        print(f"not added: {error}", file=sys.stderr)
        return 2
    named = named_now(args.database, ledger_frame([request]))
    days = named["partition_day"].n_unique()
    print(
        f"added {request.request_id} ({REASONS[request.reason]}, {len(request.keys)} "
        f"{request.key_type} key(s)) to {args.ledger}; ledger version "
        f"{ledger_version(args.ledger)}"
    )
    print(
        f"it names {named['conversation_id'].n_unique()} released record(s) on {days} day(s) "
        "now; `python -m wildchat_dag.takedown apply` rebuilds them and cuts the releases"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        requests = read_ledger(args.ledger)
    except LedgerError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{args.ledger}: {len(requests)} request(s), version {ledger_version(args.ledger)}")
    for r in requests:
        note = f"  {r.note}" if r.note else ""
        print(
            f"{r.request_id}  {r.requested_on}  {r.reason:<17} {r.key_type:<17} "
            f"{len(r.keys)} key(s){note}"
        )
    return 0


def rebuild_assets() -> list[str]:
    """What a takedown rebuilds on a named day: the takedown_records job's assets."""
    from wildchat_dag.definitions import defs

    job = defs.get_repository_def().get_job("takedown_records")
    return sorted(key.to_user_string() for key in job.asset_layer.selected_asset_keys)


def _apply(args: argparse.Namespace) -> int:
    from wildchat_dag.backfill import BackfillRefused, backfill_params, submit_backfill
    from wildchat_dag.defs.takedowns.application import named_days

    try:
        ledger = ledger_frame(read_ledger(args.ledger))
    except LedgerError as error:
        print(error, file=sys.stderr)
        return 1
    query = warehouse_query(args.database)
    days = named_days(query, ledger) if query is not None else []
    version = ledger_version(args.ledger)
    assets = (rebuild_assets() if days else []) + RELEASE_ASSETS
    title = f"takedown ledger {version}: {len(days)} day(s)"
    try:
        backfill_id = submit_backfill(
            args.workspace, backfill_params(days, assets, title, set(RELEASE_ASSETS))
        )
    except BackfillRefused as error:
        print(error, file=sys.stderr)
        return 1
    if days:
        print(
            f"backfill {backfill_id}: {len(days)} day(s) hold a conversation the ledger names "
            f"({', '.join(days[:10])}{' ...' if len(days) > 10 else ''}): withdrawn_conversations "
            "and every step after it, then both releases; a running daemon executes it"
        )
    else:
        print(
            f"backfill {backfill_id}: no day holds a conversation the ledger names; both "
            f"releases are cut again to record ledger version {version}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    from wildchat_dag import settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ledger", default=settings.takedown_ledger_path(), type=Path)
    parser.add_argument("--database", default=settings.default_duckdb_path())
    parser.add_argument("--release-root", default=settings.release_root(), type=Path)
    commands = parser.add_subparsers(dest="command", required=True)

    add = commands.add_parser("add", help="add a request to the ledger")
    add.add_argument("--reason", required=True, choices=sorted(REASONS))
    add.add_argument("--note", help="a short public note for the changelog")
    add.add_argument("--date", type=lambda s: datetime.fromisoformat(s).date(), help="YYYY-MM-DD")
    for key_type in KEY_TYPES:
        add.add_argument(f"--{key_type.replace('_', '-')}", nargs="+", metavar="KEY")
    add.add_argument("--raw-ip", nargs="+", metavar="IP", help="hashed on entry, never stored")
    add.add_argument("--raw-turn-id", nargs="+", metavar="ID", help="the log's turn id")
    add.set_defaults(run=_add)

    commands.add_parser("list", help="the requests in the ledger").set_defaults(run=_list)

    apply = commands.add_parser("apply", help="rebuild what the ledger reaches, cut releases")
    apply.add_argument("--workspace", default="workspace.yaml", type=Path)
    apply.set_defaults(run=_apply)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
