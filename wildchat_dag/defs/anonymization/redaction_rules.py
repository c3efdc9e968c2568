"""Redaction rules: the file that says which detected PII is replaced, and where detection runs.

The rules are data (``redaction_rules.yaml``), so that changing the policy is an edit, not a code
change, and so that Dagster can version the redaction assets by the rules' hash.

Two hashes come out of one file:
- ``rules_hash`` covers everything that decides the release's text. It versions
  ``anonymized_conversations`` and is written on every row and materialization.
- ``detection_view`` is the part that decides *where detection runs*: the entity types, and
  each rule's necessary conditions (languages, pattern, cues), from which the detection step
  derives a cheap text gate (``pii_detection.detection_version`` hashes it). A change to a
  threshold, a skip pattern or the placeholder leaves it alone, so re-redaction reuses the
  stored detections.

Both hash the parsed rules as canonical JSON, so comments and formatting do not count.

Regexes are Rust-regex syntax (polars evaluates them): ``\\p{Lu}`` and ``(?i)`` work;
look-around does not.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

RULES_FORMAT_VERSION = 1
# The package's own copy (wildchat_dag/redaction_rules.yaml), shipped as package data.
DEFAULT_RULES_PATH = Path(__file__).resolve().parents[2] / "redaction_rules.yaml"
DEFAULT_CUE_GAP = r"[ \t,:;]{0,3}"
# Entities that only spaCy's NER finds; the others come from Presidio's pattern recognizers.
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION"})
UNSCANNED_ENTITY = "UNSCANNED_TEXT"
# Longest context a rule may look at on either side of a match.
MAX_CONTEXT_CHARS = 200

_RULE_KEYS = {
    "languages",
    "pattern",
    "not_preceded_by",
    "cues_before",
    "cue_gap",
    "cue_window",
    "no_cue_needed_if",
    "cues_nearby",
    "nearby_window",
    "skip_patterns",
    "skip_if_in_conversations",
}
_TOP_KEYS = {
    "version",
    "placeholder",
    "unscanned_text",
    "redact_client_ips",
    "redact",
    "detect_also",
}


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class EntityRule:
    entity: str
    languages: tuple[str, ...] = ()
    pattern: str | None = None
    not_preceded_by: tuple[str, ...] = ()
    cues_before: tuple[str, ...] = ()
    cue_gap: str | None = None
    cue_window: int | None = None
    no_cue_needed_if: str | None = None
    cues_nearby: tuple[str, ...] = ()
    nearby_window: int = 50
    skip_patterns: tuple[str, ...] = ()
    skip_if_in_conversations: int | None = None

    @property
    def uses_ner(self) -> bool:
        return self.entity in NER_ENTITIES

    @property
    def cue_adjacent(self) -> bool:
        """Cue just before the match (``cue_gap``), rather than anywhere in ``cue_window``."""
        return bool(self.cues_before) and self.cue_window is None

    def cue_before_regex(self) -> str:
        """Matches the end of the text before a match that satisfies the cue condition."""
        gap = self.cue_gap if self.cue_gap is not None else DEFAULT_CUE_GAP
        return f"{cue_alternation(self.cues_before)}(?:{gap})$"

    def gate_regexes(self, word_starts: bool = True) -> tuple[str, ...]:
        """Regexes every text must all contain for this rule to redact anything in it.

        It is built from the rule's own necessary conditions, so skipping detection where the
        gate fails cannot change what is redacted. ``word_starts=False`` leaves out the ``\\b``
        before cues: a looser gate (everything the gate passes, it passes) that polars checks
        many times faster, since a Unicode word boundary takes its regex engine off its fast
        path on non-ASCII text.
        """
        parts = []
        body = unanchored(self.pattern) if self.pattern else None
        before = cue_alternation(self.cues_before, word_starts) if self.cues_before else ""
        if self.cues_before and self.cue_adjacent and self.no_cue_needed_if is None:
            gap = self.cue_gap if self.cue_gap is not None else DEFAULT_CUE_GAP
            parts.append(f"{before}(?:{gap})(?:{body or ''})")
            body = None
        elif self.cues_before:
            alternatives = [before]
            if self.no_cue_needed_if:
                alternatives.append(f"(?:{unanchored(self.no_cue_needed_if)})")
            parts.append("|".join(alternatives))
        if body:
            parts.append(body)
        if self.cues_nearby:
            parts.append(cue_alternation(self.cues_nearby, word_starts))
        return tuple(parts)

    def gate_expr(self, text: pl.Expr, word_starts: bool = True) -> pl.Expr:
        """True where the text passes the gate (languages are checked separately); with
        ``word_starts=False``, the looser gate of ``gate_regexes``."""
        return pl.all_horizontal(
            pl.lit(True), *(text.str.contains(p) for p in self.gate_regexes(word_starts))
        )


@dataclass(frozen=True)
class RedactionRules:
    rules: tuple[EntityRule, ...]
    placeholder: str = "<PRESIDIO_ANONYMIZED_{entity}>"
    unscanned_text: str = "withhold"
    redact_client_ips: bool = True
    detect_also: tuple[str, ...] = ()
    source: str = "<memory>"
    version: int = RULES_FORMAT_VERSION

    def rule(self, entity: str) -> EntityRule | None:
        return next((r for r in self.rules if r.entity == entity), None)

    @property
    def redacted_entities(self) -> list[str]:
        return [r.entity for r in self.rules]

    @property
    def detected_entities(self) -> list[str]:
        return sorted({*self.redacted_entities, *self.detect_also})

    def placeholder_for(self, entity: str) -> str:
        return self.placeholder.replace("{entity}", entity)

    def placeholder_regex(self) -> str:
        """Matches any placeholder these rules write."""
        before, after = self.placeholder.split("{entity}", 1)
        return re.escape(before) + "[A-Z][A-Z0-9_]*" + re.escape(after)

    def canonical(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "placeholder": self.placeholder,
            "unscanned_text": self.unscanned_text,
            "redact_client_ips": self.redact_client_ips,
            "detect_also": sorted(self.detect_also),
            "redact": {r.entity: _rule_dict(r) for r in sorted(self.rules, key=_entity)},
        }

    @property
    def rules_hash(self) -> str:
        return stable_hash(self.canonical())

    def detection_view(self) -> dict[str, Any]:
        """Each detected entity type with its languages and gate regexes; moving a type from
        ``detect_also`` to an unconditional rule (``{}``) does not change it."""
        gates = {e: {"languages": [], "gate": []} for e in self.detect_also}
        gates.update(
            {
                r.entity: {"languages": sorted(r.languages), "gate": list(r.gate_regexes())}
                for r in self.rules
            }
        )
        return dict(sorted(gates.items()))

    def as_data(self) -> dict[str, Any]:
        """The rules as a mapping ``parse_rules`` reads back (for worker processes)."""
        data = self.canonical()
        data["redact"] = {
            entity: {k: v for k, v in body.items() if v not in (None, [])}
            for entity, body in data["redact"].items()
        }
        return data


def _entity(rule: EntityRule) -> str:
    return rule.entity


def _rule_dict(rule: EntityRule) -> dict[str, Any]:
    data = asdict(rule)
    data.pop("entity")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def stable_hash(value: Any) -> str:
    """sha256 of canonical JSON: the same for the same content, whatever the key order."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cue_alternation(cues: tuple[str, ...], word_starts: bool = True) -> str:
    """Case-insensitive alternation of literal cues; ``\\b`` before cues that start a word
    (unless ``word_starts`` is False)."""
    alternatives = []
    for cue in sorted(cues, key=len, reverse=True):
        escaped = re.escape(cue)
        starts_word = word_starts and cue[:1].isascii() and cue[:1].isalnum()
        alternatives.append(rf"\b{escaped}" if starts_word else escaped)
    return "(?i:" + "|".join(alternatives) + ")"


