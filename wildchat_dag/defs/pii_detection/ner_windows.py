"""Where in a text spaCy's NER has to run: the stretches around the cues of the rules that use it.

A rule with cues redacts a name only next to one of its cues (PERSON: just after "my name is",
"Dear", "Regards," ...), and the gate has already sent NER only the texts that hold such a cue.
But spaCy's cost is linear in the text, and the texts that pass are long: on the real sample, 12
texts of 4,600 characters on average, whose NER took most of detection's CPU. So NER reads only
a window of ``NER_WINDOW_MARGIN`` characters either side of each place where the rule's gate
holds (a cue, its gap and two capitalized words, for PERSON), widened by the rule's
``cue_window`` or ``nearby_window``, cut at whitespace, overlapping windows merged.

spaCy's entities depend on context, but only nearby: its CNN sees four tokens either side, and
its transition system carries state from one token to the next, which context 300 characters
away no longer reaches. Measured on the real sample's 648 texts longer than 600 characters, a
window cut every 300 characters: PERSON entities within 100 characters after the cut point were
the same as in the whole text in all 4,250 windows at a margin of 300 characters (709 held one);
at a margin of 100, 67 of 5,035 windows differed.

An entity found within ``NER_WINDOW_EDGE`` characters of a cut edge is dropped: the model saw
little context there, and no cue is that close to an edge, so the rules could not redact it.

The whole text is read when a rule needs it: a rule without cues, one whose cue may be left out
(``no_cue_needed_if``), an entity type detected for review only (``detect_also``), a text whose
windows would cover most of it, or a text where no cue is found here (the cues are found with
Python's regex engine, the gate's is Rust's: where they would disagree, read more).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import regex

from wildchat_dag.defs.anonymization.redaction_rules import EntityRule, cue_alternation

NER_WINDOW_MARGIN = 300
NER_WINDOW_EDGE = 50
# Past this share of the text, one pass over all of it costs about what the windows do.
WHOLE_TEXT_SHARE = 0.75
# How far a cut may move to reach whitespace (scripts written without spaces have none).
MAX_SNAP = 100

Window = tuple[int, int]


def ner_window_settings() -> dict[str, float]:
    """What decides the windows: part of detection's code version."""
    return {
        "margin": NER_WINDOW_MARGIN,
        "edge": NER_WINDOW_EDGE,
        "whole_text_share": WHOLE_TEXT_SHARE,
        "max_snap": MAX_SNAP,
    }


@functools.lru_cache(maxsize=64)
def _cue_finder(rule: EntityRule) -> regex.Pattern | None:
    """Where the rule's cue condition holds, as its gate states it but without the word
    boundary before a cue (looser: every place the gate saw is found). For a cue just before the
    match: the cue, the gap and the start of a match of the rule's pattern; else the cue alone.
    None if Python's regex engine cannot read the rule's (Rust) syntax."""
    if rule.cues_before:
        cue = rule.gate_regexes(word_starts=False)[0]
    else:
        cue = cue_alternation(rule.cues_nearby, word_starts=False)
    try:
        return regex.compile(cue)
    except regex.error:
        return None


def _reach(rule: EntityRule) -> tuple[int, int] | None:
    """How far before and after a found cue a redactable match may lie; None for anywhere.
    A cue before the match is necessary where the rule has one, so a nearby cue then adds
    nothing."""
    if rule.no_cue_needed_if:
        return None
    if rule.cues_before:
        # A cue just before the match: the gap and the match's start are in what was found.
        return 0, rule.cue_window or 0
    if rule.cues_nearby:
        return rule.nearby_window, rule.nearby_window
    return None


def _snap_back(text: str, at: int) -> int:
    """``at`` moved back to just after whitespace (at most ``MAX_SNAP``), or to 0."""
    if at <= 0:
        return 0
    for position in range(at, max(0, at - MAX_SNAP) - 1, -1):
        if position == 0 or text[position - 1].isspace():
            return position
    return at


def _snap_forward(text: str, at: int) -> int:
    """``at`` moved on to whitespace (at most ``MAX_SNAP``), or to the end."""
    if at >= len(text):
        return len(text)
    for position in range(at, min(len(text), at + MAX_SNAP) + 1):
        if position == len(text) or text[position].isspace():
            return position
    return at


def _merged(windows: Iterable[Window]) -> list[Window]:
    merged: list[Window] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def ner_windows(
    text: str, rules: Sequence[EntityRule | None], margin: int = NER_WINDOW_MARGIN
) -> list[Window]:
    """The stretches of ``text`` NER reads for entity types under ``rules`` (None: a type with
    no rule, detected for review): sorted, disjoint, ``[(0, len(text))]`` for the whole text."""
    whole = [(0, len(text))]
    windows: list[Window] = []
    for rule in rules:
        reach = None if rule is None else _reach(rule)
        if rule is None or reach is None:
            return whole
        before, after = reach
        finder = _cue_finder(rule)
        found = [] if finder is None else [(m.start(), m.end()) for m in finder.finditer(text)]
        if not found:
            return whole
        windows += [
            (
                _snap_back(text, start - before - margin),
                _snap_forward(text, end + after + margin),
            )
            for start, end in found
        ]
    merged = _merged(windows)
    if sum(end - start for start, end in merged) >= WHOLE_TEXT_SHARE * len(text):
        return whole
    return merged


def interior(window: Window, length: int) -> Window:
    """The part of ``window`` whose entities are kept: all of it at the text's own ends,
    ``NER_WINDOW_EDGE`` characters in from a cut."""
    start, end = window
    return (
        start + NER_WINDOW_EDGE if start > 0 else 0,
        end - NER_WINDOW_EDGE if end < length else length,
    )
