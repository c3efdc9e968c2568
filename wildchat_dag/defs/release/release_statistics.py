"""The WildChat paper's tables, computed on a release, in SQL over the per-day records.

Two ways to the same rows:

- **Per day, then merged** (what the assets do). ``day_statistics`` runs when a day's records
  are built and keeps what the tables need of the day: counts, sums and sums of squares (a mean
  and a sample standard deviation are exact functions of those three, summed over days; a mean
  of the days' means is not the mean), and, for the tables that count distinct values (users,
  languages), the day's distinct values themselves (sets merge by union; counts do not add up
  across days). ``merge_day_statistics`` turns the partials of the release's days into the
  tables when a release is cut, reading no text: the token count's regular expression, most of
  a full pass's time, runs once per day, when the day is built.
- **The full scan** (``release_statistics_full_scan``): every day's text at once. It is the
  reference the tests and the benchmark hold the merge to.

Tokens are counted with a plain rule, not a model's tokenizer (none ships offline): a token is a
run of letters, marks and digits, or any other single non-space character. Chinese and Japanese
text without spaces counts a run as one token, so their counts are low.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import duckdb
import polars as pl

from wildchat_dag.core.schema import OPENAI_CATEGORIES, PARTITION_COLUMN
from wildchat_dag.defs.release.release_schema import RELEASES

TOKEN_PATTERN = r"[\p{L}\p{M}\p{N}_]+|[^\p{L}\p{M}\p{N}_\s]"
# The same tokens for polars' regex engine, which counts them without building them (DuckDB's
# ``regexp_extract_all`` does: five times the CPU). DuckDB's RE2 knows Unicode 15.0 and reads
# ``\s`` as ASCII whitespace; polars knows a later Unicode and a Unicode ``\s``. Restricted so,
# every code point is a word character, a space or another character in both engines alike,
# so every text has the same count (test_release_statistics checks each code point).
_WORD_CHARACTER = r"[\p{L}\p{M}\p{N}_&&\p{Age=15.0}]"
TOKEN_PATTERN_POLARS = rf"{_WORD_CHARACTER}+|[^{_WORD_CHARACTER}\t\n\f\r ]"

STATISTICS_SCHEMA = pl.Schema(
    {"release": pl.String, "section": pl.String, "key": pl.String, "value": pl.Float64}
)

# Query: (sql, parameters) -> rows, as Warehouse.query.
Query = Callable[..., pl.DataFrame]

# Each query reads only the columns it needs, one release's rows at a time, and unnests in a
# stream: a CTE read twice would be held in memory whole.
_CONVERSATIONS = """
SELECT count(*) AS conversations, avg(turn) AS mean_turns,
       count(DISTINCT partition_day) AS days
FROM main.release_records WHERE {member}
"""

_UTTERANCES = """
SELECT
    count(DISTINCT u.hashed_ip) FILTER (WHERE u.role = 'user') AS users,
    avg(tokens) FILTER (WHERE u.role = 'user') AS user_tokens_mean,
    stddev_samp(tokens) FILTER (WHERE u.role = 'user') AS user_tokens_std,
    avg(tokens) FILTER (WHERE u.role = 'assistant') AS chatbot_tokens_mean,
    stddev_samp(tokens) FILTER (WHERE u.role = 'assistant') AS chatbot_tokens_std,
    count(DISTINCT u.language) FILTER (WHERE u.language <> 'Nolang') AS languages
FROM (
    SELECT u, len(regexp_extract_all(u.content, '{pattern}')) AS tokens
    FROM (SELECT unnest(conversation) AS u FROM main.release_records WHERE {member})
)
"""

_SHARES = """
SELECT 'language' AS section, coalesce(u.language, 'unknown') AS key, count(*) AS n
FROM (SELECT unnest(conversation) AS u FROM main.release_records WHERE {member})
WHERE u.role = 'user' GROUP BY 2
UNION ALL
SELECT 'country', coalesce(country, 'unknown'), count(*)
FROM main.release_records WHERE {member} GROUP BY 2
UNION ALL
SELECT 'model', coalesce(model, 'unknown'), count(*)
FROM main.release_records WHERE {member} GROUP BY 2
"""

_TOXICITY = """
SELECT turns,
       count(*) AS n,
       count(*) FILTER (WHERE detoxify) AS detoxify,
       count(*) FILTER (WHERE openai) AS openai,
       count(*) FILTER (WHERE detoxify OR openai) AS either,
       count(*) FILTER (WHERE detoxify AND openai) AS both
