"""The release's search index (wildchat_dag.defs.browse.search_index): text search in any
script, multi-select facet counts checked against polars, hostile queries, the index folder's
errors, and the Elasticsearch _bulk client against a local HTTP server."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wildchat_dag.defs.browse.search_index import (
    _CJK_CLASS,
    _CJK_RUN,
    _ZERO_WIDTH,
    FACETS,
    MARKER_FILE,
    MAX_QUERY_CHARS,
    TURN_BUCKETS,
    FacetCount,
    SearchIndex,
    build_index,
    bulk_lines,
    index_documents,
    push_bulk,
    turns_bucket,
)
from wildchat_dag.defs.release.release_schema import RELEASE_SCHEMA

SCHEMA = {
    **RELEASE_SCHEMA,
    "shard": pl.Int64,
    "row": pl.Int64,
    "conversation_id": pl.Int64,
    "partition_day": pl.Date,
}
HEADER = {"accept-language": None, "user-agent": None}
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def record(
    texts: list[str],
    *,
    n: int,
    conversation_hash: str | None = None,
    model: str = "gpt-4-0314",
    language: str | None = "English",
    country: str | None = "United States",
    state: str | None = "California",
    hashed_ip: str = "ip-0",
    toxic: bool | None = False,
    redacted: bool = False,
    turn: int | None = None,
    shard: int = 0,
    row: int | None = None,
    conversation_id: int | None = -1,
    partition_day: date | None = date(2024, 1, 1),
) -> dict[str, Any]:
    """A release row (user and assistant alternate, starting with the user) and its locator."""
    timestamp = T0 + timedelta(minutes=n)
    conversation = [
        {
            "content": text,
            "country": country,
            "hashed_ip": hashed_ip,
            "header": HEADER,
            "language": language,
            "redacted": redacted,
            "role": "user" if i % 2 == 0 else "assistant",
            "state": state,
            "timestamp": timestamp,
            "toxic": toxic,
            "turn_identifier": n * 100 + i,
        }
        for i, text in enumerate(texts)
    ]
    return {
        "conversation_hash": conversation_hash or f"hash{n:04d}",
        "model": model,
        "timestamp": timestamp,
        "conversation": conversation,
        "turn": turn if turn is not None else (len(texts) + 1) // 2,
        "language": language,
        "openai_moderation": [],
        "detoxify_moderation": [],
        "toxic": toxic,
        "redacted": redacted,
        "state": state,
        "country": country,
        "hashed_ip": hashed_ip,
        "header": HEADER,
        "shard": shard,
        "row": n if row is None else row,
        "conversation_id": n if conversation_id == -1 else conversation_id,
        "partition_day": partition_day,
    }


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA)


def build(folder: Path, rows: list[dict[str, Any]]) -> SearchIndex:
    records = frame(rows)
    # Two batches: build_index takes an iterable of frames.
    half = len(rows) // 2
    stats = build_index(folder, [records.head(half), records.tail(len(rows) - half)], threads=1)
    assert stats.documents == len(rows)
    assert stats.bytes > 0
    return SearchIndex.open(folder)


def hashes(page) -> set[str]:
    return {h.conversation_hash for h in page.hits}


# --- a text corpus -----------------------------------------------------------------------------

TEXTS = [
    ["the quick brown fox", "jumps over the lazy dog"],  # 0
    ["a brown dog and a quick cat", "fox news"],  # 1
    ["quick thinking", "brown bread"],  # 2
    ["我喜欢学习中文和日语", "好的"],  # 3 Chinese, no spaces
    ["日本語を勉強しています", "頑張って"],  # 4 Japanese
    ["저는 한국어를 공부합니다", "좋아요"],  # 5 Korean
    ["مرحبا بالعالم", "أهلا"],  # 6 Arabic
    ["שלום עולם", "תודה"],  # 7 Hebrew
    ["ｈｅｌｌｏ full width", "ok"],  # 8 full-width Latin in the document
    ["invisible wo\u200brd here", "zero\u2060width\ufeff joiner"],  # 9 zero-width inside words
    ["I use 我用Python写代码 daily", "nice"],  # 10 CJK glued to Latin
    ["TypeError: cannot read property", "check the stack"],  # 11
    ["   lots   of\n\n whitespace\there  " + "x" * 400, "reply"],  # 12 long, spaced preview
    ["我的猫很可爱。猫", "ネコが好き"],  # 13 one-character words
]


@pytest.fixture(scope="module")
def text_index(tmp_path_factory) -> SearchIndex:
    rows = [record(texts, n=i) for i, texts in enumerate(TEXTS)]
    return build(tmp_path_factory.mktemp("text") / "index", rows)


def found(index: SearchIndex, text: str) -> set[int]:
    page = index.search(text, limit=100)
    return {int(h.conversation_hash[4:]) for h in page.hits}


def test_words_conjunction_and_phrase(text_index):
    assert found(text_index, "quick") == {0, 1, 2}
    assert found(text_index, "QUICK") == {0, 1, 2}  # lowercased
    # Every word must match (conjunction by default).
    assert found(text_index, "quick fox") == {0, 1}
    assert found(text_index, "quick brown") == {0, 1, 2}
    # A phrase needs its words adjacent, in order, within one utterance.
    assert found(text_index, '"quick brown"') == {0}
    assert found(text_index, '"brown quick"') == set()
    assert found(text_index, '"lazy dog"') == {0}
    assert found(text_index, "quick -fox") == {2}
    assert found(text_index, "nosuchword") == set()
    page = text_index.search("quick fox")
    assert page.total == 2 and page.query_error is None
    scores = [h.score for h in page.hits]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    # Filters narrow, they do not change the ranking.
    filtered = text_index.search("quick fox", {"model": ["gpt-4-0314"], "turns": ["1"]})
    assert [(h.conversation_hash, h.score) for h in filtered.hits] == [
        (h.conversation_hash, h.score) for h in page.hits
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("中文", {3}),  # inside a run with no spaces
        ("学习中文", {3}),
        ("喜欢", {3}),
        ("日语", {3}),
        ("中文日语", set()),  # not in the text
        ('"学习中文"', {3}),
        ("勉強", {4}),  # Japanese, inside a run
        ("日本語", {4}),
        ("한국어", {5}),  # Korean, a particle glued to it
        ("공부", {5}),
        ("مرحبا", {6}),  # Arabic (RTL)
        ("بالعالم", {6}),
        ("שלום", {7}),  # Hebrew (RTL)
        ("hello", {8}),  # full-width in the document
        ("ｈｅｌｌｏ", {8}),  # full-width in the query
        ("ＨＥＬＬＯ width", {8}),
        ("word", {9}),  # zero-width space inside the document's word
        ("wo\u200bRD", {9}),  # and inside the query's
        ("zerowidth", {9}),  # word joiner and BOM removed
        ("python", {10}),  # CJK glued to Latin in the document
        ("我用", {10}),
        ("我用Python", {10}),
        ("写代码", {10}),
        ("猫", {13}),  # one character, inside a run
        ("的", {3, 13}),  # "好的"
        ("可爱", {13}),
        ("ネコ", {13}),
        ("好", {3, 13}),
        ("が", {13}),
        ("我", {3, 10, 13}),
    ],
)
def test_scripts(text_index, query, expected):
    page = text_index.search(query, limit=100)
    assert page.query_error is None
    assert {int(h.conversation_hash[4:]) for h in page.hits} == expected


def test_browse_orders_by_timestamp_and_pages(text_index):
    page = text_index.search("", limit=5)
    assert page.total == len(TEXTS) == text_index.num_docs
    assert [h.timestamp for h in page.hits] == sorted(
        (T0 + timedelta(minutes=i) for i in range(len(TEXTS))), reverse=True
    )[:5]
    assert all(h.score == 0.0 for h in page.hits)
    second = text_index.search("   ", limit=5, offset=5)
    assert [h.conversation_hash for h in second.hits] == [
        f"hash{i:04d}" for i in range(len(TEXTS) - 6, len(TEXTS) - 11, -1)
    ]
    assert text_index.search("", limit=0).hits == []
    assert text_index.search("", limit=0).total == len(TEXTS)
    with pytest.raises(ValueError):
        text_index.search("", limit=-1)


def test_hit_fields_and_preview(text_index):
    (hit,) = text_index.search("whitespace").hits
    assert hit.preview.startswith("lots of whitespace here xxx")
    assert len(hit.preview) == 300
    assert hit.conversation_hash == "hash0012" and hit.shard == 0 and hit.row == 12
    assert hit.conversation_id == 12 and hit.partition_day == date(2024, 1, 1)
    assert hit.model == "gpt-4-0314" and hit.language == "English"
    assert hit.country == "United States" and hit.state == "California"
    assert hit.turn == 1 and hit.toxic is False and hit.redacted is False
    assert hit.timestamp == T0 + timedelta(minutes=12)
    assert hit.hashed_ip == "ip-0"
    # The preview is the first user utterance as written (not normalised).
    (hit,) = text_index.search("hello").hits
    assert hit.preview == "ｈｅｌｌｏ full width"


HOSTILE = [
    '"unbalanced quote',
    'quick "fox',
    "foo:bar quick",
    "error: cannot",
    "TypeError: cannot",
    "*",
    "quick*",
    "((quick",
    "quick)",
    "-",
    "+",
    "quick AND",
    "OR OR OR",
    "[1 TO",
    "turn:>",
    "model:",
    "text:quick",
    "nosuchfield:*",
    "\\`quickIN:*",
    "turn:abc",
    "timestamp:yesterday",
    "turn:[1 TO",
    "preview:quick",
    "text_cjk:/.*/",
    "\\",
    "quick\\",
    "~2",
    "^",
    "quick\x00fox\x07\x1b[31m",
    "\u202equick\u202c",
    "?!?!...,,,",
    "\u200b\u200b",
    "()",
    '""',
    "((((((((((((((((((((quick))))))))))))))))))))",
    "(" * 600 + "quick" + ")" * 600,
    "quick " * 900,
    "x" * 5000,
    " ".join(["quick"] * 2500),
]


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_never_raise(text_index, query):
    page = text_index.search(query)
    assert page.query_error is not None or page.total >= 0
    assert isinstance(page.hits, list)
    assert set(page.facets) == set(FACETS)


def test_hostile_query_messages(text_index):
    # Syntax errors: searched as plain words, and said so.
    page = text_index.search('"unbalanced quick')
    assert page.query_error and "plain words" in page.query_error
    assert found(text_index, '"unbalanced quick') == set()  # "unbalanced" is in no text
    page = text_index.search("foo:bar quick")
    assert page.query_error and "foo" in page.query_error
    page = text_index.search("TypeError: cannot")
    assert hashes(page) == {"hash0011"}
    page = text_index.search("error: quick")
    assert page.total == 0 and page.query_error
    # A query that parses and fails when run: plain words too.
    page = text_index.search("nosuchfield:* quick")
    assert page.query_error and page.total == 0
    page = text_index.search("quick:*")
    assert page.query_error and page.total == 3
    # Field syntax on a real field still works.
    assert text_index.search("text:quick").total == 3
    # "*" is every conversation.
    assert text_index.search("*").total == len(TEXTS)
    # Control characters separate words.
    page = text_index.search("quick\x00fox\x07")
    assert hashes(page) == {"hash0000", "hash0001"} and page.query_error is None
    # Only punctuation: nothing to search for, and the page says so.
    page = text_index.search("?!?!...,,,")
    assert page.total == 0 and page.hits == [] and page.query_error
    # Too long: the first MAX_QUERY_CHARS characters are searched.
    page = text_index.search("quick " + "x" * 5000)
    assert page.query_error and f"{MAX_QUERY_CHARS:,}" in page.query_error
    assert page.total == 0  # "quick" and a 994-character word: no document has both
    page = text_index.search("quick " + " " * 5000 + "fox")
    assert page.query_error and hashes(page) == {"hash0000", "hash0001", "hash0002"}
    page = text_index.search("q" * MAX_QUERY_CHARS)
    assert page.query_error is None


def test_unknown_facets_and_values_raise(text_index):
    with pytest.raises(ValueError, match="unknown facet 'colour'"):
        text_index.search("", {"colour": ["red"]})
    with pytest.raises(ValueError, match="turns bucket '4'"):
        text_index.search("", {"turns": ["4"]})
    with pytest.raises(ValueError, match="toxic"):
        text_index.search("", {"toxic": ["yes"]})
    # An empty selection is no filter.
    assert text_index.search("", {"model": []}).total == len(TEXTS)


# --- facets against polars ---------------------------------------------------------------------

WORDS = ["alpha", "beta", "gamma", "delta", "omega"]
MODELS = ["gpt-3.5-turbo-0613", "gpt-3.5-turbo-0301", "gpt-4-0314", "gpt-4-1106-preview"]
LANGUAGES = ["English", "Chinese", "Russian", "French", None]
COUNTRIES = ["United States", "China", "Russia", "France", "Germany", "Japan", None]
STATES = ["California", "Beijing", "Moscow", None]
TURNS = [1, 1, 1, 2, 2, 3, 4, 5, 6, 8, 10, 11, 12, 30]


@pytest.fixture(scope="module")
def facet_corpus(tmp_path_factory) -> tuple[SearchIndex, pl.DataFrame]:
    rng = random.Random(7)
    rows = []
    for n in range(400):
        words = rng.sample(WORDS, rng.randint(1, 3))
        rows.append(
            record(
                [" ".join(words), "reply"],
                n=n,
                model=rng.choice(MODELS),
                language=rng.choice(LANGUAGES),
                country=rng.choice(COUNTRIES),
                state=rng.choice(STATES),
                # A long tail: a few heavy users, many with one conversation.
                hashed_ip=f"ip-{min(int(rng.paretovariate(1.2)), 60):02d}",
                # Unscored conversations are of unknown toxicity (the release's null).
                toxic=None if n % 7 == 0 else rng.random() < 0.2,
                redacted=rng.random() < 0.1,
                turn=rng.choice(TURNS),
                shard=n // 100,
                row=n % 100,
                conversation_id=None if n % 3 == 0 else n,
                partition_day=None if n % 5 == 0 else date(2024, 1, 1 + n % 28),
            )
        )
    records = frame(rows)
    index = build(tmp_path_factory.mktemp("facets") / "index", rows)
    expected = records.select(
        "conversation_hash",
        words=pl.col("conversation").list.first().struct.field("content").str.split(" "),
        toxic=pl.col("toxic").cast(pl.String).str.to_lowercase().fill_null("unknown"),
        redacted=pl.col("redacted").cast(pl.String).str.to_lowercase(),
        model="model",
        language=pl.col("language").fill_null("(none)"),
        country=pl.col("country").fill_null("(none)"),
        state=pl.col("state").fill_null("(none)"),
        hashed_ip="hashed_ip",
        turns=pl.col("turn").map_elements(turns_bucket, return_dtype=pl.String),
        timestamp="timestamp",
    )
    return index, expected


def expected_page(
    table: pl.DataFrame, words: list[str], filters: dict[str, list[str]], facet_size: int
) -> tuple[int, dict[str, list[FacetCount]]]:
    """Total and facet lists, computed with polars: a facet counts over the words and the
    OTHER facets' selections; top facet_size by count then value; selected ones always."""
    matching = table
    for word in words:
        matching = matching.filter(pl.col("words").list.contains(word))

    def narrowed(skip: str | None) -> pl.DataFrame:
        out = matching
        for facet, values in filters.items():
            if facet != skip and values:
                out = out.filter(pl.col(facet).is_in(values))
        return out

    facets = {}
    for facet in FACETS:
        counts = dict(narrowed(facet).group_by(facet).len().iter_rows())
        chosen = filters.get(facet, [])
        if facet == "turns":
            facets[facet] = [
                FacetCount(b, counts.get(b, 0), b in chosen)
                for b in TURN_BUCKETS
                if counts.get(b) or b in chosen
            ]
            continue
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:facet_size]
        top = [FacetCount(v, c, v in chosen) for v, c in ranked]
        shown = {v for v, _ in ranked}
        extra = sorted(
            (FacetCount(v, counts.get(v, 0), True) for v in chosen if v not in shown),
            key=lambda fc: (-fc.count, fc.value),
        )
        facets[facet] = top + extra
    return narrowed(None).height, facets


