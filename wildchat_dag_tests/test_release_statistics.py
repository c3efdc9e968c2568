"""The release statistics merged from per-day partials (``release_day_statistics``) are the full
scan's rows, and a cut refuses, by name, a day whose partials are missing or stale.

The warehouse is built by the pipeline itself (generated days through every step, both scorers
on, as in test_release), with a day without traffic among them. Its warehouse and Dagster
instance (SQLite, in a folder) are kept; each test works on a copy of both.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance
from hypothesis import given, settings
from hypothesis import strategies as st

from wildchat_dag.core.ip_addresses import SALT_ENV_VAR
from wildchat_dag.defs.moderation.resource import DetoxifyResource, OpenAIModerationResource
from wildchat_dag.defs.release.release_schema import RELEASES
from wildchat_dag.defs.release.release_statistics import (
    COUNTS_DIFFER,
    DAY_RECORDS_SQL,
    MISSING,
    STALE,
    TOKEN_PATTERN,
    TOKEN_PATTERN_POLARS,
    day_statistics,
    merge_day_statistics,
    release_statistics_full_scan,
    unmergeable_days,
    utterance_tokens,
)
from wildchat_dag.loggen.generator import generate_logs
from wildchat_dag_tests.conftest import TEST_SALT, RequestFactory
from wildchat_dag_tests.detoxify_checkpoints import build_tiny_checkpoint
from wildchat_dag_tests.moderation_server import ModerationServer
from wildchat_dag_tests.pipeline import (
    Pipeline,
    materializations,
    step_failure,
    write_json_lines,
)

START = date(2024, 8, 5)
DAYS = 3
# A log folder without a file: a day without traffic, whose records have no row.
EMPTY_DAY = START + timedelta(days=DAYS)
# The tiny Detoxify model scores every text about 0.503: above this, only OpenAI flags (so the
# public release is not empty); the edge cases below also cut at the scores' median.
THRESHOLD = 0.99
STATISTICS = AssetKey("release_statistics")
DAY_STATISTICS = AssetKey("release_day_statistics")
RECORDS = AssetKey("release_records")
REL = 1e-9


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Three generated days and an empty one, through both exports; the instance closed."""
    tmp = tmp_path_factory.mktemp("release_statistics")
    log_root = tmp / "logs"
    generate_logs(log_root, start_date=START, days=DAYS, conversations_per_day=12, seed=41)
    factory = RequestFactory()
    factory.next_id = 20_000_000
    # OpenAI flags these (violence, harassment, self-harm): the toxicity and category tables
    # have rows.
    write_json_lines(
        log_root / START.isoformat(),
        [
            factory.first("I will kill you", "Please don't.", f"{START}T09:00:00"),
            factory.first("I hate you", "Sorry.", f"{START}T09:10:00", ip="81.2.69.142"),
            factory.first("thinking of suicide", "Please call.", f"{START}T09:20:00"),
        ],
    )
    (log_root / EMPTY_DAY.isoformat()).mkdir()
    (tmp / "dagster").mkdir()
    with pytest.MonkeyPatch.context() as env, ModerationServer() as server:
        env.setenv(SALT_ENV_VAR, TEST_SALT)
        env.delenv("WILDCHAT_MODE", raising=False)
        env.setenv("WILDCHAT_TOXICITY_THRESHOLD", str(THRESHOLD))
        with DagsterInstance.local_temp(str(tmp / "dagster")) as instance:
            p = Pipeline(
                log_root,
                tmp / "w.duckdb",
                instance=instance,
                resources={
                    "openai": OpenAIModerationResource(api_key="k", base_url=server.base_url),
                    "detoxify": DetoxifyResource(
                        checkpoint=str(build_tiny_checkpoint(tmp / "detoxify")), device="cpu"
                    ),
                },
            )
            p.through_release(*[(START + timedelta(days=n)).isoformat() for n in range(DAYS + 1)])
    return tmp


@pytest.fixture
def pipeline(built, tmp_path, monkeypatch) -> Iterator[Pipeline]:
    """A copy of the built warehouse and instance."""
    monkeypatch.setenv(SALT_ENV_VAR, TEST_SALT)
    monkeypatch.delenv("WILDCHAT_MODE", raising=False)
    monkeypatch.setenv("WILDCHAT_TOXICITY_THRESHOLD", str(THRESHOLD))
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    with DagsterInstance.local_temp(str(copy / "dagster")) as instance:
        yield Pipeline(copy / "logs", copy / "w.duckdb", instance=instance)


