"""A full-text and faceted search index over a released dataset, on tantivy (embedded, no server).

One document per released conversation. What is indexed (:func:`index_documents`):

- ``text``: every utterance's content, joined with newlines, normalised: zero-width characters
  (U+200B-U+200D, U+2060, U+FEFF, and the soft hyphen U+00AD) removed, then NFKC (so full-width
  ``ｈｅｌｌｏ`` is ``hello``), and every CJK run (Han, kana, Hangul) set apart by spaces, so that
  ``我用Python写代码`` gives the word ``python``. Tokenized by tantivy's default analyzer (split on
  non-alphanumerics, lowercase, words over 40 bytes dropped), with positions (phrases).
- ``text_cjk``: the CJK runs only, one value per run, tokenized into character bigrams.
  Chinese and Japanese have no spaces and Korean glues particles to words, so the default
  analyzer sees a whole run as one token; a CJK word of two or more characters is found here,
  inside a run. tantivy's n-gram tokenizer puts every gram of a run at position 0, so a CJK word
  matches a run that holds all of its bigrams (in practice: the word; rarely, the same bigrams
  apart). Bigrams only: unigrams of common characters (的, 一) have long postings with many
  positions, and made CJK queries ten times slower.
- ``text_cjk_chars``: the distinct CJK characters of the conversation, one raw term each,
  without frequencies or positions: a one-character CJK word (猫) is found here.
- the facets, as exact strings in "raw" fast fields (terms aggregations): ``toxic`` and
  ``redacted`` (``"true"``/``"false"``, and ``"unknown"`` for a null, never taken as false),
  ``model``, ``language``, ``country``, ``state``, ``hashed_ip`` (a null is ``"(none)"``);
  ``turn`` as an integer fast field (the ``turns`` facet is a range aggregation over it, in
  :data:`TURN_BUCKETS`);
- ``timestamp`` (a fast date: the browse order), and stored for the hit list only: the locator
  (``shard``, ``row``, ``conversation_id``, ``partition_day``), ``conversation_hash`` (also a
  raw term, for :meth:`SearchIndex.locate`) and ``preview`` (the first user utterance's first 300
  characters, whitespace collapsed). The full text is not stored: the index points into the
  release's Parquet files (``shard``, ``row``), where the conversation is read.

Queries use tantivy's query language over the three text fields, every word required
(conjunction, as WildVis does): ``hello world``, ``"a phrase"``, ``-excluded``, ``a OR b``,
``model:gpt-4``. A query that does not parse is searched again as plain words (quoted phrases
kept when the quotes balance), and the page says so in ``query_error``; nothing a user types
raises. Queries are cut at :data:`MAX_QUERY_CHARS` characters: the first ones are searched and
``query_error`` says so.

:func:`bulk_lines` and :func:`push_bulk` send the same documents to Elasticsearch or OpenSearch.

This module is pure (no Dagster): the asset that builds the index and the web app import it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import time
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import tantivy

from wildchat_dag.core.text_normalization import nfkc_may_change

FACETS: tuple[str, ...] = (
    "toxic",
    "redacted",
    "model",
    "language",
    "country",
    "state",
    "hashed_ip",
    "turns",
)
"""The facets :meth:`SearchIndex.search` counts and filters on, in display order."""

# The turns facet: label -> inclusive range of the conversation's ``turn``. "1" also takes the
# (never released) turn 0, so every conversation falls in exactly one bucket.
_TURN_RANGES: dict[str, tuple[int | None, int | None]] = {
    "1": (None, 1),
    "2": (2, 2),
    "3-5": (3, 5),
    "6-10": (6, 10),
    "11+": (11, None),
}
TURN_BUCKETS: tuple[str, ...] = tuple(_TURN_RANGES)
"""The ``turns`` facet's values, in order."""

MAX_QUERY_CHARS = 1000
"""Longer query texts are cut to their first MAX_QUERY_CHARS characters (``query_error`` says)."""

NONE_VALUE = "(none)"
"""The facet value of a null country, state, language (or model, hashed_ip)."""

UNKNOWN_VALUE = "unknown"
"""The toxic (or redacted) facet value of a null flag: a conversation that was not scored."""

PREVIEW_CHARS = 300
FORMAT_VERSION = 2
MARKER_FILE = "wildchat-search.json"

_TERM_FACETS = tuple(f for f in FACETS if f != "turns")
_BOOL_FACETS = ("toxic", "redacted")
_CJK_TOKENIZER = "wildchat_cjk_bigram"
_TEXT_FIELDS = ["text", "text_cjk", "text_cjk_chars"]

