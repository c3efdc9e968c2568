"""Enrichment throughput: GeoIP lookups and language ID, each against its naive loop.

Geo, on the GeoLite2-City database shipped in maxminddb-geolite2 (57 MB, real data):
- input: client addresses drawn as the log generator draws them (public IPv4, 15% IPv6, 10%
  documentation ranges, a few private ones), canonical as ingest stores them, in three shapes:
  every turn from its own address (the worst case for de-duplication), 2.5 turns per address
  (one address per conversation, at WildChat's mean of 2.5 turns), and 5 (users coming back);
- vectorised: ``geo.locate``, what the user_turn_locations asset runs (classification, one
  ``maxminddb-polars`` lookup per distinct address, a projected one for the misses, the join
  back);
- baselines, timed in the same run on the first ``--loop-turns`` turns: the per-row loop
  ``maxminddb.Reader.get`` with the country and state read out of each record, and the
  reference locator (``geo_reference.py``: ``ipaddress`` classification, then ``get``), whose
  answers the vectorised path must equal (checked here).

Language, on real WildChat-length texts (the 187 conversations of ``../shared``; generated
logs when it is absent), copied ``--copies`` times with a tag that makes every text distinct,
so de-duplication gains nothing:
- the logs are replayed into one day, ingested and linked through the real assets;
- asset: the identify_languages step for that partition, through Dagster, timed from its
  STEP_START to its STEP_SUCCESS event (loading linked_conversations from DuckDB, predicting,
  writing both tables); the whole run's wall time is reported too;
- baseline: the raw fastText loop over the same utterances,
  ``model.predict(text.replace("\\n", " "))``, one call per utterance.

    .venv/bin/python benchmarks/bench_enrichment.py
    .venv/bin/python benchmarks/bench_enrichment.py --turns 200000 --copies 5   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path

import polars as pl
from report_tables import print_table

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "wildchat-sample" / "conversations.jsonl"
DAY = date(2024, 1, 1)


# -- geo -------------------------------------------------------------------------------------


def client_addresses(n: int, per_address: float, seed: int = 0) -> list[str]:
    from wildchat_dag.defs.ingest.parsing import normalize_ip
    from wildchat_dag.loggen.generator import random_client_ip

    rng = random.Random(seed)
    pool = [
        normalize_ip(random_client_ip(rng, ipv6_rate=0.15, private_rate=0.0005))
        for _ in range(max(1, int(n / per_address)))
    ]
    if per_address == 1:
        return pool
    return [pool[i % len(pool)] for i in rng.sample(range(n), n)]


def loop_get(addresses: list[str], path: str) -> list[tuple]:
    """The plain per-row loop: one Reader.get per turn, names read out of the record."""
    import maxminddb

    reader = maxminddb.open_database(path)
    out = []
    for ip in addresses:
        try:
            record = reader.get(ip)
        except ValueError:
            record = None
        if record is None:
            out.append((None, None))
            continue
        subdivisions = record.get("subdivisions") or [{}]
        out.append(
            (
                record.get("country", {}).get("names", {}).get("en"),
                subdivisions[0].get("names", {}).get("en"),
            )
        )
    reader.close()
    return out


def bench_geo(turns: int, loop_turns: int) -> None:
    from wildchat_dag.defs.geo.geo import locate, open_snapshots
    from wildchat_dag.defs.geo.geo_reference import ReferenceLocator

    snapshots = open_snapshots(None)
    path = snapshots.snapshots[0].path
    at = datetime(DAY.year, DAY.month, DAY.day, 12, tzinfo=UTC)
    rows = []
    for per_address in (1, 2.5, 5):
        addresses = client_addresses(turns, per_address)
        frame = pl.DataFrame(
            {"ip": addresses, "timestamp": [at] * len(addresses)},
            schema={"ip": pl.String, "timestamp": pl.Datetime("us", "UTC")},
        )
        locate(frame.head(1000), snapshots)  # warm the plugin and the page cache
        started = time.perf_counter()
        located = locate(frame, snapshots)
        vectorised = time.perf_counter() - started

        subset = addresses[:loop_turns]
        started = time.perf_counter()
        loop_get(subset, path)
        plain = time.perf_counter() - started
        reference = ReferenceLocator(snapshots)
        started = time.perf_counter()
        expected = [reference.locate_one(ip, DAY) for ip in subset]
        referenced = time.perf_counter() - started
        reference.close()
        got = list(located.turns.head(loop_turns).select("country", "state", "geo_status").rows())
        if got != expected:
            sys.exit("geo: the vectorised answers differ from the reference loop")

        plain_rate = len(subset) / plain
        shape = f"{per_address} turn(s)/address"
        rows += [
            [shape, "vectorised: geo.locate", f"{turns:,}", f"{vectorised:.2f}",
             f"{turns / vectorised:,.0f}", f"{turns / vectorised / plain_rate:.1f}x"],
            [shape, "loop: Reader.get per turn", f"{len(subset):,}", f"{plain:.2f}",
             f"{plain_rate:,.0f}", "1.0x"],
            [shape, "loop: reference locator", f"{len(subset):,}", f"{referenced:.2f}",
             f"{len(subset) / referenced:,.0f}", f"{len(subset) / referenced / plain_rate:.1f}x"],
        ]  # fmt: skip
        statuses = located.turns["geo_status"].value_counts(sort=True).rows()
        print(f"geo, {shape}: {located.stats['distinct_addresses']:,} distinct; {statuses}")
    print()
    print_table(["input", "path", "turns", "seconds", "turns/s", "vs Reader.get loop"], rows)
    print("answers: vectorised == reference loop on every timed loop turn")


# -- language ----------------------------------------------------------------------------------


def language_logs(log_root: Path, copies: int) -> str:
    """One day of logs of real texts, each copy tagged so that no text repeats."""
    from wildchat_dag.loggen.generator import generate_logs
    from wildchat_dag.loggen.replay import fill_missing_turns, replay_conversations

    if not SAMPLE.is_file():
        generate_logs(log_root, start_date=DAY, days=1, conversations_per_day=187 * copies)
        return "generated logs (../shared is absent)"
    sample = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    conversations = []
    for copy in range(copies):
        for c in sample:
            turns = fill_missing_turns(c["conversation"])
            tagged = [{**u, "content": f"[{copy}] {u['content']}"} for u in turns]
            conversations.append({**c, "conversation": tagged})
    replay_conversations(conversations, log_root, start_date=DAY, days=1)
    return f"the real WildChat sample x {copies}, every text tagged distinct"


def step_seconds(instance, run_id: str, step: str) -> float:
    """From the step's STEP_START to its STEP_SUCCESS, as the run's event log records them."""
    times = {
        entry.dagster_event.event_type_value: entry.timestamp
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is not None
        and entry.step_key == step
        and entry.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS")
    }
    return times["STEP_SUCCESS"] - times["STEP_START"]


def bench_language(copies: int) -> None:
    import duckdb
    import fasttext
    from dagster import AssetKey, DagsterInstance, Definitions

    from wildchat_dag.core.utterances import conversation_utterances
    from wildchat_dag.definitions import build_assets, build_resources
    from wildchat_dag.defs.automation.jobs import wildchat_daily_job
    from wildchat_dag.defs.language.language import bundled_model_path

    with tempfile.TemporaryDirectory() as tmp:
        source = language_logs(Path(tmp) / "logs", copies)
        database = str(Path(tmp) / "w.duckdb")
        defs = Definitions(
            assets=build_assets(),
            jobs=[wildchat_daily_job],
            resources=build_resources(log_root=str(Path(tmp) / "logs"), duckdb_path=database),
        )
        job = defs.resolve_job_def("wildchat_daily")
        instance = DagsterInstance.ephemeral()
        keys = sorted(p.name for p in (Path(tmp) / "logs").iterdir())

        def run(names: list[str], key: str):
            return job.execute_in_process(
                partition_key=key,
                instance=instance,
                asset_selection=[AssetKey(n) for n in names],
            )

        for key in keys:
            run(["raw_requests", "raw_message_texts", "quarantined_log_lines"], key)
        run(
            ["linked_conversations", "orphaned_requests", "withdrawn_conversations"],
            DAY.isoformat(),
        )
        con = duckdb.connect(database, read_only=True)
        linked = con.sql(
            "SELECT * FROM main.linked_conversations WHERE partition_day = $day",
            params={"day": datetime(DAY.year, DAY.month, DAY.day)},
        ).pl()
        con.close()
        texts = conversation_utterances(linked)["content"].to_list()
        mean_chars = sum(map(len, texts)) / len(texts)

        model = fasttext.load_model(str(bundled_model_path()))
        started = time.perf_counter()
        for text in texts:
            model.predict(text.replace("\n", " "))
        raw = time.perf_counter() - started

        started = time.perf_counter()
        result = run(["utterance_languages", "conversation_languages"], DAY.isoformat())
        whole_run = time.perf_counter() - started
        step = step_seconds(instance, result.run_id, "identify_languages")

    n = len(texts)
    raw_rate = n / raw
    print(f"\nlanguage: {source}; {n:,} utterances, mean {mean_chars:,.0f} characters")
    print()
    print_table(
        ["path", "utterances", "seconds", "utterances/s", "vs raw loop"],
        [
            ["raw fastText predict loop", f"{n:,}", f"{raw:.2f}", f"{raw_rate:,.0f}", "100%"],
            ["identify_languages step (asset)", f"{n:,}", f"{step:.2f}",
             f"{n / step:,.0f}", f"{n / step / raw_rate:.0%}"],
            ["whole Dagster run of the step", f"{n:,}", f"{whole_run:.2f}",
             f"{n / whole_run:,.0f}", f"{n / whole_run / raw_rate:.0%}"],
        ],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=1_000_000)
    parser.add_argument("--loop-turns", type=int, default=200_000)
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--only", choices=["geo", "language"])
    args = parser.parse_args(argv)
    os.environ.setdefault("WILDCHAT_IP_SALT", "benchmark-salt-0123456789")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; python "
        f"{platform.python_version()}; polars {version('polars')}, maxminddb "
        f"{version('maxminddb')}, maxminddb-polars {version('maxminddb-polars')}, "
        f"fasttext-predict {version('fasttext-predict')}"
    )
    if args.only in (None, "geo"):
        bench_geo(args.turns, min(args.loop_turns, args.turns))
    if args.only in (None, "language"):
        bench_language(args.copies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
