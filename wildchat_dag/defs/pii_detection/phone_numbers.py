"""Presidio's phone recognizer, with the work that cannot find a number skipped: the same results.

Presidio's ``PhoneRecognizer`` runs python-phonenumbers' matcher once for each numbering plan
(``PHONE_REGIONS``, 22 of them). The matcher takes every run of digits and punctuation in the
text as a candidate and parses it under the plan. On real text (code, dates, version numbers,
tables) nearly all candidates are a few digits long, and each is parsed 22 times: 18.7 ms of
CPU for a 3,500-character text (the README's Backfill section).

Three exact cuts:

- **A candidate with fewer than ``MIN_VALID_DIGITS`` digits and letters is not parsed.** At the
  recognizer's leniency (``VALID``) a match must be a valid number, so its national significant
  number has a length that its plan allows, 4 digits at the least in every plan phonenumbers
  knows. Every digit of that number comes from a digit of the candidate or from a letter (vanity
  numbers such as 1-800-FLOWERS), one character each. The skipped call would have returned
  None; the matcher's bookkeeping around it (its tries, where it searches next) is unchanged.
  ``test_pii_detection`` checks the bound against phonenumbers' metadata, by parsing every
  string of up to three digits, with and without ``+``, under every plan.
- **A candidate written nationally is not parsed under a plan whose numbers are all longer.**
  Written without a plus sign, without letters, and not starting with the plan's international
  (IDD) prefix, a candidate is parsed as a national number of the plan's country: its national
  significant number is made of the candidate's digits (the country code, the national prefix
  and an extension only take some away), so it has at most as many digits as the candidate.
  A valid number's length is one its country's metadata allows, and that is at least
  ``national_min_digits`` of the plan: 7 for the US, 10 for Russia, so "2023" or "12345" is
  parsed only under the plans with numbers that short. The argument needs two facts of the
  metadata, checked for each plan when its bound is built (``regional_bound``): the national
  prefix rules add no digit of their own, and the IDD prefix is a plain pattern (no anchor or
  look-ahead, so a match on the parsed number's first digits is one on the candidate's). A plan
  where one fails keeps the bound of every plan. Letters are treated as international: they
  are a vanity number's digits only after phonenumbers' own mapping.
- **The other plans are not tried when the first one had nothing long enough.** Which
  candidates the matcher takes from a text depends on the plan only through the matches it
  finds: after a match it searches on from the match's end, otherwise from the candidate's
  end. So a text in which no candidate passed the first cut under one plan yields the same
  candidates, none of them parseable, under every plan. (The first cut, not the second: the
  second depends on the plan.)

And one exact saving of repeated work: **what does not depend on the plan is done once a text.**
The matcher's search for candidates, its trimming, its date and time-stamp tests and its split
of a candidate into inner groups depend only on the text, yet each plan's matcher did them
again, 22 times for a text with a long candidate. ``_TextWalk`` does them once and the matchers
of one text share it; each plan's matcher keeps its own place in the text and its own count of
tries, and only the parse depends on the plan. That means ``_ScreenedMatcher`` repeats the
control flow of phonenumbers' ``_find``, ``_extract_match`` and ``_extract_inner_match``
(phonenumbers, Apache-2.0). ``test_pii_detection`` pins their source, so that a phonenumbers
release that changes them fails a test instead of drifting from Presidio's results.
"""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import Leniency, NumberParseException, PhoneMetadata, PhoneNumberMatcher
from phonenumbers import phonenumbermatcher as matcher_module
from phonenumbers.phonenumberutil import (
    _PLUS_CHARS,
    COUNTRY_CODE_TO_REGION_CODE,
    normalize_digits_only,
    region_code_for_country_code,
)
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

# The shortest national significant number that any plan's metadata allows.
MIN_VALID_DIGITS = 4


def could_be_valid(candidate: str) -> bool:
    """Whether a candidate has enough characters that parsing can turn into digits."""
    return digits_and_letters(candidate) >= MIN_VALID_DIGITS


def digits_and_letters(candidate: str) -> int:
    return sum(1 for c in candidate if c.isdigit() or c.isalpha())


def national_min_digits(region: str) -> int | None:
    """The fewest digits of a valid number of ``region``'s country (every plan that shares its
    country code); None when a plan there does not list its lengths."""
    country_code = PhoneMetadata.metadata_for_region(region).country_code
    lengths = []
    for plan in COUNTRY_CODE_TO_REGION_CODE[country_code]:
        metadata = (
            PhoneMetadata.metadata_for_nongeo_region(country_code)
            if plan == "001"
            else PhoneMetadata.metadata_for_region(plan)
        )
        possible = [n for n in metadata.general_desc.possible_length if n > 0]
        if not possible:
            return None
        lengths += possible
    return min(lengths)