# Han (with 々〆〇 and the compatibility and supplementary ideographs), kana, Hangul. Literal
# characters, not \p{Han}: polars' (Rust) and Python's regex engines then agree exactly.
_CJK_CLASS = "[{}]".format(
    "".join(
        f"{chr(a)}-{chr(b)}"
        for a, b in [
            (0x1100, 0x11FF),  # Hangul Jamo
            (0x3005, 0x3007),  # 々〆〇
            (0x3041, 0x309F),  # Hiragana
            (0x30A0, 0x30FF),  # Katakana
            (0x3130, 0x318F),  # Hangul compatibility Jamo
            (0x31F0, 0x31FF),  # Katakana phonetic extensions
            (0x3400, 0x4DBF),  # CJK extension A
            (0x4E00, 0x9FFF),  # CJK unified ideographs
            (0xA960, 0xA97F),  # Hangul Jamo extended-A
            (0xAC00, 0xD7AF),  # Hangul syllables
            (0xD7B0, 0xD7FF),  # Hangul Jamo extended-B
            (0xF900, 0xFAFF),  # CJK compatibility ideographs
            (0x20000, 0x3134F),  # CJK extensions B-G, compatibility supplement
        ]
    )
)
_CJK_RUN = _CJK_CLASS + "+"
_CJK_RUN_RE = re.compile(_CJK_RUN)
_ZERO_WIDTH = "[\u200b-\u200d\u2060\ufeff\u00ad]"
_ZERO_WIDTH_RE = re.compile(_ZERO_WIDTH)
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_WORD_RE = re.compile(r"[^\W_]")
# Characters with a meaning in tantivy's query language, escaped in the plain-words fallback.
_SPECIAL_RE = re.compile(r"""([+\-^`:{}\[\]()!\\*~<>='?/&|])""")
_BIG = 2**62


# --- public result types ---------------------------------------------------------------------


@dataclass(frozen=True)
class IndexStats:
    documents: int
    bytes: int
    seconds: float


@dataclass(frozen=True)
class FacetCount:
    value: str
    count: int
    selected: bool


@dataclass
class Hit:
    conversation_hash: str
    shard: int
    row: int
    conversation_id: int | None
    partition_day: date | None
    model: str
    language: str | None
    country: str | None
    state: str | None
    turn: int
    # None: unknown (the release's null: not every utterance was scored).
    toxic: bool | None
    redacted: bool | None
    timestamp: datetime
    hashed_ip: str
    preview: str
    score: float


@dataclass
class SearchPage:
    total: int
    hits: list[Hit]
    facets: dict[str, list[FacetCount]]
    query_error: str | None
    seconds: float


# --- documents -------------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """The normalisation applied to indexed text and to queries (before CJK runs are spaced)."""
    return unicodedata.normalize("NFKC", _ZERO_WIDTH_RE.sub("", text))


def turns_bucket(turn: int) -> str:
    """The ``turns`` facet value of a conversation with ``turn`` rounds."""
    for label, (low, high) in _TURN_RANGES.items():
        if (low is None or turn >= low) and (high is None or turn <= high):
            return label
    raise AssertionError(turn)  # the ranges cover every integer


def _turns_expr(turn: pl.Expr) -> pl.Expr:
    expr: Any = pl
    for label, (low, high) in _TURN_RANGES.items():
        cond = pl.lit(True)
        if low is not None:
            cond = cond & (turn >= low)
        if high is not None:
            cond = cond & (turn <= high)
        expr = expr.when(cond).then(pl.lit(label))
    return expr.otherwise(pl.lit(TURN_BUCKETS[0]))


