"""Run the labelled privacy set (``wildchat_dag.loggen.pii_cases``) through detection and
redaction as the pipeline runs them, and score what came out.

Shared by ``test_privacy_eval.py`` and ``benchmarks/bench_privacy_eval.py``.

Scoring reads only the texts: the redacted text is aligned with the original (everything outside
a ``<PRESIDIO_ANONYMIZED_...>`` placeholder is original text, in order), which gives the original
characters each placeholder replaced. A placed value is *found* when none of its characters
survive; a redacted span that overlaps no placed value is a false positive (decoys included).
Reports name cases by id and never print a placed value.
"""

from __future__ import annotations

import inspect
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import polars as pl

from wildchat_dag.loggen.pii_cases import (
    ENTITY_TYPES,
    IP_NOTATIONS,
    NOTATIONS,
    POSITIONS,
    SCRIPTS,
    Decoy,
    PiiCaseSet,
    PlacedValue,
)

PLACEHOLDER = re.compile(r"<PRESIDIO_ANONYMIZED_([A-Z0-9_]+)>")
SECRET_PREFIX = "SECRET_"
Key = tuple[str, int]  # (conversation key, message index)


class AlignmentError(ValueError):
    """The redacted text is not the original with some stretches replaced by placeholders."""


def placeholder_entity(name: str) -> str:
    """``SECRET_OPENAI_API_KEY`` -> ``SECRET``; other placeholders name their entity type."""
    return "SECRET" if name == "SECRET" or name.startswith(SECRET_PREFIX) else name


@dataclass(frozen=True)
class RedactedSpan:
    start: int
    end: int
    placeholder: str
    """What the placeholder says: ``PERSON``, ``SECRET_JWT``, ``IP_ADDRESS``, ..."""

    @property
    def entity(self) -> str:
        return placeholder_entity(self.placeholder)


def redacted_spans(original: str, redacted: str) -> list[RedactedSpan]:
    """The stretches of ``original`` that placeholders replaced in ``redacted``.

    ``original`` must hold no placeholder itself (the labelled set holds none). Each placeholder
    replaced at least one character. Where several alignments fit (a kept piece that also occurs
    inside a replaced stretch), the one placing each kept piece leftmost is returned.
    """
    if PLACEHOLDER.search(original):
        raise AlignmentError("the original text already holds a placeholder")
    pieces = PLACEHOLDER.split(redacted)
    kept, names = pieces[0::2], pieces[1::2]
    if not names:
        if redacted != original:
            raise AlignmentError("the text changed without a placeholder")
        return []
    if not original.startswith(kept[0]) or not original.endswith(kept[-1]):
        raise AlignmentError("the text around the placeholders is not the original's")
    limit = len(original) - len(kept[-1])

    def place(i: int, position: int) -> list[int] | None:
        """Start offsets for kept[i:-1], the first at least ``position``."""
        if i == len(kept) - 1:
            return [] if position <= limit else None
        piece = kept[i]
        start = original.find(piece, position)
        while start != -1 and start + len(piece) < limit:
            rest = place(i + 1, start + len(piece) + 1)
            if rest is not None:
                return [start, *rest]
            start = original.find(piece, start + 1)
        return None

    starts = place(1, len(kept[0]) + 1)
    if starts is None:
        raise AlignmentError("the kept text does not appear in the original in order")
    spans = []
    position = len(kept[0])
    for name, piece, start in zip(names, kept[1:], [*starts, limit], strict=True):
        spans.append(RedactedSpan(position, start, name))
        position = start + len(piece)
    return spans


# -- running detection and redaction ----------------------------------------------------------


def utterances_of(cases: PiiCaseSet) -> pl.DataFrame:
    """Detector input: conversation ``i`` of the set is ``conversation_id`` ``i + 1``."""
    rows = [
        (i + 1, index, message["role"], message["content"])
        for i, conversation in enumerate(cases.conversations)
        for index, message in enumerate(conversation.messages)
    ]
    return pl.DataFrame(
        rows,
        schema={
            "conversation_id": pl.Int64,
            "utterance_index": pl.Int64,
            "role": pl.String,
            "content": pl.String,
        },
        orient="row",
    )


