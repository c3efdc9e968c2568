"""From linked conversations (raw layer) to anonymized conversations (no raw IP, no redactable PII).

- Content: the redaction rules applied to the stored detection results (``redaction.py``), plus
  any client IP address written into a message (``redact_client_ips``). A text whose detection
  did not finish is withheld.
- IPs: ``hashed_ip`` = sha256(salt + ip), on user turns and for the conversation; the raw IP
  column is not carried over.
- Headers: only user-agent and accept-language, on user turns.

Detection must have seen exactly the text being released: every utterance's sha256 is checked
against ``pii_scanned_utterances``, and a mismatch (linking re-ran after detection) fails the
partition rather than release unscanned text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

from wildchat_dag.core.ip_addresses import (
    IP_LITERAL_HINT,
    find_ip_literals,
    hash_ips,
    ip_literals_in,
)
from wildchat_dag.core.schema import (
    ANONYMIZED_CONVERSATIONS_SCHEMA,
    ANONYMIZED_UTTERANCE,
    PARTITION_COLUMN,
)
from wildchat_dag.core.utterances import linked_utterances
from wildchat_dag.defs.anonymization.redaction import (
    CLIENT_IP_ENTITY,
    SPAN_SCHEMA,
    Decision,
    apply_frequencies,
    conversation_counts,
    placeholder_entity,
    qualify_candidates,
    redact_contents,
)
from wildchat_dag.defs.anonymization.redaction_rules import RedactionRules
from wildchat_dag.defs.pii_detection.pii_detection import (
    DetectionResult,
    ScanStatus,
    detection_version,
)


class StaleDetection(RuntimeError):
    """The text to release is not the text detection scanned."""


def check_detection_covers(
    utterances: pl.DataFrame, scanned: pl.DataFrame, day: str, rules: RedactionRules
) -> None:
    """Detection ran on exactly these texts under these rules' gates, or fail saying why."""
    versions = set(scanned["detection_version"].unique().to_list())
    if versions - {detection_version(rules)}:
        raise StaleDetection(
            f"{day}: pii_candidates were detected under other redaction rules (a change of "
            "languages, patterns or cues changes where detection runs): materialize "
            f"pii_candidates for {day} again, then this asset."
        )
    compared = utterances.select("conversation_id", "utterance_index", "content_sha256").join(
        scanned.select("conversation_id", "utterance_index", scanned_sha256="content_sha256"),
        on=["conversation_id", "utterance_index"],
        how="left",
    )
    unscanned = compared.filter(pl.col("scanned_sha256").is_null())
    changed = compared.filter(pl.col("scanned_sha256") != pl.col("content_sha256"))
    if unscanned.height or changed.height:
        sample = pl.concat([unscanned, changed])["conversation_id"].unique().sort().head(5)
        raise StaleDetection(
            f"{day}: pii_candidates does not cover linked_conversations "
            f"({unscanned.height} utterance(s) never scanned, {changed.height} changed since; "
            f"conversations {sample.to_list()}). linked_conversations was re-materialized after "
            f"detection: materialize pii_candidates for {day} again, then this asset."
        )


def client_ip_spans(contents: pl.DataFrame, client_ips: set[str]) -> pl.DataFrame:
    """Spans where a text writes out one of ``client_ips`` (any notation of the address)."""
    rows = []
    if client_ips:
        hinted = contents.filter(pl.col("content").str.contains(IP_LITERAL_HINT))
        for sha, content in hinted.select("content_sha256", "content").iter_rows():
            for start, end, address in find_ip_literals(content, client_ips):
                if address in client_ips:
                    rows.append((sha, start, end, CLIENT_IP_ENTITY, 1.0))
    return pl.DataFrame(rows, schema=SPAN_SCHEMA, orient="row")


@dataclass
class RedactionResult:
    contents: pl.DataFrame  # REDACTED_CONTENT_SCHEMA, one row per distinct text
    decided: pl.DataFrame  # candidates with value_key, corpus_conversations and decision
    stats: dict[str, Any] = field(default_factory=dict)


