"""The dataset card (README.md) of a release: Hugging Face's YAML header and prose a reader can
check the release against."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

import polars as pl
import yaml

from wildchat_dag.core.markdown import markdown_table, share_markdown
from wildchat_dag.core.release import ReleasePolicy
from wildchat_dag.core.release_export import WrittenRelease
from wildchat_dag.core.release_schema import card_features
from wildchat_dag.core.release_statistics import TOKEN_PATTERN, section

Query = Callable[..., pl.DataFrame]

DESCRIPTIONS = {
    "public": "non-toxic conversations only (neither OpenAI Moderation nor Detoxify flagged any "
    "utterance)",
    "full": "every conversation, toxic ones included, except those with an utterance OpenAI "
    "Moderation flagged sexual/minors",
}


@dataclass
class ReleaseFacts:
    """What the card says about where the release came from, read from the records."""

    first_day: date | None = None
    last_day: date | None = None
    excluded: dict[str, int] = field(default_factory=dict)
    scored_by: dict[str, int] = field(default_factory=dict)
    rules_hashes: list[str] = field(default_factory=list)
    geoip_snapshots: list[date] = field(default_factory=list)


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
    return ReleaseFacts(
        first_day=days[0],
        last_day=days[1],
        excluded=dict(excluded.iter_rows()),
        scored_by=dict(scored_by.iter_rows()),
        rules_hashes=[r for (r,) in rules.iter_rows() if r],
        geoip_snapshots=[d for (d,) in snapshots.iter_rows()],
    )


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
) -> str:
    summary = section(statistics, release, "summary")
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
        f"{DESCRIPTIONS[release]}. Built {built_at:%Y-%m-%d %H:%M} UTC, in "
        f"{len(written.shards)} Parquet file(s) under `data/`, in WildChat-1M's schema.",
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
                    f"{int(summary.get('conversations') or 0):,}",
                    f"{int(summary.get('users') or 0):,}",
                    f"{int(summary.get('days') or 0):,}",
                    _number(summary.get("mean_turns"), 2),
                    f"{_number(summary.get('user_tokens_mean'))} ± "
                    f"{_number(summary.get('user_tokens_std'))}",
                    f"{_number(summary.get('chatbot_tokens_mean'))} ± "
                    f"{_number(summary.get('chatbot_tokens_std'))}",
                    f"{int(summary.get('languages') or 0):,}",
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
                [turns]
                + [
                    f"{toxicity.get(f'{turns}/{n}', 0.0):.2%}"
                    for n in ("detoxify", "openai", "either", "both")
                ]
                for turns in ("user", "chatbot")
            ],
        ),
        f"Detoxify flags a turn when its toxicity is above {threshold:g}.",
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
        "- GeoLite2 snapshot(s) used for country and state: "
        + (", ".join(str(d) for d in facts.geoip_snapshots) or "none"),
        f"- Language identification: fastText lid.176 ({language_model})",
        f"- Release policy: `{policy.version}`",
        "",
        "## Personal and sensitive information",
        "",
        "PII was detected with Microsoft Presidio and replaced by `<PRESIDIO_ANONYMIZED_...>` "
        "placeholders under the redaction rules above; IP addresses are replaced by "
        "`hashed_ip`, a keyed hash whose salt is not published.",
        "",
        "## Licence",
        "",
        "ODC-BY 1.0.",
        "",
    ]
    return "\n".join(lines)
