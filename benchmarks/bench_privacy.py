"""PII redaction throughput: the gated pipeline against Presidio run on every utterance.

Input: the utterances of (a) the real WildChat sample (``../shared/data/wildchat-sample``) and
(b) synthetic logs (``generate_logs``, then ``ingest_day`` and ``link_window``, as the
raw_requests and linked_conversations assets run them), with disjoint conversation ids.

Then, each in a fresh process so that timings and peak memory are its own:
- baseline: ``pii_detection_reference.detect_everywhere``, Presidio as a user would first run
  it: the full ``AnalyzerEngine`` once per utterance, for the entity types the rules redact,
  and fastText on every utterance;
- pipeline: ``PiiDetector.detect``, as the pii_candidates asset runs it (gates, each distinct
  text once, NER only where a rule needs it).
Both then apply the same rules (``anonymization.redact_batch``: qualification, frequencies over
the batch, redaction).
Engine and model loading is timed apart from processing. Both must produce the same redacted
text for every distinct content; the script checks it, prints a table, and exits non-zero on any
difference.

    .venv/bin/python benchmarks/bench_privacy.py
    .venv/bin/python benchmarks/bench_privacy.py --limit-chars 100000   # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

import polars as pl

from wildchat_dag.core.utterances import conversation_utterances
from wildchat_dag.defs.ingest.log_contract import DEFAULT_MAX_LINE_BYTES
from wildchat_dag.defs.ingest.parsing import ingest_day
from wildchat_dag.defs.linking.linking import link_window
from wildchat_dag.defs.pii_detection.pii_detection import UTTERANCE_COLUMNS
from wildchat_dag.loggen.generator import generate_logs

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "wildchat-sample" / "conversations.jsonl"
START = date(2024, 1, 1)
LOOKAHEAD = 1
# Conversation ids of the real sample: 1..N. Generated ones start at the first turn id
# (1_000_001), so the two never meet; main() checks it anyway.
REAL_FIRST_ID = 1
OUTPUT_COLUMNS = ["content_sha256", "redacted_content", "redacted", "withheld"]
DECIDED_COLUMNS = ["content_sha256", "entity_type", "start", "end", "score", "text", "decision"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_rss_mb() -> float:
    """Largest peak RSS among this process's finished children (pool workers)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


# -- input ----------------------------------------------------------------------------------


def real_utterances(path: Path) -> pl.DataFrame:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            conversation = json.loads(line)["conversation"]
            for index, message in enumerate(conversation):
                rows.append(
                    (REAL_FIRST_ID + number, index, message["role"], message["content"] or "")
                )
    return pl.DataFrame(rows, schema=UTTERANCE_COLUMNS, orient="row")


def generated_utterances(root: Path, days: int, per_day: int, seed: int) -> pl.DataFrame:
    generate_logs(
        root, start_date=START, days=days, conversations_per_day=per_day, seed=seed, gzip=False
    )
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    window = pl.concat(
        [
            ingest_day(
                f, date.fromisoformat(f.name), max_line_bytes=DEFAULT_MAX_LINE_BYTES
            ).requests
            for f in folders
        ]
    )
    linked = pl.concat(
        [
            link_window(window, date.fromisoformat(f.name), lookahead_days=LOOKAHEAD).conversations
            for f in folders
        ]
    )
    return conversation_utterances(linked).select(UTTERANCE_COLUMNS.names()).cast(UTTERANCE_COLUMNS)


def limit_chars(utterances: pl.DataFrame, limit: int) -> pl.DataFrame:
    """Whole conversations, in order, while their characters stay within ``limit``."""
    sizes = (
        utterances.group_by("conversation_id", maintain_order=True)
        .agg(chars=pl.col("content").str.len_chars().sum())
        .with_columns(total=pl.col("chars").cum_sum())
    )
    kept = sizes.filter(pl.col("total") <= limit)["conversation_id"]
    if kept.is_empty() and sizes.height:  # at least one conversation
        kept = sizes["conversation_id"].head(1)
    return utterances.filter(pl.col("conversation_id").is_in(kept.implode()))


# -- the two paths: same input, same rules, different detection --------------------------------


def contents_of(utterances: pl.DataFrame, found) -> pl.DataFrame:
    """Each distinct text of the input, by the sha256 detection gave it."""
    return (
        utterances.select("conversation_id", "utterance_index", "content")
        .join(
            found.utterances.select("conversation_id", "utterance_index", "content_sha256"),
            on=["conversation_id", "utterance_index"],
        )
        .select("content_sha256", content=pl.col("content").fill_null(""))
        .unique("content_sha256")
    )