# What a rule may hold for the bound's argument: digits only through its groups (\\1, $1).
_ADDS_NO_DIGIT = re.compile(r"(?:[^0-9\\$]|[\\$][0-9])*")
# An IDD prefix matched at a number's start matches at the start of any longer number.
_PLAIN_PREFIX = re.compile(r"[0-9()|?:\[\]\-\\d{},]*")


@functools.cache
def regional_bound(region: str) -> tuple[int, re.Pattern[str]]:
    """The fewest digits and letters a candidate written nationally needs under ``region``'s
    plan, and the plan's IDD prefix (module docstring); ``MIN_VALID_DIGITS`` where the
    metadata does not support the argument."""
    metadata = PhoneMetadata.metadata_for_region(region)
    idd = metadata.international_prefix or ""
    # National parsing reads the plan's rules, or its country's main plan's (a number that
    # starts with the country code).
    rules = [
        PhoneMetadata.metadata_for_region(r).national_prefix_transform_rule or ""
        for r in {region, region_code_for_country_code(metadata.country_code)}
    ]
    shortest = national_min_digits(region)
    if (
        shortest is None
        or not all(_ADDS_NO_DIGIT.fullmatch(rule) for rule in rules)
        or not _PLAIN_PREFIX.fullmatch(idd)
    ):
        shortest = MIN_VALID_DIGITS
    return max(shortest, MIN_VALID_DIGITS), re.compile(idd or "(?!)")


def _trimmed(pattern, candidate: str) -> str:
    """phonenumbers' ``_trim_after_first_match``: ``candidate`` up to ``pattern``'s match."""
    found = pattern.search(candidate)
    return candidate[: found.start()] if found else candidate


# One inner group the matcher tries: the text before the group's first match (only with the
# first), the group, and where the group starts in the candidate.
InnerStep = tuple[str | None, str, int]