def _prepared(records: pl.DataFrame, *, spaced: bool = True) -> pl.DataFrame:
    """The indexed documents as columns (vectorised: no Python loop over conversations).

    ``spaced``: CJK runs set apart by spaces in ``text`` (what tantivy indexes)."""
    content = pl.element().struct.field("content")
    role = pl.element().struct.field("role")
    joined = pl.col("conversation").list.eval(content.fill_null("")).list.join("\n").fill_null("")
    first_user = pl.col("conversation").list.eval(content.filter(role == "user")).list.first()
    preview = (
        first_user.fill_null("")
        .str.replace_all(_ZERO_WIDTH, "")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
        .str.slice(0, PREVIEW_CHARS)
    )

    def facet(name: str) -> pl.Expr:
        return pl.col(name).cast(pl.String).fill_null(NONE_VALUE).alias(name)

    def optional(name: str, dtype: pl.DataType) -> pl.Expr:
        if name in records.columns:
            return pl.col(name).cast(dtype).alias(name)
        return pl.lit(None, dtype).alias(name)

    turn = pl.col("turn").fill_null(0).cast(pl.Int64)
    base = (
        records.lazy()
        .select(
            pl.col("conversation_hash").cast(pl.String).fill_null(""),
            joined.alias("text"),
            preview.alias("preview"),
            facet("model"),
            facet("language"),
            facet("country"),
            facet("state"),
            facet("hashed_ip"),
            # Null stays null: a conversation not every scorer saw is of unknown toxicity, and
            # is counted and filtered as such, never as clean.
            pl.col("toxic").cast(pl.Boolean).alias("toxic"),
            pl.col("redacted").cast(pl.Boolean).alias("redacted"),
            turn.alias("turn"),
            _turns_expr(turn).alias("turns"),
            pl.col("timestamp").cast(pl.Datetime("us", "UTC")).alias("timestamp"),
            pl.col("shard").cast(pl.Int64),
            pl.col("row").cast(pl.Int64),
            optional("conversation_id", pl.Int64()),
            optional("partition_day", pl.Date()),
        )
        .with_row_index("_order")
        .collect()
    )
    # Normalising is the costly part: ASCII text is NFKC already and has no zero-width or CJK
    # characters, so only the other conversations go through it.
    text = pl.col("text")
    non_ascii = base["text"].str.len_bytes() != base["text"].str.len_chars()
    no_cjk = {
        "text_cjk": pl.lit([], pl.List(pl.String)),
        "text_cjk_chars": pl.lit([], pl.List(pl.String)),
    }
    parts = [base.filter(~non_ascii).with_columns(**no_cjk)]
    if non_ascii.any():
        other = base.filter(non_ascii)
        # Most non-ASCII text (accented Latin, Cyrillic, CJK) holds nothing NFKC changes:
        # only the texts that may change, or hold a zero-width character, are normalised.
        changes = other.select(text.str.contains(_ZERO_WIDTH) | nfkc_may_change(text)).to_series()
        other = pl.concat(
            [
                other.filter(~changes),
                other.filter(changes).with_columns(
                    text.str.replace_all(_ZERO_WIDTH, "").str.normalize("NFKC")
                ),
            ]
        )
        has_cjk = other["text"].str.contains(_CJK_CLASS)
        parts.append(other.filter(~has_cjk).with_columns(**no_cjk))
        cjk = other.filter(has_cjk).with_columns(text_cjk=text.str.extract_all(_CJK_RUN))
        # The runs hold every CJK character of the text, in order.
        cjk = cjk.with_columns(
            text_cjk_chars=pl.col("text_cjk")
            .list.join("")
            .str.split("")
            .list.unique(maintain_order=True)
        )
        if spaced:
            cjk = cjk.with_columns(text.str.replace_all(_CJK_RUN, " $0 "))
        parts.append(cjk)
    return (
        pl.concat(parts)
        .sort("_order")
        .select(
            "conversation_hash",
            "text",
            "text_cjk",
            "text_cjk_chars",
            "preview",
            *_TERM_FACETS,
            "turn",
            "turns",
            "timestamp",
            "shard",
            "row",
            "conversation_id",
            "partition_day",
        )
    )


def index_documents(records: pl.DataFrame) -> Iterator[dict]:
    """One dict per conversation of ``records`` (release columns plus ``shard``, ``row``,
    ``conversation_id``, ``partition_day``): what is indexed.

    Keys: ``conversation_hash``, ``text`` (normalised, see the module docstring), ``text_cjk``
    (its CJK runs), ``text_cjk_chars`` (its distinct CJK characters), ``preview``, the facets
    ``toxic``/``redacted`` (bool), ``model``, ``language``, ``country``, ``state``,
    ``hashed_ip`` (str, ``"(none)"`` for null), ``turn`` (int), ``turns`` (its bucket),
    ``timestamp`` (datetime, UTC), ``shard``, ``row``, ``conversation_id`` (int or None),
    ``partition_day`` (date or None).
    """
    yield from _prepared(records).iter_rows(named=True)


# --- the tantivy index -----------------------------------------------------------------------


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("conversation_hash", stored=True, tokenizer_name="raw")
    builder.add_text_field("text", tokenizer_name="default", index_option="position")
    builder.add_text_field("text_cjk", tokenizer_name=_CJK_TOKENIZER, index_option="position")
    builder.add_text_field("text_cjk_chars", tokenizer_name="raw", index_option="basic")
    for name in _TERM_FACETS:
        builder.add_text_field(name, stored=True, fast=True, tokenizer_name="raw")
    builder.add_integer_field("turn", stored=True, indexed=True, fast=True)
    builder.add_date_field("timestamp", stored=True, indexed=True, fast=True)
    builder.add_integer_field("shard", stored=True)
    builder.add_integer_field("row", stored=True)
    builder.add_integer_field("conversation_id", stored=True)
    builder.add_date_field("partition_day", stored=True)
    builder.add_bytes_field("preview", stored=True)
    return builder.build()


