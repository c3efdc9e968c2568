"""Asset checks on the stored tables: schema, count conservation, privacy of the release,
quarantine rate. Shown on each asset's Checks tab in the UI.

Each check loads what it needs with SQL on the warehouse, hands it to the pure functions of
``table_rules.py`` beside it and reports. The checks that protect a release are blocking:
when one fails, Dagster does not materialize anything downstream of its asset in the same run
(the statistics and the two exports, for ``release_records``).

Checks on a partitioned asset that judge one day are partitioned like it, so the UI keeps a
result per day and ``context.partition_key`` is the run's day. A schema is the whole table's, so
those checks are not partitioned: they run with any partition of their asset and report on the
table.
"""

import warnings
from collections.abc import Iterator
from datetime import datetime
from functools import partial

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    MetadataValue,
    PartitionsDefinition,
    PreviewWarning,
    SourceAsset,
    asset_check,
    multi_asset_check,
)

from wildchat_dag import settings
from wildchat_dag.common.metadata import counts_table
from wildchat_dag.common.text_exit import text_exit
from wildchat_dag.core.markdown import markdown_table
from wildchat_dag.core.schema import partition_day_value
from wildchat_dag.core.sql import query
from wildchat_dag.defs.anonymization.pii_frequency import FrequencyStore
from wildchat_dag.defs.anonymization.redaction_rules import RedactionRules, load_rules
from wildchat_dag.defs.checks.instance_check import (
    INSTANCE_CHECK,
    INSTANCE_CHECK_DESCRIPTION,
    day_inputs,
    instance_result,
)
from wildchat_dag.defs.checks.raw_ip_check import RAW_IP_CHECK, raw_ip_check, raw_ip_check_spec
from wildchat_dag.defs.checks.table_rules import (
    CONVERSATION_SIZES_SQL,
    LINES_SQL,
    ORPHANED_OF_DAY_SQL,
    PLACEMENT_SQL,
    QUARANTINE_REASONS_SQL,
    RECORD_SIZES_SQL,
    REQUESTS_OF_DAY_SQL,
    STORED_COLUMNS_SQL,
    TABLES,
    TEXTS_SQL,
    UNRECORDED_SQL,
    WITHDRAWN_OF_DAY_SQL,
    compare_schema,
    conservation,
    pii_left_in_release,
    quarantine_rate,
    withdrawn_conversations,
)
from wildchat_dag.defs.takedowns.resource import TakedownLedger
from wildchat_dag.partitions import partition_date
from wildchat_dag.resources.warehouse import Warehouse

SCHEMA_CHECK = "schema_matches"
CONSERVATION_CHECK = "counts_conserved_from_raw_lines"
PII_CHECK = "no_rule_matching_pii"
QUARANTINE_CHECK = "quarantine_rate_below_threshold"

# The tables a release is built from: a wrong schema there must not reach an export.
RELEASE_PATH_TABLES = frozenset({"anonymized_conversations", "release_records"})

_BLOCKING = (
    " Blocking: when it fails, nothing downstream of this asset is materialized in the same run "
    "(after release_records: the statistics and both exports)."
)


def build_table_checks(
    assets: list, rules: RedactionRules | None = None
) -> list[AssetChecksDefinition]:
    """The checks on those of ``assets`` they apply to.

    ``rules``: the redaction rules the assets were built with (``build_assets``); by default the
    rules file of the settings, as ``build_assets`` reads it.
    """
    rules = rules or load_rules(settings.redaction_rules_path())
    partitions = _partitions_by_asset(assets)
    tables = [t for t in TABLES if t in partitions]
    # Each check step is a process that loads the code location: the schemas that block
    # nothing share one step, which runs once every table of the run is written.
    checks = [_schema_checks([t for t in tables if t not in RELEASE_PATH_TABLES])]
    checks += [_schema_check(t) for t in tables if t in RELEASE_PATH_TABLES]
    if "quarantined_log_lines" in partitions:
        checks.append(_quarantine_check(partitions["quarantined_log_lines"]))
    if "release_records" in partitions:
        checks.append(_release_checks(partitions["release_records"], rules))
    return checks


def _partitions_by_asset(assets: list) -> dict[str, PartitionsDefinition | None]:
    found: dict[str, PartitionsDefinition | None] = {}
    for item in assets:
        if isinstance(item, AssetsDefinition):
            found.update({key.to_user_string(): item.partitions_def for key in item.keys})
        elif isinstance(item, SourceAsset):
            found[item.key.to_user_string()] = item.partitions_def
    return found