FACET_CASES = [
    ("", {}, 10),
    ("", {}, 100),
    ("alpha", {}, 10),
    ("alpha beta", {}, 3),
    ("", {"model": ["gpt-4-0314"]}, 10),
    ("", {"model": ["gpt-4-0314", "gpt-3.5-turbo-0301"]}, 10),
    ("gamma", {"model": ["gpt-4-0314"], "country": ["China", "(none)"]}, 10),
    ("", {"toxic": ["true"], "language": ["(none)"]}, 10),
    ("", {"turns": ["3-5", "11+"], "redacted": ["false"]}, 10),
    ("delta", {"state": ["Moscow"], "turns": ["1"], "toxic": ["false"]}, 2),
    # Selected values outside the top: listed, marked, with their count (0 included).
    ("", {"hashed_ip": ["ip-37"]}, 2),
    ("", {"hashed_ip": ["ip-37", "ip-nobody"], "country": ["Japan"]}, 1),
    ("omega", {"country": ["Atlantis"]}, 3),
    ("", {}, 1),
    ("", {}, 0),
]


@pytest.mark.parametrize(("text", "filters", "facet_size"), FACET_CASES)
def test_facet_counts_match_polars(facet_corpus, text, filters, facet_size):
    index, table = facet_corpus
    page = index.search(text, filters, facet_size=facet_size, limit=500)
    total, facets = expected_page(table, text.split(), filters, facet_size)
    assert page.total == total
    assert len(page.hits) == total
    for facet in FACETS:
        assert page.facets[facet] == facets[facet], facet
    # Every hit satisfies every filter.
    by_hash = {row["conversation_hash"]: row for row in table.iter_rows(named=True)}
    for hit in page.hits:
        row = by_hash[hit.conversation_hash]
        for facet, values in filters.items():
            assert row[facet] in values


