"""Release export: time and peak memory of writing WildChat-1M's two releases, and a naive baseline.

Generates ``--conversations`` conversations (1,000,000 by default, as WildChat-1M) over ``--days``
collection days straight into a fresh DuckDB file's ``main.release_records`` table, a day at a
time, in the released shape (``RELEASE_RECORDS_SCHEMA``): turns drawn as in WildChat
(geometric from 1, mean 2.5 rounds, at most 40), texts from a pool of 50,000 generated ones
(``TextMaker``, mean ``--mean-chars`` characters), every field filled, about 10% of the
conversations toxic (so the public release is smaller than the full one) and 0.5% flagged
sexual/minors (out of both). Then:
- export: the real assets ``release_statistics``, ``public_release`` and ``full_release``,
  materialized by Dagster in a child process of their own (so its peak RSS is theirs alone),
  after ``release_day_statistics`` for every day (what the nightly runs build with each day's
  records; the statistics merge them): each step timed from the event log (STEP_START to
  STEP_SUCCESS, the days' summed) with its peak RSS sampled every 20 ms (a later step's
  includes what the process kept of an earlier one's), and the whole child's wall time
  (imports and Dagster's start included) and peak RSS (``ru_maxrss``);
- naive (the baseline), in another child process: the whole public release read in one query
  (``to_arrow_table``), cast to the released Arrow schema and written with one
  ``pyarrow.parquet.write_table``.
Afterwards the Parquet files' row counts are checked against the records' ``in_public`` and
``in_full`` counts. Generation time is reported but compared with nothing.

    .venv/bin/python benchmarks/bench_release.py
    .venv/bin/python benchmarks/bench_release.py --conversations 20000 --days 4   # quicker
    .venv/bin/python benchmarks/bench_release.py --workdir /tmp/release-bench --no-naive
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow.parquet as pq
from report_tables import print_table

from wildchat_dag.core.schema import (
    DETOXIFY_FIELDS,
    DETOXIFY_MODERATION_SCHEMA,
    OPENAI_CATEGORIES,
    OPENAI_MODERATION_SCHEMA,
    PARTITION_COLUMN,
    SPEC_CATEGORY_KEYS,
)
from wildchat_dag.defs.release.release_schema import (
    DETOXIFY_RESULT,
    HEADER,
    OPENAI_RESULT,
    RELEASE_ARROW_SCHEMA,
    RELEASE_RECORDS_SCHEMA,
    RELEASE_SCHEMA,
    RELEASE_UTTERANCE,
)
from wildchat_dag.loggen.text import TextMaker, random_accept_language, random_user_agent

FIRST_DAY = datetime(2024, 1, 1)
POOL_TEXTS = 50_000
STEPS = ("release_statistics", "public_release", "full_release")
DAY_STEP = "release_day_statistics"
RULES_HASH = "9f2c4e7a1b3d5f6e8a0c2e4f6a8b0d1c3e5f7a9b1d3f5e7a9c1b3d5f7e9a1c3e"
MODELS = ("gpt-3.5-turbo-0613", "gpt-3.5-turbo-0301", "gpt-3.5-turbo-0125", "gpt-4-0314",
          "gpt-4-1106-preview", "gpt-4-0125-preview")  # fmt: skip
MODEL_WEIGHTS = (0.45, 0.2, 0.1, 0.1, 0.1, 0.05)
# (country, states or None, weight): WildChat's top countries.
COUNTRIES = (
    ("United States", ("California", "New York", "Texas", "Florida", "Washington"), 0.22),
    ("Russia", ("Moscow", "Saint Petersburg", "Novosibirsk Oblast"), 0.14),
    ("China", ("Beijing", "Guangdong", "Shanghai", "Zhejiang"), 0.13),
    ("Hong Kong", None, 0.04),
    ("United Kingdom", ("England", "Scotland"), 0.04),
    ("Germany", ("Bavaria", "Berlin", "Hesse"), 0.04),
    ("France", ("Île-de-France", "Occitanie"), 0.03),
    ("Japan", ("Tokyo", "Osaka"), 0.03),
    ("Canada", ("Ontario", "Quebec", "British Columbia"), 0.03),
    ("India", ("Maharashtra", "Karnataka", "Delhi"), 0.03),
    (None, None, 0.02),  # GeoIP knew nothing of the address.
    ("Brazil", ("São Paulo", "Rio de Janeiro"), 0.03),
)


# --- Generation -----------------------------------------------------------------------------


def hex_strings(rng: np.random.Generator, n: int, digits: int) -> np.ndarray:
    """``n`` random lowercase hex strings of ``digits`` digits, vectorised."""
    symbols = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    chars = symbols[rng.integers(0, 16, size=(n, digits), dtype=np.uint8)]
    return np.ascontiguousarray(chars).view(f"S{digits}").ravel().astype(f"U{digits}")


class Population:
    """What the days draw from: the texts, and the users (IP hash, browser, place)."""

    def __init__(self, seed: int, conversations: int, mean_chars: int) -> None:
        maker = TextMaker(random.Random(seed), mean_chars=mean_chars)
        half = POOL_TEXTS // 2
        texts = [maker.user("en") for _ in range(half)]
        texts += [maker.assistant("en") for _ in range(half)]
        self.texts = pl.Series("content", texts, dtype=pl.String)
        self.user_texts = half
        self.mean_chars = sum(map(len, texts)) / len(texts)
        rng = np.random.default_rng(seed)
        # About 2.5 conversations a user, as in WildChat.
        users = max(1, int(conversations / 2.5))
        self.hashed_ip = pl.Series(hex_strings(rng, users, 64), dtype=pl.String)
        py = random.Random(seed + 1)
        agents = pl.Series([random_user_agent(py) for _ in range(2_000)], dtype=pl.String)
        languages = pl.Series([random_accept_language(py, "en") for _ in range(50)])
        self.user_agent = agents.gather(rng.integers(0, len(agents), users))
        self.accept_language = languages.gather(rng.integers(0, len(languages), users))
        weights = np.array([w for *_, w in COUNTRIES])
        place = rng.choice(len(COUNTRIES), size=users, p=weights / weights.sum())
        self.country = pl.Series([COUNTRIES[p][0] for p in place], dtype=pl.String)
        self.state = pl.Series(
            [py.choice(s) if (s := COUNTRIES[p][1]) and py.random() < 0.9 else None for p in place],
            dtype=pl.String,
        )


def day_records(
    population: Population, rng: np.random.Generator, day: datetime, first_id: int, n: int
) -> pl.DataFrame:
    """``n`` conversations of ``day`` as ``RELEASE_RECORDS_SCHEMA`` rows."""
    turns = np.minimum(rng.geometric(1 / 2.5, n), 40).astype(np.int64)
    toxic_conv = rng.random(n) < 0.10
    minors_conv = toxic_conv & (rng.random(n) < 0.05)
    user = rng.integers(0, len(population.hashed_ip), n)
    started = rng.integers(0, 86_400 * 1_000_000 - 3_600 * 1_000_000, n)  # µs after midnight
    n_utt = 2 * turns
    total = int(n_utt.sum())
    conv = np.repeat(np.arange(n), n_utt)
    starts = np.repeat(np.cumsum(n_utt) - n_utt, n_utt)
    index = np.arange(total) - starts
    is_user = index % 2 == 0
    text = np.where(
        is_user,
        rng.integers(0, population.user_texts, total),
        rng.integers(population.user_texts, len(population.texts), total),
    )
    # Toxic conversations: the first prompt and some other utterances are toxic, flagged by
    # OpenAI, Detoxify or both; in a few, the first prompt is flagged sexual/minors.
    toxic = toxic_conv[conv] & ((index == 0) | (rng.random(total) < 0.3))
    by_openai = toxic & (rng.random(total) < 0.7)
    by_detoxify = toxic & (~by_openai | (rng.random(total) < 0.5))
    minors = minors_conv[conv] & (index == 0)
    # Scores: tiny and log-uniform for clean text, high where flagged.
    scores = {
        c: np.exp(rng.uniform(-14, -3, total)) for c in OPENAI_CATEGORIES if c != "sexual/minors"
    }
    scores["sexual/minors"] = np.where(minors, rng.uniform(0.5, 1, total),
                                       np.exp(rng.uniform(-16, -5, total)))  # fmt: skip
    flagged_category = rng.integers(0, len(OPENAI_CATEGORIES), total)
    for i, c in enumerate(OPENAI_CATEGORIES):
        hit = by_openai & (flagged_category == i) & ~minors
        scores[c] = np.where(hit, rng.uniform(0.5, 1, total), scores[c])
    detox = {f: np.exp(rng.uniform(-9, -3, total)) for f in DETOXIFY_FIELDS}
    detox["toxicity"] = np.where(
        by_detoxify, rng.uniform(0.1, 1, total), np.exp(rng.uniform(-8, np.log(0.09), total))
    )
    reply_at = np.cumsum(rng.integers(2_000_000, 60_000_000, total))
    reply_at -= np.repeat(reply_at[np.cumsum(n_utt) - n_utt], n_utt)
    base = int((day - datetime(1970, 1, 1)) / timedelta(microseconds=1))
    conv_time = base + started
    user_of = user[conv]
    utterances = pl.DataFrame(
        {
            "conversation_id": first_id + conv,
            "content": population.texts.gather(text),
            "is_user": is_user,
            "country": population.country.gather(user_of),
            "state": population.state.gather(user_of),
            "hashed_ip": population.hashed_ip.gather(user_of),
            "accept-language": population.accept_language.gather(user_of),
            "user-agent": population.user_agent.gather(user_of),
            "redacted": rng.random(total) < 0.02,
            "utc": conv_time[conv] + reply_at,
            "toxic": toxic,
            "turn_identifier": 10_000_000 * (first_id + conv) + index,
            "flagged": by_openai | minors,
            **{f"s:{c}": v for c, v in scores.items()},
            **{f"d:{f}": v for f, v in detox.items()},
        }
    )
    user_col = pl.col("is_user")
    per_conversation = (
        utterances.lazy()
        .with_columns(
            utterance=pl.struct(
                "content",
                country=pl.when(user_col).then("country"),
                hashed_ip=pl.when(user_col).then("hashed_ip"),
                header=pl.when(user_col).then(pl.struct("accept-language", "user-agent")),
                language=pl.lit("English"),
                redacted="redacted",
                role=pl.when(user_col).then(pl.lit("user")).otherwise(pl.lit("assistant")),
                state=pl.when(user_col).then("state"),
                timestamp=pl.when(~user_col).then(pl.from_epoch("utc", time_unit="us")),
                toxic="toxic",
                turn_identifier="turn_identifier",
            ).cast(RELEASE_UTTERANCE),
            openai=pl.struct(
                categories=pl.struct(
                    **{k: pl.col(f"s:{c}") > 0.5 for k, c in SPEC_CATEGORY_KEYS.items()}
                ),
                category_scores=pl.struct(
                    **{k: pl.col(f"s:{c}") for k, c in SPEC_CATEGORY_KEYS.items()}
                ),
                flagged="flagged",
            ).cast(OPENAI_RESULT),
            detoxify=pl.struct(**{f: pl.col(f"d:{f}") for f in DETOXIFY_FIELDS}).cast(
                DETOXIFY_RESULT
            ),
        )
        .group_by("conversation_id", maintain_order=True)
        .agg(
            conversation=pl.col("utterance"),
            openai_moderation=pl.col("openai"),
            detoxify_moderation=pl.col("detoxify"),
            redacted=pl.col("redacted").any(),
        )
        .collect()
    )
    full_exclusion = np.where(minors_conv, "sexual_minors", None)
    public_exclusion = np.where(toxic_conv & ~minors_conv, "toxic", full_exclusion)
    records = per_conversation.with_columns(
        pl.Series(PARTITION_COLUMN, [day] * n, dtype=pl.Datetime("us")),
        conversation_hash=pl.Series(hex_strings(rng, n, 32), dtype=pl.String),
        model=pl.Series(MODELS, dtype=pl.String).gather(
            rng.choice(len(MODELS), n, p=MODEL_WEIGHTS)
        ),
        timestamp=pl.from_epoch(pl.Series(conv_time), time_unit="us").dt.replace_time_zone("UTC"),
        turn=pl.Series(turns),
        language=pl.lit("English"),
        toxic=pl.Series(toxic_conv),
        state=population.state.gather(user),
        country=population.country.gather(user),
        hashed_ip=population.hashed_ip.gather(user),
        header=pl.struct(
            population.accept_language.gather(user).alias("accept-language"),
            population.user_agent.gather(user).alias("user-agent"),
        ).cast(HEADER),
        in_public=pl.Series(~toxic_conv),
        in_full=pl.Series(~minors_conv),
        public_exclusion=pl.Series(public_exclusion.tolist(), dtype=pl.String),
        full_exclusion=pl.Series(full_exclusion.tolist(), dtype=pl.String),
        scored_by=pl.lit(["openai", "detoxify"], dtype=pl.List(pl.String)),
        redaction_rules_hash=pl.lit(RULES_HASH),
        geoip_snapshots=pl.lit([date(2018, 7, 3)], dtype=pl.List(pl.Date)),
    )
    return records.select(
        pl.col(name).cast(dtype) for name, dtype in RELEASE_RECORDS_SCHEMA.items()
    )


def generate(args: argparse.Namespace, database: Path) -> dict:
    started = time.perf_counter()
    population = Population(args.seed, args.conversations, args.mean_chars)
    rng = np.random.default_rng(args.seed + 2)
    per_day = np.diff(np.linspace(0, args.conversations, args.days + 1).round().astype(int))
    con = duckdb.connect(str(database))
    con.execute("SET TimeZone = 'UTC'")
    utterances = 0
    first_id = 0
    for d, n in enumerate(per_day):
        frame = day_records(population, rng, FIRST_DAY + timedelta(days=d), first_id, int(n))
        utterances += int(frame["conversation"].list.len().sum())
        first_id += int(n)
        con.register("rows", frame.to_arrow())
        con.execute("CREATE TABLE IF NOT EXISTS main.release_records AS SELECT * FROM rows LIMIT 0")
        con.execute("INSERT INTO main.release_records BY NAME SELECT * FROM rows")
        con.unregister("rows")
        del frame
    # The scorers' tables, which the exports read for the models that scored each release (none
    # here: the records carry their scores already).
    for table, schema in (
        ("openai_moderation", OPENAI_MODERATION_SCHEMA),
        ("detoxify_moderation", DETOXIFY_MODERATION_SCHEMA),
    ):
        con.register("empty", pl.DataFrame(schema=schema).to_arrow())
        con.execute(f"CREATE TABLE IF NOT EXISTS main.{table} AS SELECT * FROM empty")
        con.unregister("empty")
    public, full = con.execute(
        "SELECT count(*) FILTER (WHERE in_public), count(*) FILTER (WHERE in_full) "
        "FROM main.release_records"
    ).fetchone()
    con.close()
    return {
        "seconds": time.perf_counter() - started,
        "utterances": utterances,
        "mean_chars": population.mean_chars,
        "public": public,
        "full": full,
        "bytes": database.stat().st_size,
    }


# --- The child processes --------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler(threading.Thread):
    """The process's RSS every ``interval`` seconds, as (time.time(), bytes)."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.samples.append((time.time(), rss_bytes()))

    def peak(self, start: float, end: float) -> int:
        return max((b for t, b in self.samples if start <= t <= end), default=0)