def qualify_located(
    candidates: pl.DataFrame, scanned: pl.DataFrame, rules: RedactionRules
) -> pl.DataFrame:
    """Candidates with their text's language, qualified by the rules (frequencies not yet)."""
    located = candidates.join(
        scanned.select("content_sha256", "language_code").unique("content_sha256"),
        on="content_sha256",
        how="left",
    )
    return qualify_candidates(located, rules)


def decide_candidates(
    candidates: pl.DataFrame,
    scanned: pl.DataFrame,
    rules: RedactionRules,
    frequencies_of: Callable[[pl.DataFrame], pl.DataFrame],
) -> pl.DataFrame:
    """Every candidate with its ``decision``: the rules' conditions, then the frequency limit.

    ``frequencies_of(qualifying)``: conversation counts (``FREQUENCY_SCHEMA``) of the values of
    the candidates that qualify; the corpus table in the pipeline, a batch's own count in a
    benchmark or a rules diff.
    """
    qualified = qualify_located(candidates, scanned, rules)
    frequencies = frequencies_of(qualified.filter(pl.col("decision") == Decision.REDACT))
    return apply_frequencies(qualified, frequencies, rules)


def client_ips_written(
    contents: pl.Series,
    own_clients: set[str],
    rules: RedactionRules,
    client_ips_among: Callable[[pl.Series], set[str]],
) -> set[str]:
    """The client IPs of the raw logs that ``contents`` write out, when the rules redact them.

    An address written as a bare integer is only read as one when it is the integer of one of
    ``own_clients`` (the clients of these conversations): most 10-digit numbers are not
    addresses.
    """
    if not rules.redact_client_ips:
        return set()
    return client_ips_among(ip_literals_in(contents, own_clients)["ip"])


def redact(
    contents: pl.DataFrame,
    decided: pl.DataFrame,
    rules: RedactionRules,
    client_ips: set[str] = frozenset(),  # type: ignore[assignment]
) -> RedactionResult:
    """``contents``: content_sha256, content and scan_status, one row per distinct text."""
    spans = (
        decided.filter(pl.col("decision") == Decision.REDACT)
        .with_columns(entity_type=placeholder_entity(pl.col("entity_type"), pl.col("recognizer")))
        .select(SPAN_SCHEMA.names())
    )
    ip_spans = client_ip_spans(contents, client_ips if rules.redact_client_ips else set())
    redacted = redact_contents(
        contents.with_columns(withhold=pl.col("scan_status").is_in(ScanStatus.INCOMPLETE)),
        pl.concat([spans.cast(SPAN_SCHEMA), ip_spans]),  # type: ignore[arg-type]
        rules,
    )
    stats = {
        "texts": contents.height,
        "texts_redacted": int(redacted["redacted"].sum()),
        "texts_withheld": int(redacted["withheld"].sum()),
        "spans_redacted": int(redacted["spans_redacted"].sum()),
        "client_ip_literals_redacted": ip_spans.height,
    }
    return RedactionResult(redacted, decided, stats)


def redact_batch(
    found: DetectionResult, contents: pl.DataFrame, rules: RedactionRules
) -> RedactionResult:
    """Redact a self-contained batch: frequencies are counted over the batch itself.

    ``contents``: ``content_sha256`` and ``content``. For tests and benchmarks; the pipeline
    counts frequencies over every day (``pii_entity_frequency``).
    """
    owners = found.utterances.select("content_sha256", "conversation_id")
    decided = decide_candidates(
        found.candidates,
        found.scans,
        rules,
        lambda qualifying: conversation_counts(qualifying.join(owners, on="content_sha256")),
    )
    statuses = found.scans.select("content_sha256", "scan_status")
    batch = contents.unique("content_sha256").join(statuses, on="content_sha256", how="left")
    return redact(batch, decided, rules)


