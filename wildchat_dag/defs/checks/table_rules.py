"""Checks over the stored tables, as pure functions of polars frames, and the SQL that loads them.

Four rules, each with one home here (the asset checks in ``table_checks.py`` beside it only
load, call and report):

- **schema**: a stored table has exactly its declared columns and types;
- **conservation**: one day's log lines reach the release, every difference in a side table
  (quarantine, orphans, release exclusions);
- **PII left in the release**: no value that the redaction rules redact is still in the released
  text;
- **quarantine rate**: the share of a day's log lines that could not be ingested.

No dagster here, and no PII value ever leaves these functions: findings are counts, entity types
and conversation ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import duckdb
import polars as pl

from wildchat_dag.core import schema
from wildchat_dag.core.markdown import markdown_table
from wildchat_dag.core.utterances import conversation_utterances, linked_utterances
from wildchat_dag.defs.anonymization.anonymization import qualify_located
from wildchat_dag.defs.anonymization.redaction import Decision, apply_frequencies
from wildchat_dag.defs.anonymization.redaction_rules import RedactionRules
from wildchat_dag.defs.pii_detection.pii_detection import DetectorSettings, PiiDetector
from wildchat_dag.defs.release import release_schema, release_statistics
from wildchat_dag.defs.release.release import conversation_hash
from wildchat_dag.defs.takedowns.ledger import MATCHABLE_SCHEMA, match_requests

# -- schema -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeclaredTable:
    schema: pl.Schema
    declared_in: str  # where a reader finds the declaration: module.CONSTANT


# Every asset stored as a DuckDB table, and the constant declaring its schema. The assets not
# stored as a table are in NOT_TABLES; a test holds the two to the asset graph, so that a new
# asset cannot go unplaced.
_DECLARATIONS = {
    "raw_requests": (schema, "RAW_REQUESTS_SCHEMA"),
    "raw_message_texts": (schema, "RAW_MESSAGE_TEXTS_SCHEMA"),
    "quarantined_log_lines": (schema, "QUARANTINE_SCHEMA"),
    "linked_conversations": (schema, "LINKED_CONVERSATIONS_SCHEMA"),
    "orphaned_requests": (schema, "ORPHANED_REQUESTS_SCHEMA"),
    "withdrawn_conversations": (schema, "WITHDRAWN_CONVERSATIONS_SCHEMA"),
    "pii_candidates": (schema, "PII_CANDIDATES_SCHEMA"),
    "pii_scanned_utterances": (schema, "PII_SCANNED_UTTERANCES_SCHEMA"),
    "pii_entity_frequency": (schema, "PII_ENTITY_FREQUENCY_SCHEMA"),
    "anonymized_conversations": (schema, "ANONYMIZED_CONVERSATIONS_SCHEMA"),
    "user_turn_locations": (schema, "USER_TURN_LOCATIONS_SCHEMA"),
    "conversation_locations": (schema, "CONVERSATION_LOCATIONS_SCHEMA"),
    "utterance_languages": (schema, "UTTERANCE_LANGUAGES_SCHEMA"),
    "conversation_languages": (schema, "CONVERSATION_LANGUAGES_SCHEMA"),
    "openai_moderation": (schema, "OPENAI_MODERATION_SCHEMA"),
    "detoxify_moderation": (schema, "DETOXIFY_MODERATION_SCHEMA"),
    "utterance_toxicity": (schema, "UTTERANCE_TOXICITY_SCHEMA"),
    "conversation_toxicity": (schema, "CONVERSATION_TOXICITY_SCHEMA"),
    "release_records": (release_schema, "RELEASE_RECORDS_SCHEMA"),
    "release_day_statistics": (release_statistics, "DAY_STATISTICS_SCHEMA"),
    "release_statistics": (release_statistics, "STATISTICS_SCHEMA"),
}
TABLES: dict[str, DeclaredTable] = {
    table: DeclaredTable(getattr(module, constant), f"{module.__name__}.{constant}")
    for table, (module, constant) in _DECLARATIONS.items()
}

# Assets that are not tables: the rules file and the ledger (observable sources), the two export
# folders and their search indexes.
NOT_TABLES = frozenset(
    {
        "redaction_rules",
        "takedown_ledger",
        "public_release",
        "full_release",
        # Folders of tantivy files, built from the released Parquet files.
        "public_search_index",
        "full_search_index",
    }
)

STORED_COLUMNS_SQL = """
SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = 'main' AND table_name = $table
ORDER BY ordinal_position
"""


def duckdb_columns(declared: pl.Schema) -> dict[str, str]:
    """(Cached per process: a warm worker checks the same declared schemas every day.)"""
    key = repr(list(declared.items()))
    if key not in _DUCKDB_COLUMNS:
        _DUCKDB_COLUMNS[key] = _duckdb_columns(declared)
    return dict(_DUCKDB_COLUMNS[key])


_DUCKDB_COLUMNS: dict[str, dict[str, str]] = {}


def _duckdb_columns(declared: pl.Schema) -> dict[str, str]:
    """The column types DuckDB gives a table created from frames of schema ``declared``.

    Made the way the IO manager makes a table (an Arrow frame, ``CREATE TABLE AS``), in an
    in-memory database, so nested lists and structs are spelled exactly as DuckDB stores them
    rather than by a hand-written polars-to-DuckDB mapping.
    """
    con = duckdb.connect()
    try:
        con.register("declared", pl.DataFrame(schema=declared).to_arrow())
        con.execute("CREATE TABLE declared_table AS SELECT * FROM declared LIMIT 0")
        rows = con.execute(STORED_COLUMNS_SQL, {"table": "declared_table"}).fetchall()
    finally:
        con.close()
    return dict(rows)


@dataclass(frozen=True)
class SchemaDiff:
    table_exists: bool
    missing: dict[str, str] = field(default_factory=dict)  # column -> declared type
    extra: dict[str, str] = field(default_factory=dict)  # column -> stored type
    changed: dict[str, dict[str, str]] = field(default_factory=dict)  # column -> both types

    @property
    def matches(self) -> bool:
        return self.table_exists and not (self.missing or self.extra or self.changed)


def compare_schema(stored: pl.DataFrame, declared: pl.Schema) -> SchemaDiff:
    """``stored``: ``STORED_COLUMNS_SQL`` rows (``column_name``, ``data_type``) of one table.

    Columns are compared by name: the IO manager inserts by name, so their order does not matter.
    """
    if stored.is_empty():
        return SchemaDiff(table_exists=False)
    have = dict(stored.select("column_name", "data_type").iter_rows())
    want = duckdb_columns(declared)
    return SchemaDiff(
        table_exists=True,
        missing={c: t for c, t in want.items() if c not in have},
        extra={c: t for c, t in have.items() if c not in want},
        changed={
            c: {"declared": t, "stored": have[c]}
            for c, t in want.items()
            if c in have and have[c] != t
        },
    )


# -- conservation: raw lines to released utterances ---------------------------------------------

# Per log file of the day: the lines kept as requests and quarantined, and the highest line
# number. Ingest numbers every line of a file from 1, so the highest number is the lines the file
# had (a lost trailing line aside), and a gap or a repeat is a line lost or counted twice.
LINES_SQL = """
WITH lines AS (
    SELECT source_file, line_number, true AS kept
    FROM main.raw_requests WHERE partition_day = $day
    UNION ALL
    SELECT source_file, line_number, false AS kept
    FROM main.quarantined_log_lines WHERE partition_day = $day
)
SELECT source_file,
       count(*) FILTER (WHERE kept) AS kept,
       count(*) FILTER (WHERE NOT kept) AS quarantined,
       count(DISTINCT line_number) AS distinct_lines,
       max(line_number) AS last_line