def redact_like_the_pipeline(found, contents: pl.DataFrame, rules, client_ips: Iterable[str]):
    """``anonymization.redact_batch`` (frequencies counted over the batch), with the raw logs'
    client IPs, which the pipeline's ``anonymize_day`` passes to ``redact``.

    When ``redact_batch`` takes ``client_ips`` it is called as it is; otherwise the same steps it
    runs are composed here with the client IPs added.
    """
    from wildchat_dag.defs.anonymization import anonymization as a

    ips = set(client_ips)
    if "client_ips" in inspect.signature(a.redact_batch).parameters:
        return a.redact_batch(found, contents, rules, client_ips=ips)
    qualified = a.qualify_located(found.candidates, found.scans, rules)
    located = qualified.join(
        found.utterances.select("content_sha256", "conversation_id"), on="content_sha256"
    )
    decided = a.apply_frequencies(qualified, a.conversation_counts(located), rules)
    statuses = found.scans.select("content_sha256", "scan_status")
    batch = contents.unique("content_sha256").join(statuses, on="content_sha256", how="left")
    return a.redact(batch, decided, rules, ips)


@dataclass
class Redacted:
    """Redacted text of every message of the set, and how it was made."""

    texts: dict[Key, str]
    seconds: float
    stats: dict = field(default_factory=dict)


def redact_cases(cases: PiiCaseSet, *, full: bool = False, detector=None, rules=None) -> Redacted:
    """Every message of ``cases`` redacted: gated detection (``PiiDetector.detect``) or, with
    ``full``, Presidio on every utterance (``pii_detection_reference.detect_everywhere``)."""
    import time

    from wildchat_dag.defs.anonymization.redaction_rules import load_rules

    rules = rules or load_rules()
    utterances = utterances_of(cases)
    started = time.perf_counter()
    if full:
        from wildchat_dag.defs.pii_detection.pii_detection_reference import detect_everywhere

        found = detect_everywhere(utterances, rules)
    else:
        from wildchat_dag.defs.pii_detection.pii_detection import PiiDetector

        found = (detector or PiiDetector(rules)).detect(utterances)
    contents = (
        utterances.join(
            found.utterances.select("conversation_id", "utterance_index", "content_sha256"),
            on=["conversation_id", "utterance_index"],
        )
        .select("content_sha256", "content")
        .unique("content_sha256")
    )
    redaction = redact_like_the_pipeline(found, contents, rules, cases.client_ips)
    seconds = time.perf_counter() - started
    by_sha = dict(redaction.contents.select("content_sha256", "redacted_content").iter_rows())
    keys = [c.key for c in cases.conversations]
    texts = {}
    for cid, index, sha in found.utterances.select(
        "conversation_id", "utterance_index", "content_sha256"
    ).iter_rows():
        texts[(keys[cid - 1], index)] = by_sha[sha]
    return Redacted(texts, seconds, dict(found.stats))


# -- scoring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueOutcome:
    label: PlacedValue
    surviving: int
    """Characters of the value left in the released text."""
    placeholders: tuple[str, ...]
    """The placeholders over (part of) the value."""

    @property
    def found(self) -> bool:
        return self.surviving == 0

    @property
    def status(self) -> str:
        if self.found:
            return "found"
        return "partly" if self.placeholders else "missed"


@dataclass(frozen=True)
class DecoyOutcome:
    label: Decoy
    redacted_chars: int
    placeholders: tuple[str, ...]

    @property
    def kept(self) -> bool:
        return self.redacted_chars == 0


@dataclass(frozen=True)
class SpanOutcome:
    key: Key
    span: RedactedSpan
    case_ids: tuple[str, ...]
    decoy_ids: tuple[str, ...]
    text: str
    """The original text replaced (shown only for spans on no label)."""

    @property
    def labelled(self) -> bool:
        return bool(self.case_ids)


@dataclass
class Evaluation:
    values: list[ValueOutcome]
    decoys: list[DecoyOutcome]
    spans: list[SpanOutcome]
    alignment_errors: dict[Key, str]
    differences: list[Key] | None = None
    """Messages whose gated and full redactions differ; None when not compared."""
    compared: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Without the values: a test failure prints it.
        return (
            f"Evaluation({len(self.values)} values, {len(self.leaks)} leaked, "
            f"{len(self.decoys_redacted)} of {len(self.decoys)} decoys redacted)"
        )

    @property
    def leaks(self) -> list[ValueOutcome]:
        return [v for v in self.values if not v.found]

    @property
    def decoys_redacted(self) -> list[DecoyOutcome]:
        return [d for d in self.decoys if not d.kept]

    @property
    def unlabelled_spans(self) -> list[SpanOutcome]:
        return [s for s in self.spans if not s.labelled and not s.decoy_ids]

    def value(self, case_id: str) -> ValueOutcome:
        return next(v for v in self.values if v.label.case_id == case_id)

    def decoy(self, decoy_id: str) -> DecoyOutcome:
        return next(d for d in self.decoys if d.label.decoy_id == decoy_id)

    @property
    def ok(self) -> bool:
        return not (
            self.leaks
            or self.decoys_redacted
            or self.alignment_errors
            or (self.differences is not None and self.differences)
        )

    def markdown(self, show: int = 40) -> str:
        return report_markdown(self, show)


