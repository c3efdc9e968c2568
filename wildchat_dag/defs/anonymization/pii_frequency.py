"""The corpus frequency of PII values, kept up to date one day at a time.

WildChat leaves alone a value found in many conversations (a celebrity, a shop's number). A
value is counted in a conversation where it *qualifies*: detected and passing its rule's context
conditions (language, cue, pattern), before the frequency threshold itself. So the count does not
depend on where detection chose to run, and a value mentioned without a cue does not shield the
conversations that do give it with one.

A conversation belongs to exactly one day (its first turn's), so the corpus count of a value is
the sum of per-day counts. Three tables hold the state:

- ``pii_entity_frequency_by_day``: per day, the distinct conversations of each value;
- ``pii_entity_frequency``: the sums, for every value;
- ``pii_entity_frequency_folds``: per day, the detection digest and rules hash folded in.

A refresh folds in only the days whose detection digest changed (or that appeared or vanished);
totals are recomputed for the values those days touch. A change of rules refolds every day from
the stored candidates, without new detection.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import polars as pl

from wildchat_dag.core.schema import PARTITION_COLUMN, PII_ENTITY_FREQUENCY_SCHEMA
from wildchat_dag.core.sql import query
from wildchat_dag.defs.anonymization.redaction import conversation_counts, qualify_candidates
from wildchat_dag.defs.anonymization.redaction_rules import RedactionRules, stable_hash

Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]

BY_DAY_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "entity_type": pl.String,
        "value_key": pl.String,
        "conversations": pl.Int64,
    }
)
FOLDS_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "detection_digest": pl.String,
        "rules_hash": pl.String,
    }
)

_CREATE = """
CREATE TABLE IF NOT EXISTS main.pii_entity_frequency_by_day (
    partition_day TIMESTAMP, entity_type VARCHAR, value_key VARCHAR, conversations BIGINT);
CREATE TABLE IF NOT EXISTS main.pii_entity_frequency (
    entity_type VARCHAR, value_key VARCHAR, conversations BIGINT, days BIGINT);
CREATE TABLE IF NOT EXISTS main.pii_entity_frequency_folds (
    partition_day TIMESTAMP, detection_digest VARCHAR, rules_hash VARCHAR);
"""


def day_value_counts(
    candidates: pl.DataFrame, utterances: pl.DataFrame, rules: RedactionRules
) -> pl.DataFrame:
    """Distinct conversations per qualifying value, for one day.

    ``candidates``: stored pii_candidates rows; ``utterances``: pii_scanned_utterances rows
    (conversation_id, content_sha256, language_code).
    """
    located = candidates.join(
        utterances.select("content_sha256", "conversation_id", "language_code"),
        on="content_sha256",
    )
    return conversation_counts(qualify_candidates(located, rules))


def values_left_alone(frequency: pl.DataFrame, rules: RedactionRules) -> pl.DataFrame:
    """The values found in at least their rule's ``skip_if_in_conversations`` conversations."""
    limits = {r.entity: r.skip_if_in_conversations for r in rules.rules}
    return frequency.filter(
        pl.col("conversations")
        >= pl.col("entity_type").replace_strict(limits, default=None, return_dtype=pl.Int64)
    ).sort("entity_type", "value_key")


def skip_list_version(frequency: pl.DataFrame, rules: RedactionRules) -> str:
    """What redaction reads from the frequency table: the values left alone.

    It is the frequency asset's data version, so days stay fresh while counts move below the
    thresholds, and turn stale when a value crosses one.
    """
    skipped = values_left_alone(frequency, rules).select("entity_type", "value_key").rows()
    return stable_hash({"rules": rules.rules_hash, "skipped": skipped})


class FrequencyNotCurrent(RuntimeError):
    pass


@dataclass
class FoldResult:
    mode: str  # "incremental" or "full" (rules changed, or nothing folded yet)
    days_folded: list[str] = field(default_factory=list)
    days_removed: list[str] = field(default_factory=list)
    days_unchanged: int = 0
    values_touched: int = 0