def child_export(database: str, root: str, shard_rows: int, out: str) -> int:
    os.environ.setdefault("WILDCHAT_IP_SALT", "bench-release-salt-0123456789abcdef0123456789")
    from dagster import AssetKey, AssetsDefinition, DagsterEventType, DagsterInstance, materialize

    from wildchat_dag.definitions import build_assets
    from wildchat_dag.defs.language.resource import LanguageIdModels
    from wildchat_dag.defs.release.resource import ReleaseFolder
    from wildchat_dag.defs.takedowns.resource import TakedownLedger
    from wildchat_dag.resources.duckdb_io import WildchatDuckDBIOManager
    from wildchat_dag.resources.warehouse import Warehouse

    instance = DagsterInstance.ephemeral()
    at_start = rss_bytes()
    sampler = RssSampler()
    sampler.start()
    # Only these: the others need resources (log store, GeoIP, ...) this run never uses.
    # Their upstream release_records is a dependency, not an input, so it need not be here.
    wanted = {AssetKey(step) for step in STEPS}
    assets = [
        a
        for a in build_assets()
        if isinstance(a, AssetsDefinition) and a.keys & (wanted | {AssetKey(DAY_STEP)})
    ]
    resources = {
        "io_manager": WildchatDuckDBIOManager(database=database, schema="main"),
        "warehouse": Warehouse(database=database),
        "release_folder": ReleaseFolder(root=root, shard_rows=shard_rows),
        "language_id": LanguageIdModels(),
        # An empty ledger: the exports' takedown check still reads every record.
        "takedowns": TakedownLedger(path=str(Path(root) / "takedowns.jsonl")),
    }
    con = duckdb.connect(database, read_only=True)
    days = [d for (d,) in con.execute(
        "SELECT DISTINCT strftime(partition_day, '%Y-%m-%d') FROM main.release_records ORDER BY 1"
    ).fetchall()]  # fmt: skip
    con.close()
    results = [
        materialize(
            assets, resources=resources, selection=[AssetKey(DAY_STEP)], partition_key=day,
            instance=instance,
        )
        for day in days
    ]  # fmt: skip
    results.append(
        materialize(assets, resources=resources, selection=list(wanted), instance=instance)
    )
    sampler.stopped.set()
    sampler.join()
    steps: dict[str, dict] = {}
    # DagsterEvent carries no time: the instance's event log entries do.
    types = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}
    for result in results:
        starts: dict[str, float] = {}
        for entry in instance.all_logs(result.run_id, of_type=types):
            event = entry.dagster_event
            if event.event_type == DagsterEventType.STEP_START:
                starts[event.step_key] = entry.timestamp
            else:
                begun = starts[event.step_key]
                step = steps.setdefault(event.step_key, {"seconds": 0.0, "peak_rss": 0})
                step["seconds"] += entry.timestamp - begun
                step["peak_rss"] = max(step["peak_rss"], sampler.peak(begun, entry.timestamp))
    success = all(r.success for r in results)
    Path(out).write_text(
        json.dumps({"success": success, "steps": steps, "at_start": at_start, "days": len(days)})
    )
    return 0 if success else 1


