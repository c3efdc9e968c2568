"""Ingest + linking throughput: the vectorised pipeline against a per-request Python loop.

Generates N requests of synthetic logs (default 1M), then, each in a fresh process so that peak
memory is its own:
- pipeline: what the raw_requests and linked_conversations assets run per partition
  (``ingest_day`` for every day, then ``link_window`` over each day's window);
- naive: the same algorithm one request at a time: ``json.loads``, the same validation, the
  reference hashes, and the sequential linking rule (``linking_reference.link_sequential``).
Both must place every request identically; the script checks it, then prints a table.

    .venv/bin/python benchmarks/bench_spine.py --requests 1000000
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl

from wildchat_dag.core.hashing import history_hashes
from wildchat_dag.defs.ingest.log_contract import (
    DEFAULT_MAX_LINE_BYTES,
    REQUIRED_FIELDS,
    RFC3339_RE,
    list_log_files,
)
from wildchat_dag.defs.ingest.parsing import ingest_day, normalize_ip
from wildchat_dag.defs.linking.linking import link_window
from wildchat_dag.defs.linking.linking_reference import link_sequential
from wildchat_dag.loggen.generator import generate_logs

START = date(2024, 1, 1)
LOOKAHEAD = 1
REQUESTS_PER_CONVERSATION = 2.6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def day_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def run_pipeline(root: Path) -> dict:
    started = time.perf_counter()
    raw = []
    for folder in day_folders(root):
        result = ingest_day(
            folder, date.fromisoformat(folder.name), max_line_bytes=DEFAULT_MAX_LINE_BYTES
        )
        raw.append(result.requests)
    ingested = time.perf_counter()
    window = pl.concat(raw)
    del raw
    placed = links = 0
    for folder in day_folders(root):
        result = link_window(window, date.fromisoformat(folder.name), lookahead_days=LOOKAHEAD)
        placed += result.stats["owned_requests"]
        links += result.stats["linked_requests"] - result.stats["conversations"]
    done = time.perf_counter()
    return {
        "requests": window.height,
        "placed": placed,
        "ingest_s": ingested - started,
        "link_s": done - ingested,
        "total_s": done - started,
        "peak_rss_mb": peak_rss_mb(),
        "links": links,
    }


def naive_parse(line: str) -> dict | None:
    """The contract's checks, one line at a time."""
    try:
        r = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(r, dict) or r.get("schema_version", 1) != 1:
        return None
    for name in REQUIRED_FIELDS:
        if r.get(name) is None:
            return None
    if not isinstance(r["turn_id"], int) or isinstance(r["turn_id"], bool) or r["turn_id"] <= 0:
        return None
    if not all(
        isinstance(r[t], str) and RFC3339_RE.match(r[t])
        for t in ("timestamp", "response_timestamp")
    ):
        return None
    messages, headers = r["messages"], r["headers"]
    if not isinstance(messages, list) or not messages or len(messages) % 2 == 0:
        return None
    for i, m in enumerate(messages):
        if not (
            isinstance(m, dict)
            and isinstance(m.get("content"), str)
            and m.get("role") == ("user" if i % 2 == 0 else "assistant")
        ):
            return None
    lower = {k.lower(): v for k, v in headers.items()} if isinstance(headers, dict) else None
    if lower is None or not isinstance(r["response"], str):
        return None
    ip_text = r.get("ip") or (lower.get("x-forwarded-for") or "").split(",")[0]
    try:
        ip = ipaddress.ip_address(ip_text.strip()).compressed
    except ValueError:
        ip = normalize_ip(ip_text)
    return {
        "turn_id": r["turn_id"],
        "timestamp": r["timestamp"].replace("Z", "+00:00"),
        "model": r["model"],
        "ip": ip,
        "user_agent": lower.get("user-agent"),
        "accept_language": lower.get("accept-language"),
        "messages": messages,
        "response": r["response"],
    }


def run_naive(root: Path) -> dict:
    started = time.perf_counter()
    requests = []
    for folder in day_folders(root):
        for path in list_log_files(folder):
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    request = naive_parse(line)
                    if request is not None:
                        request["prev_hash"], request["current_hash"] = history_hashes(
                            request["messages"], request["response"]
                        )
                        del request["messages"], request["response"]
                        requests.append(request)
    ingested = time.perf_counter()
    decisions = link_sequential(requests)
    done = time.perf_counter()
    return {
        "requests": len(requests),
        "ingest_s": ingested - started,
        "link_s": done - ingested,
        "total_s": done - started,
        "peak_rss_mb": peak_rss_mb(),
        "links": sum(d.kind == "link" for d in decisions.values()),
    }


def in_subprocess(phase: str, root: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--root", str(root)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--root", type=Path, default=Path("benchmarks/out/spine-logs"))
    parser.add_argument("--phase", choices=["pipeline", "naive"])
    parser.add_argument("--mean-message-chars", type=int, default=300)
    args = parser.parse_args()
    if args.phase:
        result = run_pipeline(args.root) if args.phase == "pipeline" else run_naive(args.root)
        print(json.dumps(result))
        return

    per_day = round(args.requests / REQUESTS_PER_CONVERSATION / args.days)
    stamp = args.root / f".generated-{args.requests}-{args.days}-{args.mean_message_chars}"
    if not stamp.exists():
        started = time.perf_counter()
        generate_logs(
            args.root,
            start_date=START,
            days=args.days,
            conversations_per_day=per_day,
            seed=1,
            gzip=False,
            mean_message_chars=args.mean_message_chars,
        )
        stamp.touch()
        print(f"generated logs in {time.perf_counter() - started:.1f} s")
    size = sum(p.stat().st_size for p in args.root.rglob("*.jsonl"))
    pipeline = in_subprocess("pipeline", args.root)
    naive = in_subprocess("naive", args.root)
    assert pipeline["placed"] == pipeline["requests"], "a request was not placed exactly once"

    print(
        f"\n{pipeline['requests']:,} requests, {size / 1e9:.2f} GB of JSON Lines, "
        f"{args.days} days, lookahead {LOOKAHEAD} day\n"
    )
    print(
        f"| {'path':<34} | {'ingest s':>9} | {'link s':>8} | {'total s':>8} | "
        f"{'requests/s':>11} | {'peak RSS MB':>11} |"
    )
    print(f"|{'-' * 36}|{'-' * 11}:|{'-' * 9}:|{'-' * 9}:|{'-' * 12}:|{'-' * 12}:|")
    for name, r in (
        ("pipeline (DuckDB + polars)", pipeline),
        ("naive per-request Python loop", naive),
    ):
        print(
            f"| {name:<34} | {r['ingest_s']:>9.1f} | {r['link_s']:>8.1f} | "
            f"{r['total_s']:>8.1f} | {r['requests'] / r['total_s']:>11,.0f} | "
            f"{r['peak_rss_mb']:>11,.0f} |"
        )
    print(
        f"\nlinks made: pipeline {pipeline['links']:,}, naive {naive['links']:,} (the naive "
        "loop links over all days at once, so it also links past the lookahead bound)"
    )
    print(
        f"\nspeed-up (naive total / pipeline total): {naive['total_s'] / pipeline['total_s']:.1f}x"
    )


if __name__ == "__main__":
    main()