def full_scan(database: Path) -> pl.DataFrame:
    con = duckdb.connect(str(database), read_only=True)
    try:
        return pl.concat(
            [
                release_statistics_full_scan(
                    lambda sql, parameters=None: con.execute(sql, parameters or {}).pl(),
                    release,
                    THRESHOLD,
                )
                for release in RELEASES
            ]
        )
    finally:
        con.close()


def assert_same_rows(merged: pl.DataFrame, reference: pl.DataFrame) -> None:
    """The same (release, section, key) rows; values equal to ``REL`` relative, null where the
    reference is null."""
    keys = ["release", "section", "key"]
    assert merged.select(keys).sort(keys).rows() == reference.select(keys).sort(keys).rows()
    assert merged.height == merged.unique(keys).height
    want = {tuple(r[:3]): r[3] for r in reference.rows()}
    for *key, value in merged.rows():
        expected = want[tuple(key)]
        if expected is None or value is None:
            assert value is expected, key
        else:
            assert math.isclose(value, expected, rel_tol=REL, abs_tol=0.0), (key, value, expected)


def day_values(con: duckdb.DuckDBPyConnection) -> list[datetime]:
    rows = con.execute(
        "SELECT DISTINCT partition_day FROM main.release_records ORDER BY 1"
    ).fetchall()
    return [d for (d,) in rows]


def rebuild_partials(con: duckdb.DuckDBPyConnection, threshold: float = THRESHOLD) -> list:
    """Every day's partials computed again from the records as they are now, as the asset
    computes them; the days."""
    days = day_values(con)
    partials = pl.concat(
        [
            day_statistics(con.execute(DAY_RECORDS_SQL, {"day": d}).to_arrow_table(), threshold)
            for d in days
        ]
    )
    con.register("partials", partials.to_arrow())
    con.execute("CREATE OR REPLACE TABLE main.release_day_statistics AS SELECT * FROM partials")
    con.unregister("partials")
    return days


def merged(con: duckdb.DuckDBPyConnection, days: list[datetime]) -> pl.DataFrame:
    def query(sql: str, parameters: dict | None = None) -> pl.DataFrame:
        return con.execute(sql, parameters or {}).pl()

    return pl.concat([merge_day_statistics(query, release, days) for release in RELEASES])


def full_scan_of(con: duckdb.DuckDBPyConnection, threshold: float = THRESHOLD) -> pl.DataFrame:
    def query(sql: str, parameters: dict | None = None) -> pl.DataFrame:
        return con.execute(sql, parameters or {}).pl()

    return pl.concat(
        [release_statistics_full_scan(query, release, threshold) for release in RELEASES]
    )


# -- through Dagster ------------------------------------------------------------------------------


def test_the_cut_merges_the_days_into_exactly_the_full_scans_rows(pipeline):
    p = pipeline
    statistics = p.table("release_statistics")
    assert_same_rows(statistics, full_scan(p.database))
    summary = {
        (r, k): v for r, s, k, v in statistics.rows() if s == "summary"
    }  # both releases hold conversations, and the toxicity and category tables have rows
    assert summary[("public", "conversations")] > 0 and summary[("full", "conversations")] > 0
    assert summary[("full", "days")] == DAYS
    assert {"toxicity", "category", "language", "country", "model"} <= set(statistics["section"])

    [cut] = materializations(p, "release_statistics")
    assert cut.metadata["days_merged"].value == DAYS
    assert cut.metadata["rows"].value == statistics.height
    assert cut.metadata["seconds"].value >= 0

    # Each day's partials name the records' materialization they were computed from: the
    # day's latest. The day without traffic has its (empty) partials too.
    partials = p.table("release_day_statistics")
    for n in range(DAYS + 1):
        key = (START + timedelta(days=n)).isoformat()
        [records] = [
            r
            for r in p.instance.fetch_materializations(RECORDS, limit=100).records
            if r.partition_key == key
        ][:1]
        [day] = [m for m in materializations(p, "release_day_statistics") if m.partition == key]
        assert day.metadata["records_materialization"].value == records.storage_id
        of_day = partials.filter(pl.col("partition_day") == datetime.fromisoformat(key))
        assert day.metadata["rows"].value == of_day.height
        assert of_day["records_materialization"].unique().to_list() == (
            [records.storage_id] if n < DAYS else []
        )


