"""Released conversations: WildChat-1M's records assembled from the earlier steps, and which
release takes each one.

- **Public** takes the conversations known to be non-toxic.
- **Full** takes every conversation except those with an utterance OpenAI flagged
  ``sexual/minors``, and those OpenAI did not screen (where that flag is unknown).

An unscored conversation (``toxic`` null) or an unscreened one is left out unless the policy says
otherwise (the demo does, and its card says so on top).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from wildchat_dag.core.utterances import (
    EnrichedDay,
    check_conserved,
    conversation_utterances,
    counts_of,
    day_table,
)
from wildchat_dag.defs.release.release_schema import (
    DETOXIFY_RESULT,
    OPENAI_RESULT,
    RELEASE_RECORDS_SCHEMA,
    RELEASE_UTTERANCE,
)
from wildchat_dag.defs.takedowns.ledger import match_requests

UTTERANCE_KEY = ["conversation_id", "utterance_index"]


@dataclass(frozen=True)
class ReleasePolicy:
    """What the releases take when a scorer did not run."""

    # Public: also conversations whose toxicity is unknown (no scorer scored some text).
    include_unscored: bool = False
    # Full: also conversations OpenAI did not screen for sexual/minors.
    include_unscreened: bool = False

    @property
    def version(self) -> str:
        return f"unscored-{int(self.include_unscored)}-unscreened-{int(self.include_unscreened)}"


def conversation_hash(messages: list[dict[str, Any]]) -> str:
    """WildChat's ``conversation_hash``: the first 32 hex digits of sha256 over
    ``json.dumps([{"content": c, "role": r}, ...])`` with json's default settings."""
    body = json.dumps([{"content": m["content"], "role": m["role"]} for m in messages])
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]