def run_phase(work: Path, phase: str, workers: int) -> dict:
    """Load the engines, then detect and apply the rules, timing each part."""
    from wildchat_dag.defs.anonymization.anonymization import redact_batch
    from wildchat_dag.defs.anonymization.redaction_rules import load_rules
    from wildchat_dag.defs.language.language import LanguageIdentifier
    from wildchat_dag.defs.pii_detection.pii_detection import (
        DetectorSettings,
        PiiDetector,
        build_full_engine,
    )
    from wildchat_dag.defs.pii_detection.pii_detection_reference import detect_everywhere

    utterances = pl.read_parquet(work / "utterances.parquet")
    rules = load_rules()
    started = time.perf_counter()
    if phase == "baseline":
        engine, languages = build_full_engine(rules=rules), LanguageIdentifier()
    else:
        detector = PiiDetector(rules, DetectorSettings(workers=workers))
        _ = detector.pattern_engine, detector.ner_engine("en"), detector.languages
    loaded = time.perf_counter()
    if phase == "baseline":
        found = detect_everywhere(utterances, rules, engine, languages)
    else:
        found = detector.detect(utterances)
    detected = time.perf_counter()
    redaction = redact_batch(found, contents_of(utterances, found), rules)
    done = time.perf_counter()

    redaction.contents.select(OUTPUT_COLUMNS).write_parquet(work / f"{phase}-redacted.parquet")
    decided = redaction.decided.select(DECIDED_COLUMNS).unique()
    decided.write_parquet(work / f"{phase}-decided.parquet")
    summary = {
        "characters": int(utterances["content"].str.len_chars().sum() or 0),
        "utterances": utterances.height,
        "load_s": loaded - started,
        "process_s": done - loaded,
        "analyze_s": detected - loaded,
        "rules_s": done - detected,
        "candidates": found.candidates.height,
        "workers": found.stats.get("workers", 1),
        "peak_rss_mb": peak_rss_mb(),
        "children_peak_rss_mb": children_peak_rss_mb(),
    }
    if phase == "pipeline":
        keys = (
            "distinct_texts",
            "texts_analyzed",
            "characters_analyzed",
            "texts_with_ner",
            "characters_with_ner",
            "characters_read_by_ner",
            "texts_language_identified",
            "scan_status",
        )
        summary["detect"] = {k: found.stats[k] for k in keys}
    return summary


# -- parent ---------------------------------------------------------------------------------