def test_a_day_rebuilt_without_its_partials_is_refused_then_merged_once_they_are(pipeline):
    p = pipeline
    first, stale = START.isoformat(), (START + timedelta(days=1)).isoformat()
    before = len(materializations(p, "release_statistics"))
    assert p.run([RECORDS], stale).success

    result = p.run([STATISTICS], None, raise_on_error=False)
    assert not result.success
    assert len(materializations(p, "release_statistics")) == before
    failure = step_failure(result, "release_statistics")
    assert f"1 of {DAYS} day(s)" in failure.description
    assert f"{stale}: stale" in failure.description
    assert "--assets release_day_statistics" in failure.description
    assert first not in failure.description
    assert failure.metadata["unmerged_days"].value == [stale]
    assert f"| {stale} | stale |" in failure.metadata["unmerged"].value

    assert p.run([DAY_STATISTICS], stale).success
    assert p.run([STATISTICS], None).success
    assert_same_rows(p.table("release_statistics"), full_scan(p.database))


def test_missing_partials_and_partials_that_disagree_with_the_records_are_refused(pipeline):
    p = pipeline
    missing, differs = START, START + timedelta(days=2)
    con = duckdb.connect(str(p.database))
    try:
        con.execute(
            "DELETE FROM main.release_day_statistics WHERE partition_day = $d",
            {"d": datetime.combine(missing, datetime.min.time())},
        )
        con.execute(
            "UPDATE main.release_day_statistics SET n = n + 1 "
            "WHERE partition_day = $d AND part = 'conversations' AND release = 'full'",
            {"d": datetime.combine(differs, datetime.min.time())},
        )
    finally:
        con.close()
    result = p.run([STATISTICS], None, raise_on_error=False)
    failure = step_failure(result, "release_statistics")
    assert failure.metadata["unmerged_days"].value == [missing.isoformat(), differs.isoformat()]
    assert f"{missing}: missing" in failure.description
    assert f"{differs}: counts_differ" in failure.description

    # No partials at all (a warehouse from before the per-day statistics): every day refused.
    con = duckdb.connect(str(p.database))
    con.execute("DROP TABLE main.release_day_statistics")
    con.close()
    failure = step_failure(p.run([STATISTICS], None, raise_on_error=False), "release_statistics")
    assert len(failure.metadata["unmerged_days"].value) == DAYS
    assert f"backfill {START} {START + timedelta(days=DAYS - 1)}" in failure.description


# -- the core, on edge cases ---------------------------------------------------------------------


def test_the_merge_equals_the_full_scan_on_edge_cases(pipeline):
    """The built records as they are, then changed in place: a day emptied, a release with no
    member, and a release of one conversation of one round (every group of one row: a sample
    standard deviation of one value is null)."""
    p = pipeline
    con = duckdb.connect(str(p.database))
    try:
        days = rebuild_partials(con)
        assert_same_rows(merged(con, days), full_scan_of(con))
        # Cut at the Detoxify scores' median, some utterances are flagged by it and some not.
        [(median,)] = con.execute(
            "SELECT median(d.toxicity) FROM "
            "(SELECT unnest(detoxify_moderation) AS d FROM main.release_records)"
        ).fetchall()
        rebuild_partials(con, median)
        statistics = merged(con, days)
        assert_same_rows(statistics, full_scan_of(con, median))
        toxicity = {k: v for r, s, k, v in statistics.rows() if s == "toxicity" and r == "full"}
        sides = ("user", "chatbot")
        flagged = sum(toxicity[f"{side}/detoxify"] * toxicity[f"{side}/turns"] for side in sides)
        assert 0 < flagged < sum(toxicity[f"{side}/turns"] for side in sides)

        con.execute("DELETE FROM main.release_records WHERE partition_day = $d", {"d": days[0]})
        days = rebuild_partials(con)
        assert len(days) == DAYS - 1
        assert_same_rows(merged(con, days), full_scan_of(con))

        [(single,)] = con.execute(
            "SELECT min(conversation_id) FROM main.release_records WHERE turn = 1 "
            "AND conversation[1].content <> '' AND partition_day = $d",
            {"d": days[-1]},
        ).fetchall()
        con.execute(
            "UPDATE main.release_records SET in_public = false, in_full = (conversation_id = $c)",
            {"c": single},
        )
        days = rebuild_partials(con)
        statistics = merged(con, days)
        assert_same_rows(statistics, full_scan_of(con))
        summary = {(r, k): v for r, s, k, v in statistics.rows() if s == "summary"}
        assert summary[("public", "conversations")] == 0.0
        assert summary[("public", "mean_turns")] is None
        assert summary[("public", "users")] == summary[("public", "days")] == 0.0
        assert summary[("full", "conversations")] == summary[("full", "days")] == 1.0
        assert summary[("full", "user_tokens_mean")] is not None
        assert summary[("full", "user_tokens_std")] is None
        assert summary[("full", "chatbot_tokens_std")] is None
        assert statistics.filter(
            (pl.col("release") == "public") & (pl.col("section") != "summary")
        ).is_empty()
        # No day at all: the tables of an empty release, without reading the partials.
        assert_same_rows(merged(con, []).filter(pl.col("release") == "public"),
                         statistics.filter(pl.col("release") == "public"))  # fmt: skip
    finally:
        con.close()