def _register_tokenizers(index: tantivy.Index) -> None:
    # Character bigrams of a CJK run (tantivy's n-gram tokenizer: all at position 0).
    analyzer = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.ngram(2, 2, False)).build()
    index.register_tokenizer(_CJK_TOKENIZER, analyzer)


def _flag(value: object) -> bool | None:
    return None if value in (None, UNKNOWN_VALUE) else value == "true"


def _tantivy_dicts(records: pl.DataFrame) -> Iterator[dict]:
    frame = _prepared(records).with_columns(
        *(
            pl.when(pl.col(name).is_null())
            .then(pl.lit(UNKNOWN_VALUE))
            .when(pl.col(name))
            .then(pl.lit("true"))
            .otherwise(pl.lit("false"))
            .alias(name)
            for name in _BOOL_FACETS
        ),
        pl.col("preview").cast(pl.Binary),
        pl.col("partition_day").cast(pl.Datetime("us", "UTC")),
    )
    optional = [
        name
        for name in ("conversation_id", "partition_day", "timestamp")
        if frame[name].null_count() > 0
    ]
    frame = frame.drop("turns")
    if not optional:
        yield from frame.iter_rows(named=True)
        return
    for doc in frame.iter_rows(named=True):
        for name in optional:
            if doc[name] is None:
                del doc[name]
        yield doc


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _write_index(
    folder: Path, batches: Iterable[pl.DataFrame], heap_bytes: int, threads: int | None
) -> int:
    """Index ``batches`` into the new, empty ``folder``; the number of documents."""
    documents = 0
    schema = _schema()
    index = tantivy.Index(schema, path=str(folder), reuse=False)
    _register_tokenizers(index)
    writer = index.writer(heap_size=heap_bytes, num_threads=threads or 0)
    try:
        for batch in batches:
            for doc in _tantivy_dicts(batch):
                writer.add_document(tantivy.Document.from_dict(doc, schema))
                documents += 1
        writer.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            writer.rollback()
        raise
    finally:
        writer.wait_merging_threads()
    return documents


def build_index(
    folder: Path,
    batches: Iterable[pl.DataFrame],
    *,
    heap_bytes: int = 256_000_000,
    threads: int | None = None,
) -> IndexStats:
    """Write a new index of every conversation in ``batches`` into ``folder``, which must not
    exist or be empty. One commit at the end (tantivy writes segments as its heap fills), then
    the merges are waited for. ``threads``: tantivy's indexing threads (None: its default)."""
    started = time.perf_counter()
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"cannot build a search index in {folder}: it exists and is not empty")
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Written beside ``folder`` and moved in once complete. A failed build leaves ``folder`` as
    # it was (absent, or empty) whatever tantivy still does: its directory object has a thread
    # that may write its lock file (.tantivy-meta.lock) after the failure, into the removed
    # building folder rather than ``folder``.
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.building-", dir=folder.parent))
    try:
        documents = _write_index(building, batches, heap_bytes, threads)
        marker = {
            "format": FORMAT_VERSION,
            "documents": documents,
            "tantivy": getattr(tantivy, "__version__", "?"),
        }
        (building / MARKER_FILE).write_text(json.dumps(marker) + "\n")
        if folder.exists():
            for child in building.iterdir():
                shutil.move(str(child), str(folder / child.name))
        else:
            building.rename(folder)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return IndexStats(documents, _folder_bytes(folder), time.perf_counter() - started)


# --- queries ---------------------------------------------------------------------------------


def _must(*queries: tantivy.Query) -> tantivy.Query:
    queries = tuple(q for q in queries if q is not None)
    if not queries:
        return tantivy.Query.all_query()
    if len(queries) == 1:
        return queries[0]
    return tantivy.Query.boolean_query([(tantivy.Occur.Must, q) for q in queries])


def _space_cjk(segment: str) -> str:
    return _CJK_RUN_RE.sub(lambda m: f" {m.group(0)} ", segment)