FROM (
    SELECT CASE u.role WHEN 'user' THEN 'user' ELSE 'chatbot' END AS turns,
           coalesce(o.flagged, false) AS openai,
           coalesce(d.toxicity > $threshold, false) AS detoxify
    FROM (
        SELECT unnest(conversation) AS u, unnest(openai_moderation) AS o,
               unnest(detoxify_moderation) AS d
        FROM main.release_records WHERE {member}
    )
    WHERE u.content <> ''
)
GROUP BY turns
"""

_CATEGORIES = """
SELECT {counts}
FROM (SELECT unnest(openai_moderation) AS o FROM main.release_records WHERE {member})
"""


def release_statistics_full_scan(query: Query, release: str, threshold: float) -> pl.DataFrame:
    """The paper's tables for ``release`` (public or full), as (section, key, value) rows, from
    every day's text at once: the reference ``merge_day_statistics`` is held to."""
    member = f"in_{release}"
    rows: list[tuple[str, str, float | None]] = []
    summary = {
        **query(_CONVERSATIONS.format(member=member)).row(0, named=True),
        **query(_UTTERANCES.format(member=member, pattern=TOKEN_PATTERN)).row(0, named=True),
    }
    for key, value in summary.items():
        rows.append(("summary", key, float(value) if value is not None else None))
    shares = query(_SHARES.format(member=member))
    rows.extend((s, k, float(n)) for s, k, n in shares.iter_rows())
    toxicity = query(_TOXICITY.format(member=member), {"threshold": threshold})
    for turns, n, *flagged in toxicity.iter_rows():
        for name, count in zip(("detoxify", "openai", "either", "both"), flagged, strict=True):
            rows.append(("toxicity", f"{turns}/{name}", count / n if n else 0.0))
        rows.append(("toxicity", f"{turns}/turns", float(n)))
    categories = query(_CATEGORIES.format(member=member, counts=_category_counts("o.categories")))
    rows.extend(("category", c, float(n)) for c, n in categories.row(0, named=True).items() if n)
    return pl.DataFrame([(release, *r) for r in rows], schema=STATISTICS_SCHEMA, orient="row")


def _category_counts(categories: str) -> str:
    return ", ".join(
        f"count(*) FILTER (WHERE struct_extract({categories}, '{c}')) AS \"{c}\""
        for c in OPENAI_CATEGORIES
    )


def section(statistics: pl.DataFrame, release: str, name: str) -> dict[str, float]:
    frame = statistics.filter((pl.col("release") == release) & (pl.col("section") == name))
    return dict(frame.select("key", "value").iter_rows())


# -- per day, then merged ------------------------------------------------------------------------

# One row per day, release, part and key. ``n`` counts; ``total`` and ``squares`` are the sum and
# the sum of squares of the values counted, for the parts that have values (turns, tokens). The
# rows of a day are written together, and carry the storage id of the release_records
# materialization they were computed from (null when that was not recorded: outside Dagster).
DAY_STATISTICS_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "release": pl.String,
        "part": pl.String,
        "key": pl.String,
        "n": pl.Int64,
        "total": pl.Int64,
        "squares": pl.Int64,
        "records_materialization": pl.Int64,
    }
)

# What each part holds, per day and release; the merge adds ``n``, ``total`` and ``squares`` up
# over days, except for the two sets, whose distinct keys it counts.
PARTS = {
    "conversations": "the release's conversations ('' key; a row even when there are none)",
    "turns": "conversations with a turn count, and the sum and sum of squares of the counts",
    "tokens": "utterances with text by role (user, assistant), the sum and sum of squares of "
    "their tokens",
    "users": "the set of hashed_ip of user turns (n: user turns from it)",
    "languages": "the set of utterance languages other than Nolang (n: utterances)",
    "language": "user turns by language ('unknown' for none)",
    "country": "conversations by country ('unknown' for none)",
    "model": "conversations by model ('unknown' for none)",
    "toxicity": "non-empty turns by '<user|chatbot>/<turns|detoxify|openai|either|both>'",
    "category": "utterances OpenAI flagged, by category",
}