def release_records(
    day: date,
    anonymized: pl.DataFrame,
    turn_locations: pl.DataFrame,
    conversation_locations: pl.DataFrame,
    utterance_languages: pl.DataFrame,
    conversation_languages: pl.DataFrame,
    openai: pl.DataFrame,
    detoxify: pl.DataFrame,
    utterance_toxicity: pl.DataFrame,
    conversation_toxicity: pl.DataFrame,
    policy: ReleasePolicy,
    ledger: pl.DataFrame | None = None,
) -> EnrichedDay:
    """Every conversation of the day in the released shape (``RELEASE_RECORDS_SCHEMA``), less
    those the takedown ``ledger`` names (``ledger.LEDGER_SCHEMA``): they are in no record, so
    in no release, and the stats count them (``withdrawn``, by request)."""
    joined = (
        conversation_utterances(anonymized)
        .join(
            turn_locations.select(*UTTERANCE_KEY, "country", "state"), on=UTTERANCE_KEY, how="left"
        )
        .join(
            utterance_languages.select(*UTTERANCE_KEY, "language", languages_role="role"),
            on=UTTERANCE_KEY,
            how="left",
        )
        .join(
            utterance_toxicity.select(*UTTERANCE_KEY, "toxic", flags_role="role"),
            on=UTTERANCE_KEY,
            how="left",
        )
        .join(
            openai.select(
                *UTTERANCE_KEY, "categories", "category_scores", "flagged", openai_role="role"
            ),
            on=UTTERANCE_KEY,
            how="left",
        )
        .join(
            detoxify.select(*UTTERANCE_KEY, *DETOXIFY_RESULT.to_schema(), detoxify_role="role"),
            on=UTTERANCE_KEY,
            how="left",
        )
    )
    # Every step must have seen the same utterances: a step materialized from an older
    # linked_conversations would shift them.
    stale = {
        name: joined.filter(pl.col(column).is_null() | (pl.col(column) != pl.col("role"))).height
        for name, column in (
            ("openai_moderation", "openai_role"),
            ("detoxify_moderation", "detoxify_role"),
            ("utterance_toxicity", "flags_role"),
            ("utterance_languages", "languages_role"),
        )
    }
    stale["user_turn_locations"] = (
        joined.filter(pl.col("role") == "user")
        .join(turn_locations, on=UTTERANCE_KEY, how="anti")
        .height
    )
    for name, table in (
        ("conversation_locations", conversation_locations),
        ("conversation_languages", conversation_languages),
        ("conversation_toxicity", conversation_toxicity),
    ):
        stale[name] = anonymized.join(table, on="conversation_id", how="anti").height
    if any(stale.values()):
        raise RuntimeError(
            f"{day}: the per-utterance tables do not match anonymized_conversations "
            f"({', '.join(f'{k}: {v} missing' for k, v in stale.items() if v)}); "
            "re-materialize the day's enrichment and moderation steps"
        )
    is_user = pl.col("role") == "user"
    released = joined.sort(*UTTERANCE_KEY).with_columns(
        utterance=pl.struct(
            "content",
            country=pl.when(is_user).then("country"),
            hashed_ip=pl.when(is_user).then("hashed_ip"),
            header=pl.when(is_user).then(
                pl.struct(
                    **{
                        "accept-language": pl.col("accept_language"),
                        "user-agent": pl.col("user_agent"),
                    }
                )
            ),
            language="language",
            redacted="redacted",
            role="role",
            state=pl.when(is_user).then("state"),
            # The reply's arrival time; a user turn has none, as in WildChat.
            timestamp=pl.when(~is_user).then("timestamp"),
            toxic="toxic",
            turn_identifier="turn_identifier",
        ).cast(RELEASE_UTTERANCE),
        openai_result=pl.struct("categories", "category_scores", "flagged").cast(OPENAI_RESULT),
        detoxify_result=pl.struct(*DETOXIFY_RESULT.to_schema()).cast(DETOXIFY_RESULT),
        sexual_minors=pl.col("categories").struct.field("sexual/minors").fill_null(False),
    )
    per_conversation = released.group_by("conversation_id", maintain_order=True).agg(
        conversation=pl.col("utterance"),
        openai_moderation=pl.col("openai_result"),
        detoxify_moderation=pl.col("detoxify_result"),
        sexual_minors=pl.col("sexual_minors").any(),
        messages=pl.struct("content", "role"),
        turn_identifiers=pl.col("turn_identifier"),
        utterance_ips=pl.col("hashed_ip").drop_nulls(),
    )
    hashes = [conversation_hash(m) for m in per_conversation["messages"].to_list()]
    per_conversation = per_conversation.drop("messages").with_columns(
        conversation_hash=pl.Series(hashes, dtype=pl.String)
    )
    snapshots = (
        turn_locations.filter(pl.col("geoip_snapshot").is_not_null())
        .group_by("conversation_id")
        .agg(geoip_snapshots=pl.col("geoip_snapshot").unique().sort())
    )
    conversations = (
        anonymized.select(
            "conversation_id",
            "model",
            "timestamp",
            "turn",
            "redacted",
            "hashed_ip",
            "redaction_rules_hash",
            header=pl.struct(
                **{"accept-language": pl.col("accept_language"), "user-agent": pl.col("user_agent")}
            ),
        )
        .join(per_conversation, on="conversation_id", how="left")
        .join(
            conversation_locations.select("conversation_id", "country", "state"),
            on="conversation_id",
            how="left",
        )
        .join(
            conversation_languages.select("conversation_id", "language"),
            on="conversation_id",
            how="left",
        )
        .join(
            conversation_toxicity.select("conversation_id", "toxic", "scored_by"),
            on="conversation_id",
            how="left",
        )
        .join(snapshots, on="conversation_id", how="left")
    )
    withdrawn = match_requests(
        ledger if ledger is not None else pl.DataFrame(),
        conversations.select(
            "conversation_id",
            "conversation_hash",
            "turn_identifiers",
            hashed_ips=pl.concat_list(
                pl.col("utterance_ips"), pl.col("hashed_ip").cast(pl.String)
            ).list.drop_nulls(),
        ),
    )
    conversations = conversations.filter(
        ~pl.col("conversation_id").is_in(withdrawn["conversation_id"].implode())
    )
    withdrawn_conversations = withdrawn["conversation_id"].n_unique()
    screened = pl.col("scored_by").list.contains("openai")
    conversations = (
        conversations.with_columns(
            full_exclusion=pl.when(pl.col("sexual_minors"))
            .then(pl.lit("sexual_minors"))
            .when(~screened & pl.lit(not policy.include_unscreened))
            .then(pl.lit("not_screened"))
        )
        .with_columns(
            public_exclusion=pl.when(pl.col("full_exclusion").is_not_null())
            .then("full_exclusion")
            .when(pl.col("toxic").fill_null(False))
            .then(pl.lit("toxic"))
            .when(pl.col("toxic").is_null() & pl.lit(not policy.include_unscored))
            .then(pl.lit("toxicity_unknown")),
            geoip_snapshots=pl.col("geoip_snapshots").fill_null([]),
        )
        .with_columns(
            in_public=pl.col("public_exclusion").is_null(),
            in_full=pl.col("full_exclusion").is_null(),
        )
    )
    records = day_table(conversations, day, RELEASE_RECORDS_SCHEMA, "conversation_id")
    check_conserved(
        day,
        "conversations released, excluded or withdrawn",
        anonymized.height,
        records.height + withdrawn_conversations,
    )
    stats = {
        "conversations": records.height,
        "withdrawn": withdrawn_conversations,
        "withdrawn_by_request": counts_of(withdrawn["request_id"]),
        "in_public": int(records["in_public"].sum()),
        "in_full": int(records["in_full"].sum()),
        "public_exclusions": counts_of(records["public_exclusion"]),
        "full_exclusions": counts_of(records["full_exclusion"]),
        "policy": policy.version,
    }
    return EnrichedDay(records, pl.DataFrame(), stats)