def _prepare_query_text(text: str) -> str:
    """Set CJK runs apart as the indexed text does; a quoted phrase that is one CJK run is kept
    whole (``text_cjk`` then finds it inside longer runs)."""
    parts = text.split('"')
    for i, part in enumerate(parts):
        inside_quotes = i % 2 == 1 and i < len(parts) - 1
        if inside_quotes and _CJK_RUN_RE.fullmatch(part.strip()):
            parts[i] = part.strip()
        else:
            parts[i] = _space_cjk(part)
    return '"'.join(parts)


def _plain_words(text: str) -> str:
    """The query as plain words: operators escaped, quoted phrases kept if the quotes balance."""
    parts = text.split('"')
    balanced = len(parts) % 2 == 1
    out = []
    for i, part in enumerate(parts):
        if balanced and i % 2 == 1:
            phrase = part.replace("\\", " ").strip()
            out.append(f'"{phrase}"' if phrase else " ")
        else:
            out.append(_SPECIAL_RE.sub(r"\\\1", part.lower()))
    return " ".join(out)


def _short(message: str, limit: int = 120) -> str:
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


@dataclass
class _TextQuery:
    query: tantivy.Query | None  # None: every document (browse)
    errors: list[str]
    strict: bool  # parsed with the full query language (it may still fail when run)
    prepared: str = ""