def duckdb_tokens(texts: list[str | None]) -> list[int | None]:
    """The reference count: ``TOKEN_PATTERN`` in DuckDB, as the full scan counts."""
    con = duckdb.connect()
    try:
        con.register("texts", pl.DataFrame({"t": texts}, schema={"t": pl.String}))
        sql = f"SELECT len(regexp_extract_all(t, '{TOKEN_PATTERN}')) AS n FROM texts"
        return con.execute(sql).pl()["n"].to_list()
    finally:
        con.close()


def test_polars_classes_every_code_point_as_duckdb_does():
    """Each code point alone and doubled counts (1, 1) tokens for a word character, (1, 2) for
    another character and (0, 0) for a space: the same pairs in both engines mean the same
    classes, and so the same count for any text. Fails if a new DuckDB or polars reads Unicode
    differently (see ``TOKEN_PATTERN_POLARS``)."""
    alone = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    texts = alone + [c + c for c in alone]
    ours = pl.Series(texts).str.count_matches(TOKEN_PATTERN_POLARS).cast(pl.Int64).to_list()
    reference = duckdb_tokens(texts)
    differ = [
        f"U+{ord(t[0]):04X}" for t, a, b in zip(texts, ours, reference, strict=True) if a != b
    ]
    assert not differ, f"{len(differ)} texts count differently, first {differ[:10]}"


TOKEN_TEXT = st.text(
    alphabet=st.sampled_from(
        [
            *"ab1_ -,.!\t\n\f\r\v",
            *("\u00a0", "\u2028", "\u3000", "\u0301", "\u0663", "中", "\U0001f600"),
            # Letters of Unicode 16 and 15.1, a private-use and an unassigned code point
            *("\u0897", "\U000105c0", "\U0002ebf0", "\ue000", "\U000e0fff"),
        ]
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), TOKEN_TEXT), max_size=6))
def test_utterance_tokens_count_as_duckdb_does(contents):
    conversation = pl.DataFrame(
        {"conversation": [[{"content": c} for c in contents]]},
        schema={"conversation": pl.List(pl.Struct({"content": pl.String}))},
    )
    counted = conversation.select(utterance_tokens(pl.col("conversation")))["conversation"][0]
    assert counted.to_list() == duckdb_tokens(contents)


def test_which_days_can_be_merged():
    days = [datetime(2024, 1, d) for d in range(1, 7)]
    records = pl.DataFrame(
        {
            "partition_day": days[:5],
            "public_conversations": [3, 0, 2, 1, 4],
            "full_conversations": [4, 1, 2, 1, 4],
        }
    )
    partials = pl.DataFrame(
        {
            # Day 5 has no partials; day 6 has partials but no records: not merged, not asked.
            "partition_day": [days[0], days[1], days[2], days[3], days[5]],
            "public_conversations": [3, 0, 2, 1, 9],
            "full_conversations": [4, 1, 3, 1, 9],
            "records_materialization": [11, 12, 13, None, 15],
            "sources": [1, 1, 1, 0, 1],
        }
    )
    latest = {days[0]: 11, days[1]: 20, days[2]: 13, days[3]: None, days[4]: 14}
    assert unmergeable_days(records, latest, partials) == {
        days[1]: STALE,  # built from materialization 12; the latest is 20
        days[2]: COUNTS_DIFFER,
        days[4]: MISSING,
    }
    # Both written outside Dagster (no storage id on either side): the gate's business.
    assert days[3] not in unmergeable_days(records, latest, partials)
    # Rows of one day from two materializations cannot be one day's partials.
    two = partials.with_columns(sources=pl.lit(2))
    assert unmergeable_days(records, latest, two)[days[0]] == STALE
