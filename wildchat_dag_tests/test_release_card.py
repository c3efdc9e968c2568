"""The release card's prose and tables against what the records say was scored: built from
release_records written here, the real statistics queries and facts, no Dagster."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from wildchat_dag.core.schema import DETOXIFY_FIELDS, SPEC_CATEGORY_KEYS
from wildchat_dag.defs.language.resource import LanguageIdModels
from wildchat_dag.defs.release.release import ReleasePolicy
from wildchat_dag.defs.release.release_card import (
    DESCRIPTIONS,
    NAMES_NOT_RECORDED,
    dataset_card,
    release_facts,
    table_1_values,
)
from wildchat_dag.defs.release.release_export import WrittenRelease
from wildchat_dag.defs.release.release_schema import RELEASE_RECORDS_SCHEMA, RELEASES
from wildchat_dag.defs.release.release_statistics import release_statistics_full_scan

DAY = datetime(2024, 7, 1)
THRESHOLD = 0.1
EMBEDDED_NAMES = "GeoLite2-City built 2018-07-03 (the embedded snapshot)"


def openai_result(flagged: bool | None) -> dict[str, Any]:
    """A scored result (``flagged`` True or False), or None's: OpenAI did not score it."""
    if flagged is None:
        return {"categories": None, "category_scores": None, "flagged": None}
    violent = {k: flagged and k == "violence" for k in SPEC_CATEGORY_KEYS}
    return {
        "categories": violent,
        "category_scores": {k: 0.9 if v else 0.01 for k, v in violent.items()},
        "flagged": flagged,
    }


def detoxify_result(toxicity: float | None) -> dict[str, Any]:
    """Detoxify's scores, or None's: Detoxify did not score it."""
    if toxicity is None:
        return dict.fromkeys(DETOXIFY_FIELDS)
    return {f: toxicity if f == "toxicity" else 0.0 for f in DETOXIFY_FIELDS}


def record(conversation_id: int, scored: bool, toxic: bool | None = False) -> dict[str, Any]:
    """One two-turn conversation; ``scored``: by both scorers, else by neither."""
    flagged = bool(toxic) if scored else None
    utterances = [
        {"content": "What is 2 + 2?", "role": "user", "hashed_ip": f"h{conversation_id}",
         "country": "United Kingdom", "state": "Brent", "language": "English",
         "turn_identifier": conversation_id, "toxic": toxic, "redacted": False},
        {"content": "4.", "role": "assistant", "language": "English",
         "turn_identifier": conversation_id, "toxic": toxic, "redacted": False},
    ]  # fmt: skip
    return {
        "partition_day": DAY,
        "conversation_id": conversation_id,
        "conversation_hash": f"{conversation_id:032x}",
        "model": "gpt-4",
        "timestamp": DAY.replace(tzinfo=UTC),
        "conversation": utterances,
        "turn": 1,
        "language": "English",
        "openai_moderation": [openai_result(flagged)] * 2,
        "detoxify_moderation": [detoxify_result((0.9 if toxic else 0.01) if scored else None)] * 2,
        "toxic": toxic,
        "redacted": False,
        "state": "Brent",
        "country": "United Kingdom",
        "hashed_ip": f"h{conversation_id}",
        "in_public": not toxic,
        "in_full": True,
        "public_exclusion": "toxic" if toxic else None,
        "full_exclusion": None,
        "scored_by": ["openai", "detoxify"] if scored else [],
        "redaction_rules_hash": "abc123",
        "geoip_snapshots": [datetime(2018, 7, 3).date()],
    }


def card_of(tmp_path: Path, records: list[dict[str, Any]], release: str = "public") -> str:
    """The card of ``release`` over ``records``, as the export builds it."""
    frame = pl.DataFrame(records, schema=RELEASE_RECORDS_SCHEMA)
    con = duckdb.connect()
    try:
        con.register("frame", frame.to_arrow())
        con.execute("CREATE TABLE main.release_records AS SELECT * FROM frame")

        def query(sql: str, parameters: dict | None = None) -> pl.DataFrame:
            return con.execute(sql, parameters or {}).pl()

        statistics = pl.concat(
            [release_statistics_full_scan(query, r, THRESHOLD) for r in RELEASES]
        )
        facts = release_facts(query, release)
    finally:
        con.close()
    facts.geoip_names = {EMBEDDED_NAMES: 1}
    model = tmp_path / "models" / "lid.176.ftz"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(b"a fastText model")
    rows = int(frame[f"in_{release}"].sum())
    return dataset_card(
        release,
        WrittenRelease(folder=tmp_path / release, rows=rows, num_bytes=1, download_size=1),
        statistics,
        facts,
        ReleasePolicy(include_unscored=True, include_unscreened=True),
        THRESHOLD,
        # As the export names it: the language resource's description, no path.
        LanguageIdModels(model_path=str(model)).model_description(),
        datetime(2024, 7, 2, tzinfo=UTC),
    )


def toxicity_rows(card: str) -> dict[str, list[str]]:
    block = card.split("### Toxicity")[1].split("###")[0]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("user", "chatbot"):
            rows[cells[0]] = cells[1:]
    return rows


