"""The release's search index (wildchat_dag.defs.browse.search_index) at WildChat's size: build
time, CPU and size, then search latency with facet counts, against a naive scan.

1. Generates N WildChat-shaped conversations (the release's columns plus the locator
   columns; utterances carry content, role and turn_identifier, and the moderation and header
   columns are null: the index reads none of them), batch by batch, vectorised (numpy,
   pyarrow): 1 + a geometric number of turns (mean 2.6), each a user and an assistant
   utterance, lengths log-normal around the real sample's mean utterance
   (../shared/data/wildchat-sample; assistants 3x longer than users); words from a
   Zipf-Mandelbrot distribution over 40,000 made-up words, with commas, full stops and
   newlines; Chinese, Japanese and Korean conversations written in Han words from their own
   Zipf vocabulary, without spaces (5% Latin words mixed in); models, languages, countries,
   states, toxic, redacted roughly WildChat's, hashed_ip from a Zipf law over 300,000 users (a
   long tail, a few heavy users).
2. Builds the index with ``build_index`` as the asset does (one pass over the batches):
   wall time, CPU-seconds (getrusage, this process: tantivy's indexing threads included),
   documents/s, size on disk, peak RSS. The generation time inside it is reported apart.
3. Runs a query mix through ``SearchIndex.search`` (limit 20, facet counts included, 10 warm-up
   queries first): a common word, a rare word, two words (conjunction), a phrase, browse with
   no text and one filter, a word and two filters, a CJK word. p50/p95/p99/max per type and
   overall, and CPU-ms per query.
4. The naive baseline, in the same run: the same text queries as polars ``str.contains``
   (literal, the texts held in memory; a conjunction is two scans, so is a phrase's
   substring), on at most ``--naive-conversations`` of them, scaled linearly to N when fewer
   (the table says so). It counts matches only: no ranking, no facets, substring semantics.

    .venv/bin/python benchmarks/bench_search.py --conversations 20000
    nohup .venv/bin/python benchmarks/bench_search.py > /tmp/bench_search_1m.log 2>&1 &
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backfill import wildchat_mean_message_chars
from report_tables import print_table

from wildchat_dag.defs.browse.search_index import SearchIndex, build_index
from wildchat_dag.defs.release.release_schema import RELEASE_SCHEMA

BATCH = 10_000
LATIN_WORDS = 40_000
CJK_WORDS = 8_000
USERS = 300_000
TABLE = 1 << 20
START = datetime(2023, 4, 9, tzinfo=UTC)
END = datetime(2024, 4, 30, tzinfo=UTC)

MODELS = {
    "gpt-3.5-turbo-0613": 0.38,
    "gpt-3.5-turbo-0301": 0.22,
    "gpt-3.5-turbo-0125": 0.12,
    "gpt-4-0314": 0.07,
    "gpt-4-1106-preview": 0.11,
    "gpt-4-0125-preview": 0.10,
}
LANGUAGES = {
    "English": 0.48,
    "Chinese": 0.15,
    "Russian": 0.12,
    "French": 0.03,
    "Spanish": 0.03,
    "Portuguese": 0.02,
    "German": 0.02,
    "Arabic": 0.02,
    "Italian": 0.01,
    "Turkish": 0.01,
    "Japanese": 0.01,
    "Korean": 0.005,
    "Vietnamese": 0.005,
    "Polish": 0.005,
    "Indonesian": 0.005,
}
CJK_LANGUAGES = ("Chinese", "Japanese", "Korean")
COUNTRIES = [
    "United States", "China", "Russia", "Hong Kong", "United Kingdom", "Germany", "France",
    "Japan", "Canada", "India", "Brazil", "Taiwan", "Singapore", "Australia", "Turkey",
    "Vietnam", "Ukraine", "Italy", "Spain", "Egypt", "Philippines", "Netherlands", "Poland",
    "Indonesia", "Mexico", "South Korea", "Morocco", "Pakistan", "Iran", "Kazakhstan",
]  # fmt: skip


def zipf_cdf(n: int, s: float = 1.0, q: float = 2.7) -> np.ndarray:
    weights = 1.0 / (np.arange(n) + q) ** s
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def normalized(weights: dict[str, float]) -> tuple[list[str], np.ndarray]:
    values = np.array(list(weights.values()))
    return list(weights), values / values.sum()


class Corpus:
    """A vocabulary (one byte buffer, a token a slice of it) and WildChat-like distributions."""

    def __init__(self, seed: int, mean_chars: int) -> None:
        rng = np.random.default_rng(seed)
        self.rng = np.random.default_rng(seed + 1)
        syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["qu", "th", "sh"]
        latin: list[str] = []
        seen: set[str] = set()
        while len(latin) < LATIN_WORDS:
            k = int(rng.integers(1, 5))
            word = "".join(syllables[int(i)] for i in rng.integers(0, len(syllables), k))
            if word not in seen:
                seen.add(word)
                latin.append(word)
        # Frequent words short, as in English.
        latin.sort(key=lambda w: len(w) + rng.random() * 4)
        han = np.array([chr(c) for c in range(0x4E00, 0x4E00 + 3000)])
        cjk: list[str] = []
        seen.clear()
        while len(cjk) < CJK_WORDS:
            k = int(rng.choice([1, 2, 2, 2, 3, 4]))
            word = "".join(han[rng.zipf(1.3, k).clip(max=len(han)) - 1])
            if word not in seen:
                seen.add(word)
                cjk.append(word)
        self.latin_words = latin
        self.cjk_words = cjk
        # Token table: Latin words with a space, punctuation, CJK words without spaces.
        tokens = [w + " " for w in latin] + [", ", ". ", "\n"] + cjk + ["，", "。"]
        self.punct = LATIN_WORDS  # ", " then ". " then "\n"
        self.cjk_base = LATIN_WORDS + 3
        self.cjk_punct = self.cjk_base + CJK_WORDS
        self.tokens = pa.array(tokens, pa.large_string())
        # Zipf draws by table lookup: a uniform integer below TABLE indexes the inverse CDF.
        grid = (np.arange(TABLE) + 0.5) / TABLE
        self.latin_cdf = zipf_cdf(LATIN_WORDS)
        self.cjk_cdf = zipf_cdf(CJK_WORDS)
        self.latin_table = np.searchsorted(self.latin_cdf, grid).astype(np.uint16)
        self.cjk_table = np.searchsorted(self.cjk_cdf, grid).astype(np.uint16)
        latin_p = np.diff(np.concatenate([[0.0], self.latin_cdf]))
        mean_latin = float((latin_p * np.array([len(w) + 1 for w in latin])).sum())
        self.latin_tokens_per_utt = mean_chars / (0.9 * mean_latin + 0.1 * 2)
        cjk_p = np.diff(np.concatenate([[0.0], self.cjk_cdf]))
        mean_cjk = float((cjk_p * np.array([len(w) for w in cjk])).sum())
        self.cjk_tokens_per_utt = mean_chars / (0.9 * mean_cjk + 0.1)
        self.models, self.model_p = normalized(MODELS)
        self.languages, self.language_p = normalized(LANGUAGES)
        country_w = 1.0 / (np.arange(len(COUNTRIES)) + 1.5) ** 1.3
        self.country_p = country_w / country_w.sum()
        self.states = np.array([f"Region {i:04d}" for i in range(2000)], dtype=object)
        self.state_cdf = zipf_cdf(len(self.states), 1.1, 3)
        self.user_cdf = zipf_cdf(USERS, 1.05, 5)
        self.users = np.array([os.urandom(32).hex() for _ in range(USERS)], dtype=object)
        self.seconds = 0.0

    def utterance_lengths(self, n: int, per_utt: float, user: np.ndarray) -> np.ndarray:
        # Log-normal, sigma 1: mean exp(mu + 1/2). Users 0.5x, assistants 1.5x the mean.
        scale = np.where(user, 0.5, 1.5) * per_utt
        lengths = np.exp(self.rng.normal(np.log(scale) - 0.5, 1.0, n))
        return np.maximum(1, np.rint(lengths)).astype(np.int64)

    def texts(self, n_tokens: np.ndarray, cjk: np.ndarray) -> pa.Array:
        """One string per utterance, ``n_tokens`` tokens each, CJK ones from the CJK table."""
        total = int(n_tokens.sum())
        rng = self.rng
        is_cjk = np.repeat(cjk, n_tokens)
        r = rng.integers(0, TABLE, total)
        kind = rng.integers(0, 100, total, dtype=np.uint8)
        # Latin: 5% ", ", 4% ". ", 1% newline. CJK: 6% "，", 4% "。", 5% Latin words.
        ids = self.latin_table[r].astype(np.int32)
        punct = np.flatnonzero(kind < 10)
        ids[punct] = self.punct + (kind[punct] >= 5) + (kind[punct] >= 9)
        where = np.flatnonzero(is_cjk)
        if len(where):
            rc, kc = r[where], kind[where]
            cjk_ids = self.cjk_base + self.cjk_table[rc].astype(np.int32)
            cjk_ids[kc < 10] = self.cjk_punct + (kc[kc < 10] >= 6)
            mixed = (kc >= 10) & (kc < 15)
            cjk_ids[mixed] = self.latin_table[(rc[mixed] * 7919) % TABLE]
            ids[where] = cjk_ids
        # The tokens' bytes, in order, are the utterances' bytes: cut at utterance ends.
        taken = self.tokens.take(pa.array(ids))
        token_offsets = np.frombuffer(taken.buffers()[1], dtype=np.int64)[: total + 1]
        ends = np.cumsum(n_tokens)
        offsets = np.concatenate([[0], token_offsets[ends]]).astype(np.int64)
        return pa.LargeStringArray.from_buffers(
            len(n_tokens), pa.py_buffer(offsets), taken.buffers()[2]
        )

    def batch(self, first: int, n: int, shard_rows: int) -> pl.DataFrame:
        started = time.perf_counter()
        rng = self.rng
        turns = rng.geometric(1 / 2.6, n).astype(np.int64)
        language = np.array(self.languages, dtype=object)[
            rng.choice(len(self.languages), n, p=self.language_p)
        ]
        cjk = np.isin(language, CJK_LANGUAGES)
        n_utts = 2 * turns
        utt_conv = np.repeat(np.arange(n), n_utts)
        utt_user = np.arange(len(utt_conv)) - np.repeat(np.cumsum(n_utts) - n_utts, n_utts)
        utt_user = utt_user % 2 == 0
        utt_cjk = cjk[utt_conv]
        per_utt = np.where(utt_cjk, self.cjk_tokens_per_utt, self.latin_tokens_per_utt)
        lengths = self.utterance_lengths(len(utt_conv), per_utt, utt_user)
        content = self.texts(lengths, utt_cjk)
        role = pa.DictionaryArray.from_arrays(
            pa.array(np.where(utt_user, 0, 1), pa.int8()), pa.array(["user", "assistant"])
        ).cast(pa.string())
        seconds = rng.integers(0, int((END - START).total_seconds()), n)
        timestamp = np.datetime64(START.replace(tzinfo=None), "us") + seconds.astype(
            "timedelta64[s]"
        )
        country_idx = rng.choice(len(COUNTRIES), n, p=self.country_p)
        country = np.array(COUNTRIES, dtype=object)[country_idx]
        country[rng.random(n) < 0.02] = None
        state = self.states[np.searchsorted(self.state_cdf, rng.random(n))]
        state[rng.random(n) < 0.12] = None
        hashed_ip = self.users[np.searchsorted(self.user_cdf, rng.random(n))]
        model = np.array(self.models, dtype=object)[rng.choice(len(self.models), n, p=self.model_p)]
        utterance = pa.StructArray.from_arrays(
            [content, role, pa.array(np.arange(len(utt_conv)) + first * 6, pa.int64())],
            names=["content", "role", "turn_identifier"],
        )
        offsets = np.concatenate([[0], np.cumsum(n_utts)]).astype(np.int32)
        conversation = pa.ListArray.from_arrays(pa.array(offsets), utterance)
        rows = np.arange(first, first + n)
        text = pl.String()
        frame = pl.DataFrame(
            [
                pl.Series("conversation_hash", [os.urandom(16).hex() for _ in range(n)], text),
                pl.Series("model", model.tolist(), text),
                pl.Series("timestamp", timestamp).dt.replace_time_zone("UTC"),
                pl.Series("conversation", conversation),
                pl.Series("turn", turns, pl.Int64),
                pl.Series("language", language.tolist(), text),
                pl.Series("toxic", rng.random(n) < 0.1),
                pl.Series("redacted", rng.random(n) < 0.03),
                pl.Series("state", state.tolist(), text),
                pl.Series("country", country.tolist(), text),
                pl.Series("hashed_ip", hashed_ip.tolist(), text),
                pl.Series("shard", rows // shard_rows, pl.Int64),
                pl.Series("row", rows % shard_rows, pl.Int64),
                pl.Series("conversation_id", rows, pl.Int64),
                pl.Series("partition_day", timestamp).dt.date(),
            ]
        )
        # The release's remaining columns, empty: the index does not read them.
        frame = frame.with_columns(
            pl.lit(None, RELEASE_SCHEMA["openai_moderation"]).alias("openai_moderation"),
            pl.lit(None, RELEASE_SCHEMA["detoxify_moderation"]).alias("detoxify_moderation"),
            pl.lit(None, RELEASE_SCHEMA["header"]).alias("header"),
        )
        self.seconds += time.perf_counter() - started
        return frame

    def batches(self, n: int, keep: int, kept: list[pl.DataFrame]) -> Iterator[pl.DataFrame]:
        """N conversations, ``BATCH`` at a time; the texts of the first ``keep`` are kept for
        the naive baseline and the phrase queries."""
        for first in range(0, n, BATCH):
            frame = self.batch(first, min(BATCH, n - first), shard_rows=100_000)
            if first < keep:
                kept.append(
                    frame.head(keep - first).select(
                        text=pl.col("conversation")
                        .list.eval(pl.element().struct.field("content"))
                        .list.join("\n"),
                        language="language",
                        utterances=pl.col("conversation").list.len(),
                    )
                )
            yield frame


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class MemorySampler:
    """Peak resident memory of this process, split as /proc/self/status does: anonymous (heap:
    Python, polars, tantivy's writer) and file-backed (tantivy's memory-mapped segments, which
    the kernel can drop). Sampled every 0.2 s."""

    def __init__(self) -> None:
        self.peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def sample(self) -> None:
        try:
            lines = Path("/proc/self/status").read_text().splitlines()
        except OSError:
            return
        for line in lines:
            key, _, value = line.partition(":")
            if key in self.peak:
                self.peak[key] = max(self.peak[key], int(value.split()[0]) * 1024)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def describe(self) -> str:
        gib = {k: v / 2**30 for k, v in self.peak.items()}
        return (
            f"{gib['VmRSS']:.2f} GiB (peaks: anonymous {gib['RssAnon']:.2f} GiB, "
            f"file-backed mmap {gib['RssFile']:.2f} GiB)"
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def make_queries(corpus: Corpus, texts: pl.DataFrame, count: int, seed: int) -> list[tuple]:
    """(type, text, filters) tuples, ``count`` in all, the types in turn."""
    rng = np.random.default_rng(seed)
    latin = corpus.latin_words
    english = texts.filter(pl.col("language") == "English")["text"]
    phrases = []
    while len(phrases) < 64:
        words = english[int(rng.integers(0, len(english)))].split()
        if len(words) > 3:
            i = int(rng.integers(0, len(words) - 1))
            a, b = (w.strip(",.") for w in words[i : i + 2])
            if a and b:
                phrases.append(f'"{a} {b}"')
    kinds = [
        ("common word", lambda: (latin[int(rng.integers(20, 200))], None)),
        ("rare word", lambda: (latin[int(rng.integers(5_000, 30_000))], None)),
        (
            "two words",
            lambda: (
                f"{latin[int(rng.integers(100, 2000))]} {latin[int(rng.integers(100, 2000))]}",
                None,
            ),
        ),
        ("phrase", lambda: (phrases[int(rng.integers(0, len(phrases)))], None)),
        (
            "browse + 1 filter",
            lambda: ("", {"language": [corpus.languages[int(rng.integers(0, 6))]]}),
        ),
        (
            "word + 2 filters",
            lambda: (
                latin[int(rng.integers(20, 500))],
                {"toxic": ["false"], "country": [COUNTRIES[int(rng.integers(0, 8))]]},
            ),
        ),
        ("CJK word", lambda: (corpus.cjk_words[int(rng.integers(10, 2000))], None)),
    ]
    out = []
    for i in range(count):
        kind, make = kinds[i % len(kinds)]
        text, filters = make()
        out.append((kind, text, filters))
    return out


def run_queries(index: SearchIndex, queries: list[tuple]) -> dict[str, list[tuple[float, float]]]:
    for _, text, filters in queries[:10]:  # warm-up
        index.search(text, filters, limit=20)
    timings: dict[str, list[tuple[float, float]]] = {}
    for kind, text, filters in queries:
        cpu0, t0 = time.process_time(), time.perf_counter()
        page = index.search(text, filters, limit=20)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert page.query_error is None, (text, page.query_error)
        timings.setdefault(kind, []).append((wall, cpu, page.total))
    return timings


def app_pages(folder: Path, queries: list[tuple]) -> list[tuple[float, float]]:
    """The same queries as the app's search page (python -m wildchat_dag.browse): the HTTP
    request through FastAPI, the search with its facets, and the rendered HTML."""

    from fastapi.testclient import TestClient

    from wildchat_dag.browse.app import BrowseConfig, create_app
    from wildchat_dag.defs.anonymization.redaction_rules import DEFAULT_RULES_PATH
    from wildchat_dag.defs.browse.release_reader import INDEX_MANIFEST

    (folder / INDEX_MANIFEST).write_text(json.dumps({"release": "public", "built_at": "bench"}))
    search = folder.parent / "search"
    search.mkdir(exist_ok=True)
    (search / "public").unlink(missing_ok=True)
    (search / "public").symlink_to(folder)
    config = BrowseConfig(
        release="public",
        release_root=folder.parent / "no-release",
        search_root=search,
        rules={"current": DEFAULT_RULES_PATH},
    )
    timings = []
    with TestClient(create_app(config)) as client:
        for _, text, filters in queries[:10]:  # warm-up
            client.get("/", params={"q": text, **(filters or {})})
        for _, text, filters in queries:
            cpu0, t0 = time.process_time(), time.perf_counter()
            response = client.get("/", params={"q": text, **(filters or {})})
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            assert response.status_code == 200, response.text[:500]
            timings.append((wall, cpu))
    return timings


def naive(texts: pl.DataFrame, queries: list[tuple], per_type: int) -> dict[str, list[float]]:
    """Seconds of a polars literal ``str.contains`` scan for the text queries."""
    frame = texts.select(pl.col("text").str.to_lowercase())
    out: dict[str, list[float]] = {}
    for kind, text, _ in queries:
        if not text or len(out.get(kind, [])) >= per_type:
            continue
        needles = [text.strip('"')] if text.startswith('"') else text.split()
        started = time.perf_counter()
        predicate = pl.lit(True)
        for needle in needles:
            predicate = predicate & pl.col("text").str.contains(needle.lower(), literal=True)
        frame.select(predicate.sum()).item()
        out.setdefault(kind, []).append(time.perf_counter() - started)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, help="build the index here (default: a temp dir)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the index")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="tantivy indexing threads")
    parser.add_argument("--heap-mb", type=int, default=256, help="tantivy writer heap, MB")
    parser.add_argument(
        "--naive-conversations",
        type=int,
        default=100_000,
        help="the naive scan holds these texts in memory (about 7 kB each); scaled to N",
    )
    parser.add_argument("--naive-queries", type=int, default=5, help="per query type")
    args = parser.parse_args(argv)
    if args.conversations < 1 or args.queries < 7:
        parser.error("--conversations must be >= 1 and --queries >= 7")

    mean_chars, mean_source = wildchat_mean_message_chars()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; python "
        f"{platform.python_version()}; tantivy {version('tantivy')}, polars {version('polars')}, "
        f"numpy {version('numpy')}"
    )
    print(f"mean utterance: {mean_chars} characters ({mean_source})")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-search-"))
    folder = work / "index"
    if folder.exists():
        shutil.rmtree(folder)
    try:
        return benchmark(args, folder, mean_chars)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
            if not args.work:
                shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"index kept in {folder}")


def benchmark(args: argparse.Namespace, folder: Path, mean_chars: int) -> int:
    n = args.conversations
    corpus = Corpus(args.seed, mean_chars)
    kept: list[pl.DataFrame] = []
    keep = min(n, args.naive_conversations)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    with MemorySampler() as build_memory:
        stats = build_index(
            folder,
            corpus.batches(n, keep, kept),
            heap_bytes=args.heap_mb * 1_000_000,
            threads=args.threads,
        )
    build_wall, build_cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    texts = pl.concat(kept)
    kept.clear()
    gc.collect()
    text_bytes = texts["text"].str.len_bytes().sum()
    mean_utt = (texts["text"].str.len_chars().sum() - texts["utterances"].sum()) / max(
        1, texts["utterances"].sum()
    )
    print(
        f"generated {n:,} conversations in {corpus.seconds:.1f} s; the first {keep:,} kept "
        f"for the baseline: {text_bytes / 1e9:.2f} GB of text, "
        f"{texts['utterances'].mean():.2f} utterances a conversation, "
        f"{mean_utt:,.0f} characters an utterance"
    )
    print()
    print_table(
        ["build", "value"],
        [
            ["conversations", f"{stats.documents:,}"],
            ["wall time (incl. generation)", f"{build_wall:.1f} s"],
            ["of which generating batches", f"{corpus.seconds:.1f} s"],
            ["CPU time (all threads)", f"{build_cpu:.1f} s"],
            ["documents/s (wall)", f"{stats.documents / build_wall:,.0f}"],
            [
                "documents/s (wall, excl. generation)",
                f"{stats.documents / max(1e-9, build_wall - corpus.seconds):,.0f}",
            ],
            ["index size on disk", f"{stats.bytes / 2**20:,.1f} MiB"],
            ["bytes per conversation", f"{stats.bytes / max(1, stats.documents):,.0f}"],
            ["peak RSS while building", build_memory.describe()],
        ],
    )

    index = SearchIndex.open(folder)
    queries = make_queries(corpus, texts, args.queries, args.seed + 7)
    with MemorySampler() as search_memory:
        timings = run_queries(index, queries)
    print()
    rows = []
    everything: list[tuple[float, float, int]] = []
    for kind, values in timings.items():
        everything.extend(values)
        rows.append(latency_row(kind, values))
    rows.append(latency_row("all", everything))
    print_table(
        ["query type", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "CPU ms/query", "median hits"],
        rows,
    )

    texts_for_naive = texts
    scale = n / len(texts_for_naive)
    baseline = naive(texts_for_naive, queries, args.naive_queries)
    print()
    scaled = (
        f" (scanned {len(texts_for_naive):,} texts, times x{scale:.1f} to N)" if scale > 1 else ""
    )
    print(f"naive baseline: polars str.contains over texts in memory{scaled}")
    brows = []
    for kind, values in baseline.items():
        naive_p50 = statistics.median(values) * scale * 1000
        naive_p95 = percentile(values, 95) * scale * 1000
        index_values = [w for w, _, _ in timings[kind]]
        index_p50 = statistics.median(index_values) * 1000
        brows.append(
            [
                kind,
                str(len(values)),
                f"{naive_p50:,.1f}",
                f"{naive_p95:,.1f}",
                f"{index_p50:,.2f}",
                f"{naive_p50 / index_p50:,.0f}x",
            ]
        )
    print_table(
        ["query type", "n", "naive p50 ms", "naive p95 ms", "index p50 ms", "naive/index"],
        brows,
    )
    pages = app_pages(folder, queries)
    walls = [w * 1000 for w, _ in pages]
    print()
    print_table(
        [
            "app search page (HTTP, facets, HTML)",
            "n",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "CPU ms/page",
        ],
        [
            [
                "all query types",
                str(len(walls)),
                f"{statistics.median(walls):.2f}",
                f"{percentile(walls, 95):.2f}",
                f"{percentile(walls, 99):.2f}",
                f"{max(walls):.2f}",
                f"{statistics.fmean(c * 1000 for _, c in pages):.2f}",
            ]
        ],
    )
    print(f"peak RSS while searching: {search_memory.describe()}")
    print(f"peak RSS of the whole run (getrusage): {peak_rss_gib():.2f} GiB")
    p95 = percentile([w for w, _, _ in everything], 95) * 1000
    print(f"p95 search latency at {n:,} conversations: {p95:.1f} ms")
    print(f"p95 app search page at {n:,} conversations: {percentile(walls, 95):.1f} ms")
    return 0


def latency_row(kind: str, values: list[tuple[float, float, int]]) -> list[str]:
    walls = [w * 1000 for w, _, _ in values]
    cpus = [c * 1000 for _, c, _ in values]
    return [
        kind,
        str(len(values)),
        f"{statistics.median(walls):.2f}",
        f"{percentile(walls, 95):.2f}",
        f"{percentile(walls, 99):.2f}",
        f"{max(walls):.2f}",
        f"{statistics.fmean(cpus):.2f}",
        f"{statistics.median([t for _, _, t in values]):,.0f}",
    ]


if __name__ == "__main__":
    sys.exit(main())