def _overlap(a_start: int, a_end: int, b_start: int, b_end: int) -> int:
    return max(0, min(a_end, b_end) - max(a_start, b_start))


def evaluate(
    cases: PiiCaseSet, redacted: Mapping[Key, str], reference: Mapping[Key, str] | None = None
) -> Evaluation:
    """Score ``redacted`` (``Redacted.texts``) against the labels; ``reference``: the full
    detector's texts, compared message by message."""
    values_at: dict[Key, list[PlacedValue]] = defaultdict(list)
    decoys_at: dict[Key, list[Decoy]] = defaultdict(list)
    for v in cases.values:
        values_at[(v.conversation_key, v.turn_index)].append(v)
    for d in cases.decoys:
        decoys_at[(d.conversation_key, d.turn_index)].append(d)
    values: list[ValueOutcome] = []
    decoys: list[DecoyOutcome] = []
    spans: list[SpanOutcome] = []
    errors: dict[Key, str] = {}
    for conversation in cases.conversations:
        for index, message in enumerate(conversation.messages):
            key = (conversation.key, index)
            original = message["content"]
            output = redacted.get(key, original)
            try:
                found = redacted_spans(original, output)
            except AlignmentError as error:
                errors[key] = str(error)
                # Unaligned: count every label as untouched-or-unknown, conservatively lost.
                found = []
            for v in values_at[key]:
                over = [s for s in found if _overlap(s.start, s.end, v.start, v.end)]
                covered = sum(_overlap(s.start, s.end, v.start, v.end) for s in over)
                surviving = (v.end - v.start) - covered if key not in errors else v.end - v.start
                values.append(ValueOutcome(v, surviving, tuple(s.placeholder for s in over)))
            for d in decoys_at[key]:
                over = [s for s in found if _overlap(s.start, s.end, d.start, d.end)]
                covered = sum(_overlap(s.start, s.end, d.start, d.end) for s in over)
                decoys.append(DecoyOutcome(d, covered, tuple(s.placeholder for s in over)))
            for s in found:
                spans.append(
                    SpanOutcome(
                        key,
                        s,
                        tuple(
                            v.case_id
                            for v in values_at[key]
                            if _overlap(s.start, s.end, v.start, v.end)
                        ),
                        tuple(
                            d.decoy_id
                            for d in decoys_at[key]
                            if _overlap(s.start, s.end, d.start, d.end)
                        ),
                        original[s.start : s.end],
                    )
                )
    differences = None
    compared = 0
    if reference is not None:
        keys = sorted(set(redacted) | set(reference))
        compared = len(keys)
        differences = [k for k in keys if redacted.get(k) != reference.get(k)]
    return Evaluation(values, decoys, spans, errors, differences, compared)


# -- the report ---------------------------------------------------------------------------------


def _rate(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:.1%}" if denominator else "n/a"