def _partitioned(days: PartitionsDefinition | None, **kwargs):
    """``@asset_check`` partitioned by ``days``. Partitioned checks are a preview feature of
    Dagster 1.13; they are what keeps a result per day in the UI, so the warning is silenced."""

    def decorate(fn) -> AssetChecksDefinition:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PreviewWarning)
            return asset_check(partitions_def=days, **kwargs)(text_exit(fn))

    return decorate


def _day(context: AssetCheckExecutionContext) -> datetime:
    return partition_day_value(partition_date(context.partition_key))


# -- schema --------------------------------------------------------------------------------------


def _schema_description(table: str, blocking: bool) -> str:
    declared = TABLES[table]
    return (
        f"The stored DuckDB table main.{table} has exactly the columns and types declared "
        f"in {declared.declared_in}: none missing, none extra, no type changed (nested "
        "lists and structs included). Every step, check and export reads the table by "
        "those names and types; a hand-made ALTER TABLE or a table left by an older code "
        "version would otherwise break a later step far from the cause. On failure the "
        "metadata lists each difference. A missing column of a table the IO manager writes "
        "is added back (null in older days) when a day is materialized again; for the "
        f"others, DROP TABLE main.{table} and materialize its days again."
        + (_BLOCKING if blocking else "")
    )


def _stored_columns(warehouse: Warehouse, tables: list[str]) -> dict[str, pl.DataFrame]:
    """Each table's stored columns, read in one connection."""
    with warehouse.connect() as con:
        return {t: query(con, STORED_COLUMNS_SQL, {"table": t}) for t in tables}


def _schema_result(
    warehouse: Warehouse, table: str, stored: pl.DataFrame | None = None
) -> AssetCheckResult:
    declared = TABLES[table]
    if stored is None:
        stored = _stored_columns(warehouse, [table])[table]
    diff = compare_schema(stored, declared.schema)
    rows = [
        *((c, t, "", "missing") for c, t in diff.missing.items()),
        *((c, "", t, "extra") for c, t in diff.extra.items()),
        *((c, t["declared"], t["stored"], "type changed") for c, t in diff.changed.items()),
    ]
    return AssetCheckResult(
        asset_key=table,
        check_name=SCHEMA_CHECK,
        passed=diff.matches,
        severity=AssetCheckSeverity.ERROR,
        description=None if diff.table_exists else f"main.{table} does not exist",
        metadata={
            "table": f"main.{table}",
            "declared_in": declared.declared_in,
            "table_exists": diff.table_exists,
            "missing_columns": MetadataValue.json(diff.missing),
            "extra_columns": MetadataValue.json(diff.extra),
            "changed_types": MetadataValue.json(diff.changed),
            "differences": MetadataValue.md(
                markdown_table(("column", "declared", "stored", "problem"), rows)
            ),
        },
    )


def _schema_checks(tables: list[str]) -> AssetChecksDefinition:
    @multi_asset_check(
        name="stored_table_schemas",
        specs=[
            AssetCheckSpec(SCHEMA_CHECK, asset=t, description=_schema_description(t, False))
            for t in tables
        ],
        can_subset=True,
    )
    @text_exit
    def stored_table_schemas(
        context: AssetCheckExecutionContext, warehouse: Warehouse
    ) -> Iterator[AssetCheckResult]:
        tables = sorted(k.asset_key.to_user_string() for k in context.selected_asset_check_keys)
        stored = _stored_columns(warehouse, tables)
        for table in tables:
            yield _schema_result(warehouse, table, stored[table])

    return stored_table_schemas


def _schema_check(table: str) -> AssetChecksDefinition:
    @asset_check(
        asset=table,
        name=SCHEMA_CHECK,
        blocking=True,
        description=_schema_description(table, True),
    )
    @text_exit
    def schema_matches(warehouse: Warehouse) -> AssetCheckResult:
        return _schema_result(warehouse, table)

    return schema_matches


# -- conservation --------------------------------------------------------------------------------