def test_facet_semantics(facet_corpus):
    index, table = facet_corpus
    everything = index.search("", facet_size=100)
    models = {f.value: f.count for f in everything.facets["model"]}
    assert sum(models.values()) == table.height
    # A facet's own selection does not shrink its list; the others' selections do.
    page = index.search("", {"model": ["gpt-4-0314"]}, facet_size=100)
    assert {f.value: f.count for f in page.facets["model"]} == models
    assert [f.value for f in page.facets["model"] if f.selected] == ["gpt-4-0314"]
    assert page.total == models["gpt-4-0314"]
    assert sum(f.count for f in page.facets["country"]) == page.total
    # OR within a facet, AND across facets.
    both = index.search("", {"model": ["gpt-4-0314", "gpt-3.5-turbo-0613"]})
    assert both.total == models["gpt-4-0314"] + models["gpt-3.5-turbo-0613"]
    narrowed = index.search("", {"model": ["gpt-4-0314"], "toxic": ["true"]})
    assert (
        narrowed.total
        == table.filter((pl.col("model") == "gpt-4-0314") & (pl.col("toxic") == "true")).height
    )
    # Nulls are "(none)", in the facet and as a filter; a hit shows None.
    none = index.search("", {"country": ["(none)"]}, limit=500)
    assert none.total == table.filter(pl.col("country") == "(none)").height > 0
    assert {h.country for h in none.hits} == {None}
    # Browse with a filter stays newest first.
    stamps = [h.timestamp for h in none.hits]
    assert stamps == sorted(stamps, reverse=True)
    # Every bucket's conversations have turns in it.
    for bucket in TURN_BUCKETS:
        page = index.search("", {"turns": [bucket]}, limit=500)
        assert page.total > 0
        assert {turns_bucket(h.turn) for h in page.hits} == {bucket}
    assert [f.value for f in everything.facets["turns"]] == list(TURN_BUCKETS)


