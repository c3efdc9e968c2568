"""What each step costs, measured in one warm process: the CPU a conversation adds to each
step, and the CPU of a day without traffic. The quiet complement of bench_backfill.py.

bench_backfill.py runs what a user runs (the daemon, the queue, warm workers, the code server),
so its figures carry the scheduling and the machine's noise; its two sizes differ by a few
CPU-seconds out of a hundred. Here every step runs in this process, one after another, as a
warm worker runs them (the real assets and checks, a real DuckDB file, a Dagster instance):

- **volume**: every stage over the same days at two sizes; each step's time from its start to
  its end event, the larger size's less the smaller's, per conversation added; and the CPU of
  the whole process (every thread, and the detection pool's worker processes) the same way;
- **fixed**: days with an empty log folder, each in the three runs an asset backfill gives a
  day (ingest; linking to detection; anonymization to the release records), the day's CPU
  with the measured checkout's local instance (``dagster.yaml``, SQLite), its production one
  (``deploy/dagster.postgres.yaml`` on a new database; the server's CPU too) or an in-memory one.

``--source DIR`` measures another checkout of the project (its ``wildchat_dag`` first on the
path), so that two versions are compared in the same minutes on the same machine.

``--texts real`` gives the generated conversations the real sample's utterances (../shared), each
made distinct by a tag of eight letters: what WildChat's own text, rather than the generator's,
costs each step.

    .venv/bin/python benchmarks/bench_steps.py
    .venv/bin/python benchmarks/bench_steps.py --conversations 300 1500 --empty-days 6
    .venv/bin/python benchmarks/bench_steps.py --source /tmp/older-checkout
    .venv/bin/python benchmarks/bench_steps.py --texts real
    .venv/bin/python benchmarks/bench_steps.py --fixed-only --storage postgres --storage sqlite
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parent.parent
START = date(2024, 1, 1)
MEAN_CHARS = 1015  # the real sample's mean utterance length (bench_backfill reads it)


def environment() -> None:
    os.environ.setdefault("WILDCHAT_IP_SALT", "bench-steps-salt-" + "x" * 16)
    os.environ["WILDCHAT_RELEASE_INCLUDE_UNSCORED"] = "1"
    os.environ["WILDCHAT_START_DATE"] = START.isoformat()
    os.environ["WILDCHAT_MODE"] = "demo"
    # Demo mode would end the partitions at the demo's own log folders; these logs are elsewhere.
    os.environ["WILDCHAT_END_DATE"] = (START + timedelta(days=400)).isoformat()
    os.environ["WILDCHAT_AUTOMATION"] = "off"


def cpu_s() -> float:
    """CPU-seconds of this process (every thread) and of its children that have ended: the
    worker processes detection starts for a large day."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def step_seconds(instance, run_id: str, into: Counter) -> None:
    from dagster import DagsterEventType

    started: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            into[event.step_key] += entry.timestamp - started.pop(event.step_key)


# Letters for the tag that makes each borrowed real text distinct: no vowels, and none of p, w,
# y, so that no tag spells a cue word a gate looks for ("key", "pw", "pass", "basic").
TAG_LETTERS = "bcdfghjklmnqrstvxz"


def tag(digest: bytes) -> str:
    """Eight letters from a text's sha256 ``digest``: the same text, the same tag."""
    number = int.from_bytes(digest[8:16], "big")
    letters = []
    for _ in range(8):
        number, digit = divmod(number, len(TAG_LETTERS))
        letters.append(TAG_LETTERS[digit])
    return "".join(letters)


def with_real_texts(log_root: Path, pool: list[str]) -> None:
    """Rewrite the generated logs under ``log_root`` with the real sample's utterances: each
    distinct generated text becomes one real text (picked by its hash), with a tag of its own,
    wherever it occurs (so histories still chain). The tag keeps the texts of a day as distinct
    as generated ones (a pool of 1,449 texts would otherwise repeat, and each distinct text is
    analyzed once a day), without giving a gate anything to match."""

    def real(text: str) -> str:
        digest = hashlib.sha256(text.encode()).digest()
        return f"{pool[int.from_bytes(digest[:8], 'big') % len(pool)]} {tag(digest)}"

    for path in sorted(log_root.rglob("requests-*.jsonl.gz")):
        lines = []
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                request = json.loads(line)
                for message in request["messages"]:
                    message["content"] = real(message["content"])
                request["response"] = real(request["response"])
                lines.append(json.dumps(request, ensure_ascii=False))
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")


