"""The WildChat paper's tables, computed on a release, in SQL over the per-day records.

Tokens are counted with a plain rule, not a model's tokenizer (none ships offline): a token is a
run of letters, marks and digits, or any other single non-space character. Chinese and Japanese
text without spaces counts a run as one token, so their counts are low.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from wildchat_dag.core.schema import OPENAI_CATEGORIES

TOKEN_PATTERN = r"[\p{L}\p{M}\p{N}_]+|[^\p{L}\p{M}\p{N}_\s]"

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


def release_statistics(query: Query, release: str, threshold: float) -> pl.DataFrame:
    """The paper's tables for ``release`` (public or full), as (section, key, value) rows."""
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
    counts = ", ".join(
        f"count(*) FILTER (WHERE struct_extract(o.categories, '{c}')) AS \"{c}\""
        for c in OPENAI_CATEGORIES
    )
    categories = query(_CATEGORIES.format(member=member, counts=counts))
    rows.extend(("category", c, float(n)) for c, n in categories.row(0, named=True).items() if n)
    return pl.DataFrame([(release, *r) for r in rows], schema=STATISTICS_SCHEMA, orient="row")


def section(statistics: pl.DataFrame, release: str, name: str) -> dict[str, float]:
    frame = statistics.filter((pl.col("release") == release) & (pl.col("section") == name))
    return dict(frame.select("key", "value").iter_rows())