_LEADING_FLAGS = re.compile(r"^(\(\?[a-zA-Z]+\))")


def unanchored(pattern: str) -> str:
    """``pattern`` without a leading ``^`` or trailing ``$``: what the whole text must contain."""
    flags = ""
    if match := _LEADING_FLAGS.match(pattern):
        flags, pattern = match.group(1), pattern[match.end() :]
    if pattern.startswith("^"):
        pattern = pattern[1:]
    if pattern.endswith("$") and not pattern.endswith(r"\$"):
        pattern = pattern[:-1]
    return flags + pattern


def _fail(source: str, where: str, message: str) -> RulesError:
    return RulesError(f"{source}: {where}: {message}")


def _string_list(value: Any, source: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(source, where, "expected a list of non-empty strings")
    return tuple(value)


def _check_regex(pattern: Any, source: str, where: str) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise _fail(source, where, "expected a regular expression")
    try:
        pl.select(pl.lit("").str.contains(pattern))
    except Exception as exc:  # polars raises ComputeError with the regex parser's message
        raise _fail(source, where, f"invalid regular expression {pattern!r}: {exc}") from exc
    return pattern


def _positive_int(value: Any, source: str, where: str, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _fail(source, where, "expected a positive integer")
    if maximum is not None and value > maximum:
        raise _fail(source, where, f"at most {maximum}")
    return value


def parse_entity_rule(entity: str, body: Any, source: str) -> EntityRule:
    where = f"redact.{entity}"
    if not re.fullmatch(r"[A-Z][A-Z0-9_]*", entity):
        raise _fail(source, where, "entity types are Presidio names in capitals, e.g. PERSON")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise _fail(source, where, "expected a mapping of conditions ({} for none)")
    unknown = set(body) - _RULE_KEYS
    if unknown:
        raise _fail(source, where, f"unknown key(s) {sorted(unknown)}; known: {sorted(_RULE_KEYS)}")
    kw: dict[str, Any] = {"entity": entity}
    for key in ("languages", "not_preceded_by", "cues_before", "cues_nearby", "skip_patterns"):
        kw[key] = _string_list(body.get(key), source, f"{where}.{key}")
    for key in ("pattern", "cue_gap", "no_cue_needed_if"):
        if key in body:
            kw[key] = _check_regex(body[key], source, f"{where}.{key}")
    for pattern in kw["skip_patterns"]:
        _check_regex(pattern, source, f"{where}.skip_patterns")
    for key in ("cue_window", "nearby_window"):
        if key in body:
            kw[key] = _positive_int(body[key], source, f"{where}.{key}", MAX_CONTEXT_CHARS)
    if "skip_if_in_conversations" in body:
        kw["skip_if_in_conversations"] = _positive_int(
            body["skip_if_in_conversations"], source, f"{where}.skip_if_in_conversations"
        )
    if any(len(c) > 40 for c in (*kw["cues_before"], *kw["cues_nearby"])):
        raise _fail(source, where, "cues are at most 40 characters")
    if ("cue_gap" in kw or "cue_window" in kw or "no_cue_needed_if" in kw) and not kw[
        "cues_before"
    ]:
        raise _fail(source, where, "cue_gap, cue_window and no_cue_needed_if need cues_before")
    if "cue_gap" in kw and "cue_window" in kw:
        raise _fail(source, where, "set cue_gap (cue just before) or cue_window, not both")
    return EntityRule(**kw)


def parse_rules(data: Any, source: str = "<memory>") -> RedactionRules:
    if not isinstance(data, dict):
        raise _fail(source, "top level", "expected a mapping")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise _fail(source, "top level", f"unknown key(s) {sorted(unknown)}")
    version = data.get("version", RULES_FORMAT_VERSION)
    if version != RULES_FORMAT_VERSION:
        raise _fail(source, "version", f"this code reads version {RULES_FORMAT_VERSION}")
    placeholder = data.get("placeholder", "<PRESIDIO_ANONYMIZED_{entity}>")
    if not isinstance(placeholder, str) or "{entity}" not in placeholder:
        raise _fail(source, "placeholder", "must be a string containing {entity}")
    unscanned = data.get("unscanned_text", "withhold")
    if unscanned not in ("withhold", "keep"):
        raise _fail(source, "unscanned_text", "must be 'withhold' or 'keep'")
    redact_client_ips = data.get("redact_client_ips", True)
    if not isinstance(redact_client_ips, bool):
        raise _fail(source, "redact_client_ips", "must be true or false")
    redact = data.get("redact") or {}
    if not isinstance(redact, dict):
        raise _fail(source, "redact", "expected a mapping of entity type to conditions")
    rules = tuple(parse_entity_rule(str(e), body, source) for e, body in redact.items())
    detect_also = _string_list(data.get("detect_also"), source, "detect_also")
    return RedactionRules(
        rules=rules,
        placeholder=placeholder,
        unscanned_text=unscanned,
        redact_client_ips=redact_client_ips,
        detect_also=tuple(sorted(set(detect_also) - {r.entity for r in rules})),
        source=source,
        version=version,
    )


def load_rules(path: str | Path = DEFAULT_RULES_PATH) -> RedactionRules:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read the redaction rules: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{path}: not valid YAML: {exc}") from exc
    return parse_rules(data, source=str(path))
