"""The corpus-wide PII frequency table, kept up to date one day at a time.

Redaction leaves alone values seen in many conversations, so a wrong count either leaks PII
(too high: a private name treated as a celebrity) or damages text (too low). These tests write
``pii_candidates`` and ``pii_scanned_utterances`` by hand in a real DuckDB file and compare the
store with counts computed independently here, in plain Python.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from wildchat_dag.core.schema import PII_CANDIDATES_SCHEMA, PII_SCANNED_UTTERANCES_SCHEMA
from wildchat_dag.defs.anonymization.pii_frequency import (
    FrequencyNotCurrent,
    FrequencyStore,
    skip_list_version,
)
from wildchat_dag.defs.anonymization.redaction import (
    Decision,
    apply_frequencies,
    qualify_candidates,
)
from wildchat_dag.defs.anonymization.redaction_rules import RedactionRules, load_rules, parse_rules
from wildchat_dag.resources.duckdb_io import locked_connection

DAY1, DAY2, DAY3 = datetime(2024, 5, 1), datetime(2024, 5, 2), datetime(2024, 5, 3)

# -- inputs written by hand ---------------------------------------------------------------------


@dataclass(frozen=True)
class Mention:
    """One detected candidate in one utterance (shared by ``also_in`` conversations)."""

    conversation_id: int
    text: str
    before: str
    entity_type: str = "PERSON"
    language: str = "en"
    also_in: tuple[int, ...] = ()

    @property
    def conversations(self) -> tuple[int, ...]:
        return (self.conversation_id, *self.also_in)


def name(conv: int, text: str = "John Smith", before: str = "My name is ", **kw: Any) -> Mention:
    return Mention(conv, text, before, "PERSON", **kw)


def phone(conv: int, text: str, before: str = "call me at ", **kw: Any) -> Mention:
    return Mention(conv, text, before, "PHONE_NUMBER", **kw)


def day_frames(day: datetime, digest: str, mentions: list[Mention]) -> tuple[pl.DataFrame, ...]:
    """The two input tables' rows for one day: one utterance (per conversation) per mention."""
    candidates, utterances = [], []
    for i, m in enumerate(mentions):
        # Contents are unique per day and mention, unless a test shares one on purpose.
        sha = hashlib.sha256(f"{day.date()}|{i}|{m}".encode()).hexdigest()
        candidates.append(
            {
                "partition_day": day,
                "content_sha256": sha,
                "entity_type": m.entity_type,
                "start": len(m.before),
                "end": len(m.before) + len(m.text),
                "score": 0.85,
                "text": m.text,
                "recognizer": "test",
                "context_before": m.before,
                "context_after": ".",
            }
        )
        for conv in m.conversations:
            utterances.append(
                {
                    "partition_day": day,
                    "conversation_id": conv,
                    "utterance_index": i,
                    "role": "user",
                    "content_sha256": sha,
                    "characters": len(m.before) + len(m.text) + 1,
                    "language_code": m.language,
                    "language_confidence": 0.99,
                    "entities_scanned": ["PERSON", "PHONE_NUMBER"],
                    "ner_model": "test",
                    "ner_without_model": False,
                    "scan_status": "complete",
                    "scan_detail": None,
                    "chunks": 1,
                    "characters_scanned": len(m.before) + len(m.text) + 1,
                    "detection_version": "v-test",
                    "detection_digest": digest,
                }
            )
    return (
        pl.DataFrame(candidates, schema=PII_CANDIDATES_SCHEMA),
        pl.DataFrame(utterances, schema=PII_SCANNED_UTTERANCES_SCHEMA),
    )