class SearchIndex:
    """A built index, opened for searching (read-only; other processes may read it too)."""

    def __init__(self, folder: Path, index: tantivy.Index) -> None:
        self.folder = folder
        self._index = index
        self._schema = index.schema

    @classmethod
    def open(cls, folder: Path) -> SearchIndex:
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a search index: no such folder")
        marker_path = folder / MARKER_FILE
        try:
            marker = json.loads(marker_path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{folder} is not a search index (or its build did not finish): "
                f"no readable {MARKER_FILE}"
            ) from exc
        if not isinstance(marker, dict) or marker.get("format") != FORMAT_VERSION:
            found = marker.get("format") if isinstance(marker, dict) else marker
            raise ValueError(
                f"{folder} holds a search index of format {found!r}; this code reads format "
                f"{FORMAT_VERSION}: rebuild it"
            )
        try:
            if not tantivy.Index.exists(str(folder)):
                raise ValueError("no tantivy index")
            if not tantivy.Index.is_compatible(str(folder)):
                raise ValueError("written by an incompatible tantivy version")
            index = tantivy.Index.open(str(folder))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{folder} is not a readable search index: {exc}") from exc
        _register_tokenizers(index)
        return cls(folder, index)

    @property
    def num_docs(self) -> int:
        return self._index.searcher().num_docs

    # -- query building --

    def _text_query(self, text: str | None) -> _TextQuery:
        if text is None:
            return _TextQuery(None, [], strict=False)
        errors: list[str] = []
        if len(text) > MAX_QUERY_CHARS:
            text = text[:MAX_QUERY_CHARS]
            errors.append(
                f"The query is longer than {MAX_QUERY_CHARS:,} characters: "
                f"only its first {MAX_QUERY_CHARS:,} were searched."
            )
        text = normalize_text(_CONTROL_RE.sub(" ", text)).strip()
        if not text or text == "*":
            return _TextQuery(None, errors, strict=False)
        if not _WORD_RE.search(text):
            errors.append("The query has no letters or digits to search for.")
            return _TextQuery(tantivy.Query.empty_query(), errors, strict=False)
        prepared = _prepare_query_text(text)
        try:
            query = self._index.parse_query(prepared, _TEXT_FIELDS, conjunction_by_default=True)
            return _TextQuery(query, errors, strict=True, prepared=prepared)
        except ValueError as exc:
            return self._plain_query(prepared, errors, exc)

    def _plain_query(self, prepared: str, errors: list[str], exc: Exception) -> _TextQuery:
        """The fallback when tantivy refuses the query (parsing it or running it)."""
        plain = _plain_words(prepared)
        errors = [
            *errors,
            f"Query syntax not understood ({_short(exc)}): searched it as plain words.",
        ]
        try:
            query = self._index.parse_query(plain, _TEXT_FIELDS, conjunction_by_default=True)
        except ValueError:
            try:
                query, _ = self._index.parse_query_lenient(
                    plain, _TEXT_FIELDS, conjunction_by_default=True
                )
            except ValueError:
                query = tantivy.Query.empty_query()
        return _TextQuery(query, errors, strict=False)

    def _filter_queries(
        self, filters: Mapping[str, Sequence[str]] | None
    ) -> tuple[dict[str, tantivy.Query], dict[str, list[str]]]:
        queries: dict[str, tantivy.Query] = {}
        selected: dict[str, list[str]] = {}
        for facet, raw_values in (filters or {}).items():
            if facet not in FACETS:
                raise ValueError(f"unknown facet {facet!r}; facets are {', '.join(FACETS)}")
            values_in = [raw_values] if isinstance(raw_values, str) else list(raw_values or ())
            values = list(dict.fromkeys(str(v) for v in values_in))
            if not values:
                continue
            if facet == "turns":
                unknown = [v for v in values if v not in _TURN_RANGES]
                if unknown:
                    buckets = ", ".join(TURN_BUCKETS)
                    raise ValueError(f"unknown turns bucket {unknown[0]!r}; buckets are {buckets}")
                ranges = [self._turn_range(v) for v in values]
                query = (
                    ranges[0]
                    if len(ranges) == 1
                    else tantivy.Query.boolean_query([(tantivy.Occur.Should, r) for r in ranges])
                )
            else:
                if facet in _BOOL_FACETS:
                    bad = [v for v in values if v not in ("true", "false", UNKNOWN_VALUE)]
                    if bad:
                        raise ValueError(
                            f"{facet} values are 'true', 'false' or '{UNKNOWN_VALUE}', "
                            f"not {bad[0]!r}"
                        )
                query = tantivy.Query.term_set_query(self._schema, facet, values)
            # Filters narrow, they don't score.
            queries[facet] = tantivy.Query.const_score_query(query, 0.0)
            selected[facet] = values
        return queries, selected

    def _turn_range(self, label: str) -> tantivy.Query:
        low, high = _TURN_RANGES[label]
        return tantivy.Query.range_query(
            self._schema,
            "turn",
            tantivy.FieldType.Integer,
            -_BIG if low is None else low,
            _BIG if high is None else high,
        )

    # -- search --

    def search(
        self,
        text: str,
        filters: Mapping[str, Sequence[str]] | None = None,
        *,
        limit: int = 20,
        offset: int = 0,
        facet_size: int = 10,
    ) -> SearchPage:
        """A page of hits for ``text`` (blank: every conversation, newest first) within
        ``filters`` (facet -> selected values: OR within a facet, AND across facets), and the
        facet counts. Raises ValueError for an unknown facet or turns bucket, or a negative
        limit, offset or facet_size; never for what the text says."""
        started = time.perf_counter()
        if limit < 0 or offset < 0 or facet_size < 0:
            raise ValueError("limit, offset and facet_size must be >= 0")
        filter_queries, selected = self._filter_queries(filters)
        parsed = self._text_query(text)
        try:
            total, hits, facets = self._run(
                parsed.query, filter_queries, selected, limit, offset, facet_size
            )
        except ValueError as exc:
            # Some queries parse and fail when run (``nosuchfield:*``): plain words then.
            if not parsed.strict:
                raise
            parsed = self._plain_query(parsed.prepared, parsed.errors, exc)
            total, hits, facets = self._run(
                parsed.query, filter_queries, selected, limit, offset, facet_size
            )
        return SearchPage(
            total=total,
            hits=hits,
            facets=facets,
            query_error=" ".join(parsed.errors) or None,
            seconds=time.perf_counter() - started,
        )

    def _run(
        self,
        text_query: tantivy.Query | None,
        filter_queries: dict[str, tantivy.Query],
        selected: dict[str, list[str]],
        limit: int,
        offset: int,
        facet_size: int,
    ) -> tuple[int, list[Hit], dict[str, list[FacetCount]]]:
        searcher = self._index.searcher()
        query = _must(text_query, *filter_queries.values())
        order_by = None if text_query is not None else "timestamp"
        # tantivy wants a limit of at least 1; limit 0 still counts.
        result = searcher.search(
            query,
            max(limit, 1),
            count=True,
            offset=offset,
            order_by_field=order_by,
            order=tantivy.Order.Desc,
        )
        hits = []
        if limit:
            for key, address in result.hits:
                score = float(key) if order_by is None else 0.0
                hits.append(_hit(searcher.doc(address), score))
        facets = self._facets(searcher, text_query, filter_queries, selected, facet_size)
        return result.count, hits, facets

    def _facets(
        self,
        searcher: tantivy.Searcher,
        text_query: tantivy.Query | None,
        filter_queries: dict[str, tantivy.Query],
        selected: dict[str, list[str]],
        facet_size: int,
    ) -> dict[str, list[FacetCount]]:
        """Multi-select facet counts: a facet counts over the text query and the other facets'
        filters. Facets with no selection share one aggregation call; each selected one has its
        own."""
        groups: list[tuple[tantivy.Query, list[str]]] = []
        unselected = [f for f in FACETS if f not in filter_queries]
        if unselected:
            groups.append((_must(text_query, *filter_queries.values()), unselected))
        for facet in filter_queries:
            others = [q for f, q in filter_queries.items() if f != facet]
            groups.append((_must(text_query, *others), [facet]))
        size = max(facet_size, 1)
        out: dict[str, list[FacetCount]] = {}
        for query, facets in groups:
            spec = {f: self._agg_spec(f, size) for f in facets}
            result = searcher.aggregate(query, spec)
            for facet in facets:
                chosen = selected.get(facet, [])
                if facet == "turns":
                    out[facet] = _turn_counts(result[facet], chosen)
                else:
                    out[facet] = self._term_counts(
                        searcher, query, facet, result[facet], facet_size, chosen
                    )
        return {f: out[f] for f in FACETS}

    @staticmethod
    def _agg_spec(facet: str, size: int) -> dict:
        if facet == "turns":
            ranges = []
            for label, (low, high) in _TURN_RANGES.items():
                bucket: dict[str, Any] = {"key": label}
                if low is not None:
                    bucket["from"] = low
                if high is not None:
                    bucket["to"] = high + 1
                ranges.append(bucket)
            return {"range": {"field": "turn", "ranges": ranges}}
        # Each segment's top segment_size values are merged. Every value of the small facets;
        # hashed_ip (hundreds of thousands) costs a term lookup per value, so 10x the size: its
        # top values are heavy users, in every segment's top.
        segment_size = 10 * size if facet == "hashed_ip" else max(10 * size, 1000)
        return {
            "terms": {
                "field": facet,
                "size": size,
                "segment_size": segment_size,
                "order": {"_count": "desc"},
            }
        }

    def _term_counts(
        self,
        searcher: tantivy.Searcher,
        query: tantivy.Query,
        facet: str,
        result: dict,
        facet_size: int,
        chosen: list[str],
    ) -> list[FacetCount]:
        # Values tied at the cut: tantivy's pick (by value, as of 0.27), sorted by value here.
        buckets = sorted(
            ((b["key"], int(b["doc_count"])) for b in result["buckets"]),
            key=lambda kv: (-kv[1], kv[0]),
        )
        top = buckets[:facet_size]
        listed = [FacetCount(v, c, v in chosen) for v, c in top]
        shown = {v for v, _ in top}
        extra = []
        for value in chosen:
            if value in shown:
                continue
            # Counted exactly (a terms aggregation over segments may undercount the tail).
            term = tantivy.Query.term_query(self._schema, facet, value)
            count = searcher.search(_must(query, term), 1, count=True).count
            extra.append(FacetCount(value, count, True))
        extra.sort(key=lambda fc: (-fc.count, fc.value))
        return listed + extra

    def locate(self, conversation_hash: str) -> list[Hit]:
        """Every indexed conversation with this hash (a hash may repeat), by shard and row."""
        value = conversation_hash.strip()
        if not value:
            return []
        searcher = self._index.searcher()
        query = tantivy.Query.term_set_query(
            self._schema, "conversation_hash", list(dict.fromkeys([value, value.lower()]))
        )
        total = searcher.search(query, 1, count=True).count
        if not total:
            return []
        result = searcher.search(query, total, count=False)
        hits = [_hit(searcher.doc(address), 0.0) for _, address in result.hits]
        hits.sort(key=lambda h: (h.shard, h.row))
        return hits


