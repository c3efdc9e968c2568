"""Ingest: one collection day of raw request logs into typed, hashed requests, and the texts
they refer to, each once (``message_texts``)."""

import time
from collections.abc import Iterator

from dagster import AssetExecutionContext, AssetOut, MetadataValue, Output, multi_asset

from wildchat_dag.common.metadata import STORAGE, counts_table, preview
from wildchat_dag.common.text_exit import log_warning, text_exit
from wildchat_dag.defs.ingest.log_contract import SCHEMA_VERSION
from wildchat_dag.defs.ingest.log_folders import LOG_FINGERPRINT, folder_fingerprint
from wildchat_dag.defs.ingest.message_texts import split_texts, text_share
from wildchat_dag.defs.ingest.parsing import ingest_day
from wildchat_dag.defs.ingest.resource import RequestLogStore
from wildchat_dag.partitions import collection_days, partition_date

# One step writes all three: a day's requests and the texts they refer to are never apart.
INGEST_ASSETS = ("raw_requests", "raw_message_texts", "quarantined_log_lines")


@multi_asset(
    outs={
        "raw_requests": AssetOut(
            description=(
                "Every valid request logged on this UTC day: timestamps, model, client IP "
                "(raw, never exported), user-agent and accept-language, the prev/current "
                "history hashes used for linking, and its message history and reply as "
                "references (`message_refs`: role and text sha256, in order; "
                "`response_sha256`) to the day's raw_message_texts. Raw layer: holds raw IPs."
            ),
            metadata=STORAGE,
            group_name="ingest",
        ),
        "raw_message_texts": AssetOut(
            description=(
                "Each distinct message or reply text that this day's requests refer to, once, "
                "keyed by its sha256. Every request resends its whole history, so the logs "
                "hold each earlier message once per later turn; this table holds it once. "
                "Raw layer: the texts as logged, before any redaction."
            ),
            metadata=STORAGE,
            group_name="ingest",
        ),
        "quarantined_log_lines": AssetOut(
            description=(
                "Log lines of this day that could not be ingested: file, line number, reason "
                "(invalid_json, missing_field, roles_not_alternating, invalid_utf8, "
                "line_too_large, nesting_too_deep, duplicate_key, ...), detail (never a raw "
                "value) and a truncated excerpt. Nothing is dropped silently: read = kept + "
                "quarantined, per file."
            ),
            metadata=STORAGE,
            group_name="ingest",
        ),
    },
    partitions_def=collection_days,
    code_version=f"ingest-v3-contract-v{SCHEMA_VERSION}",
)
@text_exit
def ingest_logs(context: AssetExecutionContext, log_store: RequestLogStore) -> Iterator[Output]:
    day = partition_date(context.partition_key)
    # Taken before reading: a file that changes meanwhile makes the sensor launch the day again.
    fingerprint = folder_fingerprint(log_store.folder(day))
    started = time.perf_counter()
    result = ingest_day(
        log_store.folder(day),
        day,
        max_line_bytes=log_store.max_line_bytes,
        max_depth=log_store.max_json_depth,
    )
    seconds = time.perf_counter() - started
    quarantined = result.quarantine.height
    # ingest_day checks this per file and raises; kept here as the step's own last word.
    if result.lines_read != result.requests.height + quarantined:
        raise RuntimeError(
            f"{day}: {result.lines_read:,} lines read but {result.requests.height:,} kept and "
            f"{quarantined:,} quarantined"
        )
    for entry in result.skipped_entries:
        # Entry names are file names, not request content.
        log_warning(context, f"{day}: skipped {entry.name} in the log folder ({entry.reason})")
    common = {
        "lines_read": result.lines_read,
        "requests_kept": result.requests.height,
        "lines_quarantined": quarantined,
        "seconds": round(seconds, 3),
    }
    stored, texts = split_texts(result.requests)
    shared = text_share(result.requests, texts)
    yield Output(
        stored,
        output_name="raw_requests",
        metadata={
            **common,
            "files": MetadataValue.json(result.files),
            # Every entry of the day folder, read or skipped and why: nothing is passed over
            # without a word.
            "folder_entries": MetadataValue.json([e.describe() for e in result.entries]),
            "entries_skipped": len(result.skipped_entries),
            # Per file: lines read = kept + quarantined, and its line endings (lf, crlf, cr).
            "file_counts": MetadataValue.json([c.describe() for c in result.file_counts]),
            "invalid_client_ips": result.invalid_ips,
            "log_folder": MetadataValue.path(str(log_store.folder(day))),
            LOG_FINGERPRINT: fingerprint,
            "lines_per_second": round(result.lines_read / seconds) if seconds else 0,
        },
    )
    yield Output(
        texts,
        output_name="raw_message_texts",
        metadata={
            **shared,
            # How many times over the logs hold what is stored: a conversation of n turns
            # sends its first message n times.
            "characters_logged_per_stored": round(
                shared["characters_logged"] / shared["characters_stored"], 2
            )
            if shared["characters_stored"]
            else 0.0,
        },
    )
    yield Output(
        result.quarantine,
        output_name="quarantined_log_lines",
        metadata={
            **common,
            "quarantine_rate": round(quarantined / result.lines_read, 6)
            if result.lines_read
            else 0.0,
            "by_reason": counts_table(result.quarantined_by_reason),
            **{f"reason/{k}": v for k, v in result.quarantined_by_reason.items()},
            # Where each line is and why: its excerpt stays in the table (raw layer).
            "preview": preview(
                result.quarantine.select("source_file", "line_number", "reason", "detail"),
                raw_layer=True,
            ),
        },
    )