def _lines_read(context: AssetCheckExecutionContext) -> int | None:
    """What ingest said it read for the day: its latest materialization's ``lines_read``."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(
            asset_key=AssetKey("raw_requests"), asset_partitions=[context.partition_key]
        ),
        limit=1,
    ).records
    value = records[0].asset_materialization.metadata.get("lines_read") if records else None
    return int(value.value) if value is not None else None


CONSERVATION_DESCRIPTION = (
    "For this day, nothing is lost between the log lines and the released utterances, "
    "and every difference is in a side table: log lines read = requests kept "
    "(raw_requests) + lines quarantined (quarantined_log_lines); every text a request "
    "refers to is stored (raw_message_texts); every request is "
    "placed exactly once, in a conversation or in orphaned_requests (an orphan, or a later "
    "copy of a turn id set aside as duplicate_turn_id), and no turn id is kept on two days; the "
    "same "
    "conversations are in linked_conversations, anonymized_conversations and "
    "release_records, but for those the takedown ledger names (matched again here, from the "
    "anonymized text), which have no record; each is in each release or has an exclusion "
    "reason; and each "
    "conversation keeps its utterances. The metadata's chain shows every stage's "
    "count, its side table and what is unaccounted for. On failure, the failing stage "
    "names the table where rows went missing or doubled: materialize that day again "
    "from that stage on (a request not placed: re-link the day that owns it)." + _BLOCKING
)


def _conservation_result(
    context: AssetCheckExecutionContext, warehouse: Warehouse, takedowns: TakedownLedger
) -> AssetCheckResult:
    day = {"day": _day(context)}
    ledger = takedowns.frame()
    # One transaction: every stage counted on the same state of the warehouse.
    with warehouse.connect() as con:
        sql = partial(query, con)
        side = sql(ORPHANED_OF_DAY_SQL, day).row(0, named=True)
        result = conservation(
            lines_read=_lines_read(context),
            files=sql(LINES_SQL, day),
            texts=sql(TEXTS_SQL, day).row(0, named=True),
            placement=sql(PLACEMENT_SQL, day).row(0, named=True),
            orphaned=int(side["orphaned"] or 0),
            set_aside=int(side["set_aside"] or 0),
            linked=sql(CONVERSATION_SIZES_SQL.format(table="linked_conversations"), day),
            anonymized=sql(CONVERSATION_SIZES_SQL.format(table="anonymized_conversations"), day),
            records=sql(RECORD_SIZES_SQL, day),
            withdrawn=withdrawn_conversations(
                sql(UNRECORDED_SQL, day) if not ledger.is_empty() else pl.DataFrame(), ledger
            ),
            withdrawn_marked=frozenset(sql(WITHDRAWN_OF_DAY_SQL, day)["conversation_id"]),
        )
    return AssetCheckResult(
        asset_key="release_records",
        check_name=CONSERVATION_CHECK,
        passed=result.conserved,
        severity=AssetCheckSeverity.ERROR,
        description="; ".join(result.failures) or None,
        metadata={
            "chain": MetadataValue.md(result.markdown()),
            "failing_stages": MetadataValue.json(result.failures),
            **{s.key: s.count for s in result.stages if s.count is not None},
        },
    )


# -- privacy of the release ----------------------------------------------------------------------


def _pii_description(rules: RedactionRules) -> str:
    return (
        "No value that the redaction rules redact is left in this day's released text "
        f"(rules {rules.rules_hash[:12]}, {rules.source}). Two ways: each PII detection "
        "of the day that the rules decide to redact (re-decided with the rules and the "
        "corpus frequencies, as anonymization decides) must not be in the released "
        "utterance more often than it was outside the redacted spans; and the released "
        "text is scanned again with Presidio's pattern recognizers for the redacted types "
        "they find (e-mail, phone, card, LinkedIn URL; names need the NER model and are "
        "covered by the first way), what they find judged by the rules. Raw client IPs "
        "are no_raw_ip_addresses' job. The metadata gives counts by entity type and "
        "sample conversation ids, never the values. On failure: look at those "
        "conversations; materialize anonymized_conversations and release_records for the "
        "day again (after a rules change, run scripts/redaction-refresh.sh)." + _BLOCKING
    )


def _pii_result(
    warehouse: Warehouse, rules: RedactionRules, inputs: dict[str, pl.DataFrame]
) -> AssetCheckResult:
    findings = pii_left_in_release(
        inputs["records"],
        inputs["linked"],
        inputs["candidates"],
        inputs["scanned"],
        rules,
        frequencies_of=FrequencyStore(warehouse.connect).frequencies_of,
    )
    found_by = dict(findings.leaks.group_by("found_by").len().sort("found_by").iter_rows())
    stats = {
        k: MetadataValue.json(v) if isinstance(v, list) else v for k, v in findings.stats.items()
    }
    return AssetCheckResult(
        asset_key="release_records",
        check_name=PII_CHECK,
        passed=findings.clean,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            **stats,
            "utterances_by_entity_type": counts_table(
                findings.by_entity_type(), key="entity type", value="utterances"
            ),
            "found_by": counts_table(found_by, key="found by", value="findings"),
            # Where to look, never the values themselves.
            "sample_conversation_ids": MetadataValue.json(findings.sample_conversation_ids()),
        },
    )


def _release_checks(
    days: PartitionsDefinition | None, rules: RedactionRules
) -> AssetChecksDefinition:
    """The checks that guard a day's release records, in one step after they are written."""
    why = "Run again when the day's release records are written, the table the exports read."
    descriptions = {
        CONSERVATION_CHECK: CONSERVATION_DESCRIPTION,
        PII_CHECK: _pii_description(rules),
        # The existing raw-IP rule (raw_ip_check.py), once more: its other runs come before
        # this table exists for the day.
        RAW_IP_CHECK: raw_ip_check_spec("release_records", why).description,
        # Here, not a step of its own: each step is a process that loads the code location.
        INSTANCE_CHECK: INSTANCE_CHECK_DESCRIPTION + _BLOCKING,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        specs = [
            AssetCheckSpec(
                name,
                asset="release_records",
                blocking=True,
                description=description,
                partitions_def=days,
            )
            for name, description in descriptions.items()
        ]

    @multi_asset_check(name="release_records_checks", specs=specs, can_subset=True)
    @text_exit
    def release_records_checks(
        context: AssetCheckExecutionContext, warehouse: Warehouse, takedowns: TakedownLedger
    ) -> Iterator[AssetCheckResult]:
        selected = {key.name for key in context.selected_asset_check_keys}
        # The PII and instance checks read the same tables of the day: once, for both.
        inputs = (
            day_inputs(warehouse, partition_date(context.partition_key))
            if selected & {PII_CHECK, INSTANCE_CHECK}
            else {}
        )
        if CONSERVATION_CHECK in selected:
            yield _conservation_result(context, warehouse, takedowns)
        if PII_CHECK in selected:
            yield _pii_result(warehouse, rules, inputs)
        if RAW_IP_CHECK in selected:
            yield raw_ip_check(warehouse, _day(context), "release_records")
        # Last: it reads back what this run has recorded so far, the results above included.
        if INSTANCE_CHECK in selected:
            yield instance_result(context, warehouse, rules, inputs)

    return release_records_checks


# -- quarantine rate -----------------------------------------------------------------------------


def _quarantine_check(days: PartitionsDefinition | None) -> AssetChecksDefinition:
    @_partitioned(
        days,
        asset="quarantined_log_lines",
        name=QUARANTINE_CHECK,
        description=(
            "The share of this day's log lines that could not be ingested (quarantined lines / "
            "lines read) is at most WILDCHAT_QUARANTINE_WARN_RATE (1% by default). A higher "
            "share usually means the logging service changed its format or wrote broken "
            "files, and the day's conversations are cut short. Warns too when the day had no "
            "log lines at all (an empty folder: no traffic, or the logs did not arrive). Not "
            "blocking: the kept requests are sound. On a warning, read the counts by reason "
            "and the quarantined_log_lines rows of the day (reason, detail, excerpt); fix the "
            "logs or the contract, then materialize the day again."
        ),
    )
    def quarantine_rate_below_threshold(
        context: AssetCheckExecutionContext, warehouse: Warehouse
    ) -> AssetCheckResult:
        day = {"day": _day(context)}
        with warehouse.connect() as con:
            requests = int(query(con, REQUESTS_OF_DAY_SQL, day)["requests"][0])
            reasons = query(con, QUARANTINE_REASONS_SQL, day)
        rate = quarantine_rate(requests, reasons, settings.quarantine_warn_rate())
        return AssetCheckResult(
            passed=rate.problem is None,
            severity=AssetCheckSeverity.WARN,
            description=rate.problem,
            metadata={
                "quarantine_rate": round(rate.rate, 6),
                "threshold": rate.threshold,
                "lines_read": rate.lines_read,
                "lines_quarantined": rate.quarantined,
                "by_reason": counts_table(rate.by_reason),
            },
        )

    return quarantine_rate_below_threshold