def _turn_counts(result: dict, chosen: list[str]) -> list[FacetCount]:
    """Turn buckets in their order; empty ones only when selected."""
    counts = {b["key"]: int(b["doc_count"]) for b in result["buckets"]}
    return [
        FacetCount(label, counts.get(label, 0), label in chosen)
        for label in TURN_BUCKETS
        if counts.get(label, 0) or label in chosen
    ]


def _hit(doc: tantivy.Document, score: float) -> Hit:
    fields = doc.to_dict()

    def first(name: str, default: Any = None) -> Any:
        values = fields.get(name)
        return values[0] if values else default

    def nullable(name: str) -> str | None:
        value = first(name)
        return None if value in (None, NONE_VALUE) else value

    day = first("partition_day")
    timestamp = first("timestamp")
    if timestamp is not None and timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    return Hit(
        conversation_hash=first("conversation_hash", ""),
        shard=int(first("shard", 0)),
        row=int(first("row", 0)),
        conversation_id=first("conversation_id"),
        partition_day=day.date() if day is not None else None,
        model=first("model", NONE_VALUE),
        language=nullable("language"),
        country=nullable("country"),
        state=nullable("state"),
        turn=int(first("turn", 0)),
        toxic=_flag(first("toxic")),
        redacted=_flag(first("redacted")),
        timestamp=timestamp,
        hashed_ip=first("hashed_ip", NONE_VALUE),
        preview=bytes(first("preview", b"")).decode("utf-8", "replace"),
        score=score,
    )