def test_a_release_nobody_scored_says_so_and_shows_no_toxicity_share(tmp_path):
    card = card_of(tmp_path, [record(i, scored=False, toxic=None) for i in range(3)])
    assert DESCRIPTIONS["public"] not in card
    assert "non-toxic conversations only" not in card
    assert "toxicity was not scored" in card and "no toxic filter was applied" in card
    assert toxicity_rows(card) == {"user": ["n/a"] * 4, "chatbot": ["n/a"] * 4}
    assert "0.00%" not in card
    assert "OpenAI scored 0 of 3 non-empty user turns" in card
    assert "Built with a policy that keeps unscored conversations" in card


def test_a_release_scored_by_both_is_non_toxic_with_shares(tmp_path):
    records = [record(i, scored=True) for i in range(3)] + [record(9, scored=True, toxic=True)]
    public = card_of(tmp_path, records)
    assert f"This release holds {DESCRIPTIONS['public']}." in public
    assert toxicity_rows(public) == {"user": ["0.00%"] * 4, "chatbot": ["0.00%"] * 4}
    assert "Not every turn was scored" not in public
    full = card_of(tmp_path, records, "full")
    # 1 of 4 conversations flagged by both scorers, on both sides.
    assert toxicity_rows(full) == {"user": ["25.00%"] * 4, "chatbot": ["25.00%"] * 4}
    assert f"This release holds {DESCRIPTIONS['full']}." in full


def test_a_partly_scored_release_says_how_much_was_filtered(tmp_path):
    records = [record(i, scored=True) for i in range(3)]
    records += [record(10 + i, scored=False, toxic=None) for i in range(2)]
    card = card_of(tmp_path, records)
    assert "3 conversations scored non-toxic" in card
    assert "2 whose toxicity was not scored, to which no toxic filter was applied" in card
    assert toxicity_rows(card)["user"] == ["0.00%"] * 4
    assert "Detoxify scored 3 of 5 non-empty user turns" in card
    full = card_of(tmp_path, records, "full")
    assert "2 of them were not screened by OpenAI Moderation" in full


def test_provenance_names_files_and_snapshots_portably(tmp_path):
    card = card_of(tmp_path, [record(i, scored=True) for i in range(2)])
    digest = hashlib.sha256(b"a fastText model").hexdigest()[:16]
    assert f"fastText lid.176 (lid.176.ftz, sha256 {digest})" in card
    assert str(tmp_path) not in card
    # No absolute path of any machine, POSIX or Windows.
    assert not re.search(r"(?<![\w.:/])/(?:[\w.-]+/)+[\w.-]+|[A-Za-z]:\\\\", card)
    assert f"- Country and state names: {EMBEDDED_NAMES}" in card
    assert "located the user turns (build dates): 2018-07-03" in card


def test_table_1_counts_are_integers_and_means_decimals():
    values = table_1_values(
        {"conversations": 1234567.0, "users": 938.0, "days": 2.0, "mean_turns": 2.5,
         "user_tokens_mean": 71.25, "user_tokens_std": None, "languages": 12.0}
    )  # fmt: skip
    assert values == {
        "conversations": "1,234,567",
        "users": "938",
        "days": "2",
        "mean_turns": "2.50",
        "user_tokens_mean": "71.25",
        "user_tokens_std": "n/a",
        "languages": "12",
    }


def test_table_1_in_the_card_holds_integer_counts(tmp_path):
    card = card_of(tmp_path, [record(i, scored=True) for i in range(3)])
    header = "| conversations | users | days | mean turns |"
    row = card.split(header)[1].splitlines()[2]
    assert row.startswith("| 3 | 3 | 1 | 1.00 |"), row


@pytest.mark.parametrize(
    ("names", "line"),
    [
        ({}, "none"),
        ({EMBEDDED_NAMES: 3}, EMBEDDED_NAMES),
        (
            {EMBEDDED_NAMES: 2, NAMES_NOT_RECORDED: 1},
            f"{EMBEDDED_NAMES} (2 days); {NAMES_NOT_RECORDED} (1 days)",
        ),
    ],
)
def test_the_card_says_which_snapshot_named_country_and_state(tmp_path, names, line):
    frame = pl.DataFrame([record(1, scored=True)], schema=RELEASE_RECORDS_SCHEMA)
    con = duckdb.connect()
    con.register("frame", frame.to_arrow())
    con.execute("CREATE TABLE main.release_records AS SELECT * FROM frame")
    facts = release_facts(lambda sql, p=None: con.execute(sql, p or {}).pl(), "public")
    con.close()
    facts.geoip_names = names
    card = dataset_card(
        "public",
        WrittenRelease(folder=tmp_path, rows=1),
        pl.DataFrame(schema={"release": pl.String, "section": pl.String, "key": pl.String,
                             "value": pl.Float64}),
        facts,
        ReleasePolicy(),
        THRESHOLD,
        "lid.176.ftz, sha256 0",
        datetime(2024, 7, 2, tzinfo=UTC),
    )  # fmt: skip
    assert f"- Country and state names: {line}\n" in card