def test_locator_fields(facet_corpus):
    index, _ = facet_corpus
    page = index.search("", limit=500)
    hits = {h.conversation_hash: h for h in page.hits}
    assert hits["hash0003"].conversation_id is None  # null conversation_id
    assert hits["hash0004"].conversation_id == 4
    assert hits["hash0005"].partition_day is None
    assert hits["hash0006"].partition_day == date(2024, 1, 7)
    assert (hits["hash0123"].shard, hits["hash0123"].row) == (1, 23)


def test_turns_bucket():
    assert [turns_bucket(t) for t in (0, 1, 2, 3, 5, 6, 10, 11, 500)] == [
        "1",
        "1",
        "2",
        "3-5",
        "3-5",
        "6-10",
        "6-10",
        "11+",
        "11+",
    ]


# --- the index folder --------------------------------------------------------------------------


def test_locate_with_duplicate_hashes(tmp_path):
    rows = [
        record(["first copy"], n=0, conversation_hash="dup", shard=1, row=5),
        record(["unique"], n=1, conversation_hash="one", shard=0, row=0),
        record(["second copy"], n=2, conversation_hash="dup", shard=0, row=9),
    ]
    index = build(tmp_path / "index", rows)
    located = index.locate("dup")
    assert [(h.shard, h.row) for h in located] == [(0, 9), (1, 5)]
    assert [h.preview for h in located] == ["second copy", "first copy"]
    assert [h.conversation_hash for h in index.locate(" one ")] == ["one"]
    assert index.locate("nope") == []
    assert index.locate("") == []