def _recall_table(outcomes: list[ValueOutcome], dimension: str, order: Iterable[str]) -> list[str]:
    by: dict[str, list[ValueOutcome]] = defaultdict(list)
    for o in outcomes:
        by[str(getattr(o.label, dimension))].append(o)
    rows = [
        f"| {dimension} | cases | found | partly | missed | recall |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in [*order, *sorted(set(by) - set(order))]:
        mine = by.get(name)
        if not mine:
            continue
        status = Counter(o.status for o in mine)
        rows.append(
            f"| {name} | {len(mine)} | {status['found']} | {status['partly']} | "
            f"{status['missed']} | {_rate(status['found'], len(mine))} |"
        )
    return rows


def report_markdown(e: Evaluation, show: int = 40) -> str:
    lines: list[str] = []
    by_entity: dict[str, list[ValueOutcome]] = defaultdict(list)
    for o in e.values:
        by_entity[o.label.entity_type].append(o)
    spans_by_entity: dict[str, list[SpanOutcome]] = defaultdict(list)
    for s in e.spans:
        spans_by_entity[s.span.entity].append(s)
    lines += [
        "| entity type | cases | found | leaked | recall | redacted spans | on a placed value "
        "| on a decoy | elsewhere | precision |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    entities = [*ENTITY_TYPES, *sorted(set(spans_by_entity) - set(ENTITY_TYPES))]
    for entity in entities:
        mine, spans = by_entity.get(entity, []), spans_by_entity.get(entity, [])
        found = sum(o.found for o in mine)
        on_value = sum(s.labelled for s in spans)
        on_decoy = sum(bool(s.decoy_ids) and not s.labelled for s in spans)
        lines.append(
            f"| {entity} | {len(mine)} | {found} | {len(mine) - found} | "
            f"{_rate(found, len(mine))} | {len(spans)} | {on_value} | {on_decoy} | "
            f"{len(spans) - on_value - on_decoy} | {_rate(on_value, len(spans))} |"
        )
    total_found = sum(o.found for o in e.values)
    total_on = sum(s.labelled for s in e.spans)
    lines.append(
        f"| all | {len(e.values)} | {total_found} | {len(e.values) - total_found} | "
        f"{_rate(total_found, len(e.values))} | {len(e.spans)} | {total_on} | "
        f"{sum(bool(s.decoy_ids) and not s.labelled for s in e.spans)} | "
        f"{len(e.unlabelled_spans)} | {_rate(total_on, len(e.spans))} |"
    )
    for dimension, order in (
        ("notation", [*NOTATIONS, *(n for n in IP_NOTATIONS if n not in NOTATIONS)]),
        ("script", SCRIPTS),
        ("position", POSITIONS),
        ("role", ("user", "assistant")),
        ("turn", ("first", "later")),
    ):
        lines += ["", *_recall_table(e.values, dimension, order)]

    lines += ["", "| recall by entity type and notation | " + " | ".join(NOTATIONS) + " |"]
    lines.append("|---|" + "---:|" * len(NOTATIONS))
    for entity in ENTITY_TYPES:
        cells = []
        for notation in NOTATIONS:
            mine = [o for o in by_entity.get(entity, []) if o.label.notation == notation]
            cells.append(f"{sum(o.found for o in mine)}/{len(mine)}" if mine else "")
        lines.append(f"| {entity} | " + " | ".join(cells) + " |")
    lines += ["", "| recall by entity type and script | " + " | ".join(SCRIPTS) + " |"]
    lines.append("|---|" + "---:|" * len(SCRIPTS))
    for entity in ENTITY_TYPES:
        cells = []
        for script in SCRIPTS:
            mine = [o for o in by_entity.get(entity, []) if o.label.script == script]
            cells.append(f"{sum(o.found for o in mine)}/{len(mine)}" if mine else "")
        lines.append(f"| {entity} | " + " | ".join(cells) + " |")

    kinds: dict[str, list[DecoyOutcome]] = defaultdict(list)
    for d in e.decoys:
        kinds[d.label.kind].append(d)
    lines += ["", "| decoy kind | decoys | redacted |", "|---|---:|---:|"]
    for kind, mine in kinds.items():
        lines.append(f"| {kind} | {len(mine)} | {sum(not d.kept for d in mine)} |")
    lines.append(f"| all | {len(e.decoys)} | {len(e.decoys_redacted)} |")

    lines.append("")
    if e.differences is None:
        lines.append("gated vs full detection: not compared")
    else:
        verdict = "identical" if not e.differences else f"{len(e.differences)} differ"
        lines.append(f"gated vs full detection, {e.compared} messages: {verdict}")
    if e.alignment_errors:
        lines.append(f"messages whose output could not be aligned: {len(e.alignment_errors)}")

    if e.leaks:
        lines += [
            "",
            f"leaked ({len(e.leaks)}; first {show}):",
            "",
            "| case id | status | characters left | placeholders over it |",
            "|---|---|---:|---|",
        ]
        for o in e.leaks[:show]:
            lines.append(
                f"| {o.label.case_id} | {o.status} | {o.surviving} | "
                f"{', '.join(o.placeholders) or '-'} |"
            )
    if e.decoys_redacted:
        lines += [
            "",
            f"decoys redacted ({len(e.decoys_redacted)}):",
            "",
            "| decoy id | characters redacted | placeholders |",
            "|---|---:|---|",
        ]
        for d in e.decoys_redacted[:show]:
            lines.append(
                f"| {d.label.decoy_id} | {d.redacted_chars} | {', '.join(d.placeholders)} |"
            )
    if e.unlabelled_spans:
        lines += [
            "",
            f"redactions on no label ({len(e.unlabelled_spans)}):",
            "",
            "| conversation | message | placeholder | text replaced |",
            "|---|---:|---|---|",
        ]
        for s in e.unlabelled_spans[:show]:
            lines.append(f"| {s.key[0]} | {s.key[1]} | {s.span.placeholder} | {s.text[:40]!r} |")
    if e.differences:
        lines += ["", "gated and full differ on (conversation, message):", ""]
        lines += [f"- {k[0]} message {k[1]}" for k in e.differences[:show]]
    return "\n".join(lines)
