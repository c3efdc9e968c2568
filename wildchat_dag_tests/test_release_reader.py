"""Reading a release for the review app: locators, one row by (shard, row), the view's shape."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wildchat_dag.core.schema import SPEC_CATEGORY_KEYS
from wildchat_dag.defs.browse.release_reader import (
    ReleaseNotFound,
    conversation_view,
    locator_batches,
    read_conversation,
    release_shards,
    segments,
)
from wildchat_dag.defs.release.release_schema import RELEASE_SCHEMA

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def scores(**high: float) -> dict:
    return {k: high.get(SPEC_CATEGORY_KEYS[k], 0.01) for k in SPEC_CATEGORY_KEYS}


def moderation(**high: float) -> dict:
    values = scores(**high)
    return {
        "categories": {k: v > 0.5 for k, v in values.items()},
        "category_scores": values,
        "flagged": any(v > 0.5 for v in values.values()),
    }


def conversation(n: int, texts: list[str], turn_ids: list[int]) -> dict:
    utterances = [
        {
            "content": text,
            "country": "France",
            "hashed_ip": "h" * 64,
            "header": {"accept-language": "fr", "user-agent": "ua"},
            "language": "French" if i % 2 == 0 else "English",
            "redacted": "<PRESIDIO" in text,
            "role": "user" if i % 2 == 0 else "assistant",
            "state": None,
            "timestamp": T0,
            "toxic": None,
            "turn_identifier": turn_ids[i],
        }
        for i, text in enumerate(texts)
    ]
    return {
        "conversation_hash": f"hash{n}",
        "model": "gpt-4",
        "timestamp": T0,
        "conversation": utterances,
        "turn": (len(texts) + 1) // 2,
        "language": "French",
        "openai_moderation": [moderation(violence=0.9), moderation()][: len(texts)],
        "detoxify_moderation": [None] * len(texts),
        "toxic": None,
        "redacted": any(u["redacted"] for u in utterances),
        "state": None,
        "country": "France",
        "hashed_ip": "h" * 64,
        "header": {"accept-language": "fr", "user-agent": "ua"},
    }


def write_release(folder, rows: list[dict], row_group: int) -> None:
    data = folder / "data"
    data.mkdir(parents=True)
    frame = pl.DataFrame(rows, schema=RELEASE_SCHEMA)
    half = len(rows) // 2
    for shard, part in enumerate([frame[:half], frame[half:]]):
        pq.write_table(
            part.to_arrow(),
            data / f"train-{shard:05d}-of-00002.parquet",
            row_group_size=row_group,
        )


def test_a_row_is_read_from_its_row_group_and_carries_its_locator(tmp_path):
    rows = [conversation(n, [f"text {n}", "answer"], [10 * n, 10 * n + 1]) for n in range(10)]
    # A copy of conversation 3's hash with other turns: two conversations, two locators.
    rows.append(
        {**conversation(99, ["text 3", "answer"], [990, 991]), "conversation_hash": "hash3"}
    )
    write_release(tmp_path, rows, row_group=2)
    shards = release_shards(tmp_path)
    assert [n for _, n in shards] == [5, 6]
    record = read_conversation(shards, 1, 4)
    assert record["conversation_hash"] == "hash9"
    locators = pl.DataFrame(
        {
            "conversation_hash": [f"hash{n}" for n in range(10)] + ["hash3"],
            "conversation_id": [*range(100, 110), 199],
            "partition_day": [date(2024, 1, 1)] * 11,
            "hashed_ip": ["h" * 64] * 11,
            "turn_identifiers": [[10 * n, 10 * n + 1] for n in range(10)] + [[990, 991]],
        }
    )
    located = pl.concat(list(locator_batches(shards, locators, batch_rows=3)))
    assert located.height == 11
    by_place = {(s, r): c for s, r, c in located.select("shard", "row", "conversation_id").rows()}
    assert by_place[(1, 4)] == 109 and by_place[(1, 5)] == 199 and by_place[(0, 3)] == 103
    for missing in [(2, 0), (0, 5), (-1, 0)]:
        with pytest.raises(ReleaseNotFound):
            read_conversation(shards, *missing)


def test_a_folder_without_parquet_files_is_not_a_release(tmp_path):
    with pytest.raises(ReleaseNotFound, match="no Parquet"):
        release_shards(tmp_path)


def test_the_view_names_the_categories_that_flagged_and_cuts_text_at_placeholders():
    record = conversation(1, ["kill the <PRESIDIO_ANONYMIZED_PERSON> bug", "sure"], [1, 2])
    view = conversation_view(record)
    user, assistant = view.turns
    assert user.flagged == [("violence", 0.9)] and user.openai_flagged is True
    assert assistant.flagged == [] and assistant.openai_scores[0][1] == 0.01
    # Scores once each, under the API's names (the spec repeats them with underscores).
    assert len(user.openai_scores) == 11
    assert [s.placeholder for s in user.segments] == [False, True, False]
    assert view.placeholders == 1 and view.redacted
    # Unknown stays unknown.
    assert view.toxic is None and user.toxic is None
    assert segments("") == [] and segments(None) == []
    assert segments("<PRESIDIO_ANONYMIZED_X>")[0].placeholder


def test_arrow_types_of_the_release_read_back_as_python_values(tmp_path):
    write_release(tmp_path, [conversation(n, ["a", "b"], [n, n + 100]) for n in range(2)], 1)
    record = read_conversation(release_shards(tmp_path), 0, 0)
    assert isinstance(record["timestamp"], datetime) and record["conversation"][0]["role"]
    assert pa.__version__
