"""Moderation throughput: OpenAI Moderation calls, and Detoxify on the CPU.

OpenAI, against the tests' local Moderation API server (127.0.0.1) answering each request after
``--latency`` seconds (100 ms by default, a realistic round trip), through the real ``openai``
client, over real WildChat utterances (``../shared``; generated text when it is absent):
- baseline: one ``client.moderations.create(input=text)`` per utterance, one after another;
- batched: ``OpenAIModerationScorer`` with 32 texts a request, one request at a time;
- batched and concurrent: the same with 4 requests in flight (the resource's defaults), and
  results saved to a DuckDB results cache as they arrive, as the asset does.

Detoxify, through the real ``detoxify.Detoxify`` code on randomly initialised checkpoints built
offline (``wildchat_dag_tests/detoxify_checkpoints.py``), over the same utterances (texts over
510 tokens scored in windows):
- the tiny network of the tests (2 layers, hidden size 32), at batch sizes 1, 8 and 32;
- a BERT-base-sized network (12 layers, hidden size 768: the compute of Detoxify's released
  models), at the same batch sizes, on the first ``--real-texts`` utterances.
Both vocabularies hold the sample's 20,000 most frequent words, so that text tokenizes into
about as many tokens as with a released model's vocabulary. Batch size 1 is the baseline.

    .venv/bin/python benchmarks/bench_moderation.py
    .venv/bin/python benchmarks/bench_moderation.py --texts 100 --real-texts 32   # quicker
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from importlib.metadata import version
from pathlib import Path

import openai
import polars as pl
from report_tables import print_table

from wildchat_dag.defs.moderation.detoxify_scoring import DetoxifyScorer
from wildchat_dag.defs.moderation.moderation import ResultCache, texts_to_score
from wildchat_dag.defs.moderation.openai_moderation import (
    ModerationSettings,
    OpenAIModerationScorer,
)
from wildchat_dag.resources.duckdb_io import locked_connection

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "wildchat-sample" / "conversations.jsonl"


def utterances(n: int) -> tuple[list[str], str]:
    """``n`` distinct non-empty utterances: real WildChat text when ``../shared`` is here."""
    if SAMPLE.is_file():
        texts = [
            m["content"]
            for line in SAMPLE.read_text().splitlines()
            for m in json.loads(line)["conversation"]
            if m["content"]
        ]
        source = "real WildChat utterances (../shared)"
    else:
        from wildchat_dag.loggen.text import TextMaker

        maker = TextMaker(random.Random(0), mean_chars=1_000)
        texts = [maker.user("en") if i % 2 else maker.assistant("en") for i in range(n)]
        source = "generated utterances (../shared is absent)"
    texts = list(dict.fromkeys(texts))
    # Repeated with a tag when the sample is short, so that every text is distinct.
    repeated = texts * (n // len(texts) + 1)
    return [t if i < len(texts) else f"{t} [{i}]" for i, t in enumerate(repeated)][:n], source


def bench_openai(texts: list[str], latency: float) -> None:
    from wildchat_dag_tests.moderation_server import ModerationServer

    rows = []
    with ModerationServer(latency_s=latency) as server, tempfile.TemporaryDirectory() as tmp:
        client = openai.OpenAI(base_url=server.base_url, api_key="bench", max_retries=0)

        started = time.perf_counter()
        for text in texts:
            client.moderations.create(input=text, model="omni-moderation-latest")
        naive = time.perf_counter() - started
        rows.append(("one request per utterance (baseline)", len(server.requests), naive))

        for name, in_flight, save in (
            ("batched, 32 a request, 1 in flight", 1, None),
            ("batched and concurrent, 4 in flight, cached", 4, "cache"),
        ):
            server.reset_log()
            scorer = OpenAIModerationScorer(
                client, settings=ModerationSettings(batch_size=32, max_in_flight=in_flight)
            )
            if save:
                cache = ResultCache(functools.partial(locked_connection, f"{tmp}/c.duckdb"))

                def saver(batch, cache=cache, scorer=scorer):
                    cache.put("openai", scorer.model, batch, date(2024, 1, 1))
            else:

                def saver(batch):
                    return None

            started = time.perf_counter()
            scorer.score(texts_to_score(pl.DataFrame({"content": texts})), saver)
            rows.append((name, len(server.requests), time.perf_counter() - started))

    n = len(texts)
    print(f"\nOpenAI Moderation: {n:,} utterances, {latency * 1000:.0f} ms a request\n")
    print_table(
        ["path", "requests", "seconds", "utterances/s", "vs baseline"],
        [
            [name, f"{requests:,}", f"{s:.2f}", f"{n / s:,.1f}", f"{naive / s:.1f}x"]
            for name, requests, s in rows
        ],
    )


def bench_detoxify(texts: list[str], real_texts: list[str]) -> None:
    import torch
    from detoxify import Detoxify

    from wildchat_dag_tests.detoxify_checkpoints import build_random_checkpoint

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # The sample's own words in the vocabulary: real text then tokenizes into about as
        # many tokens as with a released model's vocabulary.
        words = Counter(w for t in texts for w in re.findall(r"[a-z]+", t.lower()))
        vocabulary = [w for w, _ in words.most_common(20_000)]
        tiny = build_random_checkpoint(Path(tmp) / "tiny", words=vocabulary)
        base = build_random_checkpoint(
            Path(tmp) / "base", words=vocabulary, layers=12, hidden=768, heads=12,
            intermediate=3072,
        )  # fmt: skip
        for label, checkpoint, sample in (
            ("tiny (2 layers, hidden 32)", tiny, texts),
            ("BERT-base-sized (12 layers, hidden 768)", base, real_texts),
        ):
            model = Detoxify(checkpoint=str(checkpoint), device="cpu")
            for batch_size in (1, 8, 32):
                scorer = DetoxifyScorer(model, "bench", batch_size=batch_size)
                windows = sum(len(scorer.windows(t)) for t in sample)
                started = time.perf_counter()
                scorer.score(texts_to_score(pl.DataFrame({"content": sample})), lambda batch: None)
                seconds = time.perf_counter() - started
                rows.append((label, batch_size, len(sample), windows, seconds))
    print(f"\nDetoxify on the CPU (torch {torch.__version__}, {torch.get_num_threads()} threads)\n")
    baseline = {label: n / s for label, b, n, _, s in rows if b == 1}
    print_table(
        ["model", "batch", "utterances", "windows", "seconds", "utterances/s", "vs batch 1"],
        [
            [label, str(b), f"{n:,}", f"{w:,}", f"{s:.2f}", f"{n / s:,.1f}",
             f"{n / s / baseline[label]:.1f}x"]
            for label, b, n, w, s in rows
        ],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--real-texts", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--only", choices=["openai", "detoxify"])
    args = parser.parse_args(argv)
    texts, source = utterances(args.texts)
    mean = sum(map(len, texts)) / len(texts)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; python "
        f"{platform.python_version()}; openai {version('openai')}, detoxify "
        f"{version('detoxify')}, torch {version('torch')}, transformers {version('transformers')}"
    )
    print(f"input: {source}, mean {mean:,.0f} characters")
    if args.only in (None, "openai"):
        bench_openai(texts, args.latency)
    if args.only in (None, "detoxify"):
        bench_detoxify(texts, texts[: args.real_texts])
    return 0


if __name__ == "__main__":
    sys.exit(main())