class _TextWalk:
    """What phonenumbers' matcher computes from a text alone, computed once for all plans."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._candidates: dict[int, tuple[int, str] | None] = {}
        self._skipped: dict[int, bool] = {}
        self._inner: dict[str, list[list[InnerStep]]] = {}
        # Per candidate: its digits and letters, and its digits when written nationally (None:
        # a plus sign or a letter, so international).
        self._shapes: dict[str, tuple[int, str | None]] = {}

    def candidate_from(self, index: int) -> tuple[int, str] | None:
        """The first candidate at or after ``index``, trimmed after a second number's start:
        where it starts and its text."""
        if index not in self._candidates:
            found = matcher_module._PATTERN.search(self.text, index)
            self._candidates[index] = (
                None
                if found is None
                else (
                    found.start(),
                    _trimmed(
                        matcher_module._SECOND_NUMBER_START_PATTERN,
                        self.text[found.start() : found.end()],
                    ),
                )
            )
        return self._candidates[index]

    def skipped(self, candidate: str, offset: int) -> bool:
        """Whether the matcher skips the candidate as a date or a time stamp."""
        if offset not in self._skipped:
            self._skipped[offset] = bool(
                matcher_module._SLASH_SEPARATED_DATES.search(candidate)
            ) or bool(
                matcher_module._TIME_STAMPS.search(candidate)
                and matcher_module._TIME_STAMPS_SUFFIX.match(self.text, offset + len(candidate))
            )
        return self._skipped[offset]

    def inner_steps(self, candidate: str) -> list[list[InnerStep]]:
        """The inner groups the matcher tries in ``candidate``, for each of its patterns."""
        if candidate not in self._inner:
            self._inner[candidate] = [
                self._steps(pattern, candidate) for pattern in matcher_module._INNER_MATCHES
            ]
        return self._inner[candidate]

    @staticmethod
    def _steps(pattern, candidate: str) -> list[InnerStep]:
        end_chars = matcher_module._UNWANTED_END_CHAR_PATTERN
        steps: list[InnerStep] = []
        group_match = pattern.search(candidate)
        while group_match:
            before = None if steps else _trimmed(end_chars, candidate[: group_match.start()])
            steps.append((before, _trimmed(end_chars, group_match.group(1)), group_match.start(1)))
            group_match = pattern.search(candidate, group_match.start() + 1)
        return steps

    def _shape(self, candidate: str) -> tuple[int, str | None]:
        if candidate not in self._shapes:
            international = any(c in _PLUS_CHARS or c.isalpha() for c in candidate)
            self._shapes[candidate] = (
                digits_and_letters(candidate),
                None if international else normalize_digits_only(candidate),
            )
        return self._shapes[candidate]

    def long_enough(self, candidate: str) -> bool:
        """``could_be_valid``: long enough for some plan."""
        return self._shape(candidate)[0] >= MIN_VALID_DIGITS

    def long_enough_under(self, candidate: str, bound: tuple[int, re.Pattern[str]]) -> bool:
        """Whether a candidate that is ``long_enough`` may be valid under the plan of
        ``bound`` (``regional_bound``): it is written internationally, or long enough there."""
        count, national_digits = self._shape(candidate)
        if national_digits is None:
            return True
        shortest, idd = bound
        return count >= shortest or idd.match(national_digits) is not None


class _ScreenedMatcher(PhoneNumberMatcher):
    """phonenumbers' matcher that does not parse a candidate too short to be valid (under any
    plan, or under its own), and takes what does not depend on the plan from a ``_TextWalk``
    that the plans of a text share."""

    def __init__(
        self, text: str | _TextWalk, region: str, leniency: int, max_tries: int = 65535
    ) -> None:
        walk = text if isinstance(text, _TextWalk) else _TextWalk(text)
        super().__init__(walk.text, region, leniency=leniency, max_tries=max_tries)
        self._walk = walk
        self._bound = regional_bound(region)
        # Candidates long enough for some plan: none under one plan, none under any.
        self.long_enough = 0
        self.parsed = 0  # candidates that reached phonenumbers' parser

    # The three methods below are phonenumbers' own (see the module's docstring), with the
    # plan-independent work read from the walk.
    def _find(self, index: int):
        found = self._walk.candidate_from(index)
        while self._max_tries > 0 and found is not None:
            start, candidate = found
            if len(candidate) >= self._min_candidate_length:
                match = self._extract_match(candidate, start)
                if match is not None:
                    return match
                self._max_tries -= 1
            found = self._walk.candidate_from(start + len(candidate))
        return None

    def _extract_match(self, candidate: str, offset: int):
        if self._walk.skipped(candidate, offset):
            return None
        match = self._parse_and_verify(candidate, offset)
        if match is not None:
            return match
        return self._extract_inner_match(candidate, offset)

    def _extract_inner_match(self, candidate: str, offset: int):
        for steps in self._walk.inner_steps(candidate):
            for before, group, group_start in steps:
                if self._max_tries <= 0:
                    break
                if before is not None:
                    match = self._parse_and_verify(before, offset)
                    if match is not None:
                        return match
                    self._max_tries -= 1
                match = self._parse_and_verify(group, offset + group_start)
                if match is not None:
                    return match
                self._max_tries -= 1
        return None

    def _parse_and_verify(self, candidate: str, offset: int):
        if not self._walk.long_enough(candidate):
            return None
        self.long_enough += 1
        if not self._walk.long_enough_under(candidate, self._bound):
            return None
        self.parsed += 1
        return super()._parse_and_verify(candidate, offset)


class ScreenedPhoneRecognizer(PhoneRecognizer):
    """``PhoneRecognizer`` with the cuts above; its results are Presidio's, to the explanation.

    It keeps Presidio's name: ``pii_candidates`` records the recognizer by name, and the name
    says which recognizer's semantics a row has.
    """

    def __init__(self, supported_regions: tuple[str, ...]) -> None:
        super().__init__(supported_regions=supported_regions, name=PhoneRecognizer.__name__)
        if self.leniency < Leniency.VALID:
            raise ValueError("the digit bound holds only for valid numbers (leniency VALID)")

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        # PhoneRecognizer.analyze, with the screened matchers of one walk and the early stop.
        results = []
        walk = _TextWalk(text)
        for index, region in enumerate(self.supported_regions):
            matcher = _ScreenedMatcher(walk, region, self.leniency)
            for match in matcher:
                try:
                    parsed_number = phonenumbers.parse(text[match.start : match.end])
                    region = phonenumbers.region_code_for_number(parsed_number)
                    results += [self._get_recognizer_result(match, text, region, nlp_artifacts)]
                except NumberParseException:
                    results += [self._get_recognizer_result(match, text, region, nlp_artifacts)]
            if index == 0 and matcher.long_enough == 0:
                break
        return EntityRecognizer.remove_duplicates(results)