# What the per-day statistics read of one day's records: the columns the tables use, the
# utterances' and moderation results' fields among them only (a struct of nulls where the
# release has a null element; every use below reads a field, which is null either way).
DAY_RECORDS_SQL = """
SELECT partition_day, in_public, in_full, turn, country, model,
       list_transform(conversation, lambda u: struct_pack(
           role := u.role, content := u.content, hashed_ip := u.hashed_ip,
           language := u.language)) AS conversation,
       list_transform(openai_moderation, lambda o: struct_pack(
           flagged := o.flagged, categories := o.categories)) AS openai_moderation,
       list_transform(detoxify_moderation, lambda d: struct_pack(
           toxicity := d.toxicity)) AS detoxify_moderation
FROM main.release_records WHERE partition_day = $day
"""

# Each utterance once, its tokens counted once for both releases. The three lists are unnested
# side by side, as the full scan's toxicity query does; where they differ in length, the
# missing entries are null and count nowhere, as in the full scan's separate unnests.
_DAY_UTTERANCES = """
CREATE TEMP TABLE utterances AS
SELECT partition_day, in_public, in_full,
       u.role AS role, u.hashed_ip AS hashed_ip, u.language AS language,
       u.content <> '' AS has_text,
       tokens, o.flagged AS flagged, o.categories AS categories, d.toxicity AS toxicity
FROM (
    SELECT partition_day, in_public, in_full, unnest(conversation) AS u,
           unnest(openai_moderation) AS o, unnest(detoxify_moderation) AS d,
           unnest(tokens) AS tokens
    FROM records
)
"""

# Sums are HUGEINT in DuckDB: the cast to BIGINT fails loudly rather than wrap.
_DAY_PARTS = """
SELECT partition_day, 'conversations' AS part, '' AS key,
       count(*) FILTER (WHERE {member}) AS n, NULL::BIGINT AS total, NULL::BIGINT AS squares
FROM records GROUP BY ALL
UNION ALL
SELECT partition_day, 'turns', '', count(turn) FILTER (WHERE {member}),
       coalesce(sum(turn) FILTER (WHERE {member}), 0)::BIGINT,
       coalesce(sum(turn * turn) FILTER (WHERE {member}), 0)::BIGINT
FROM records GROUP BY ALL
UNION ALL
SELECT partition_day, 'tokens', role, count(tokens), coalesce(sum(tokens), 0)::BIGINT,
       coalesce(sum(tokens * tokens), 0)::BIGINT
FROM utterances WHERE {member} AND role IN ('user', 'assistant') GROUP BY ALL
UNION ALL
SELECT partition_day, 'users', hashed_ip, count(*), NULL, NULL
FROM utterances WHERE {member} AND role = 'user' AND hashed_ip IS NOT NULL GROUP BY ALL
UNION ALL
SELECT partition_day, 'languages', language, count(*), NULL, NULL
FROM utterances WHERE {member} AND language <> 'Nolang' GROUP BY ALL
UNION ALL
SELECT partition_day, 'language', coalesce(language, 'unknown'), count(*), NULL, NULL
FROM utterances WHERE {member} AND role = 'user' GROUP BY ALL
UNION ALL
SELECT partition_day, 'country', coalesce(country, 'unknown'), count(*), NULL, NULL
FROM records WHERE {member} GROUP BY ALL
UNION ALL
SELECT partition_day, 'model', coalesce(model, 'unknown'), count(*), NULL, NULL
FROM records WHERE {member} GROUP BY ALL
"""

_DAY_TOXICITY = """
SELECT partition_day, 'toxicity' AS part, side || '/' || name AS key, n,
       NULL::BIGINT AS total, NULL::BIGINT AS squares
FROM (
    UNPIVOT (
        SELECT partition_day, side,
               count(*) AS "turns",
               count(*) FILTER (WHERE detoxify) AS "detoxify",
               count(*) FILTER (WHERE openai) AS "openai",
               count(*) FILTER (WHERE detoxify OR openai) AS "either",
               count(*) FILTER (WHERE detoxify AND openai) AS "both"
        FROM (
            SELECT partition_day,
                   CASE role WHEN 'user' THEN 'user' ELSE 'chatbot' END AS side,
                   coalesce(flagged, false) AS openai,
                   coalesce(toxicity > $threshold, false) AS detoxify
            FROM utterances WHERE {member} AND has_text
        )
        GROUP BY ALL
    ) ON "turns", "detoxify", "openai", "either", "both" INTO NAME name VALUE n
)
"""