def in_subprocess(phase: str, work: Path, workers: int) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--work", str(work)]
    command += ["--workers", str(workers)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the {phase} phase failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def window(text: str, position: int, width: int = 200) -> str:
    begin = max(0, position - width // 2)
    return repr(text[begin : begin + width])


def first_difference(a: str, b: str) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def compare(work: Path, show: int) -> int:
    """Print the identity check; return the number of contents that differ."""
    base = pl.read_parquet(work / "baseline-redacted.parquet")
    pipe = pl.read_parquet(work / "pipeline-redacted.parquet")
    joined = base.join(pipe, on="content_sha256", how="full", suffix="_pipe", coalesce=True)
    differing = joined.filter(
        pl.col("redacted_content").ne_missing(pl.col("redacted_content_pipe"))
    ).sort("content_sha256")
    print(
        f"\nidentity check over {joined.height:,} distinct contents: redacted by baseline "
        f"{int(base['redacted'].sum()):,}, by pipeline {int(pipe['redacted'].sum()):,} "
        f"(withheld by pipeline: {int(pipe['withheld'].sum()):,}); "
        f"differences: {differing.height:,}"
    )
    if differing.is_empty():
        return 0
    decided = {
        name: pl.read_parquet(work / f"{name}-decided.parquet") for name in ("baseline", "pipeline")
    }
    for sha, b, p in (
        differing.select("content_sha256", "redacted_content", "redacted_content_pipe")
        .head(show)
        .iter_rows()
    ):
        position = first_difference(b or "", p or "")
        print(f"\n  content {sha} differs at character {position}")
        print(f"    baseline: {window(b, position) if b is not None else '(missing)'}")
        print(f"    pipeline: {window(p, position) if p is not None else '(missing)'}")
        for name, frame in decided.items():
            rows = frame.filter(pl.col("content_sha256") == sha).sort("start", "end", "entity_type")
            for _, entity, start, end, score, text, decision in rows.iter_rows():
                print(
                    f"    {name} candidate {entity} [{start}, {end}) score {score:.2f} "
                    f"{text!r}: {decision}"
                )
    return differing.height


def print_table(baseline: dict, pipeline: dict, cpus: int) -> None:
    header = (
        f"| {'path':<40} | {'characters':>11} | {'load s':>7} | {'process s':>9} | "
        f"{'characters/s':>12} | {'workers':>7} | {'peak RSS MB':>11} |"
    )
    print(header)
    print(f"|{'-' * 42}|{'-' * 12}:|{'-' * 8}:|{'-' * 10}:|{'-' * 13}:|{'-' * 8}:|{'-' * 12}:|")
    for name, r in (
        ("baseline: Presidio on every utterance", baseline),
        ("pipeline: gated PiiDetector", pipeline),
    ):
        rss = f"{r['peak_rss_mb']:,.0f}"
        if r["children_peak_rss_mb"]:
            rss += f" +{r['children_peak_rss_mb']:,.0f}/w"
        print(
            f"| {name:<40} | {r['characters']:>11,} | {r['load_s']:>7.1f} | "
            f"{r['process_s']:>9.2f} | {r['characters'] / r['process_s']:>12,.0f} | "
            f"{r['workers']:>7} | {rss:>11} |"
        )
    ratio = (pipeline["characters"] / pipeline["process_s"]) / (
        baseline["characters"] / baseline["process_s"]
    )
    print(
        f"\nprocess s = analysis + rules; baseline {baseline['analyze_s']:.2f} + "
        f"{baseline['rules_s']:.2f} s, pipeline {pipeline['analyze_s']:.2f} + "
        f"{pipeline['rules_s']:.2f} s (detect() includes its process-pool start-up, if any)"
    )
    print(
        f"pipeline ran in {pipeline['workers']} process(es) (a pool starts only above "
        f"parallel_min_work; its start-up is then inside detect()); {cpus} CPU(s) available"
    )
    print(f"candidates: baseline {baseline['candidates']:,}, pipeline {pipeline['candidates']:,}")
    print(f"pipeline detection: {json.dumps(pipeline['detect'])}")
    print(
        f"\nratio (pipeline characters/s / baseline characters/s): {ratio:.1f}x "
        f"(requirement: 20x or better)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument(
        "--conversations-per-day",
        type=int,
        default=300,
        help="generated conversations a day (300 over 2 days: about 1.5 M characters)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--limit-chars",
        type=int,
        help="keep whole conversations up to this many characters in all (split evenly "
        "between the two sources)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--real-only", action="store_true")
    source.add_argument("--generated-only", action="store_true")
    parser.add_argument(
        "--work", type=Path, help="folder for the intermediate files (default: a temporary one)"
    )
    parser.add_argument("--show", type=int, default=5, help="differences to print")
    parser.add_argument("--phase", choices=["baseline", "pipeline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.work, args.phase, args.workers)))
        return

    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="bench-privacy-") as tmp:
            sys.exit(run(args, Path(tmp)))
    args.work.mkdir(parents=True, exist_ok=True)
    sys.exit(run(args, args.work))


def run(args: argparse.Namespace, work: Path) -> int:
    sources = []
    if not args.generated_only:
        if not args.sample.is_file():
            print(
                f"the real WildChat sample is missing: {args.sample} not found (run with "
                "--sample PATH, or --generated-only)",
                file=sys.stderr,
            )
            return 2
        sources.append(("real WildChat sample", real_utterances(args.sample)))
    if not args.real_only:
        started = time.perf_counter()
        generated = generated_utterances(
            work / "logs", args.days, args.conversations_per_day, args.seed
        )
        print(
            f"generated, ingested and linked {args.days} days of logs in "
            f"{time.perf_counter() - started:.1f} s"
        )
        sources.append(("generated", generated))
    if len(sources) == 2:
        real_ids = set(sources[0][1]["conversation_id"].unique().to_list())
        assert real_ids.isdisjoint(sources[1][1]["conversation_id"].unique().to_list())
    if args.limit_chars:
        share = args.limit_chars // len(sources)
        sources = [(name, limit_chars(frame, share)) for name, frame in sources]
    utterances = pl.concat([frame for _, frame in sources])
    utterances.write_parquet(work / "utterances.parquet")

    print()
    for name, frame in sources:
        chars = int(frame["content"].str.len_chars().sum() or 0)
        print(
            f"{name}: {frame['conversation_id'].n_unique():,} conversations, "
            f"{frame.height:,} utterances, {frame['content'].n_unique():,} distinct, "
            f"{chars:,} characters"
        )

    baseline = in_subprocess("baseline", work, args.workers)
    pipeline = in_subprocess("pipeline", work, args.workers)
    assert baseline["characters"] == pipeline["characters"]

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"\nmachine: {cpus} CPU(s) usable ({os.cpu_count()} in all), {platform.machine()}, "
        f"Python {platform.python_version()}, presidio-analyzer {version('presidio_analyzer')}, "
        f"spaCy {version('spacy')}, polars {pl.__version__}\n"
    )
    print_table(baseline, pipeline, cpus or 1)
    return 1 if compare(work, args.show) else 0


if __name__ == "__main__":
    main()