def anonymize_conversations(
    linked: pl.DataFrame,
    utterances: pl.DataFrame,
    redacted: pl.DataFrame,
    salt: str,
    rules_hash: str,
) -> pl.DataFrame:
    """Assemble ``anonymized_conversations`` rows from the raw layer and the redacted texts.

    ``utterances``: ``linked_utterances(linked)``; ``redacted``: one row per distinct text.
    """
    released = (
        utterances.join(
            redacted.select("content_sha256", "redacted_content", "redacted", "withheld"),
            on="content_sha256",
            how="left",
        )
        .with_columns(
            is_user=pl.col("role") == "user",
            hashed_ip=hash_ips(utterances["ip"], salt),
        )
        .with_columns(
            content=pl.col("redacted_content").fill_null(pl.col("content")),
            redacted=pl.col("redacted").fill_null(False),
            withheld=pl.col("withheld").fill_null(False),
            hashed_ip=pl.when("is_user").then("hashed_ip"),
            user_agent=pl.when("is_user").then("user_agent"),
            accept_language=pl.when("is_user").then("accept_language"),
        )
    )
    per_conversation = (
        released.sort("conversation_id", "utterance_index")
        .group_by("conversation_id", maintain_order=True)
        .agg(
            conversation=pl.struct(*ANONYMIZED_UTTERANCE.to_schema().keys()),
            redacted=pl.col("redacted").any(),
            withheld_utterances=pl.col("withheld").sum().cast(pl.Int64),
        )
    )
    conversations = linked.drop("conversation").with_columns(hashed_ip=hash_ips(linked["ip"], salt))
    result = conversations.join(per_conversation, on="conversation_id", how="left").with_columns(
        redaction_rules_hash=pl.lit(rules_hash),
        redacted=pl.col("redacted").fill_null(False),
        withheld_utterances=pl.col("withheld_utterances").fill_null(0),
    )
    return (
        result.select(ANONYMIZED_CONVERSATIONS_SCHEMA.names())
        .cast(ANONYMIZED_CONVERSATIONS_SCHEMA)  # type: ignore[arg-type]
        .sort(PARTITION_COLUMN, "first_turn_timestamp", "conversation_id")
    )


@dataclass
class AnonymizedDay:
    conversations: pl.DataFrame  # ANONYMIZED_CONVERSATIONS_SCHEMA
    decided: pl.DataFrame  # every candidate with its decision
    stats: dict[str, Any] = field(default_factory=dict)


def anonymize_day(
    day: date,
    linked: pl.DataFrame,
    candidates: pl.DataFrame,
    scanned: pl.DataFrame,
    rules: RedactionRules,
    salt: str,
    frequencies_of: Callable[[pl.DataFrame], pl.DataFrame],
    client_ips_among: Callable[[pl.Series], set[str]],
) -> AnonymizedDay:
    """One day's ``anonymized_conversations``.

    ``frequencies_of(keys)``: corpus counts of (entity_type, value_key) pairs;
    ``client_ips_among(addresses)``: which of these addresses are client IPs of the raw logs.
    """
    utterances = linked_utterances(linked)
    check_detection_covers(utterances, scanned, day.isoformat(), rules)
    decided = decide_candidates(candidates, scanned, rules, frequencies_of)
    contents = (
        utterances.select("content_sha256", "content")
        .unique("content_sha256")
        .join(
            scanned.select("content_sha256", "scan_status").unique("content_sha256"),
            on="content_sha256",
            how="left",
        )
    )
    own_clients = set(utterances["ip"].drop_nulls().to_list())
    client_ips = client_ips_written(contents["content"], own_clients, rules, client_ips_among)
    redaction = redact(contents, decided, rules, client_ips)
    conversations = anonymize_conversations(
        linked, utterances, redaction.contents, salt, rules.rules_hash
    )
    stats = {
        **redaction.stats,
        "conversations": conversations.height,
        "conversations_redacted": int(conversations["redacted"].sum()),
        "utterances": utterances.height,
        "utterances_withheld": int(conversations["withheld_utterances"].sum()),
    }
    return AnonymizedDay(conversations, decided, stats)