_DAY_CATEGORIES = """
SELECT partition_day, 'category' AS part, name AS key, n,
       NULL::BIGINT AS total, NULL::BIGINT AS squares
FROM (
    UNPIVOT (SELECT partition_day, {counts} FROM utterances WHERE {member} GROUP BY ALL)
    ON COLUMNS(* EXCLUDE (partition_day)) INTO NAME name VALUE n
)
WHERE n > 0
"""


def utterance_tokens(conversation: pl.Expr) -> pl.Expr:
    """The tokens of each utterance of a ``conversation`` list, as ``TOKEN_PATTERN`` counts them
    in DuckDB (null for a null text)."""
    return conversation.list.eval(
        pl.element().struct.field("content").str.count_matches(TOKEN_PATTERN_POLARS).cast(pl.Int64)
    )


def day_statistics(
    records: Any, threshold: float, records_materialization: int | None = None
) -> pl.DataFrame:
    """The partial statistics (``DAY_STATISTICS_SCHEMA``) of both releases for every day of
    ``records``: rows of ``DAY_RECORDS_SQL``, as an Arrow table or a polars frame.

    Computed in a private in-memory DuckDB: the warehouse's lock is held only while the day is
    read, not while its text is tokenized. ``records_materialization`` is stamped on every row.
    """
    frame = (
        records if isinstance(records, pl.DataFrame) else cast(pl.DataFrame, pl.from_arrow(records))
    )
    frame = frame.with_columns(tokens=utterance_tokens(pl.col("conversation")))
    con = duckdb.connect()
    try:
        con.register("records", frame)
        con.execute(_DAY_UTTERANCES)
        frames = []
        for release in RELEASES:
            member = f"in_{release}"
            for sql, parameters in (
                (_DAY_PARTS.format(member=member), {}),
                (_DAY_TOXICITY.format(member=member), {"threshold": threshold}),
                (
                    _DAY_CATEGORIES.format(member=member, counts=_category_counts("categories")),
                    {},
                ),
            ):
                frame = con.execute(sql, parameters).pl()
                frames.append(frame.with_columns(release=pl.lit(release)))
    finally:
        con.close()
    return (
        pl.concat(frames, how="vertical_relaxed")
        .with_columns(records_materialization=pl.lit(records_materialization, pl.Int64))
        .select(pl.col(c).cast(t) for c, t in DAY_STATISTICS_SCHEMA.items())
        .sort(PARTITION_COLUMN, "release", "part", "key")
    )


# The partials of the days merged, one release at a time. Distinct keys are counted across days
# for the sets; every other part adds up. Days are a semi-join, not a list lookup per row.
_MERGE = """
WITH days AS (SELECT unnest($days::TIMESTAMP[]) AS partition_day),
rows AS (
    SELECT * FROM main.release_day_statistics
    WHERE release = $release AND partition_day IN (SELECT partition_day FROM days)
)
SELECT part, key, sum(n)::BIGINT AS n, sum(total)::BIGINT AS total,
       sum(squares)::BIGINT AS squares
FROM rows WHERE part NOT IN ('users', 'languages') GROUP BY part, key
UNION ALL
SELECT part, '', count(DISTINCT key), NULL, NULL
FROM rows WHERE part IN ('users', 'languages') GROUP BY part
UNION ALL
SELECT 'days', '', count(DISTINCT partition_day), NULL, NULL
FROM rows WHERE part = 'conversations' AND n > 0
"""

_SUMMARY_SHARES = ("language", "country", "model")
_TOXICITY_FLAGS = ("detoxify", "openai", "either", "both")


