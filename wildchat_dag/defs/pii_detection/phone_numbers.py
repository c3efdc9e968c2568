"""Presidio's phone recognizer, with the work that cannot find a number skipped: the same results.

Presidio's ``PhoneRecognizer`` runs python-phonenumbers' matcher once for each numbering plan
(``PHONE_REGIONS``, 22 of them). The matcher takes every run of digits and punctuation in the
text as a candidate and parses it under the plan. On real text (code, dates, version numbers,
tables) nearly all candidates are a few digits long, and each is parsed 22 times: 18.7 ms of
CPU for a 3,500-character text (the README's Backfill section).

Two exact cuts:

- **A candidate with fewer than ``MIN_VALID_DIGITS`` digits and letters is not parsed.** At the
  recognizer's leniency (``VALID``) a match must be a valid number, so its national significant
  number has a length that its plan allows, 4 digits at the least in every plan phonenumbers
  knows. Every digit of that number comes from a digit of the candidate or from a letter (vanity
  numbers such as 1-800-FLOWERS), one character each. The skipped call would have returned
  None; the matcher's bookkeeping around it (its tries, where it searches next) is unchanged.
  ``test_pii_detection`` checks the bound against phonenumbers' metadata, by parsing every
  string of up to three digits, with and without ``+``, under every plan.
- **The other plans are not tried when the first one parsed nothing.** Which candidates the
  matcher takes from a text depends on the plan only through the matches it finds: after a
  match it searches on from the match's end, otherwise from the candidate's end. So a text in
  which no candidate survived the first cut under one plan yields the same candidates, none of
  them parseable, under every plan.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import Leniency, NumberParseException, PhoneNumberMatcher
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

# The shortest national significant number that any plan's metadata allows.
MIN_VALID_DIGITS = 4


def could_be_valid(candidate: str) -> bool:
    """Whether a candidate has enough characters that parsing can turn into digits."""
    return sum(1 for c in candidate if c.isdigit() or c.isalpha()) >= MIN_VALID_DIGITS


class _ScreenedMatcher(PhoneNumberMatcher):
    """phonenumbers' matcher that does not parse a candidate too short to be valid."""

    def __init__(self, text: str, region: str, leniency: int) -> None:
        super().__init__(text, region, leniency=leniency)
        self.parsed = 0  # candidates that reached phonenumbers' parser

    def _parse_and_verify(self, candidate: str, offset: int):
        if not could_be_valid(candidate):
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
        # PhoneRecognizer.analyze, with the screened matcher and the early stop.
        results = []
        for index, region in enumerate(self.supported_regions):
            matcher = _ScreenedMatcher(text, region, self.leniency)
            for match in matcher:
                try:
                    parsed_number = phonenumbers.parse(text[match.start : match.end])
                    region = phonenumbers.region_code_for_number(parsed_number)
                    results += [self._get_recognizer_result(match, text, region, nlp_artifacts)]
                except NumberParseException:
                    results += [self._get_recognizer_result(match, text, region, nlp_artifacts)]
            if index == 0 and matcher.parsed == 0:
                break
        return EntityRecognizer.remove_duplicates(results)