def test_build_refuses_a_non_empty_folder(tmp_path):
    rows = [record(["hello"], n=0)]
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "something.txt").write_text("x")
    with pytest.raises(ValueError, match="busy"):
        build_index(tmp_path / "busy", [frame(rows)])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="file"):
        build_index(tmp_path / "file", [frame(rows)])
    # An empty folder, or a missing one, is fine; a built index is not empty any more.
    (tmp_path / "empty").mkdir()
    assert build_index(tmp_path / "empty", [frame(rows)]).documents == 1
    assert build_index(tmp_path / "new" / "deeper", [frame(rows)]).documents == 1
    with pytest.raises(ValueError, match="empty"):
        build_index(tmp_path / "empty", [frame(rows)])
    # No batches: an empty index that opens.
    assert build_index(tmp_path / "none", []).documents == 0
    assert SearchIndex.open(tmp_path / "none").search("anything").total == 0


def test_open_refuses_what_is_not_an_index(tmp_path):
    with pytest.raises(ValueError, match="missing-folder"):
        SearchIndex.open(tmp_path / "missing-folder")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="plain"):
        SearchIndex.open(tmp_path / "plain")
    # A marker without the index behind it, or of another format.
    build_index(tmp_path / "real", [frame([record(["hello"], n=0)])])
    marker = tmp_path / "real" / MARKER_FILE
    assert marker.is_file()
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / marker.name).write_text(marker.read_text())
    with pytest.raises(ValueError, match="fake"):
        SearchIndex.open(tmp_path / "fake")
    marker.write_text(json.dumps({"format": 999}))
    with pytest.raises(ValueError, match="rebuild"):
        SearchIndex.open(tmp_path / "real")