# --- Elasticsearch / OpenSearch ----------------------------------------------------------------


def _bulk_id(doc: Mapping[str, Any]) -> str:
    """A stable _id: the pipeline's conversation id, else the release position."""
    if doc.get("conversation_id") is not None:
        return str(doc["conversation_id"])
    return f"{doc['shard']}-{doc['row']}"


def bulk_lines(records: pl.DataFrame, index_name: str) -> Iterator[bytes]:
    """Elasticsearch/OpenSearch ``_bulk`` NDJSON for ``records``: per conversation an ``index``
    action (``_id``: ``conversation_id``, else ``"{shard}-{row}"``) and the document of
    :func:`index_documents` without ``text_cjk`` and ``text_cjk_chars`` (tantivy devices;
    Elasticsearch has its own CJK analyzers) and with CJK runs not set apart in ``text``, dates in
    ISO 8601. Each line ends in a newline."""
    prepared = _prepared(records, spaced=False).drop("text_cjk", "text_cjk_chars")
    for doc in prepared.iter_rows(named=True):
        action = {"index": {"_index": index_name, "_id": _bulk_id(doc)}}
        yield orjson.dumps(action) + b"\n"
        yield orjson.dumps(doc, option=orjson.OPT_UTC_Z) + b"\n"


def push_bulk(
    url: str,
    index_name: str,
    batches: Iterable[pl.DataFrame],
    *,
    batch_docs: int = 1000,
    timeout_s: float = 30,
    headers: Mapping[str, str] | None = None,
) -> int:
    """POST every conversation of ``batches`` to ``{url}/_bulk``, ``batch_docs`` per request;
    returns how many were pushed. Raises RuntimeError on an HTTP or connection error, a
    response that is not the ``_bulk`` JSON, or one with ``"errors": true`` (naming the index,
    the request's first document number and the first failed item's error, never the text)."""
    if batch_docs < 1:
        raise ValueError("batch_docs must be >= 1")
    endpoint = f"{url.rstrip('/')}/_bulk"
    request_headers = {"Content-Type": "application/x-ndjson", **dict(headers or {})}
    pushed = 0
    lines: list[bytes] = []
    docs = 0

    def send() -> None:
        nonlocal pushed, lines, docs
        if not docs:
            return
        _post_bulk(endpoint, index_name, b"".join(lines), docs, pushed, request_headers, timeout_s)
        pushed += docs
        lines, docs = [], 0

    for batch in batches:
        line_iter = bulk_lines(batch, index_name)
        for action in line_iter:
            lines.append(action)
            lines.append(next(line_iter))
            docs += 1
            if docs >= batch_docs:
                send()
    send()
    return pushed


def _error_text(error: Any) -> str:
    if isinstance(error, Mapping):
        kind = error.get("type", "error")
        reason = error.get("reason", "")
        return _short(f"{kind}: {reason}" if reason else kind, 300)
    return _short(str(error), 300)


def _post_bulk(
    endpoint: str,
    index_name: str,
    body: bytes,
    docs: int,
    first_doc: int,
    headers: Mapping[str, str],
    timeout_s: float,
) -> None:
    where = (
        f"bulk indexing into {index_name!r} failed for the request of {docs} documents "
        f"starting at document {first_doc} (0-based)"
    )
    request = urllib.request.Request(endpoint, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = ""
        with contextlib.suppress(Exception):
            answer = json.loads(exc.read() or b"null")
            if isinstance(answer, Mapping) and "error" in answer:
                detail = ": " + _error_text(answer["error"])
        raise RuntimeError(f"{where}: HTTP {exc.code} {exc.reason}{detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"{where}: {_short(reason)}") from None
    try:
        answer = json.loads(raw)
    except ValueError:
        raise RuntimeError(f"{where}: the answer is not JSON") from None
    if not isinstance(answer, Mapping) or not isinstance(answer.get("items"), list):
        raise RuntimeError(f"{where}: the answer has no 'items' list") from None
    if answer.get("errors"):
        failed = []
        for item in answer["items"]:
            result = next(iter(item.values()), {}) if isinstance(item, Mapping) else {}
            if isinstance(result, Mapping) and result.get("error"):
                failed.append(result)
        first = failed[0] if failed else {}
        raise RuntimeError(
            f"{where}: {len(failed)} documents rejected; the first (_id {first.get('_id')!r}, "
            f"status {first.get('status')}): {_error_text(first.get('error', 'unknown error'))}"
        )
