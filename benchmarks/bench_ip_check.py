"""The raw-IP check (``no_raw_ip_addresses``): the text-only, vectorised scan against the naive one.

Builds a warehouse DuckDB file for one day of generated traffic (default 20,000 conversations;
the logs of that day and the next, as ``generate_logs`` writes them, ingested with
``ingest_day`` and linked with ``link_window`` as the assets do). Outside the raw layer:
``anonymized_conversations`` (``anonymize_conversations`` over the linked day, texts as written:
redaction is not what is measured), a ``user_turn_locations``-like and an
``utterance_languages``-like table, a ``release_records``-like copy of the conversations (the
check's third run sees both), and ``release_notes``, a table no code names (a table added
later). Client addresses of the day are planted into some messages in every notation the check
knows, with look-alikes that must not be found, a tutorial's 8.8.8.8, and another day's client.

Then, in this process, one after the other on the same file:
- naive: ``checks_reference.raw_ips_outside_raw_layer``: every row of every non-raw table as
  JSON (``to_json``), Python's regex over all of it, the literals looked up among the clients;
- new: ``checks.scan_raw_ips``, what the asset check runs.
Both go through ``Warehouse.query``, as the check does. The script checks that the two agree on
the plants the naive check can see, that the new one finds every plant and nothing the naive
one does not (but plants), and that neither finds a look-alike; it exits non-zero otherwise.
It prints wall and CPU seconds (``resource.getrusage``: every thread, DuckDB's and polars'
too), rows per second and the ratios.

    .venv/bin/python benchmarks/bench_ip_check.py
    .venv/bin/python benchmarks/bench_ip_check.py --conversations 2000   # a quick run
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl

from wildchat_dag.core.hashing import sha256_column
from wildchat_dag.core.schema import partition_day_value
from wildchat_dag.core.utterances import linked_utterances
from wildchat_dag.defs.anonymization.anonymization import anonymize_conversations
from wildchat_dag.defs.checks import raw_ip_scan_reference as checks_reference
from wildchat_dag.defs.checks.raw_ip_scan import scan_raw_ips
from wildchat_dag.defs.ingest.log_contract import DEFAULT_MAX_LINE_BYTES
from wildchat_dag.defs.ingest.parsing import ingest_day
from wildchat_dag.defs.linking.linking import link_window
from wildchat_dag.loggen.generator import generate_logs
from wildchat_dag.resources.warehouse import Warehouse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_tables import print_table

DAY = date(2024, 3, 4)
LOOKAHEAD = 1
SALT = "benchmark-salt-not-a-secret-0123456789"
FULL_WIDTH = str.maketrans("0123456789.:abcdef", "０１２３４５６７８９．：ａｂｃｄｅｆ")


@dataclass(frozen=True)
class Plant:
    table: str
    conversation_id: int
    kind: str
    # The naive check reads dotted quads and what ``ipaddress`` parses; the rest it misses.
    naive_sees: bool
    # A look-alike: found by neither.
    must_not_find: bool = False


def ipv4_notations(ip: str) -> list[tuple[str, str, bool]]:
    """(kind, text, whether the naive check can see it) for one IPv4 client address."""
    address = ipaddress.IPv4Address(ip)
    octets, value = list(address.packed), int(address)
    high, low = value >> 16, value & 0xFFFF
    return [
        ("dotted", f"My IP is {ip}, is that bad?", True),
        ("dotted beside CJK", f"我的IP是{ip}谢谢", True),
        ("mapped dotted", f"it says ::ffff:{ip} in the log", True),
        ("mapped hex", f"the server saw ::FFFF:{high:X}:{low:X} as me", True),
        ("mapped in a URL", f"open http://[::ffff:{ip}]:8080/admin", True),
        ("leading zeros", "addr " + ".".join(f"{o:03d}" for o in octets) + " here", False),
        ("integer", f"my ip as a number: {value}.", False),
        ("hex integer", f"hex ip 0x{value:08X}", False),
        ("hex dotted", "try " + ".".join(f"0x{o:02x}" for o in octets), False),
        ("octal dotted", "octal " + ".".join(f"0{o:o}" for o in octets), False),
        ("full width", f"我的地址：{ip.translate(FULL_WIDTH)}。", False),
        ("zero-width space", "ip " + ip.replace(".", ".\u200b", 2), False),
        ("spaces inside", "ip: " + ". ".join(str(o) for o in octets), False),
        ("ideographic stops", "地址" + "。".join(str(o) for o in octets), False),
    ]


def ipv6_notations(ip: str) -> list[tuple[str, str, bool]]:
    address = ipaddress.IPv6Address(ip)
    return [
        ("ipv6", f"my v6 is {ip}", True),
        ("ipv6 expanded upper", f"addr {address.exploded.upper()} ok", True),
        ("ipv6 zone id", f"ping {ip}%eth0 fails", True),
        ("ipv6 in a URL", f"curl http://[{ip}]:443/", True),
        ("ipv6 full width", f"地址{ip.translate(FULL_WIDTH)}谢谢", False),
        ("ipv6 spaces", "addr " + " : ".join(address.exploded.split(":")), False),
        ("ipv6 zero-width", f"v6 {ip.replace(':', ':' + chr(0x200B), 1)}", False),
    ]


def look_alikes(ip: str) -> list[str]:
    """Texts with the address's digits that do not write the address."""
    if ":" in ip:
        return [f"build {ip.replace(':', '-')}", f"id {ip.replace(':', '')}0"]
    value = int(ipaddress.IPv4Address(ip))
    return [f"version {ip}.1 released", f"order {value}7 shipped", f"hash a{value}b"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the warehouse ----------------------------------------------------------------------------


def build_warehouse(
    workdir: Path, conversations: int, seed: int, mean_chars: int
) -> tuple[Path, list[Plant], dict[str, int]]:
    logs = workdir / "logs"
    started = time.perf_counter()
    generate_logs(
        logs,
        start_date=DAY,
        days=2,
        conversations_per_day=conversations,
        seed=seed,
        mean_message_chars=mean_chars,
    )
    generated = time.perf_counter()
    raw = pl.concat(
        [
            ingest_day(logs / d.isoformat(), d, max_line_bytes=DEFAULT_MAX_LINE_BYTES).requests
            for d in (DAY, DAY + timedelta(days=1))
        ]
    )
    linked = link_window(raw, DAY, lookahead_days=LOOKAHEAD).conversations
    print(
        f"generated {raw.height:,} requests in {generated - started:.1f} s; "
        f"{linked.height:,} conversations on {DAY}",
        flush=True,
    )
    day_ips = set(raw.filter(pl.col("partition_day") == partition_day_value(DAY))["ip"].to_list())
    next_day_only = sorted(set(raw["ip"].drop_nulls().to_list()) - day_ips)

    rng = random.Random(seed)
    utterances = linked_utterances(linked)
    users = utterances.filter((pl.col("role") == "user") & pl.col("ip").is_not_null())
    first_user = users.group_by("conversation_id").agg(
        pl.col("utterance_index").min(), pl.col("ip").first()
    )
    by_version = {
        4: first_user.filter(~pl.col("ip").str.contains(":")).sort("conversation_id"),
        6: first_user.filter(pl.col("ip").str.contains(":")).sort("conversation_id"),
    }
    plants: list[Plant] = []
    replaced: dict[tuple[int, int], str] = {}
    chosen: set[int] = set()

    def pick(version: int) -> tuple[int, int, str]:
        rows = by_version[version]
        while True:
            cid, index, ip = rows.row(rng.randrange(rows.height))
            # A zero-padded quad shows leading zeros only where an octet is under 100.
            if cid not in chosen and (version == 6 or min(ipaddress.ip_address(ip).packed) < 100):
                chosen.add(cid)
                return cid, index, ip

    def plant(text: str, cid: int, index: int, kind: str, naive_sees: bool, bad: bool = False):
        replaced[(cid, index)] = text
        plants.append(Plant("anonymized_conversations", cid, kind, naive_sees, bad))
        plants.append(Plant("release_records", cid, kind, naive_sees, bad))

    for version, notations in ((4, ipv4_notations), (6, ipv6_notations)):
        for _ in range(2):
            for kind, _text, naive_sees in notations("0.0.0.0" if version == 4 else "::"):
                cid, index, ip = pick(version)
                [(_, text, _)] = [n for n in notations(ip) if n[0] == kind]
                plant(text, cid, index, kind, naive_sees)
        for _ in range(3):
            cid, index, ip = pick(version)
            plant(" / ".join(look_alikes(ip)), cid, index, "look-alike", False, bad=True)
    cid, index, _ = pick(4)
    plant("Use 8.8.8.8 or 2001:4860:4860::8888 as DNS", cid, index, "not a client", False, True)
    if next_day_only:
        cid, index, _ = pick(4)
        plant(f"my other address is {next_day_only[0]}", cid, index, "another day's client", True)

    keys = pl.DataFrame(
        [(c, i, t) for (c, i), t in replaced.items()],
        schema={"conversation_id": pl.Int64, "utterance_index": pl.Int64, "planted": pl.String},
        orient="row",
    )
    utterances = (
        utterances.join(keys, on=["conversation_id", "utterance_index"], how="left")
        .with_columns(content=pl.coalesce("planted", "content"))
        .drop("planted")
    )
    utterances = utterances.with_columns(content_sha256=sha256_column(utterances["content"]))
    texts = utterances.select(
        "content_sha256", redacted_content="content", redacted=False, withheld=False
    ).unique("content_sha256")
    anonymized = anonymize_conversations(linked, utterances, texts, SALT, "bench-rules")

    countries = ["United States", "China", "Russia", "Germany", "France", "India", None]
    user_turns = utterances.filter(pl.col("role") == "user")
    locations = user_turns.select(
        "conversation_id", "utterance_index", "turn_identifier"
    ).with_columns(
        partition_day=pl.lit(partition_day_value(DAY)),
        country=pl.Series([countries[i % 7] for i in range(user_turns.height)]),
        state=pl.lit(None, pl.String),
        geo_status=pl.when(pl.int_range(pl.len()) % 7 == 6).then(pl.lit("not_found")),
        geoip_snapshot=pl.lit(date(2024, 3, 1)),
    )
    languages = utterances.select(
        partition_day=pl.lit(partition_day_value(DAY)),
        conversation_id="conversation_id",
        utterance_index="utterance_index",
        turn_identifier="turn_identifier",
        role="role",
        language=pl.lit("English"),
        language_code=pl.lit("en"),
        language_confidence=pl.lit(0.93),
        language_source=pl.lit("fasttext"),
    )
    # Plain text, in a table that no code names, planted too.
    note_ids = sorted(anonymized["conversation_id"].to_list())[:5]
    other = by_version[4].filter(~pl.col("conversation_id").is_in(list(chosen))).row(0)[2]
    notes = pl.DataFrame(
        {
            "partition_day": [partition_day_value(DAY)] * 3,
            "conversation_id": note_ids[:3],
            "note": [
                f"traffic from {other} looked odd",
                f"user wrote {int(ipaddress.ip_address(other))} in a ticket",
                "nothing to see",
            ],
        }
    )
    plants += [
        Plant("release_notes", note_ids[0], "plain column, dotted", True),
        Plant("release_notes", note_ids[1], "plain column, integer", False),
    ]

    database = workdir / "warehouse.duckdb"
    database.unlink(missing_ok=True)
    con = duckdb.connect(str(database))
    try:
        for name, frame in {
            "raw_requests": raw,
            "linked_conversations": linked,
            "anonymized_conversations": anonymized,
            "user_turn_locations": locations,
            "utterance_languages": languages,
            "release_notes": notes,
        }.items():
            con.register("frame", frame.to_arrow())
            con.execute(f"CREATE TABLE main.{name} AS SELECT * FROM frame")
            con.unregister("frame")
        # The released shape: the same texts again, with the enrichment beside them.
        con.execute(
            """
            CREATE TABLE main.release_records AS
            SELECT partition_day, conversation_id, model, timestamp, turn, hashed_ip,
                   'English' AS language, false AS toxic, false AS redacted,
                   list_transform(conversation, u -> {
                       'content': u.content, 'role': u.role, 'language': 'English',
                       'country': 'Germany', 'state': NULL::VARCHAR, 'hashed_ip': u.hashed_ip,
                       'header': {'user-agent': u.user_agent,
                                  'accept-language': u.accept_language},
                       'timestamp': u.timestamp, 'toxic': false, 'redacted': u.redacted,
                       'turn_identifier': u.turn_identifier
                   }) AS conversation
            FROM main.anonymized_conversations
            """
        )
        sizes = dict(
            con.execute(
                """
                SELECT table_name, estimated_size FROM duckdb_tables()
                WHERE table_name NOT IN ('raw_requests', 'linked_conversations')
                """
            ).fetchall()
        )
    finally:
        con.close()
    return database, plants, sizes


# -- the two checks -----------------------------------------------------------------------------


def timed(run, *args):
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = run(*args)
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def found_ids(findings: dict[str, pl.DataFrame]) -> set[tuple[str, int]]:
    return {
        (table, cid)
        for table, rows in findings.items()
        for cid in rows["conversation_id"].drop_nulls().to_list()
    }


def verify(naive: set, new: set, plants: list[Plant]) -> list[str]:
    problems = []
    for p in plants:
        key = (p.table, p.conversation_id)
        if p.must_not_find:
            if key in naive or key in new:
                problems.append(f"look-alike found: {p}")
        else:
            if key not in new:
                problems.append(f"new check missed: {p}")
            if p.naive_sees and key not in naive:
                problems.append(f"naive check missed a plant it should see: {p}")
    planted = {(p.table, p.conversation_id) for p in plants}
    if naive - new:
        problems.append(f"found by the naive check only: {sorted(naive - new)[:10]}")
    if new - naive - planted:
        problems.append(
            f"found by the new check only, not planted: {sorted(new - naive - planted)}"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=20_000)
    parser.add_argument("--mean-message-chars", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each check; best is kept")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the warehouse built before in --workdir"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_ip_check_") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        built = workdir / f"built-{args.conversations}-{args.seed}-{args.mean_message_chars}.json"
        if args.reuse and built.exists():
            saved = json.loads(built.read_text())
            database, sizes = workdir / "warehouse.duckdb", saved["sizes"]
            plants = [Plant(**p) for p in saved["plants"]]
        else:
            database, plants, sizes = build_warehouse(
                workdir, args.conversations, args.seed, args.mean_message_chars
            )
            built.write_text(json.dumps({"sizes": sizes, "plants": [asdict(p) for p in plants]}))
        warehouse = Warehouse(database=str(database))
        day = partition_day_value(DAY)
        rows = int(
            sum(
                warehouse.query(
                    f"SELECT count(*) AS n FROM main.{t} WHERE partition_day = $day", {"day": day}
                )["n"][0]
                for t in sizes
            )
        )
        print(f"non-raw tables of the day: {rows:,} rows; {sizes}", flush=True)

        naive_runs, new_runs = [], []
        for _ in range(args.repeat):
            naive_runs.append(
                timed(checks_reference.raw_ips_outside_raw_layer, warehouse.query, day)
            )
            new_runs.append(
                timed(
                    lambda q, d: scan_raw_ips(q, d, lookahead_days=LOOKAHEAD), warehouse.query, day
                )
            )
        naive, naive_wall, naive_cpu = min(naive_runs, key=lambda r: r[1])
        scan, new_wall, new_cpu = min(new_runs, key=lambda r: r[1])

        problems = verify(found_ids(naive), found_ids(scan.findings), plants)
        kinds = sorted({p.kind for p in plants if not p.must_not_find})
        seen_by_naive = sorted({p.kind for p in plants if p.naive_sees and not p.must_not_find})
        print(f"\nplanted notations ({len(kinds)}): {', '.join(kinds)}")
        print(f"of which the naive check can see: {', '.join(seen_by_naive)}")
        stats = {k: v for k, v in scan.stats.items() if k != "tables_searched"}
        print(f"new check's stats: {stats}")
        print(f"columns searched: {scan.stats['tables_searched']}\n")
        print_table(
            ["check", "rows", "wall s", "CPU s", "rows/s", "wall ratio", "CPU ratio", "findings"],
            [
                [
                    "naive: to_json + Python regex",
                    f"{rows:,}",
                    f"{naive_wall:.2f}",
                    f"{naive_cpu:.2f}",
                    f"{rows / naive_wall:,.0f}",
                    "1.0x",
                    "1.0x",
                    str(len(found_ids(naive))),
                ],
                [
                    "new: text columns, vectorised",
                    f"{rows:,}",
                    f"{new_wall:.2f}",
                    f"{new_cpu:.2f}",
                    f"{rows / new_wall:,.0f}",
                    f"{naive_wall / new_wall:.1f}x",
                    f"{naive_cpu / new_cpu:.1f}x",
                    str(len(found_ids(scan.findings))),
                ],
            ],
        )
        print(f"\npeak RSS {peak_rss_mb():,.0f} MB")
        if problems:
            print("\nDISAGREEMENT:\n" + "\n".join(problems))
            return 1
        print("agreement: every plant the naive check can see is found by both; the new check")
        print("finds every plant, no look-alike, and nothing else the naive check does not.")
        return 0


if __name__ == "__main__":
    sys.exit(main())