def test_two_readers_at_once(tmp_path):
    build_index(tmp_path / "index", [frame([record(["hello world"], n=0)])])
    first = SearchIndex.open(tmp_path / "index")
    second = SearchIndex.open(tmp_path / "index")
    assert first.search("hello").total == second.search("world").total == 1


def test_index_documents():
    rows = [
        record(["Ｆｕｌｌ wi\u200bdth 我用Python", "ok"], n=0, country=None, toxic=True),
        record([], n=1, conversation_id=None, partition_day=None, turn=0),
    ]
    docs = list(index_documents(frame(rows)))
    assert len(docs) == 2
    assert docs[0]["text"] == "Full width  我用 Python\nok"
    assert docs[0]["text_cjk"] == ["我用"]
    assert docs[0]["text_cjk_chars"] == ["我", "用"]
    assert docs[0]["preview"] == "Ｆｕｌｌ width 我用Python"
    assert docs[0]["country"] == "(none)" and docs[0]["toxic"] is True
    assert docs[0]["turns"] == "1" and docs[0]["timestamp"] == T0
    assert docs[1]["text"] == "" and docs[1]["preview"] == "" and docs[1]["text_cjk"] == []
    assert docs[1]["text_cjk_chars"] == []
    assert docs[1]["conversation_id"] is None and docs[1]["partition_day"] is None


# Every kind of character the index's normalisation treats apart: ASCII, zero-width and soft
# hyphen, full-width and other compatibility forms, combining marks in and out of canonical
# order, Hangul syllables and conjoining jamo, kana with their voicing marks, Han (also beyond
# the BMP), scripts NFKC keeps, an unassigned code point, and line breaks.
_NORMALIZATION_CHARS = (
    "aZ9 .-_\n\u200b\u200c\u200d\u2060\ufeff\u00ad"
    "\uff21\uff41\uff10\u3000\u00a0\ufb01\u2460\u00bd\u2126\u212b\u1e9b"
    "e\u0301\u0323\u0302\u0334\u0345\u00e9\u00c5"
    "\uac00\ud55c\u1100\u1161\u11a8\u3131\u314f"
    "\u304b\u3099\u309a\u30cf\u30f3\uff76\uff9e\u3005"
    "\u6211\u7528\u4e00\U00020000\uf900\u2f00"
    "\u0430\u05d0\u0627\u0915\u093c\u0e01\u0378"
)


def _first_written_normalization(records: pl.DataFrame) -> pl.DataFrame:
    """The index's text fields as first written: every non-ASCII text through NFKC, and each
    CJK character found by its own regex."""
    content = pl.element().struct.field("content")
    text = pl.col("text")
    joined = records.select(
        text=pl.col("conversation").list.eval(content.fill_null("")).list.join("\n")
    ).with_columns(
        pl.when(text.str.len_bytes() != text.str.len_chars())
        .then(text.str.replace_all(_ZERO_WIDTH, "").str.normalize("NFKC"))
        .otherwise(text)
    )
    return joined.select(
        text.str.replace_all(_CJK_RUN, " $0 "),
        text_cjk=text.str.extract_all(_CJK_RUN),
        text_cjk_chars=text.str.extract_all(_CJK_CLASS).list.unique(maintain_order=True),
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.text(alphabet=_NORMALIZATION_CHARS, max_size=40), max_size=3),
        min_size=1,
        max_size=6,
    )
)
def test_indexed_text_is_normalized_as_first_written(conversations: list[list[str]]) -> None:
    """Only the texts that hold a character NFKC may change (or a zero-width one) go through
    NFKC, and the distinct CJK characters come from the runs: the documents are the same."""
    records = frame([record(texts, n=n) for n, texts in enumerate(conversations)])
    documents = pl.DataFrame(list(index_documents(records))).select(
        "text", "text_cjk", "text_cjk_chars"
    )
    expected = _first_written_normalization(records)
    assert documents["text"].to_list() == expected["text"].to_list()
    assert documents["text_cjk"].to_list() == expected["text_cjk"].to_list()
    assert documents["text_cjk_chars"].to_list() == expected["text_cjk_chars"].to_list()