def child_naive(database: str, path: str, out: str, days: int) -> int:
    started = time.perf_counter()
    at_start = rss_bytes()
    columns = ", ".join(f'"{c}"' for c in RELEASE_SCHEMA.names())
    con = duckdb.connect(database, read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    table = con.execute(
        f"SELECT {columns} FROM main.release_records WHERE in_public "
        "AND partition_day < $end ORDER BY partition_day, timestamp, conversation_id",
        {"end": datetime.combine(FIRST_DAY + timedelta(days=days), datetime.min.time())},
    ).to_arrow_table()
    con.close()
    table = table.cast(RELEASE_ARROW_SCHEMA)
    pq.write_table(table, path, compression="zstd")
    Path(out).write_text(
        json.dumps(
            {"rows": table.num_rows, "seconds": time.perf_counter() - started, "at_start": at_start}
        )
    )
    return 0


def run_child(
    flag: str, log: Path, *values: object, options: list[str] | None = None
) -> tuple[float, int]:
    """Run this script with ``flag values`` in a child process, its output going to ``log``:
    its wall time and peak RSS. The parent stays small: Linux carries a process's peak RSS
    across fork and exec, so a large parent would show in every child's."""
    started = time.perf_counter()
    command = [sys.executable, __file__, *(options or []), flag, *map(str, values)]
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        # wait4 gives this child's own rusage; getrusage(RUSAGE_CHILDREN) would give the
        # largest of every child waited for so far.
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        print(log.read_text()[-5_000:], file=sys.stderr)
        raise SystemExit(f"{flag} failed (exit status {process.returncode}); log: {log}")
    return seconds, usage.ru_maxrss * 1024  # KiB on Linux


# --- The report -----------------------------------------------------------------------------


def parquet_rows(folder: Path) -> tuple[int, int, int]:
    files = sorted((folder / "data").glob("*.parquet"))
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    return rows, len(files), sum(f.stat().st_size for f in files)


def gb(n: float) -> str:
    return f"{n / 1e9:.2f}"


def benchmark(args: argparse.Namespace, work: Path) -> int:
    database = work / "release.duckdb"
    root = work / "releases"
    if database.exists():
        raise SystemExit(f"{database} exists: give an empty --workdir")
    print(
        f"\nGenerating {args.conversations:,} conversations over {args.days} days "
        f"into {database} ..."
    )
    out = work / "generate.json"
    options = [
        f"--conversations={args.conversations}",
        f"--days={args.days}",
        f"--mean-chars={args.mean_chars}",
        f"--seed={args.seed}",
    ]
    run_child("--child-generate", work / "generate.log", database, out, options=options)
    made = json.loads(out.read_text())
    print(
        f"generated: {made['utterances']:,} utterances, mean {made['mean_chars']:,.0f} "
        f"characters, {made['public']:,} public and {made['full']:,} full conversations, "
        f"DuckDB file {gb(made['bytes'])} GB, in {made['seconds']:.1f} s "
        f"({args.conversations / made['seconds']:,.0f} conversations/s)"
    )

    print(
        "exporting through Dagster (release_day_statistics of each day, then "
        "release_statistics, public_release, full_release) ..."
    )
    out = work / "export.json"
    export_s, export_rss = run_child(
        "--child-export", work / "export.log", database, root, args.shard_rows, out
    )
    export = json.loads(out.read_text())
    steps = export["steps"]

    naive = None
    if not args.no_naive:
        out = work / "naive.json"
        path = work / "naive-public.parquet"
        days = max(1, min(args.days, args.naive_conversations * args.days // args.conversations))
        naive_s, naive_rss = run_child(
            "--child-naive", work / "naive.log", database, path, out, days
        )
        naive = {**json.loads(out.read_text()), "wall": naive_s, "rss": naive_rss}
        con = duckdb.connect(str(database), read_only=True)
        naive["expected"] = con.execute(
            "SELECT count(*) FROM main.release_records WHERE in_public AND partition_day < $end",
            {"end": datetime.combine(FIRST_DAY + timedelta(days=days), datetime.min.time())},
        ).fetchone()[0]
        con.close()
        naive["bytes"] = path.stat().st_size

    print("\nVerification: rows in the Parquet files against the records\n")
    con = duckdb.connect(str(database), read_only=True)
    expected = dict(
        zip(
            ("public", "full"),
            con.execute(
                "SELECT count(*) FILTER (WHERE in_public), count(*) FILTER (WHERE in_full) "
                "FROM main.release_records"
            ).fetchone(),
            strict=True,
        )
    )
    con.close()
    checks = []
    for release in ("public", "full"):
        rows, shards, size = parquet_rows(root / release)
        checks.append((release, expected[release], rows, shards, size))
    if naive:
        want = naive["expected"]
        checks.append(("naive (public, first days)", want, naive["rows"], 1, naive["bytes"]))
    ok = all(rows == want for _, want, rows, *_ in checks)
    print_table(
        ["release", "in records", "in Parquet", "shards", "MB on disk", "check"],
        [
            [name, f"{want:,}", f"{rows:,}", str(shards), f"{size / 1e6:,.1f}",
             "ok" if rows == want else "MISMATCH"]
            for name, want, rows, shards, size in checks
        ],
    )  # fmt: skip

    print(f"\nResults: {args.conversations:,} conversations, shards of {args.shard_rows:,}\n")
    n_public, n_full = expected["public"], expected["full"]
    rows = [
        (f"per day: {DAY_STEP} ({export['days']} days, summed)", args.conversations,
         steps[DAY_STEP]["seconds"], steps[DAY_STEP]["peak_rss"]),
        ("export: release_statistics (merge of the days, both releases)", args.conversations,
         steps["release_statistics"]["seconds"], steps["release_statistics"]["peak_rss"]),
        ("export: public_release", n_public, steps["public_release"]["seconds"],
         steps["public_release"]["peak_rss"]),
        ("export: full_release", n_full, steps["full_release"]["seconds"],
         steps["full_release"]["peak_rss"]),
        ("export: whole child process (ru_maxrss)", n_public + n_full, export_s, export_rss),
    ]  # fmt: skip
    if naive:
        rows.insert(0, ("naive: public release in one table (baseline)", naive["rows"],
                        naive["wall"], naive["rss"]))  # fmt: skip

    def versus(n: int, seconds: float, rss: int) -> str:
        """Throughput and peak RSS against the baseline's (which may cover fewer days)."""
        if not naive:
            return "n/a"
        speed = (n / seconds) / (naive["rows"] / naive["wall"])
        return f"{speed:.2f}x conversations/s, {rss / naive['rss']:.2f}x RSS"

    print_table(
        ["path", "conversations", "seconds", "conversations/s", "peak RSS (GB)", "vs naive"],
        [
            [name, f"{n:,}", f"{s:.2f}", f"{n / s:,.0f}", gb(rss), versus(n, s, rss)]
            for name, n, s, rss in rows
        ],
    )
    print(
        f"\nRSS of the export child after its imports, before the run: "
        f"{gb(export['at_start'])} GB"
        + (f"; of the naive child before its query: {gb(naive['at_start'])} GB" if naive else "")
    )
    print(
        "Step peaks are sampled every 20 ms inside the child; the child and naive rows are the "
        "kernel's ru_maxrss of the whole process, Python and imports included."
    )
    verdict = "under" if export_rss < 4e9 else "OVER"
    print(f"export peak RSS {gb(export_rss)} GB: {verdict} the 4 GB target")
    return 0 if ok and export["success"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--mean-chars", type=int, default=1_000)
    parser.add_argument("--shard-rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temp dir)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--child-export", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument(
        "--naive-conversations",
        type=int,
        default=150_000,
        help="the baseline reads whole days up to about this many conversations (it holds them "
        "all in memory: 1M would need about 30 GB)",
    )
    parser.add_argument("--child-naive", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--child-generate", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_export:
        database, root, shard_rows, out = args.child_export
        return child_export(database, root, int(shard_rows), out)
    if args.child_naive:
        database, path, out, days = args.child_naive
        return child_naive(database, path, out, int(days))
    if args.child_generate:
        database, out = args.child_generate
        Path(out).write_text(json.dumps(generate(args, Path(database))))
        return 0
    if args.conversations < 1 or args.days < 1:
        parser.error("--conversations and --days must be at least 1")

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; python "
        f"{platform.python_version()}; dagster {version('dagster')}, duckdb "
        f"{version('duckdb')}, polars {version('polars')}, pyarrow {version('pyarrow')}"
    )
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return benchmark(args, args.workdir.resolve())
    with tempfile.TemporaryDirectory(prefix="bench-release-") as tmp:
        return benchmark(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
