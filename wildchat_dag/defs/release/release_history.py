"""A release cut as a version: what it removed since the previous version, and why.

Each export is stored as a version (release_versions.py) with its conversation index. Against
the previous version's index, every conversation that left is given one reason: the takedown
request that names it (the first, by id), else the exclusion its record now carries (toxic,
...), else none (its day was rebuilt without it). The changelog line is written from those.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from wildchat_dag.defs.release.release import ReleasePolicy
from wildchat_dag.defs.release.release_card import ReleaseFacts
from wildchat_dag.defs.release.release_versions import (
    NO_REASON,
    REMOVALS_SCHEMA,
    VersionDiff,
    changelog,
    changelog_entry,
    changelog_markdown,
    diff_versions,
    load_index,
    load_versions,
    next_version,
)
from wildchat_dag.defs.takedowns.ledger import TakedownRequest, ledger_frame, match_requests

# The release's conversations as the version index holds them.
INDEX_SQL = """
SELECT
    conversation_hash,
    conversation_id,
    CAST(partition_day AS DATE) AS partition_day,
    hashed_ip,
    list_transform(conversation, u -> u.turn_identifier) AS turn_identifiers
FROM main.release_records
WHERE in_{release}
"""

# The records a release leaves out, with why.
EXCLUDED_SQL = """
SELECT conversation_id, {release}_exclusion AS exclusion
FROM main.release_records
WHERE NOT in_{release}
"""


# Which models scored the released days' utterances, with how many each.
MODERATION_MODELS_SQL = """
WITH released AS (SELECT DISTINCT partition_day FROM main.release_records)
SELECT 'openai' AS scorer, concat_ws(' ', model, model_version) AS model, count(*) AS utterances
FROM main.openai_moderation
WHERE status = 'scored' AND partition_day IN (SELECT partition_day FROM released)
GROUP BY ALL
UNION ALL
SELECT 'detoxify', model, count(*)
FROM main.detoxify_moderation
WHERE status = 'scored' AND partition_day IN (SELECT partition_day FROM released)
GROUP BY ALL
ORDER BY 1, 2
"""


def moderation_models(frame: pl.DataFrame) -> dict[str, dict[str, int]]:
    """``MODERATION_MODELS_SQL`` rows as ``{scorer: {model: utterances}}``."""
    models: dict[str, dict[str, int]] = {}
    for scorer, model, utterances in frame.iter_rows():
        models.setdefault(scorer, {})[model or "unknown"] = int(utterances)
    return models


@dataclass(frozen=True)
class Cut:
    version: str
    previous: str | None
    diff: VersionDiff | None
    removals: pl.DataFrame
    requests: list[dict]
    changelog_entry: str
    changelog_section: str


def takedown_reason(request_id: str) -> str:
    return f"takedown {request_id}"


def removal_reasons(
    removed: pl.DataFrame, requests: list[TakedownRequest], excluded: pl.DataFrame
) -> pl.DataFrame:
    """One reason per removed conversation (``REMOVALS_SCHEMA``). ``removed``: the previous
    version's index rows that are gone; ``excluded``: conversation_id, exclusion of the records
    this release leaves out."""
    matched = (
        match_requests(
            ledger_frame(requests),
            removed.select(
                "conversation_id",
                "conversation_hash",
                "turn_identifiers",
                hashed_ips=pl.concat_list(pl.col("hashed_ip")).list.drop_nulls(),
            ),
        )
        .group_by("conversation_id")
        .agg(pl.col("request_id").min())
    )
    return (
        removed.select("conversation_id")
        .join(matched, on="conversation_id", how="left")
        .join(excluded, on="conversation_id", how="left")
        .select(
            "conversation_id",
            reason=pl.when(pl.col("request_id").is_not_null())
            .then(pl.lit("takedown ") + pl.col("request_id"))
            .when(pl.col("exclusion").is_not_null())
            .then(pl.lit("excluded: ") + pl.col("exclusion"))
            .otherwise(pl.lit(NO_REASON)),
        )
        .cast(dict(REMOVALS_SCHEMA))
        .sort("conversation_id")
    )


def plan_cut(
    history_root: Path,
    release: str,
    built_on: date,
    index: pl.DataFrame,
    requests: list[TakedownRequest],
    excluded: pl.DataFrame,
) -> Cut:
    """The next version of ``release``: its name, its diff from the previous version, the
    removals by reason, and the card's changelog with this version's line first."""
    versions = load_versions(history_root, release)
    version = next_version(history_root, release, built_on)
    if not versions:
        entry = changelog_entry(version, built_on, None, [], conversations=index.height)
        return Cut(
            version,
            None,
            None,
            pl.DataFrame(schema=REMOVALS_SCHEMA),
            [],
            entry,
            changelog_markdown([entry]),
        )
    previous = versions[-1]
    old = load_index(previous)
    removed = old.join(index.select("conversation_id"), on="conversation_id", how="anti")
    removals = removal_reasons(removed, requests, excluded)
    diff = diff_versions(old, index, removals)
    counts = removals["reason"].value_counts()
    removed_by = {reason: int(n) for reason, n in counts.iter_rows()}
    applied = [
        {
            "request_id": r.request_id,
            "requested_on": r.requested_on.isoformat(),
            "reason": r.reason,
            "note": r.note,
            "removed": removed_by.get(takedown_reason(r.request_id), 0),
        }
        for r in requests
    ]
    entry = changelog_entry(version, built_on, diff, applied)
    return Cut(
        version,
        previous.version,
        diff,
        removals,
        [a for a in applied if a["removed"]],
        entry,
        changelog_markdown([entry, *changelog(versions)]),
    )


def version_manifest(
    cut: Cut,
    facts: ReleaseFacts,
    policy: ReleasePolicy,
    threshold: float,
    language_model: str,
    ledger_version: str,
    scored_with: dict[str, dict[str, int]],
) -> dict:
    """What a version records beside its files: everything that decided what it holds."""
    counts: dict[str, int] = {f"excluded/{reason}": int(n) for reason, n in facts.excluded.items()}
    counts.update({f"scored_by/{k}": int(v) for k, v in facts.scored_by.items()})
    if cut.diff is not None:
        counts.update(added=cut.diff.added, removed=cut.diff.removed, changed=cut.diff.changed)
    return {
        "previous_version": cut.previous,
        "first_day": facts.first_day,
        "last_day": facts.last_day,
        "redaction_rules_hashes": facts.rules_hashes,
        "takedown_ledger_version": ledger_version,
        "geoip_snapshots": [d.isoformat() for d in facts.geoip_snapshots],
        "geoip_names": facts.geoip_names,
        "language_model": language_model,
        "moderation": {
            "toxicity_threshold": threshold,
            "scored_by": facts.scored_by,
            "models": scored_with,
        },
        "policy": policy.version,
        "counts": counts,
        "removed_by_reason": cut.diff.removed_by_reason if cut.diff else {},
        "takedown_requests_applied": cut.requests,
        "changelog_entry": cut.changelog_entry,
    }