# --- Elasticsearch _bulk -----------------------------------------------------------------------

SECRET_TEXT = "the secret text of a conversation"


def test_bulk_lines_shape():
    rows = [
        record([SECRET_TEXT, "我喜欢中文"], n=0),
        record(["other"], n=1, conversation_id=None, shard=3, row=7),
    ]
    lines = list(bulk_lines(frame(rows), "wildchat-public"))
    assert len(lines) == 4
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
    parsed = [json.loads(line) for line in lines]
    assert parsed[0] == {"index": {"_index": "wildchat-public", "_id": "0"}}
    assert parsed[2] == {"index": {"_index": "wildchat-public", "_id": "3-7"}}
    source = parsed[1]
    assert source["text"] == f"{SECRET_TEXT}\n我喜欢中文"  # CJK not spaced for Elasticsearch
    assert "text_cjk" not in source and "text_cjk_chars" not in source
    assert source["timestamp"] == "2024-01-01T00:00:00Z"
    assert source["partition_day"] == "2024-01-01"
    assert source["toxic"] is False and source["turns"] == "1"
    assert source["conversation_hash"] == "hash0000"
    # The same key twice: stable.
    assert list(bulk_lines(frame(rows), "wildchat-public")) == lines


class BulkServer:
    """A local stand-in for Elasticsearch's _bulk endpoint."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                lines = body.decode().splitlines()
                actions = [json.loads(line) for line in lines[0::2]]
                if server.mode == "500":
                    self.answer(500, {"error": {"type": "cluster_block", "reason": "read-only"}})
                elif server.mode == "html":
                    self.answer(200, b"<html>proxy error</html>")
                elif server.mode == "no-items":
                    self.answer(200, {"took": 1, "errors": False})
                elif server.mode == "item-error":
                    items = [
                        {"index": {"_id": a["index"]["_id"], "status": 201, "result": "created"}}
                        for a in actions
                    ]
                    items[1]["index"] = {
                        "_id": actions[1]["index"]["_id"],
                        "status": 400,
                        "error": {
                            "type": "mapper_parsing_exception",
                            "reason": "failed to parse field [turn] of type [long]",
                        },
                    }
                    self.answer(200, {"took": 3, "errors": True, "items": items})
                else:
                    items = [
                        {"index": {"_id": a["index"]["_id"], "status": 201, "result": "created"}}
                        for a in actions
                    ]
                    self.answer(200, {"took": 3, "errors": False, "items": items})

            def answer(self, status: int, payload: Any) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> BulkServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def bulk_batches() -> Iterator[pl.DataFrame]:
    rows = [record([f"{SECRET_TEXT} {n}"], n=n) for n in range(5)]
    yield frame(rows[:3])
    yield frame(rows[3:])


def test_push_bulk_success():
    with BulkServer() as server:
        pushed = push_bulk(
            server.url,
            "wildchat-full",
            bulk_batches(),
            batch_docs=2,
            headers={"Authorization": "ApiKey abc"},
        )
    assert pushed == 5
    assert [r["path"] for r in server.requests] == ["/_bulk"] * 3
    assert [r["body"].count(b"\n") for r in server.requests] == [4, 4, 2]
    first = server.requests[0]
    assert first["headers"]["Content-Type"] == "application/x-ndjson"
    assert first["headers"]["Authorization"] == "ApiKey abc"
    ids = [
        json.loads(line)["index"]["_id"]
        for r in server.requests
        for line in r["body"].splitlines()[0::2]
    ]
    assert ids == ["0", "1", "2", "3", "4"]
    with BulkServer() as server:
        assert push_bulk(server.url, "empty", iter([])) == 0
    assert server.requests == []


def test_push_bulk_item_error_names_reason_not_text():
    with BulkServer("item-error") as server, pytest.raises(RuntimeError) as caught:
        push_bulk(server.url, "wildchat-full", bulk_batches(), batch_docs=2)
    message = str(caught.value)
    assert "wildchat-full" in message
    assert "mapper_parsing_exception" in message and "failed to parse field [turn]" in message
    assert "starting at document 0" in message
    assert SECRET_TEXT not in message
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("500", "HTTP 500"), ("html", "not JSON"), ("no-items", "items")],
)
def test_push_bulk_bad_answers(mode, expected):
    with BulkServer(mode) as server, pytest.raises(RuntimeError) as caught:
        push_bulk(server.url, "wildchat-public", bulk_batches(), batch_docs=10)
    message = str(caught.value)
    assert expected in message and "wildchat-public" in message
    assert SECRET_TEXT not in message
    if mode == "500":
        assert "cluster_block" in message


def test_push_bulk_later_batch_numbers_its_first_document():
    with BulkServer() as server:
        # The third request fails: its first document is number 4.
        original = server.httpd.RequestHandlerClass.do_POST

        def do_post(handler):
            server.mode = "500" if len(server.requests) >= 2 else "ok"
            original(handler)

        server.httpd.RequestHandlerClass.do_POST = do_post
        with pytest.raises(RuntimeError, match="starting at document 4"):
            push_bulk(server.url, "idx", bulk_batches(), batch_docs=2)


def test_push_bulk_connection_refused():
    with BulkServer() as server:
        url = server.url
    with pytest.raises(RuntimeError, match="wildchat-public"):
        push_bulk(url, "wildchat-public", bulk_batches(), timeout_s=5)


def test_facets_across_segments_keep_heavy_values_exact_and_never_overcount(tmp_path):
    """Many segments (a small writer heap) and many tied counts. A segment counts only its own
    top values (``_agg_spec``: 10x the size for hashed_ip), so a light IP may come out short,
    by where tantivy cut the segments, which varies from run to run (its document store is
    compressed on a thread of its own). What holds whatever the cut: no count is above the
    truth; the order is count, then value; the heavy IPs (in every segment's top) are exact
    and first; a facet of fewer values than a segment's top (country) is exact."""
    rng = random.Random(11)
    heavy = {f"heavy-{i}": 40 + 3 * i for i in range(5)}
    ips = [ip for ip, count in heavy.items() for _ in range(count)]
    ips += [f"ip-{rng.randrange(400):03d}" for _ in range(1200 - len(ips))]
    rng.shuffle(ips)
    rows = [
        record(
            ["alpha " + " ".join(f"w{rng.randrange(100_000)}" for _ in range(600))],
            n=n,
            hashed_ip=ip,
            country=f"C{rng.randrange(40):02d}",
        )
        for n, ip in enumerate(ips)
    ]
    records = frame(rows)
    build_index(tmp_path / "index", [records], heap_bytes=15_000_000, threads=1)
    index = SearchIndex.open(tmp_path / "index")
    assert index._index.searcher().num_segments > 1
    for facet, size in [("hashed_ip", 5), ("hashed_ip", 17), ("country", 3)]:
        page = index.search("alpha", facet_size=size)
        exact = dict(records.group_by(facet).len().rows())
        got = [(f.value, f.count) for f in page.facets[facet]]
        assert len(got) == size
        assert got == sorted(got, key=lambda kv: (-kv[1], kv[0]))
        assert all(count <= exact[value] for value, count in got), got
        truth = sorted(exact.items(), key=lambda kv: (-kv[1], kv[0]))
        if facet == "country":
            assert got == truth[:size]
        else:
            assert got[:5] == sorted(heavy.items(), key=lambda kv: (-kv[1], kv[0]))


def test_failed_build_leaves_nothing_behind(tmp_path):
    def batches() -> Iterator[pl.DataFrame]:
        yield frame([record(["hello"], n=0)])
        raise OSError("the release went away")

    with pytest.raises(OSError, match="went away"):
        build_index(tmp_path / "index", batches())
    assert not (tmp_path / "index").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError):
        build_index(tmp_path / "empty", [frame([record(["hello"], n=0)])], heap_bytes=1000)
    assert list((tmp_path / "empty").iterdir()) == []
    # The folder can be used again.
    assert build_index(tmp_path / "empty", [frame([record(["hello"], n=0)])]).documents == 1


def test_empty_batches_are_fine(tmp_path):
    rows = [record(["hello"], n=0)]
    stats = build_index(tmp_path / "index", [frame([]), frame(rows), frame([])])
    assert stats.documents == 1
    assert list(index_documents(frame([]))) == []
    assert list(bulk_lines(frame([]), "x")) == []


def test_an_unscored_conversation_is_of_unknown_toxicity_never_clean(tmp_path):
    rows = [
        record(["scored clean"], n=0, toxic=False),
        record(["scored toxic"], n=1, toxic=True),
        record(["never scored"], n=2, toxic=None),
    ]
    index = build(tmp_path / "index", rows)
    page = index.search("")
    assert {f.value: f.count for f in page.facets["toxic"]} == {
        "false": 1,
        "true": 1,
        "unknown": 1,
    }
    unknown = index.search("", {"toxic": ["unknown"]})
    assert [h.conversation_hash for h in unknown.hits] == ["hash0002"]
    assert unknown.hits[0].toxic is None
    assert index.search("", {"toxic": ["false"]}).total == 1