FROM lines GROUP BY source_file ORDER BY source_file
"""

# The reason linking gives a later copy of a turn id (defs/linking/linking.py, OrphanReason).
SET_ASIDE_REASON = "duplicate_turn_id"

# The distinct texts the day's requests refer to (history and reply), and those of them that
# the day's raw_message_texts does not hold.
TEXTS_SQL = """
WITH referred AS (
    SELECT r.ref.text_sha256 AS text_sha256
    FROM (SELECT unnest(message_refs) AS ref FROM main.raw_requests WHERE partition_day = $day) r
    UNION
    SELECT response_sha256 FROM main.raw_requests WHERE partition_day = $day
)
SELECT count(*) AS referred, count(*) FILTER (WHERE t.text_sha256 IS NULL) AS missing
FROM referred r LEFT JOIN (
    SELECT text_sha256 FROM main.raw_message_texts WHERE partition_day = $day
) t USING (text_sha256)
"""

# For the requests of one collection day: how many times each is placed, in a conversation's
# own turns or in orphaned_requests, over every partition. Exactly once is the invariant.
#
# A request is one stored line, (turn_id, source_file, line_number): a turn id can be on two
# days, the later copy set aside by linking (an orphaned_requests row of its own line, reason
# duplicate_turn_id). An orphan row is matched by its line; a turn id in a conversation's own
# turns stands for the one copy of it that is not set aside. Copies that are not set aside on two
# days (farther apart than linking's duplicate horizon, or a day not linked again since) are
# counted in ``duplicates_not_set_aside``, and each is placed twice.
PLACEMENT_SQL = f"""
WITH day_requests AS (
    SELECT turn_id, source_file, line_number FROM main.raw_requests WHERE partition_day = $day
),
as_orphans AS (
    SELECT turn_id, source_file, line_number, count(*) AS times,
           bool_or(reason = '{SET_ASIDE_REASON}') AS set_aside
    FROM main.orphaned_requests SEMI JOIN day_requests USING (turn_id)
    GROUP BY turn_id, source_file, line_number
),
in_conversations AS (
    SELECT turn_id, count(*) AS times FROM (
        SELECT unnest(own_turn_ids) AS turn_id FROM main.linked_conversations
    ) t SEMI JOIN day_requests USING (turn_id)
    GROUP BY turn_id
),
copies_kept_elsewhere AS (
    SELECT DISTINCT r.turn_id FROM main.raw_requests r
    SEMI JOIN day_requests USING (turn_id)
    ANTI JOIN (SELECT * FROM as_orphans WHERE set_aside) a
        USING (turn_id, source_file, line_number)
    WHERE r.partition_day <> $day
),
counts AS (
    SELECT d.turn_id,
           coalesce(o.set_aside, false) AS set_aside,
           coalesce(o.times, 0)
               + CASE WHEN coalesce(o.set_aside, false) THEN 0 ELSE coalesce(c.times, 0) END
               AS times,
           NOT coalesce(o.set_aside, false) AND k.turn_id IS NOT NULL AS kept_twice
    FROM day_requests d
    LEFT JOIN as_orphans o USING (turn_id, source_file, line_number)
    LEFT JOIN in_conversations c USING (turn_id)
    LEFT JOIN copies_kept_elsewhere k USING (turn_id)
)
SELECT
    count(*) AS requests,
    count(*) FILTER (WHERE times = 1) AS placed_once,
    count(*) FILTER (WHERE times = 0) AS not_placed,
    count(*) FILTER (WHERE times > 1) AS placed_twice_or_more,
    count(*) FILTER (WHERE set_aside AND times = 1) AS set_aside,
    count(*) FILTER (WHERE kept_twice) AS duplicates_not_set_aside,
    list(turn_id ORDER BY turn_id) FILTER (WHERE times <> 1 OR kept_twice)[1:10]
        AS sample_turn_ids
