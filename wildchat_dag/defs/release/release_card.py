"""The dataset card (README.md) of a release: Hugging Face's YAML header and prose a reader can
check the release against."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import polars as pl
import yaml

from wildchat_dag.core.markdown import markdown_table, share_markdown
from wildchat_dag.defs.release.release import ReleasePolicy
from wildchat_dag.defs.release.release_export import WrittenRelease
from wildchat_dag.defs.release.release_schema import card_features
from wildchat_dag.defs.release.release_statistics import TOKEN_PATTERN, section

Query = Callable[..., pl.DataFrame]

DESCRIPTIONS = {
    "public": "non-toxic conversations only (neither OpenAI Moderation nor Detoxify flagged any "
    "utterance)",
    "full": "every conversation, toxic ones included, except those with an utterance OpenAI "
    "Moderation flagged sexual/minors",
}
# What a conversation's ``toxic`` says, as ``ReleaseFacts.toxicity`` counts it.
TOXIC, NON_TOXIC, UNSCORED = "toxic", "non-toxic", "unscored"
SCORERS = {"detoxify": "Detoxify", "openai": "OpenAI"}
SIDES = ("user", "chatbot")
# Table 1's counts; its other values are means and standard deviations.
TABLE_1_COUNTS = ("conversations", "users", "days", "languages")
# For a day located before wildchat-dag recorded which snapshot named its values.
NAMES_NOT_RECORDED = "not recorded (the day was located before this was recorded)"


@dataclass
class ReleaseFacts:
    """What the card says about where the release came from, read from the records."""

    first_day: date | None = None
    last_day: date | None = None
    excluded: dict[str, int] = field(default_factory=dict)
    scored_by: dict[str, int] = field(default_factory=dict)
    rules_hashes: list[str] = field(default_factory=list)
    geoip_snapshots: list[date] = field(default_factory=list)
    # Conversations by TOXIC, NON_TOXIC, UNSCORED.
    toxicity: dict[str, int] = field(default_factory=dict)
    # Non-empty turns each scorer scored, by "<user|chatbot>/<openai|detoxify>".
    scored_turns: dict[str, int] = field(default_factory=dict)
    # Which GeoIP snapshot named country and state (``GeoSnapshots.names_description``), with
    # the number of the release's days it named; read from the Dagster instance, not the
    # records.
    geoip_names: dict[str, int] = field(default_factory=dict)


def release_facts(query: Query, release: str) -> ReleaseFacts:
    member = f"in_{release}"
    days = query(
        f"SELECT min(partition_day)::DATE AS a, max(partition_day)::DATE AS b "
        f"FROM main.release_records WHERE {member}"
    ).row(0)
    excluded = query(
        f"SELECT {release}_exclusion, count(*) FROM main.release_records "
        f"WHERE NOT {member} GROUP BY 1 ORDER BY 1"
    )
    scored_by = query(
        "SELECT coalesce(nullif(array_to_string(scored_by, ' and '), ''), 'none'), count(*) "
        f"FROM main.release_records WHERE {member} GROUP BY 1 ORDER BY 1"
    )
    rules = query(
        f"SELECT DISTINCT redaction_rules_hash FROM main.release_records WHERE {member} ORDER BY 1"
    )
    snapshots = query(
        "SELECT DISTINCT unnest(geoip_snapshots) AS d FROM main.release_records "
        f"WHERE {member} ORDER BY 1"
    )
    toxicity = query(
        f"SELECT CASE WHEN toxic THEN '{TOXIC}' WHEN NOT toxic THEN '{NON_TOXIC}' "
        f"ELSE '{UNSCORED}' END, count(*) FROM main.release_records WHERE {member} "
        "GROUP BY 1 ORDER BY 1"
    )
    # Only a scored text has a result (an empty one has none): no text needs to be read.
    scored = query(
        "SELECT CASE r WHEN 'user' THEN 'user' ELSE 'chatbot' END AS side, "
        "count(*) FILTER (WHERE o.flagged IS NOT NULL) AS openai, "
        "count(*) FILTER (WHERE d.toxicity IS NOT NULL) AS detoxify "
        "FROM (SELECT unnest(list_transform(conversation, lambda u: u.role)) AS r, "
        "unnest(openai_moderation) AS o, unnest(detoxify_moderation) AS d "
        f"FROM main.release_records WHERE {member}) GROUP BY 1"
    )
    return ReleaseFacts(
        first_day=days[0],
        last_day=days[1],
        excluded=dict(excluded.iter_rows()),
        scored_by=dict(scored_by.iter_rows()),
        rules_hashes=[r for (r,) in rules.iter_rows() if r],
        geoip_snapshots=[d for (d,) in snapshots.iter_rows()],
        toxicity=dict(toxicity.iter_rows()),
        scored_turns={
            f"{side}/{scorer}": int(n)
            for row in scored.iter_rows(named=True)
            for side in (row["side"],)
            for scorer, n in row.items()
            if scorer != "side"
        },
    )


def table_1_values(summary: Mapping[str, float | None]) -> dict[str, str]:
    """Table 1's values as text: counts as integers with thousands separators, means and
    standard deviations with two decimals, n/a where there is none."""

    def text(key: str, value: float | None) -> str:
        if value is None:
            return "n/a"
        return f"{round(value):,}" if key in TABLE_1_COUNTS else f"{value:,.2f}"

    return {key: text(key, value) for key, value in summary.items()}


def release_description(release: str, facts: ReleaseFacts) -> str:
    """What the release holds, true of what was scored: a public release is only non-toxic as
    far as its conversations were scored."""
    if release == "full":
        unscreened = sum(n for k, n in facts.scored_by.items() if "openai" not in k.split())
        if not unscreened:
            return DESCRIPTIONS["full"]
        return (
            f"{DESCRIPTIONS['full']}; {unscreened:,} of them were not screened by OpenAI "
            "Moderation, so an utterance flagged sexual/minors cannot be ruled out there"
        )
    unscored = facts.toxicity.get(UNSCORED, 0)
    total = sum(facts.toxicity.values())
    if not unscored:
        return DESCRIPTIONS["public"]
    if unscored == total:
        return (
            "conversations whose toxicity was not scored: neither OpenAI Moderation nor "
            "Detoxify scored them, so no toxic filter was applied and toxic conversations may "
            "be among them"
        )
    return (
        f"{total - unscored:,} conversations scored non-toxic (neither OpenAI Moderation nor "
        f"Detoxify flagged any utterance) and {unscored:,} whose toxicity was not scored, to "
        "which no toxic filter was applied"
    )


def _toxicity_cell(
    toxicity: Mapping[str, float], scored: Mapping[str, int], side: str, flag: str
) -> str:
    """A share of flagged turns, or n/a where no turn was scored by the scorers it needs (a
    turn nobody scored counts as not flagged, and 0% would claim it was clean)."""
    turns = toxicity.get(f"{side}/turns") or 0
    by = {name: scored.get(f"{side}/{name}", 0) > 0 for name in SCORERS}
    needed = {"detoxify": by["detoxify"], "openai": by["openai"]}
    needed["either"] = by["detoxify"] or by["openai"]
    needed["both"] = by["detoxify"] and by["openai"]
    if not turns or not needed[flag]:
        return "n/a"
    return f"{toxicity.get(f'{side}/{flag}', 0.0):.2%}"


def _coverage_note(toxicity: Mapping[str, float], scored: Mapping[str, int]) -> str:
    """Which scorers did not score every non-empty turn, said under the toxicity table."""
    partial = []
    for side in SIDES:
        turns = int(toxicity.get(f"{side}/turns") or 0)
        for name, label in SCORERS.items():
            n = scored.get(f"{side}/{name}", 0)
            if turns and n < turns:
                partial.append(f"{label} scored {n:,} of {turns:,} non-empty {side} turns")
    if not partial:
        return ""
    return (
        "Not every turn was scored: "
        + "; ".join(partial)
        + ". n/a: that scorer scored no turn; a share counts a turn its scorer did not score "
        "as not flagged.\n\n"
    )


def _geoip_names(facts: ReleaseFacts) -> str:
    if not facts.geoip_names:
        return "none"
    if len(facts.geoip_names) == 1:
        return next(iter(facts.geoip_names))
    return "; ".join(f"{name} ({days:,} days)" for name, days in facts.geoip_names.items())


def size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")]
    bounds += [(1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]
    for bound, label in bounds:
        if n < bound:
            return label
    return "10M<n<100M"


def card_header(release: str, written: WrittenRelease) -> dict:
    return {
        "license": "odc-by",
        "size_categories": [size_category(written.rows)],
        "task_categories": ["text-generation", "question-answering", "text2text-generation"],
        "pretty_name": f"wildchat-dag {release} release",
        "dataset_info": {
            "features": card_features(),
            "splits": [
                {"name": "train", "num_bytes": written.num_bytes, "num_examples": written.rows}
            ],
            "download_size": written.download_size,
            "dataset_size": written.num_bytes,
        },
        "configs": [
            {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}
        ],
        "tags": ["instruction-finetuning"],
    }


def _shares(statistics: pl.DataFrame, release: str, name: str, unit: str, top: int = 15) -> str:
    counts = {k: int(v) for k, v in section(statistics, release, name).items()}
    return share_markdown(counts, name, unit, top) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> str:
    return markdown_table(header, rows) + "\n"


def _number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def dataset_card(
    release: str,
    written: WrittenRelease,
    statistics: pl.DataFrame,
    facts: ReleaseFacts,
    policy: ReleasePolicy,
    threshold: float,
    language_model: str,
    built_at: datetime,
    version: str | None = None,
    changelog: str = "",
) -> str:
    """``language_model``: the model as the card names it (the language resource's
    ``model_description``: name and version or content hash, no path). ``version``: the
    release version this card belongs to; ``changelog``: its "## Changelog" section."""
    summary = section(statistics, release, "summary")
    table_1 = table_1_values(summary)
    toxicity = section(statistics, release, "toxicity")
    header = yaml.safe_dump(card_header(release, written), sort_keys=False, allow_unicode=True)
    lines = [f"---\n{header}---", f"# wildchat-dag: the {release} release", ""]
    warnings = []
    if facts.scored_by.get("none") or "openai and detoxify" not in facts.scored_by:
        warnings.append(
            "**Not every conversation here was scored by both moderation scorers** (see "
            "*Moderation*). Toxic content may remain."
        )
    if policy.include_unscored or policy.include_unscreened:
        warnings.append(
            "**Built with a policy that keeps unscored conversations** "
            f"(`{policy.version}`), as the demo does. Do not publish it."
        )
    if len(facts.rules_hashes) > 1:
        warnings.append(
            "**The days were redacted under different rules** (hashes below): re-materialize "
            "the stale days before publishing."
        )
    lines += [f"> {w}\n" for w in warnings]
    days = (
        f"{facts.first_day} to {facts.last_day} (UTC collection days)"
        if facts.first_day
        else "no days"
    )
    lines += [
        f"{written.rows:,} conversations between users and chatbots, collected {days}, "
        f"de-identified, enriched and moderated by wildchat-dag. This release holds "
        f"{release_description(release, facts)}. Built {built_at:%Y-%m-%d %H:%M} UTC, in "
        f"{len(written.shards)} Parquet file(s) under `data/`, in WildChat-1M's schema."
        + (
            f" Version {version}: its manifest (rules, takedown ledger, models, counts, file "
            "hashes) is kept with the release's history."
            if version
            else ""
        ),
        "",
        "## Statistics",
        "",
        "As the WildChat paper's Table 1, on this release. Tokens: runs of letters and digits, "
        f"and every other non-space character (the pattern `{TOKEN_PATTERN}`), not a model's "
        "tokenizer; text without spaces (Chinese, Japanese) counts low.",
        "",
        _table(
            [
                "conversations",
                "users",
                "days",
                "mean turns",
                "user tokens",
                "chatbot tokens",
                "languages",
            ],
            [
                [
                    table_1.get("conversations", "0"),
                    table_1.get("users", "0"),
                    table_1.get("days", "0"),
                    table_1.get("mean_turns", "n/a"),
                    f"{_number(summary.get('user_tokens_mean'))} ± "
                    f"{_number(summary.get('user_tokens_std'))}",
                    f"{_number(summary.get('chatbot_tokens_mean'))} ± "
                    f"{_number(summary.get('chatbot_tokens_std'))}",
                    table_1.get("languages", "0"),
                ]
            ],
        ),
        "Users are distinct `hashed_ip` values of user turns.",
        "",
        "### Languages (share of user turns)",
        "",
        _shares(statistics, release, "language", "user turns"),
        "### Countries (share of conversations)",
        "",
        _shares(statistics, release, "country", "conversations"),
        "### Models (share of conversations)",
        "",
        _shares(statistics, release, "model", "conversations"),
        "### Toxicity (share of non-empty turns flagged)",
        "",
        _table(
            ["turns", "Detoxify", "OpenAI", "either", "both"],
            [
                [side]
                + [
                    _toxicity_cell(toxicity, facts.scored_turns, side, flag)
                    for flag in ("detoxify", "openai", "either", "both")
                ]
                for side in SIDES
            ],
        ),
        _coverage_note(toxicity, facts.scored_turns)
        + f"Detoxify flags a turn when its toxicity is above {threshold:g}.",
        "",
        "### Top flagged OpenAI categories (utterances)",
        "",
        _shares(statistics, release, "category", "utterances", top=10),
        "## Moderation",
        "",
        "Conversations by the scorers that scored every non-empty utterance of them:",
        "",
        _table(["scored by", "conversations"], [[k, f"{v:,}"] for k, v in facts.scored_by.items()]),
        "Left out of this release, by reason (`sexual_minors`: an utterance OpenAI flagged "
        "sexual/minors; `not_screened`: OpenAI did not score every utterance; `toxic`; "
        "`toxicity_unknown`: no scorer scored some utterance):",
        "",
        _table(["reason", "conversations"], [[k, f"{v:,}"] for k, v in facts.excluded.items()]),
        "## Provenance",
        "",
        "- Redaction rules (hash of the parsed rules file): "
        + (", ".join(f"`{h}`" for h in facts.rules_hashes) or "none"),
        "- GeoIP snapshot(s) that located the user turns (build dates): "
        + (", ".join(str(d) for d in facts.geoip_snapshots) or "none"),
        f"- Country and state names: {_geoip_names(facts)}",
        f"- Language identification: {language_model}",
        f"- Release policy: `{policy.version}`",
        "",
        "## Personal and sensitive information",
        "",
        "PII was detected with Microsoft Presidio and replaced by `<PRESIDIO_ANONYMIZED_...>` "
        "placeholders under the redaction rules above; IP addresses are replaced by "
        "`hashed_ip`, a keyed hash whose salt is not published.",
        "",
        *([changelog] if changelog else []),
        "## Licence",
        "",
        "ODC-BY 1.0.",
        "",
    ]
    return "\n".join(lines)