class FrequencyStore:
    """The three frequency tables in the warehouse; ``connect`` yields a locked transaction."""

    def __init__(self, connect: Connect) -> None:
        self.connect = connect

    def _query(
        self,
        sql: str,
        parameters: dict | None = None,
        frames: dict[str, pl.DataFrame] | None = None,
    ) -> pl.DataFrame:
        with self.connect() as con:
            con.execute(_CREATE)
            return query(con, sql, parameters, frames)

    def detected_days(self) -> dict[datetime, str]:
        """Every day with detection results, and its digest."""
        exists = self._query(
            "SELECT count(*) AS n FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_name = 'pii_scanned_utterances'"
        )
        if not exists["n"][0]:
            return {}
        frame = self._query(
            """
            SELECT partition_day, any_value(detection_digest) AS digest
            FROM main.pii_scanned_utterances GROUP BY partition_day
            """
        )
        return dict(frame.iter_rows())

    def folds(self) -> pl.DataFrame:
        return self._query("SELECT * FROM main.pii_entity_frequency_folds")

    def day_inputs(self, day: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
        with self.connect() as con:
            candidates = con.execute(
                "SELECT * FROM main.pii_candidates WHERE partition_day = $day", {"day": day}
            ).pl()
            utterances = con.execute(
                """SELECT conversation_id, content_sha256, language_code
                   FROM main.pii_scanned_utterances WHERE partition_day = $day""",
                {"day": day},
            ).pl()
        return candidates, utterances

    def refresh(self, rules: RedactionRules) -> FoldResult:
        detected = self.detected_days()
        folds = self.folds()
        folded = dict(folds.select(PARTITION_COLUMN, "detection_digest").iter_rows())
        same_rules = folds.height > 0 and set(folds["rules_hash"]) == {rules.rules_hash}
        removed = sorted(set(folded) - set(detected))
        if same_rules:
            changed = sorted(d for d, digest in detected.items() if folded.get(d) != digest)
        else:
            changed = sorted(detected)
        counts = []
        for day in changed:
            candidates, utterances = self.day_inputs(day)
            counts.append(
                day_value_counts(candidates, utterances, rules).select(
                    pl.lit(day, BY_DAY_SCHEMA[PARTITION_COLUMN]).alias(PARTITION_COLUMN),
                    pl.all(),
                )
            )
        new_rows = pl.concat(counts) if counts else pl.DataFrame(schema=BY_DAY_SCHEMA)
        new_rows = new_rows.cast(BY_DAY_SCHEMA)  # type: ignore[arg-type]
        ledger = pl.DataFrame(
            [(d, detected[d], rules.rules_hash) for d in changed],
            schema=FOLDS_SCHEMA,
            orient="row",
        )
        touched = self._write(new_rows, ledger, changed + removed, full=not same_rules)
        return FoldResult(
            mode="incremental" if same_rules else "full",
            days_folded=[d.date().isoformat() for d in changed],
            days_removed=[d.date().isoformat() for d in removed],
            days_unchanged=len(detected) - len(changed),
            values_touched=touched,
        )

    def _write(
        self, rows: pl.DataFrame, ledger: pl.DataFrame, days: list[datetime], full: bool
    ) -> int:
        day_list = pl.DataFrame({"day": days}, schema={"day": pl.Datetime("us")})
        with self.connect() as con:
            con.execute(_CREATE)
            con.register("day_list", day_list)
            con.register("rows", rows)
            con.register("ledger", ledger)
            # The values whose totals move: those of the replaced days, before and after.
            replaced = "" if full else "WHERE partition_day IN (SELECT day FROM day_list)"
            con.execute(
                f"""
                CREATE TEMP TABLE touched AS
                SELECT DISTINCT entity_type, value_key FROM (
                    SELECT entity_type, value_key FROM main.pii_entity_frequency_by_day {replaced}
                    UNION ALL SELECT entity_type, value_key FROM rows
                )
                """
            )
            if full:
                con.execute("DELETE FROM main.pii_entity_frequency_by_day")
                con.execute("DELETE FROM main.pii_entity_frequency_folds")
            con.execute(
                "DELETE FROM main.pii_entity_frequency_by_day "
                "WHERE partition_day IN (SELECT day FROM day_list)"
            )
            con.execute(
                "DELETE FROM main.pii_entity_frequency_folds "
                "WHERE partition_day IN (SELECT day FROM day_list)"
            )
            con.execute("INSERT INTO main.pii_entity_frequency_by_day BY NAME SELECT * FROM rows")
            con.execute("INSERT INTO main.pii_entity_frequency_folds BY NAME SELECT * FROM ledger")
            if full:
                con.execute("DELETE FROM main.pii_entity_frequency")
            else:
                con.execute(
                    "DELETE FROM main.pii_entity_frequency f USING touched t "
                    "WHERE f.entity_type = t.entity_type AND f.value_key = t.value_key"
                )
            scope = "" if full else "SEMI JOIN touched t USING (entity_type, value_key)"
            con.execute(
                f"""
                INSERT INTO main.pii_entity_frequency
                SELECT entity_type, value_key, sum(conversations)::BIGINT, count(*)::BIGINT
                FROM main.pii_entity_frequency_by_day b {scope}
                GROUP BY entity_type, value_key
                """
            )
            touched = con.execute("SELECT count(*) FROM touched").fetchone()[0]
            con.execute("DROP TABLE touched")
        return int(touched)

    def require_current(self, day: datetime, digest: str, rules: RedactionRules) -> None:
        """Fail unless the table holds ``day``'s detections, counted under these rules."""
        folds = self.folds()
        stale_rules = folds.filter(pl.col("rules_hash") != rules.rules_hash).height
        this_day = folds.filter(pl.col(PARTITION_COLUMN) == day)
        if stale_rules or folds.is_empty() or this_day["detection_digest"].to_list() != [digest]:
            raise FrequencyNotCurrent(
                f"pii_entity_frequency does not yet count the detections of {day.date()} under "
                f"the current redaction rules ({rules.rules_hash[:12]}): materialize "
                "pii_entity_frequency, then this partition."
            )

    def frequencies_of(self, keys: pl.DataFrame) -> pl.DataFrame:
        """Corpus counts of the given (entity_type, value_key) pairs; absent ones are left out."""
        return self._query(
            """
            SELECT f.entity_type, f.value_key, f.conversations
            FROM main.pii_entity_frequency f
            SEMI JOIN wanted w USING (entity_type, value_key)
            """,
            frames={"wanted": keys.select("entity_type", "value_key").unique()},
        )

    def table(self) -> pl.DataFrame:
        return self._query("SELECT * FROM main.pii_entity_frequency").cast(
            PII_ENTITY_FREQUENCY_SCHEMA  # type: ignore[arg-type]
        )
