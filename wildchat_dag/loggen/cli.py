"""``wildchat-loggen`` / ``python -m wildchat_dag.loggen``: write synthetic request logs."""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path

from wildchat_dag.loggen.generator import generate_logs


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return number


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wildchat-loggen",
        description="Write synthetic chatbot request logs (raw log contract v1), one folder "
        "per UTC day.",
    )
    parser.add_argument("--out", type=Path, required=True, help="log root directory")
    parser.add_argument(
        "--start", type=_iso_date, default=date(2024, 1, 1), help="first UTC day (YYYY-MM-DD)"
    )
    parser.add_argument("--days", type=_positive_int, default=3, help="number of days")
    parser.add_argument(
        "--conversations-per-day",
        type=_non_negative_int,
        default=300,
        help="conversations starting on each day",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (output is reproducible)")
    parser.add_argument("--no-gzip", action="store_true", help="write plain .jsonl files")
    parser.add_argument(
        "--shards-per-day", type=_positive_int, default=1, help="files per day folder"
    )
    parser.add_argument(
        "--mean-message-chars", type=_positive_int, default=400, help="mean message length"
    )
    parser.add_argument(
        "--truth", type=Path, default=None, help="also write per-request ground truth (JSONL)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    summary = generate_logs(
        args.out,
        start_date=args.start,
        days=args.days,
        conversations_per_day=args.conversations_per_day,
        seed=args.seed,
        gzip=not args.no_gzip,
        shards_per_day=args.shards_per_day,
        mean_message_chars=args.mean_message_chars,
        truth_path=args.truth,
    )
    elapsed = time.perf_counter() - started
    print(summary.describe())
    print(f"log root: {args.out} ({elapsed:.1f}s)")
    if args.truth is not None:
        print(f"ground truth: {args.truth}")
    return 0