@dataclass
class Warehouse:
    """A DuckDB file holding the two detection tables, written day by day as detection would."""

    path: Path
    days: dict[datetime, list[Mention]] = field(default_factory=dict)

    def connect(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return locked_connection(str(self.path))

    def __post_init__(self) -> None:
        with self.connect() as con:
            for table, schema in (
                ("pii_candidates", PII_CANDIDATES_SCHEMA),
                ("pii_scanned_utterances", PII_SCANNED_UTTERANCES_SCHEMA),
            ):
                con.register("frame", pl.DataFrame(schema=schema))
                con.execute(f"CREATE TABLE main.{table} AS SELECT * FROM frame")
                con.unregister("frame")

    def write_day(self, day: datetime, digest: str, mentions: list[Mention]) -> None:
        """Replace a day's detections (as a re-run of detection does)."""
        candidates, utterances = day_frames(day, digest, mentions)
        with self.connect() as con:
            for table, frame in (
                ("pii_candidates", candidates),
                ("pii_scanned_utterances", utterances),
            ):
                con.execute(f"DELETE FROM main.{table} WHERE partition_day = $day", {"day": day})
                con.register("frame", frame)
                con.execute(f"INSERT INTO main.{table} BY NAME SELECT * FROM frame")
                con.unregister("frame")
        self.days[day] = mentions

    def remove_utterances(self, day: datetime) -> None:
        """Drop a day from pii_scanned_utterances only: that is what says a day was detected."""
        with self.connect() as con:
            con.execute(
                "DELETE FROM main.pii_scanned_utterances WHERE partition_day = $day", {"day": day}
            )
        del self.days[day]

    def store(self) -> FrequencyStore:
        return FrequencyStore(lambda: locked_connection(str(self.path)))

    def copy_inputs(self, path: Path) -> Warehouse:
        """A fresh warehouse with the same inputs and no frequency tables yet."""
        copy = Warehouse(path)
        digests = self.digests()
        for day, mentions in self.days.items():
            copy.write_day(day, digests[day], mentions)
        return copy

    def digests(self) -> dict[datetime, str]:
        with self.connect() as con:
            rows = con.execute(
                "SELECT DISTINCT partition_day, detection_digest FROM main.pii_scanned_utterances"
            ).fetchall()
        return dict(rows)


@pytest.fixture
def rules() -> RedactionRules:
    return load_rules()


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb")


# -- an independent reference -------------------------------------------------------------------

NAME_CUES = ("my name is",)
PHONE_CUES = ("phone", "tel", "mobile")


def default_qualifies(m: Mention, name_cues: tuple[str, ...] = NAME_CUES) -> bool:
    """The default rules, for the handful of shapes used here (two capitalised words, phones)."""
    if m.entity_type == "PERSON":
        cued = any(m.before.lower().rstrip(" ,:").endswith(c) for c in name_cues)
        return m.language == "en" and cued
    if m.entity_type == "PHONE_NUMBER":
        return m.text.startswith("+") or any(c in m.before[-30:].lower() for c in PHONE_CUES)
    raise AssertionError(f"no reference for {m.entity_type}")


def reference_key(m: Mention) -> str:
    if m.entity_type == "PHONE_NUMBER":
        return re.sub(r"[^0-9]", "", m.text)
    return " ".join(m.text.lower().split())


def reference_counts(
    days: dict[datetime, list[Mention]],
    qualifies: Callable[[Mention], bool] = default_qualifies,
) -> dict[tuple[str, str], int]:
    """Distinct conversations per qualifying (entity_type, value_key), over all days."""
    seen: dict[tuple[str, str], set[int]] = {}
    for mentions in days.values():
        for m in mentions:
            if qualifies(m):
                seen.setdefault((m.entity_type, reference_key(m)), set()).update(m.conversations)
    return {key: len(convs) for key, convs in seen.items()}


def counts(store: FrequencyStore) -> dict[tuple[str, str], int]:
    table = store.table()
    assert table.select("entity_type", "value_key").is_duplicated().sum() == 0
    return {(e, k): n for e, k, n, _ in table.iter_rows()}


def sorted_table(store: FrequencyStore) -> list[tuple]:
    return sorted(store.table().iter_rows())


# A three-day corpus: John Smith gives his name in conversations 1, 2 (day 1) and 3 (day 2);
# he is also mentioned without a cue (conversations 5 and 4), which must not count.
DAY1_MENTIONS = [
    name(1),
    name(1, before="Hello again. My name is "),  # same conversation: counted once
    name(2, text="John  Smith"),  # other spacing, same value
    name(5, before="I met "),  # no cue
    name(6, before="My name is ", language="fr"),  # rule applies to English only
    name(7, text="Jane Doe", before="I met "),  # never qualifies
    phone(1, "+1 415-555-0100"),
    phone(2, "+1 (415) 555 0100"),
    phone(5, "415 555 0100", before="the number is "),  # no cue and no "+": not counted
]
DAY2_MENTIONS = [
    name(3),
    name(4, before="I met "),
    phone(3, "1-415-555-0100", before="my phone: "),
    name(8, text="Ann Lee", also_in=(9,)),  # one content pasted into two conversations
]
DAY3_MENTIONS = [
    name(10),
    name(11, text="Ann Lee"),
    name(12, text="Bob Stone", before="I met "),
]


def fold_days_1_and_2(warehouse: Warehouse, rules: RedactionRules) -> FrequencyStore:
    warehouse.write_day(DAY1, "digest-1", DAY1_MENTIONS)
    warehouse.write_day(DAY2, "digest-2", DAY2_MENTIONS)
    store = warehouse.store()
    result = store.refresh(rules)
    assert result.mode == "full"  # nothing folded yet
    assert result.days_folded == ["2024-05-01", "2024-05-02"]
    return store


# -- 1. counting --------------------------------------------------------------------------------


def test_counts_distinct_conversations_where_the_value_qualifies(
    warehouse: Warehouse, rules: RedactionRules
) -> None:
    store = fold_days_1_and_2(warehouse, rules)
    table = store.table()
    assert dict(((e, k), (n, d)) for e, k, n, d in table.iter_rows()) == {
        # 1, 2 (day 1) and 3 (day 2); not 4, 5 (no cue) nor 6 (French); conversation 1 once.
        ("PERSON", "john smith"): (3, 2),
        # Three spellings of one number, in conversations 1, 2, 3; not 5 (no cue, no "+").
        ("PHONE_NUMBER", "14155550100"): (3, 2),
        # One content shared by two conversations counts in both.
        ("PERSON", "ann lee"): (2, 1),
    }
    # The reference agrees on the same inputs (it is reused by the tests below).
    assert counts(store) == reference_counts(warehouse.days)


def test_qualification_is_the_redaction_rules_own(rules: RedactionRules) -> None:
    """The reference above must describe what the rules decide, or the comparisons prove little."""
    mentions = DAY1_MENTIONS + DAY2_MENTIONS + DAY3_MENTIONS
    frame = pl.DataFrame(
        {
            "entity_type": [m.entity_type for m in mentions],
            "text": [m.text for m in mentions],
            "context_before": [m.before for m in mentions],
            "context_after": ["."] * len(mentions),
            "language_code": [m.language for m in mentions],
        }
    )
    decided = qualify_candidates(frame, rules)
    assert [d == Decision.REDACT for d in decided["decision"]] == [
        default_qualifies(m) for m in mentions
    ]
    assert decided["value_key"].to_list() == [reference_key(m) for m in mentions]


# -- 2. incremental refresh ---------------------------------------------------------------------


def test_a_new_day_is_folded_alone_and_totals_match_a_full_computation(
    warehouse: Warehouse, rules: RedactionRules, tmp_path: Path
) -> None:
    store = fold_days_1_and_2(warehouse, rules)
    warehouse.write_day(DAY3, "digest-3", DAY3_MENTIONS)

    result = store.refresh(rules)
    assert result.mode == "incremental"
    assert result.days_folded == ["2024-05-03"]
    assert result.days_removed == []
    assert result.days_unchanged == 2
    assert result.values_touched == 2  # john smith and ann lee; Bob Stone does not qualify

    expected = reference_counts(warehouse.days)
    assert expected[("PERSON", "john smith")] == 4
    assert expected[("PERSON", "ann lee")] == 3
    assert counts(store) == expected

    # A store built from scratch on the same inputs holds exactly the same table.
    scratch = warehouse.copy_inputs(tmp_path / "scratch.duckdb").store()
    assert scratch.refresh(rules).mode == "full"
    assert sorted_table(scratch) == sorted_table(store)


def test_unchanged_days_are_not_reread(warehouse: Warehouse, rules: RedactionRules) -> None:
    """The digest, not the rows, says whether a day changed: that is what makes refresh cheap.

    Day 1's candidates are altered behind the digest's back; an incremental refresh for day 3
    must keep day 1's folded contribution rather than re-read it.
    """
    store = fold_days_1_and_2(warehouse, rules)
    before = counts(store)
    with warehouse.connect() as con:
        con.execute("DELETE FROM main.pii_candidates WHERE partition_day = $day", {"day": DAY1})
    warehouse.write_day(DAY3, "digest-3", [name(20, text="Zed Quill")])

    assert store.refresh(rules).days_folded == ["2024-05-03"]
    assert counts(store) == {**before, ("PERSON", "zed quill"): 1}


# -- 3. re-detected and removed days ------------------------------------------------------------


def test_a_redetected_day_replaces_its_old_contribution(
    warehouse: Warehouse, rules: RedactionRules
) -> None:
    store = fold_days_1_and_2(warehouse, rules)
    original = counts(store)

    # Same detections, new digest: refolded, and not counted twice.
    warehouse.write_day(DAY2, "digest-2b", DAY2_MENTIONS)
    result = store.refresh(rules)
    assert (result.mode, result.days_folded, result.days_unchanged) == (
        "incremental",
        ["2024-05-02"],
        1,
    )
    assert counts(store) == original

    # Different detections: Ann Lee is gone, John Smith now qualifies in conversation 4 too.
    new_day2 = [name(3), name(4), phone(3, "1-415-555-0100", before="my phone: ")]
    warehouse.write_day(DAY2, "digest-2c", new_day2)
    result = store.refresh(rules)
    assert result.days_folded == ["2024-05-02"]
    assert counts(store) == reference_counts(warehouse.days)
    assert counts(store)[("PERSON", "john smith")] == 4
    assert ("PERSON", "ann lee") not in counts(store)


def test_a_removed_day_loses_its_contribution(warehouse: Warehouse, rules: RedactionRules) -> None:
    store = fold_days_1_and_2(warehouse, rules)
    warehouse.remove_utterances(DAY1)

    result = store.refresh(rules)
    assert result.mode == "incremental"
    assert result.days_removed == ["2024-05-01"]
    assert result.days_folded == []
    assert result.days_unchanged == 1
    assert (
        counts(store)
        == reference_counts(warehouse.days)
        == {
            ("PERSON", "john smith"): 1,
            ("PHONE_NUMBER", "14155550100"): 1,
            ("PERSON", "ann lee"): 2,
        }
    )
    assert store.folds()["partition_day"].to_list() == [DAY2]
    # Its "days" total drops too.
    assert (
        dict(((e, k), d) for e, k, _, d in store.table().iter_rows())[("PERSON", "john smith")] == 1
    )


# -- 4. rules changes ---------------------------------------------------------------------------


def modified_rules(rules: RedactionRules, **person_changes: Any) -> RedactionRules:
    """The default rules with PERSON's entry changed, through the same parser as the file."""
    data = rules.as_data()
    data["redact"]["PERSON"] = {**data["redact"]["PERSON"], **person_changes}
    return parse_rules(data)


def test_a_new_cue_refolds_every_day(warehouse: Warehouse, rules: RedactionRules) -> None:
    """Counts are of *qualifying* values, so a rules change can move any day's counts."""
    store = fold_days_1_and_2(warehouse, rules)
    person = rules.rule("PERSON")
    assert person is not None
    with_met = modified_rules(rules, cues_before=[*person.cues_before, "i met"])
    assert with_met.rules_hash != rules.rules_hash

    result = store.refresh(with_met)
    assert result.mode == "full"
    assert result.days_folded == ["2024-05-01", "2024-05-02"]
    assert result.days_unchanged == 0

    def qualifies(m: Mention) -> bool:
        return default_qualifies(m, name_cues=(*NAME_CUES, "i met"))

    expected = reference_counts(warehouse.days, qualifies)
    assert expected[("PERSON", "john smith")] == 5  # now 4 and 5 count too
    assert expected[("PERSON", "jane doe")] == 1
    assert counts(store) == expected
    assert set(store.folds()["rules_hash"]) == {with_met.rules_hash}


def test_a_threshold_change_also_refolds(warehouse: Warehouse, rules: RedactionRules) -> None:
    """Any change of the rules hash refolds; counts stay those of the same qualification."""
    store = fold_days_1_and_2(warehouse, rules)
    before = sorted_table(store)
    lower = modified_rules(rules, skip_if_in_conversations=2)

    result = store.refresh(lower)
    assert (result.mode, result.days_folded) == ("full", ["2024-05-01", "2024-05-02"])
    assert sorted_table(store) == before
    assert set(store.folds()["rules_hash"]) == {lower.rules_hash}


# -- 5. nothing changed -------------------------------------------------------------------------


def test_refresh_without_changes_does_nothing(warehouse: Warehouse, rules: RedactionRules) -> None:
    store = fold_days_1_and_2(warehouse, rules)
    table, folds = sorted_table(store), sorted(store.folds().iter_rows())

    result = store.refresh(rules)
    assert result.mode == "incremental"
    assert result.days_folded == []
    assert result.days_removed == []
    assert result.days_unchanged == 2
    assert result.values_touched == 0
    assert sorted_table(store) == table
    assert sorted(store.folds().iter_rows()) == folds


# -- 6. require_current -------------------------------------------------------------------------


def test_require_current_checks_day_digest_and_rules(
    warehouse: Warehouse, rules: RedactionRules
) -> None:
    """Redacting a day against counts that do not include it would use wrong thresholds."""
    store = warehouse.store()
    warehouse.write_day(DAY1, "digest-1", DAY1_MENTIONS)
    with pytest.raises(FrequencyNotCurrent):
        store.require_current(DAY1, "digest-1", rules)  # nothing folded at all

    store.refresh(rules)
    store.require_current(DAY1, "digest-1", rules)

    warehouse.write_day(DAY2, "digest-2", DAY2_MENTIONS)
    with pytest.raises(FrequencyNotCurrent):
        store.require_current(DAY2, "digest-2", rules)  # detected, not yet folded
    with pytest.raises(FrequencyNotCurrent):
        store.require_current(DAY1, "digest-1-rerun", rules)  # folded under another digest
    other_rules = modified_rules(rules, skip_if_in_conversations=7)
    with pytest.raises(FrequencyNotCurrent):
        store.require_current(DAY1, "digest-1", other_rules)  # folded under other rules

    store.refresh(rules)
    store.require_current(DAY1, "digest-1", rules)
    store.require_current(DAY2, "digest-2", rules)

    store.refresh(other_rules)
    store.require_current(DAY2, "digest-2", other_rules)
    with pytest.raises(FrequencyNotCurrent):
        store.require_current(DAY2, "digest-2", rules)


# -- 7. skip_list_version -----------------------------------------------------------------------


def test_skip_list_version_moves_only_when_a_value_crosses_its_threshold(
    warehouse: Warehouse, rules: RedactionRules
) -> None:
    """Redacted days go stale only when what redaction skips changes, not on every count."""
    rules = modified_rules(rules, skip_if_in_conversations=3)
    store = warehouse.store()

    def version_after(day: datetime, mentions: list[Mention]) -> tuple[str, pl.DataFrame]:
        warehouse.write_day(day, f"digest-{day.date()}", mentions)
        store.refresh(rules)
        table = store.table()
        return skip_list_version(table, rules), table

    v1, t1 = version_after(DAY1, [name(1)])  # john smith: 1
    v2, t2 = version_after(DAY2, [name(2), name(3, text="Ann Lee")])  # 2, below 3
    assert not t1.equals(t2)
    assert v2 == v1

    v3, t3 = version_after(DAY3, [name(4)])  # 3: crosses the threshold
    assert counts(store)[("PERSON", "john smith")] == 3
    assert v3 != v2

    v4, _ = version_after(datetime(2024, 5, 4), [name(5)])  # 4: still over, same skip list
    assert v4 == v3

    # The version tracks exactly what redaction would skip.
    probe = qualify_candidates(
        pl.DataFrame(
            {
                "entity_type": ["PERSON", "PERSON"],
                "text": ["John Smith", "Ann Lee"],
                "context_before": ["My name is "] * 2,
                "context_after": ["."] * 2,
                "language_code": ["en"] * 2,
            }
        ),
        rules,
    )
    decided = apply_frequencies(probe, t3, rules)
    assert decided["decision"].to_list() == [Decision.FREQUENT, Decision.REDACT]


def test_skip_list_version_over_plain_frames(rules: RedactionRules) -> None:
    """The same property on hand-made tables, at PHONE_NUMBER's default threshold of 10."""
    phone_rule = rules.rule("PHONE_NUMBER")
    assert phone_rule is not None and phone_rule.skip_if_in_conversations == 10

    def table(phone_count: int, person_count: int) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "entity_type": ["PHONE_NUMBER", "PERSON", "URL"],
                "value_key": ["14155550100", "john smith", "linkedin.com/in/x"],
                "conversations": [phone_count, person_count, 1000],  # URL has no threshold
                "days": [1, 1, 1],
            }
        )

    base = skip_list_version(table(9, 10), rules)
    assert skip_list_version(table(3, 40), rules) == base  # both still below
    at = skip_list_version(table(10, 10), rules)
    assert at != base  # the phone reaches its threshold
    assert skip_list_version(table(99, 49), rules) == at
    assert skip_list_version(table(10, 50), rules) not in (base, at)  # the name reaches 50


# -- 8. frequencies_of --------------------------------------------------------------------------


def test_frequencies_of_returns_only_the_asked_keys(
    warehouse: Warehouse, rules: RedactionRules
) -> None:
    store = fold_days_1_and_2(warehouse, rules)
    keys = pl.DataFrame(
        {
            "entity_type": ["PERSON", "PERSON", "PHONE_NUMBER", "PERSON", "PHONE_NUMBER"],
            "value_key": ["john smith", "john smith", "john smith", "nobody here", "14155550100"],
            "text": ["a", "b", "c", "d", "e"],  # other columns are ignored
        }
    )
    found = store.frequencies_of(keys)
    assert sorted(found.iter_rows()) == [
        ("PERSON", "john smith", 3),
        ("PHONE_NUMBER", "14155550100", 3),
    ]
    # "ann lee" is in the table but was not asked for.
    assert ("PERSON", "ann lee") in counts(store)
    assert store.frequencies_of(keys.head(0)).is_empty()