def volume(conversations: int, days: int, work: Path, texts: str = "generated") -> dict:
    """Every stage over ``days`` days of ``conversations`` in all: CPU of the process, and
    seconds of each step. ``texts``: ``real`` puts the real sample's utterances in the logs
    (``with_real_texts``)."""
    from dagster import DagsterInstance

    from wildchat_dag.loggen.generator import generate_logs
    from wildchat_dag_tests.pipeline import Pipeline

    root = Path(tempfile.mkdtemp(prefix=f"volume-{conversations}-", dir=work))
    summary = generate_logs(
        root / "logs",
        start_date=START,
        days=days,
        conversations_per_day=max(1, conversations // days),
        # Texts of one size are not those of another: what the process remembers of the first
        # (fastText's predictions) must not make the second look cheaper.
        seed=17 + conversations,
        mean_message_chars=MEAN_CHARS,
    )
    if texts == "real":
        pool = real_texts()
        if pool is None:
            raise SystemExit("--texts real needs the real sample in ../shared")
        with_real_texts(root / "logs", pool.drop_nulls().unique().sort().to_list())
    instance = DagsterInstance.ephemeral()
    pipeline = Pipeline(root / "logs", root / "w.duckdb", table_checks=True, instance=instance)
    steps: Counter = Counter()
    run = pipeline.run

    def timed(keys, partition, raise_on_error=True):
        result = run(keys, partition, raise_on_error)
        step_seconds(instance, result.run_id, steps)
        return result

    pipeline.run = timed
    started = cpu_s()
    pipeline.through_release(*[(START + timedelta(days=n)).isoformat() for n in range(days)])
    return {
        "conversations": summary.conversations,
        "cpu_s": cpu_s() - started,
        "steps": steps,
        "pipeline": pipeline,
    }


def generated_texts(pipeline) -> pl.Series:
    """Every utterance the pipeline linked."""
    return (
        pipeline.table("linked_conversations")
        .select(pl.col("conversation").list.eval(pl.element().struct.field("content")))
        .explode("conversation")["conversation"]
    )


def planned_shares(texts: pl.Series) -> dict[str, float]:
    """The share of distinct texts that detection plans each entity type for: what its gates
    pass, so what the scan costs."""
    from wildchat_dag.core.hashing import sha256_column
    from wildchat_dag.defs.anonymization.redaction_rules import load_rules
    from wildchat_dag.defs.pii_detection.pii_detection import PiiDetector

    contents = pl.DataFrame({"content": texts.drop_nulls().unique()})
    contents = contents.with_columns(content_sha256=sha256_column(contents["content"]))
    planned = PiiDetector(load_rules()).plan(contents)
    entities = planned.select(
        pl.concat_list("pattern_entities", "ner_entities").alias("entity")
    ).explode("entity")
    counts = entities.drop_nulls()["entity"].value_counts()
    shares = {e: n / contents.height for e, n in counts.iter_rows()}
    shares["any"] = float(
        ((planned["pattern_entities"].list.len() + planned["ner_entities"].list.len()) > 0).mean()
    )
    return shares


def real_texts() -> pl.Series | None:
    """Every utterance of the real sample in ../shared, or None where it is absent."""
    from bench_backfill import real_utterances

    texts = real_utterances()
    return None if texts is None else pl.Series(texts, dtype=pl.String)


def detection_cpu_ms(
    texts: pl.Series, sample: int = 1500, by_rule: bool = False
) -> dict[str, float]:
    """CPU of ``PiiDetector.detect`` (in this process, one worker) over ``sample`` distinct
    texts, ms per text: under the rules (detection) and under the rescan's rules (the release
    checks'), and with ``by_rule`` under no rule and under each rule alone; each the second of
    two passes, the first loading the engines."""
    import dataclasses

    from wildchat_dag.defs.anonymization.redaction_rules import load_rules
    from wildchat_dag.defs.checks.table_rules import rescan_rules
    from wildchat_dag.defs.pii_detection.pii_detection import DetectorSettings, PiiDetector

    distinct = texts.drop_nulls().unique().sort()
    picked = distinct.sample(min(sample, distinct.len()), seed=7)
    utterances = pl.DataFrame(
        {
            "conversation_id": range(picked.len()),
            "utterance_index": [0] * picked.len(),
            "role": ["user"] * picked.len(),
            "content": picked,
        }
    )
    rules_of = {"detection": load_rules(), "rescan": rescan_rules(load_rules())}
    if by_rule:
        every = load_rules()
        rules_of["no rule"] = dataclasses.replace(every, rules=(), detect_also=())
        for rule in every.rules:
            rules_of[rule.entity] = dataclasses.replace(every, rules=(rule,), detect_also=())
    costs = {}
    for name, rules in rules_of.items():
        detector = PiiDetector(rules, DetectorSettings(workers=1))
        for _ in range(2):
            started = time.process_time()
            detector.detect(utterances)
            cpu_s = time.process_time() - started
        costs[name] = cpu_s * 1000 / picked.len()
    costs["characters"] = float(picked.str.len_chars().mean())
    return costs


def print_fidelity(generated: pl.Series, by_rule: bool = False) -> None:
    """What detection plans for the generated texts beside the real sample's: where they
    differ, the generated logs make detection cheaper or dearer than WildChat's text would."""
    real = real_texts()
    ours = planned_shares(generated)
    theirs = planned_shares(real) if real is not None else {}
    print(
        "\nfidelity: share of distinct texts detection scans for each entity type, generated "
        + ("against the real sample in ../shared" if real is not None else "(../shared absent)")
        + "\n\n| entity type | generated | real sample |\n|---|---:|---:|"
    )
    for entity in sorted(ours.keys() | theirs.keys(), key=lambda e: (e == "any", e)):
        real_share = f"{theirs[entity]:.1%}" if entity in theirs else ("0.0%" if theirs else "")
        print(f"| {entity} | {ours.get(entity, 0.0):.1%} | {real_share} |")
    costs = {"generated": detection_cpu_ms(generated, by_rule=by_rule)}
    if real is not None:
        costs["real sample"] = detection_cpu_ms(real, by_rule=by_rule)
    print(
        "\n| texts | mean characters | detection, ms a text | the rescan, ms a text |"
        "\n|---|---:|---:|---:|"
    )
    for name, cost in costs.items():
        print(
            f"| {name} | {cost['characters']:,.0f} | {cost['detection']:.2f} | "
            f"{cost['rescan']:.2f} |"
        )
    if by_rule:
        print(
            "\ndetection's CPU under no rule and under each rule alone, ms a text:\n\n| rules | "
            + " | ".join(costs)
            + " |\n|---|"
            + "---:|" * len(costs)
        )
        for name in costs["generated"]:
            if name not in ("detection", "rescan", "characters"):
                print(f"| {name} | " + " | ".join(f"{c[name]:.2f}" for c in costs.values()) + " |")


def fixed(days: int, storage: str, work: Path) -> tuple[float, float]:
    """CPU per day of days without traffic, after two days that warm the process: this
    process's, and the PostgreSQL server's (whatever the instance: near 0 unless postgres)."""
    from dagster import DagsterInstance

    from wildchat_dag_tests.pipeline import (
        ANONYMIZATION,
        DETECTION,
        GEO,
        INGEST,
        LANGUAGE,
        LINKING,
        MODERATION,
        RELEASE_RECORDS,
        TOXICITY,
        Pipeline,
    )

    root = Path(tempfile.mkdtemp(prefix=f"fixed-{storage}-", dir=work))
    keys = [(START + timedelta(days=n)).isoformat() for n in range(days + 2)]
    for key in keys:
        (root / "logs" / key).mkdir(parents=True)
    source = Path(sys.modules["wildchat_dag"].__file__).parent.parent
    if storage == "sqlite":
        # The measured checkout's dagster.yaml: the local instance as users get it.
        (root / "home").mkdir()
        (root / "home" / "dagster.yaml").write_text((source / "dagster.yaml").read_text())
        instance = DagsterInstance.from_config(str(root / "home"))
    elif storage == "postgres":
        instance = postgres_instance(root / "home", source)
    else:
        instance = DagsterInstance.ephemeral()
    pipeline = Pipeline(root / "logs", root / "w.duckdb", table_checks=True, instance=instance)
    pipeline.through_release(*keys[:2])
    # The three runs an asset backfill makes of a day (README, "Backfill policy").
    runs = [
        INGEST,
        LINKING + DETECTION + LANGUAGE + GEO,
        ANONYMIZATION + MODERATION + TOXICITY + RELEASE_RECORDS,
    ]
    started, server = time.process_time(), postgres_server_cpu_s()
    for key in keys[2:]:
        for selection in runs:
            pipeline.run(selection, key)
    process = (time.process_time() - started) / days
    instance.dispose()
    return process, (postgres_server_cpu_s() - server) / days


def postgres_server_cpu_s() -> float:
    """CPU-seconds of the PostgreSQL server on this machine: its live processes, and through the
    postmaster's reaped children, the connections' processes that have exited."""
    import psutil

    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times", "ppid"]):
        if not (process.info["name"] or "").startswith("postgres"):
            continue
        times = process.info["cpu_times"]
        total += times.user + times.system
        try:
            parent = psutil.Process(process.info["ppid"]).name()
        except psutil.Error:
            parent = ""
        if not parent.startswith("postgres"):
            total += times.children_user + times.children_system
    return total


def postgres_instance(home: Path, source: Path):
    """The measured checkout's production instance (deploy/dagster.postgres.yaml) on a new
    database of the local PostgreSQL, dropped when the process ends."""
    import atexit
    import uuid

    from bench_backfill import POSTGRES, drop_postgres_database, fresh_postgres_database
    from dagster import DagsterInstance

    database = fresh_postgres_database(f"steps_{uuid.uuid4().hex[:12]}")
    atexit.register(drop_postgres_database, database)
    os.environ.update(POSTGRES, DAGSTER_PG_DB=database)
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text((source / "deploy" / "dagster.postgres.yaml").read_text())
    return DagsterInstance.from_config(str(home))


def measure(args: argparse.Namespace) -> None:
    environment()
    import wildchat_dag

    work = Path(tempfile.mkdtemp(prefix="bench_steps_"))
    import logging

    logging.getLogger("dagster").setLevel(logging.WARNING)
    # The measured checkout.
    print(f"# bench_steps: {Path(wildchat_dag.__file__).parent}")
    if args.fixed_only:
        print_fixed(args, work)
        return
    # Warm: engines, imports, the first table of each kind.
    volume(30, args.days, work, args.texts)
    small = volume(args.conversations[0], args.days, work, args.texts)
    large = volume(args.conversations[1], args.days, work, args.texts)
    added = large["conversations"] - small["conversations"]
    what = (
        "the real sample's utterances, each tagged to be distinct"
        if args.texts == "real"
        else f"utterances of {MEAN_CHARS:,} characters on average"
    )
    print(
        f"volume: {small['conversations']:,} and {large['conversations']:,} conversations over "
        f"{args.days} days, {what}"
    )
    print(
        f"CPU of the process: {small['cpu_s']:.1f} and {large['cpu_s']:.1f} s; "
        f"{(large['cpu_s'] - small['cpu_s']) / added * 1000:.2f} ms per conversation added"
    )
    print("\n| step | s (small) | s (large) | ms per conversation added |\n|---|---:|---:|---:|")
    keys = sorted(
        large["steps"].keys() | small["steps"].keys(),
        key=lambda k: small["steps"][k] - large["steps"][k],
    )
    for key in keys:
        cost = (large["steps"][key] - small["steps"][key]) / added * 1000
        print(f"| {key} | {small['steps'][key]:.2f} | {large['steps'][key]:.2f} | {cost:.3f} |")
    print_fidelity(generated_texts(large["pipeline"]), args.by_rule)
    print_fixed(args, work)


def print_fixed(args: argparse.Namespace, work: Path) -> None:
    for storage in args.storage:
        day, server = fixed(args.empty_days, storage, work)
        also = f", and {server:.2f} CPU-s of the PostgreSQL server" if storage == "postgres" else ""
        print(
            f"\nfixed: {day:.2f} CPU-s per day without traffic{also} ({args.empty_days} days, "
            f"three runs each, {storage} instance)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, nargs=2, default=(300, 1500))
    parser.add_argument("--days", type=int, default=3, help="days of the two sizes")
    parser.add_argument("--empty-days", type=int, default=6)
    parser.add_argument(
        "--storage",
        choices=("sqlite", "memory", "postgres"),
        action="append",
        help="the instance of the fixed days (default: sqlite); postgres is the measured "
        "checkout's deploy/dagster.postgres.yaml on a new database of the local server",
    )
    parser.add_argument(
        "--fixed-only", action="store_true", help="only the days without traffic, no volume"
    )
    parser.add_argument("--source", type=Path, help="the checkout to measure (default: this)")
    parser.add_argument(
        "--texts",
        choices=("generated", "real"),
        default="generated",
        help="real: the generated conversations carry the real sample's utterances "
        "(../shared), each made distinct by a tag: what WildChat's own text costs each step",
    )
    parser.add_argument(
        "--by-rule",
        action="store_true",
        help="also detection's CPU under each redaction rule alone, generated and real text",
    )
    args = parser.parse_args()
    args.storage = args.storage or ["sqlite"]
    source = (args.source or REPO).resolve()
    if args.source and not os.environ.get("BENCH_STEPS_CHILD"):
        # A fresh interpreter with that checkout first on the path.
        env = {**os.environ, "PYTHONPATH": str(source), "BENCH_STEPS_CHILD": "1"}
        command = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
        sys.exit(subprocess.run(command, env=env, cwd=source).returncode)
    sys.path.insert(0, str(source))
    measure(args)


if __name__ == "__main__":
    main()