FROM counts
"""

# Where the day's requests are in orphaned_requests (any partition), by their line: the side
# table of the placement stage, split into orphans and set-aside later copies of a turn id.
ORPHANED_OF_DAY_SQL = f"""
SELECT count(*) FILTER (WHERE reason <> '{SET_ASIDE_REASON}') AS orphaned,
       count(*) FILTER (WHERE reason = '{SET_ASIDE_REASON}') AS set_aside
FROM main.orphaned_requests o
SEMI JOIN (
    SELECT turn_id, source_file, line_number FROM main.raw_requests WHERE partition_day = $day
) r USING (turn_id, source_file, line_number)
"""

CONVERSATION_SIZES_SQL = """
SELECT conversation_id, len(conversation) AS utterances
FROM main.{table} WHERE partition_day = $day
"""

RECORD_SIZES_SQL = """
SELECT conversation_id, len(conversation) AS utterances,
       in_public, public_exclusion, in_full, full_exclusion
FROM main.release_records WHERE partition_day = $day
"""


@dataclass(frozen=True)
class Stage:
    """One row of the chain: how many units reached ``table``, and where the rest went."""

    key: str  # a short name, for metadata
    stage: str
    table: str
    count: int | None
    side_table: str = ""
    side_count: int | None = None
    unaccounted: int = 0
    note: str = ""


@dataclass
class Conservation:
    stages: list[Stage]
    failures: list[str]

    @property
    def conserved(self) -> bool:
        return not self.failures

    def markdown(self) -> str:
        def n(value: int | None) -> str:
            return "n/a" if value is None else f"{value:,}"

        rows = [
            (
                s.stage,
                f"`{s.table}`",
                n(s.count),
                f"`{s.side_table}`" if s.side_table else "",
                n(s.side_count) if s.side_table else "",
                f"**{s.unaccounted:,}**" if s.unaccounted else "0",
                s.note,
            )
            for s in self.stages
        ]
        header = ("stage", "table", "count", "side table", "side count", "unaccounted", "note")
        return markdown_table(header, rows)


def _note(problems: Mapping[str, int]) -> str:
    return ", ".join(f"{n:,} {what}" for what, n in problems.items() if n)


def _ids_compared(table: str, got: pl.DataFrame, expected: pl.DataFrame) -> tuple[Stage, list[str]]:
    """Conversations of ``got`` (``table``) against ``expected``: missing, extra, repeated."""
    key, stage = f"conversations_in_{table}", f"conversations in {table}"
    ids = got["conversation_id"].to_list()
    have, wanted = set(ids), set(expected["conversation_id"].to_list())
    problems = {
        "missing": len(wanted - have),
        "not in linked_conversations": len(have - wanted),
        "repeated": len(ids) - len(have),
    }
    note = _note(problems)
    row = Stage(key, stage, table, len(ids), unaccounted=sum(problems.values()), note=note)
    return row, ([f"{stage}: {note}"] if note else [])


def _utterances_compared(
    table: str, got: pl.DataFrame, expected: pl.DataFrame
) -> tuple[Stage, list[str]]:
    """Utterances per conversation of ``got`` (``table``) against ``expected``, over the
    conversations both have (the conversation stages report the others)."""
    key, stage = f"utterances_in_{table}", f"utterances in {table}"
    joined = expected.join(got, on="conversation_id", how="inner", suffix="_got")
    differ = joined.filter(pl.col("utterances") != pl.col("utterances_got"))
    lost = int((differ["utterances"] - differ["utterances_got"]).abs().sum() or 0)
    note = _note({"conversation(s) with other utterances than linked_conversations": differ.height})
    row = Stage(key, stage, table, int(got["utterances"].sum() or 0), unaccounted=lost, note=note)
    return row, ([f"{stage}: {note}"] if note else [])


def _release_stage(records: pl.DataFrame, release: str) -> tuple[Stage, list[str]]:
    """Each conversation is in the release or has a reason it is not, never both or neither."""
    member, reason = pl.col(f"in_{release}").fill_null(False), pl.col(f"{release}_exclusion")
    problems = {
        "neither released nor with a reason": records.filter(~member & reason.is_null()).height,
        "released with a reason": records.filter(member & reason.is_not_null()).height,
    }
    note = _note(problems)
    row = Stage(
        f"conversations_in_{release}",
        f"conversations in the {release} release",
        f"release_records.in_{release}",
        records.filter(member).height,
        f"release_records.{release}_exclusion",
        records.filter(~member & reason.is_not_null()).height,
        sum(problems.values()),
        note,
    )
    return row, ([f"conversations in the {release} release: {note}"] if note else [])


def conservation(
    lines_read: int | None,
    files: pl.DataFrame,
    placement: Mapping[str, int],
    orphaned: int,
    linked: pl.DataFrame,
    anonymized: pl.DataFrame,
    records: pl.DataFrame,
    set_aside: int = 0,
    withdrawn: frozenset[int] = frozenset(),
    withdrawn_marked: frozenset[int] = frozenset(),
    texts: Mapping[str, int] | None = None,
) -> Conservation:
    """The chain of one day, from the log lines read to the released utterances.

    ``lines_read``: what ingest said it read (its materialization's metadata), None if unknown;
    ``files``: ``LINES_SQL`` rows; ``placement``: the ``PLACEMENT_SQL`` row; ``orphaned`` and
    ``set_aside``: ``ORPHANED_OF_DAY_SQL``; ``linked``/``anonymized``: ``CONVERSATION_SIZES_SQL``
    rows; ``records``: ``RECORD_SIZES_SQL`` rows; ``withdrawn_marked``: the day's
    ``withdrawn_conversations`` (left out by every step after linking); ``withdrawn``: the
    conversations without a record that the takedown ledger names (``withdrawn_conversations``
    below, matched again from the anonymized text); ``texts``: the ``TEXTS_SQL`` row.

    Requests kept = placed once, of which some in orphaned_requests as orphans and some set
    aside there as later copies of a turn id (``duplicate_turn_id``).
    """
    stages: list[Stage] = []
    failures: list[str] = []

    # Lines: each line read is one row of one of the two ingest tables, under its own
    # (file, line number). Without ingest's own count, the highest line number of each file
    # stands for it (a lost last line then goes unseen).
    kept, quarantined = int(files["kept"].sum() or 0), int(files["quarantined"].sum() or 0)
    numbered = int(files["last_line"].sum() or 0)
    distinct = int(files["distinct_lines"].sum() or 0)
    read = numbered if lines_read is None else lines_read
    stored_twice = kept + quarantined - distinct
    if lines_read is None:
        lines = {"line numbers in neither table": numbered - distinct}
    else:
        lines = {
            "lines read but in neither table": max(read - distinct, 0),
            "more lines stored than read": max(distinct - read, 0),
        }
    lines["lines stored twice"] = stored_twice
    note = _note(lines)
    stages += [
        Stage(
            "lines_read",
            "log lines read",
            "log files",
            read,
            note="by line numbers: ingest's lines_read not found" if lines_read is None else "",
        ),
        Stage(
            "requests_kept",
            "requests kept",
            "raw_requests",
            kept,
            "quarantined_log_lines",
            quarantined,
            sum(lines.values()),
            note,
        ),
    ]
    if note:
        failures.append(f"requests kept (raw_requests, quarantined_log_lines): {note}")
    if texts is not None:
        # Each text a request refers to is stored once (ingest's message_texts.py): one that is
        # not would be an utterance lost, or a failed re-link of every window holding the day.
        missing = int(texts["missing"] or 0)
        note = _note({"referred to but not stored": missing})
        stages.append(
            Stage(
                "texts_stored",
                "distinct texts the requests refer to, stored once",
                "raw_message_texts",
                int(texts["referred"] or 0) - missing,
                unaccounted=missing,
                note=note,
            )
        )
        if note:
            failures.append(f"texts (raw_message_texts): {note}")

    # Requests: PLACEMENT_SQL's verdict, the existing rule of linking's check.
    misplaced = {
        "not placed": int(placement["not_placed"] or 0),
        "placed twice or more": int(placement["placed_twice_or_more"] or 0),
    }
    note = _note(misplaced)
    stages.append(
        Stage(
            "requests_placed_once",
            "requests placed once (in a conversation's own turns, or orphaned)",
            "linked_conversations",
            int(placement["placed_once"] or 0),
            "orphaned_requests",
            orphaned,
            sum(misplaced.values()),
            note,
        )
    )
    if note:
        failures.append(f"requests placed once (linked_conversations, orphaned_requests): {note}")

    # Later copies of a turn id: each set aside once, never two copies both kept (those would
    # put one turn id in two conversations of the release).
    kept_twice = int(placement.get("duplicates_not_set_aside") or 0)
    note = _note(
        {"share their turn id with a request of another day, neither set aside": kept_twice}
    )
    stages.append(
        Stage(
            "requests_set_aside",
            "requests set aside as a later copy of a turn id (of those placed)",
            f"orphaned_requests ({SET_ASIDE_REASON})",
            set_aside,
            unaccounted=kept_twice,
            note=note,
        )
    )
    if note:
        failures.append(f"requests set aside (orphaned_requests): {note}")

    # Conversations of the day, then their utterances, through anonymization to the records.
    stages.append(
        Stage("conversations", "conversations of the day", "linked_conversations", linked.height)
    )
    # Withdrawn: marked by withdrawn_conversations, which every step after linking leaves
    # out; and, for release_records, matched again here from the anonymized text.
    marked = linked.filter(~pl.col("conversation_id").is_in(sorted(withdrawn_marked)))
    kept = marked.filter(~pl.col("conversation_id").is_in(sorted(withdrawn)))
    for table, frame, expected, side_table, side_count in (
        ("anonymized_conversations", anonymized, marked, "withdrawn_conversations",
         linked.height - marked.height),
        ("release_records", records, kept, "takedown ledger (withdrawn)",
         marked.height - kept.height),
    ):  # fmt: skip
        row, found = _ids_compared(table, frame, expected)
        stages.append(dataclasses.replace(row, side_table=side_table, side_count=side_count))
        failures += found
    for release in ("public", "full"):
        row, found = _release_stage(records, release)
        stages.append(row)
        failures += found
    utterances = int(linked["utterances"].sum() or 0)
    stages.append(Stage("utterances", "utterances of the day", "linked_conversations", utterances))
    for table, frame in (
        ("anonymized_conversations", anonymized),
        ("release_records", records),
    ):
        row, found = _utterances_compared(table, frame, linked)
        stages.append(row)
        failures += found
    return Conservation(stages, failures)


# -- PII left in the release ----------------------------------------------------------------------

CANDIDATES_SQL = "SELECT * FROM main.pii_candidates WHERE partition_day = $day"

SCANNED_SQL = """
SELECT conversation_id, utterance_index, content_sha256, language_code
FROM main.pii_scanned_utterances WHERE partition_day = $day
"""

LINKED_SQL = """
SELECT conversation_id, conversation FROM main.linked_conversations WHERE partition_day = $day
"""

RECORDS_SQL = """
SELECT conversation_id, in_public, in_full, redaction_rules_hash, conversation
FROM main.release_records WHERE partition_day = $day
"""

LEAK_SCHEMA = pl.Schema(
    {
        "conversation_id": pl.Int64,
        "utterance_index": pl.Int64,
        "entity_type": pl.String,
        # stored_candidate: a detection the rules redact is still in the text;
        # rescan: the released text, scanned again, holds a value the rules redact.
        "found_by": pl.String,
    }
)

# Frequencies of (entity_type, value_key) pairs: FrequencyStore.frequencies_of.
FrequenciesOf = Callable[[pl.DataFrame], pl.DataFrame]


def released_utterances(records: pl.DataFrame) -> pl.DataFrame:
    """``RECORDS_SQL`` rows as utterances: conversation_id, utterance_index, role, content, and
    whether each release takes the conversation. Numbered as every step numbers them."""
    return conversation_utterances(records).join(
        records.select("conversation_id", "in_public", "in_full"), on="conversation_id"
    )


def redaction_decisions(
    candidates: pl.DataFrame,
    scanned: pl.DataFrame,
    rules: RedactionRules,
    frequencies_of: FrequenciesOf,
) -> pl.DataFrame:
    """Every stored candidate with the decision anonymization makes: the same functions, in the
    same order (``anonymize_day``), so this check cannot disagree with the rules it checks."""
    qualified = qualify_located(candidates, scanned, rules)
    frequencies = frequencies_of(qualified.filter(pl.col("decision") == Decision.REDACT))
    return apply_frequencies(qualified, frequencies, rules)


def _occurrences(text: str, value: str) -> list[int]:
    """Where ``value`` starts in ``text``, left to right, not overlapping."""
    found, at = [], text.find(value)
    while at >= 0:
        found.append(at)
        at = text.find(value, at + len(value))
    return found


def values_left(
    decided: pl.DataFrame,
    originals: pl.DataFrame,
    scanned: pl.DataFrame,
    released: pl.DataFrame,
) -> pl.DataFrame:
    """Utterances whose released text still holds a value the rules redact (``LEAK_SCHEMA``).

    ``decided``: ``redaction_decisions``; ``originals``: content_sha256 and content of the texts
    detection scanned; ``scanned``: which text each utterance had; ``released``:
    ``released_utterances``.

    A value may legitimately stay: the same name written again without a cue is not redacted.
    So the released text may hold as many copies of a value as the original held outside every
    redacted span; one more is a copy that redaction removed and that is back.
    """
    spans = decided.filter(pl.col("decision") == Decision.REDACT)
    if spans.is_empty():
        return pl.DataFrame(schema=LEAK_SCHEMA)
    covered: dict[str, list[tuple[int, int]]] = {}
    values: dict[str, set[tuple[str, str]]] = {}
    for sha, start, end, entity, text in spans.select(
        "content_sha256", "start", "end", "entity_type", "text"
    ).iter_rows():
        covered.setdefault(sha, []).append((start, end))
        if text:
            values.setdefault(sha, set()).add((entity, text))
    original = dict(
        originals.filter(pl.col("content_sha256").is_in(list(values)))
        .unique("content_sha256")
        .select("content_sha256", "content")
        .iter_rows()
    )
    allowed: dict[tuple[str, str], int] = {}
    for sha, found in values.items():
        content = original.get(sha)
        for _, value in found:
            # Copies outside every redacted span stay. An original no longer stored cannot
            # vouch for any copy: none is allowed.
            allowed[(sha, value)] = (
                0
                if content is None
                else sum(
                    not any(at < end and start < at + len(value) for start, end in covered[sha])
                    for at in _occurrences(content, value)
                )
            )
    utterances = released.join(
        scanned.select("conversation_id", "utterance_index", "content_sha256"),
        on=["conversation_id", "utterance_index"],
    ).filter(pl.col("content_sha256").is_in(list(values)))
    rows = []
    for cid, index, sha, content in utterances.select(
        "conversation_id", "utterance_index", "content_sha256", "content"
    ).iter_rows():
        for entity, value in sorted(values[sha]):
            if len(_occurrences(content or "", value)) > allowed[(sha, value)]:
                rows.append((cid, index, entity, "stored_candidate"))
    return pl.DataFrame(rows, schema=LEAK_SCHEMA, orient="row").unique(maintain_order=True)


def rescan_rules(rules: RedactionRules) -> RedactionRules:
    """The rules whose entity types Presidio's pattern recognizers find (no NER model): a cheap
    scan, independent of the stored detections."""
    return dataclasses.replace(
        rules, rules=tuple(r for r in rules.rules if not r.uses_ner), detect_also=()
    )


def rescan_released(
    released: pl.DataFrame,
    rules: RedactionRules,
    frequencies_of: FrequenciesOf,
    detector: PiiDetector | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Scan the released text again with the rules' pattern-recognized entity types, and judge
    what is found by the rules (context, thresholds) as anonymization does. ``LEAK_SCHEMA`` rows
    and the scan's counts."""
    scan = rescan_rules(rules)
    if not scan.rules or released.is_empty():
        return pl.DataFrame(schema=LEAK_SCHEMA), {"texts_rescanned": 0}
    detector = detector or PiiDetector(scan, DetectorSettings(workers=1))
    found = detector.detect(
        released.select("conversation_id", "utterance_index", "role", "content")
    )
    decided = redaction_decisions(found.candidates, found.scans, rules, frequencies_of)
    leaks = (
        decided.filter(pl.col("decision") == Decision.REDACT)
        .select("content_sha256", "entity_type")
        .join(found.utterances, on="content_sha256")
        .select(
            "conversation_id",
            "utterance_index",
            "entity_type",
            found_by=pl.lit("rescan"),
        )
        .unique(maintain_order=True)
    )
    stats = {
        "texts_rescanned": int(found.stats["texts_analyzed"]),
        "rescan_candidates": found.candidates.height,
    }
    return leaks.cast(LEAK_SCHEMA), stats  # type: ignore[arg-type]


@dataclass
class PiiFindings:
    leaks: pl.DataFrame  # LEAK_SCHEMA, with in_public and in_full
    stats: dict[str, int | str | list[str]]

    @property
    def clean(self) -> bool:
        return self.leaks.is_empty()

    def by_entity_type(self) -> dict[str, int]:
        """Utterances holding a value of each type (counted once whoever found it)."""
        per_type = self.leaks.unique(["conversation_id", "utterance_index", "entity_type"])
        return dict(per_type.group_by("entity_type").len().sort("entity_type").iter_rows())

    def sample_conversation_ids(self, n: int = 10) -> list[int]:
        return self.leaks["conversation_id"].unique().sort().head(n).to_list()


def pii_left_in_release(
    records: pl.DataFrame,
    linked: pl.DataFrame,
    candidates: pl.DataFrame,
    scanned: pl.DataFrame,
    rules: RedactionRules,
    frequencies_of: FrequenciesOf,
    detector: PiiDetector | None = None,
) -> PiiFindings:
    """Both ways of finding a redactable value in one day's release records.

    ``records``: ``RECORDS_SQL``; ``linked``: ``LINKED_SQL`` (the texts detection scanned);
    ``candidates``: ``CANDIDATES_SQL``; ``scanned``: ``SCANNED_SQL``.
    """
    released = released_utterances(records)
    decided = redaction_decisions(candidates, scanned, rules, frequencies_of)
    originals = linked_utterances(linked).select("content_sha256", "content")
    stored = values_left(decided, originals, scanned, released)
    rescanned, scan_stats = rescan_released(released, rules, frequencies_of, detector)
    leaks = pl.concat([stored, rescanned]).join(
        released.select("conversation_id", "utterance_index", "in_public", "in_full"),
        on=["conversation_id", "utterance_index"],
        how="left",
    )
    redact = decided.filter(pl.col("decision") == Decision.REDACT)
    stats: dict[str, int | str | list[str]] = {
        "utterances_checked": released.height,
        "redacted_detections_checked": redact.height,
        **scan_stats,
        "entity_types_rescanned": [r.entity for r in rescan_rules(rules).rules],
        "utterances_with_values_left": leaks.unique(["conversation_id", "utterance_index"]).height,
        "in_public": int(leaks["in_public"].fill_null(False).sum()),
        "in_full": int(leaks["in_full"].fill_null(False).sum()),
        "rules_hash": rules.rules_hash,
        "records_rules_hashes": sorted(records["redaction_rules_hash"].drop_nulls().unique()),
    }
    return PiiFindings(leaks, stats)


# -- quarantine rate -----------------------------------------------------------------------------

QUARANTINE_REASONS_SQL = """
SELECT reason, count(*) AS lines FROM main.quarantined_log_lines
WHERE partition_day = $day GROUP BY reason ORDER BY reason
"""

REQUESTS_OF_DAY_SQL = """
SELECT count(*) AS requests FROM main.raw_requests WHERE partition_day = $day
"""


@dataclass(frozen=True)
class QuarantineRate:
    lines_read: int
    quarantined: int
    by_reason: dict[str, int]
    threshold: float

    @property
    def rate(self) -> float:
        return self.quarantined / self.lines_read if self.lines_read else 0.0

    @property
    def problem(self) -> str | None:
        """Why the day deserves a look, or None."""
        if not self.lines_read:
            return "no log lines at all for this day"
        if self.rate > self.threshold:
            return (
                f"{self.rate:.2%} of the day's lines were quarantined, above the "
                f"{self.threshold:.2%} threshold"
            )
        return None


def quarantine_rate(requests: int, reasons: pl.DataFrame, threshold: float) -> QuarantineRate:
    """``requests``: ``REQUESTS_OF_DAY_SQL``; ``reasons``: ``QUARANTINE_REASONS_SQL`` rows.
    Lines read are kept + quarantined: ingest fails a day where they are not."""
    by_reason = {str(r): int(n) for r, n in reasons.select("reason", "lines").iter_rows()}
    quarantined = sum(by_reason.values())
    return QuarantineRate(requests + quarantined, quarantined, by_reason, threshold)


WITHDRAWN_OF_DAY_SQL = """
SELECT DISTINCT conversation_id FROM main.withdrawn_conversations WHERE partition_day = $day
"""

# The conversations of a day that have no record, with what matching needs of each.
UNRECORDED_SQL = """
SELECT a.conversation_id, a.hashed_ip, a.conversation
FROM main.anonymized_conversations a
WHERE a.partition_day = $day
  AND a.conversation_id NOT IN (
    SELECT conversation_id FROM main.release_records WHERE partition_day = $day
  )
"""


def withdrawn_conversations(unrecorded: pl.DataFrame, ledger: pl.DataFrame) -> frozenset[int]:
    """Which of the day's conversations without a record (``UNRECORDED_SQL`` rows) the takedown
    ``ledger`` names: matched again here, from the anonymized text, as release_records matched
    them, so the check does not take the step's word for what it left out."""
    if unrecorded.is_empty() or ledger.is_empty():
        return frozenset()
    conversations = unrecorded["conversation"].to_list()
    matchable = pl.DataFrame(
        {
            "conversation_id": unrecorded["conversation_id"],
            "conversation_hash": [conversation_hash(c) for c in conversations],
            "turn_identifiers": [[u["turn_identifier"] for u in c] for c in conversations],
            "hashed_ips": [
                [h for h in [ip, *(u["hashed_ip"] for u in c)] if h is not None]
                for ip, c in zip(unrecorded["hashed_ip"].to_list(), conversations, strict=True)
            ],
        },
        schema=MATCHABLE_SCHEMA,
    )
    return frozenset(match_requests(ledger, matchable)["conversation_id"].to_list())