def merge_day_statistics(query: Query, release: str, days: Sequence[datetime]) -> pl.DataFrame:
    """The paper's tables for ``release``, as ``release_statistics_full_scan`` gives them, from
    the partials of ``days`` (``partition_day`` values) in ``main.release_day_statistics``.

    Means and standard deviations come from the exact integer sums, divided once: Python
    divides integers with one rounding, so the merge is as exact as the full scan's own
    floating point (DuckDB's ``stddev_samp`` of one value is null, and so is this)."""
    # No day: nothing to read (the table may not exist yet), and the tables of an empty release.
    merged = query(_MERGE, {"release": release, "days": list(days)}) if days else None
    parts: dict[str, dict[str, tuple[int, int, int]]] = {}
    for part, key, n, total, squares in merged.iter_rows() if merged is not None else ():
        parts.setdefault(part, {})[key] = (n or 0, total or 0, squares or 0)

    def moments(part: str, key: str = "") -> tuple[int, int, int]:
        return parts.get(part, {}).get(key, (0, 0, 0))

    turns = moments("turns")
    user, chatbot = moments("tokens", "user"), moments("tokens", "assistant")
    summary = {
        "conversations": moments("conversations")[0],
        "mean_turns": _mean(*turns),
        "days": moments("days")[0],
        "users": moments("users")[0],
        "user_tokens_mean": _mean(*user),
        "user_tokens_std": _sample_stddev(*user),
        "chatbot_tokens_mean": _mean(*chatbot),
        "chatbot_tokens_std": _sample_stddev(*chatbot),
        "languages": moments("languages")[0],
    }
    rows: list[tuple[str, str, float | None]] = [
        ("summary", k, float(v) if v is not None else None) for k, v in summary.items()
    ]
    for name in _SUMMARY_SHARES:
        rows.extend((name, k, float(n)) for k, (n, _, _) in sorted(parts.get(name, {}).items()))
    toxicity = parts.get("toxicity", {})
    for turns_of in sorted({key.split("/")[0] for key in toxicity}):
        n = toxicity.get(f"{turns_of}/turns", (0, 0, 0))[0]
        if not n:
            continue
        for flag in _TOXICITY_FLAGS:
            rows.append(("toxicity", f"{turns_of}/{flag}", toxicity[f"{turns_of}/{flag}"][0] / n))
        rows.append(("toxicity", f"{turns_of}/turns", float(n)))
    category = parts.get("category", {})
    rows.extend(
        ("category", c, float(category[c][0]))
        for c in OPENAI_CATEGORIES
        if category.get(c, (0,))[0]
    )
    return pl.DataFrame([(release, *r) for r in rows], schema=STATISTICS_SCHEMA, orient="row")


def _mean(n: int, total: int, _squares: int = 0) -> float | None:
    return total / n if n else None


def _sample_stddev(n: int, total: int, squares: int) -> float | None:
    if n < 2:
        return None
    # n * squares - total**2 is n * (n - 1) times the sample variance, exactly, in integers.
    return math.sqrt((n * squares - total * total) / (n * (n - 1)))


# -- which days can be merged --------------------------------------------------------------------

# Each day of the release's records, with its members: what the partials must agree with.
RECORD_DAYS_SQL = """
SELECT partition_day, count(*) FILTER (WHERE in_public) AS public_conversations,
       count(*) FILTER (WHERE in_full) AS full_conversations
FROM main.release_records GROUP BY 1 ORDER BY 1
"""

PARTIAL_DAYS_SQL = """
SELECT partition_day,
       max(n) FILTER (WHERE release = 'public' AND part = 'conversations')
           AS public_conversations,
       max(n) FILTER (WHERE release = 'full' AND part = 'conversations') AS full_conversations,
       min(records_materialization) AS records_materialization,
       count(DISTINCT records_materialization) AS sources
FROM main.release_day_statistics GROUP BY 1
"""

MISSING = "missing"
STALE = "stale"
COUNTS_DIFFER = "counts_differ"

UNMERGEABLE_MEANING = {
    MISSING: "no per-day statistics for the day",
    STALE: "computed from another materialization of the day's release_records than its latest",
    COUNTS_DIFFER: "the conversations they count differ from release_records' (a table changed "
    "outside Dagster)",
}


def unmergeable_days(
    records: pl.DataFrame,
    latest: Mapping[datetime, int | None],
    partials: pl.DataFrame,
) -> dict[datetime, str]:
    """The days of ``records`` (``RECORD_DAYS_SQL`` rows) whose partials (``PARTIAL_DAYS_SQL``
    rows) must not be merged, and why: ``MISSING``, ``STALE`` (computed from another
    materialization of release_records than the day's latest in ``latest``, storage ids, None
    for none) or ``COUNTS_DIFFER``."""
    found = {row[PARTITION_COLUMN]: row for row in partials.iter_rows(named=True)}
    refused: dict[datetime, str] = {}
    for row in records.iter_rows(named=True):
        day = row[PARTITION_COLUMN]
        partial = found.get(day)
        if partial is None:
            refused[day] = MISSING
        elif partial["sources"] > 1 or partial["records_materialization"] != latest.get(day):
            refused[day] = STALE
        elif any(
            (partial[c] or 0) != row[c] for c in ("public_conversations", "full_conversations")
        ):
            refused[day] = COUNTS_DIFFER
    return refused
