"""Find raw values in the text of Dagster's own storage, without ever returning them.

The blocking check ``no_raw_values_in_instance`` (``wildchat_dag/defs/checks/instance_check.py``)
serializes the instance's event log entries and hands their text here with the day's raw
values (its client IPs and the PII the redaction rules redact). What comes back says which
entries hold a value and the value's *kind* (``client_ip``, ``EMAIL_ADDRESS``, ...), never the
value: the check's own result is stored in the same event log.

Both sides are normalized the same way before matching, so a value cannot hide behind a
notation: NFKC (full-width digits), invisible format characters removed, lower case. Each needle
is also searched in its JSON-escaped forms (``\\u00e9``), as serialized storage writes non-ASCII
text. Three views of each entry are searched, each with its own needles, all at once per view
with polars' Aho-Corasick (``str.extract_many``):

- ``text``: PII values as written (and JSON-escaped), anywhere;
- ``ip``: the IP view of ``ip_addresses.normalize_for_ip_search`` (spaces around dots and colons
  and leading zeros removed) against every literal form of each address
  (``ip_addresses.ip_search_forms``: canonical, IPv4-mapped, integer, ...). That is the
  prefilter; ``ip_addresses.find_ip_literals`` then reads each entry it flags as written and
  confirms an address, so a form inside a longer number or address (1.2.3.4 in 11.2.3.45) or
  an octal-looking form that is another address in decimal is no finding;
- ``digits``: phone and card numbers by their digits alone (8 or more), against the text with
  the separators between digits removed (ISO dates and times masked first, so a date never
  reads as a phone number), again only on digit boundaries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping

import polars as pl

from wildchat_dag.core.ip_addresses import (
    find_ip_literals,
    ip_search_forms,
    normalize_for_ip_search,
    notations,
)
from wildchat_dag.core.sanitize import HIDDEN_CHARACTERS

CLIENT_IP = "client_ip"
# Entity types whose values are also searched by their digits alone.
DIGIT_KINDS = frozenset({"PHONE_NUMBER", "CREDIT_CARD"})
MIN_NEEDLE_CHARS = 4
MIN_DIGITS = 8

TEXT, IP, DIGITS = "text", "ip", "digits"
NEEDLE_SCHEMA = pl.Schema({"pattern": pl.String, "kind": pl.String, "view": pl.String})
FOUND_SCHEMA = pl.Schema({"entry_id": pl.Int64, "kind": pl.String})

_HIDDEN_CLASS = HIDDEN_CHARACTERS  # Python's re and Rust's regex read it alike
_ISO_RUST = r"\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?"
_DIGIT_SEPARATORS_RUST = r"[\s\-().+/]"


# -- needles -------------------------------------------------------------------------------------


def text_needles(values: Iterable[tuple[str, str]]) -> pl.DataFrame:
    """``(value, kind)`` pairs as needles: the normalized value, its JSON-escaped forms, and for
    phone and card numbers their digits. Values shorter than ``MIN_NEEDLE_CHARS`` are left out:
    they would match everywhere."""
    pairs = list(values)
    originals = [v for v, _ in pairs]
    normalized = _normalized(pl.Series(originals, dtype=pl.String)).to_list()
    rows: set[tuple[str, str, str]] = set()
    for value, plain, (_, kind) in zip(originals, normalized, pairs, strict=True):
        if plain is None or len(plain) < MIN_NEEDLE_CHARS:
            continue
        rows.add((plain, kind, TEXT))
        rows.update((form, kind, TEXT) for form in json_escaped_forms(value, plain))
        if kind in DIGIT_KINDS:
            digits = re.sub(r"\D", "", plain)
            if len(digits) >= MIN_DIGITS:
                rows.add((digits, kind, DIGITS))
    return pl.DataFrame(sorted(rows), schema=NEEDLE_SCHEMA, orient="row")


def json_escaped_forms(value: str, normalized: str | None = None) -> set[str]:
    """How JSON writes ``value`` with non-ASCII characters escaped (``\\u00e9``), lower-cased
    as the searched text is; upper- and lower-case originals escape differently."""
    forms = set()
    for variant in {value, value.lower(), value.upper(), normalized or value}:
        escaped = json.dumps(variant)[1:-1]
        if escaped != variant:
            forms.add(escaped.lower())
    return forms


def ip_needles(ips: Iterable[str]) -> pl.DataFrame:
    """Every literal form of each address (``ip_search_forms``), for the ``ip`` view."""
    forms = {f.lower() for f in ip_search_forms(sorted({ip for ip in ips if ip})) if f}
    return pl.DataFrame(
        [(f, CLIENT_IP, IP) for f in sorted(forms)], schema=NEEDLE_SCHEMA, orient="row"
    )


# -- search --------------------------------------------------------------------------------------


def search_entries(
    entries: pl.DataFrame, needles: pl.DataFrame, client_ips: Collection[str] = ()
) -> pl.DataFrame:
    """Which of ``entries`` (``entry_id``, ``text``) hold which kind of needle
    (``text_needles``, ``ip_needles`` of ``client_ips``): ``entry_id``, ``kind``, once each,
    never the value."""
    if entries.is_empty() or needles.is_empty():
        return pl.DataFrame(schema=FOUND_SCHEMA)
    texts = entries["text"].cast(pl.String).fill_null("")
    plain = _normalized(texts)
    found = []
    for view in (TEXT, IP, DIGITS):
        wanted = needles.filter(pl.col("view") == view)
        if wanted.is_empty():
            continue
        text = {
            TEXT: lambda: plain,
            IP: lambda: normalize_for_ip_search(texts),
            DIGITS: lambda: _digits_view(plain),
        }[view]()
        hits = _matches(entries["entry_id"], text, wanted)
        if view == IP:
            hits = _confirmed_addresses(hits, entries, client_ips)
        elif view == DIGITS:
            hits = _confirmed_digits(hits, entries["entry_id"], text)
        found.append(hits.select("entry_id", "kind"))
    return pl.concat(found).unique().sort("entry_id", "kind")


def _matches(ids: pl.Series, text: pl.Series, needles: pl.DataFrame) -> pl.DataFrame:
    """``entry_id``, ``match``, ``kind``: every needle in each text (overlapping ones too)."""
    kinds = dict(needles.select("pattern", "kind").iter_rows())
    return (
        pl.DataFrame({"entry_id": ids, "text": text})
        .select("entry_id", match=pl.col("text").str.extract_many(sorted(kinds), overlapping=True))
        .explode("match")
        .drop_nulls("match")
        .unique()
        .with_columns(kind=pl.col("match").replace_strict(kinds, return_dtype=pl.String))
    )


def _confirmed_addresses(
    hits: pl.DataFrame, entries: pl.DataFrame, client_ips: Collection[str]
) -> pl.DataFrame:
    """A form found is a prefilter: ``find_ip_literals`` reads the entry as written and says
    whether one of the addresses is really there, not inside a longer number or address
    (1.2.3.4 in 11.2.3.45, an octal-looking form that is another decimal address)."""
    if hits.is_empty():
        return hits
    known = {form for ip in client_ips for form in notations(ip)}
    texts = dict(
        entries.filter(pl.col("entry_id").is_in(hits["entry_id"].implode()))
        .select("entry_id", "text")
        .iter_rows()
    )
    confirmed = {
        entry_id
        for entry_id, text in texts.items()
        if any(address in known for _, _, address in find_ip_literals(text or "", known))
    }
    return hits.filter(pl.col("entry_id").is_in(sorted(confirmed)))


def _confirmed_digits(hits: pl.DataFrame, ids: pl.Series, view: pl.Series) -> pl.DataFrame:
    """A number's digits count only on their own, not inside a longer number."""
    if hits.is_empty():
        return hits
    texts = dict(zip(ids.to_list(), view.to_list(), strict=True))
    keep = [
        re.search(rf"(?<!\d){re.escape(match)}(?!\d)", texts[entry_id] or "") is not None
        for entry_id, match in hits.select("entry_id", "match").iter_rows()
    ]
    return hits.filter(pl.Series(keep, dtype=pl.Boolean))


def _normalized(texts: pl.Series) -> pl.Series:
    return texts.str.normalize("NFKC").str.replace_all(_HIDDEN_CLASS, "").str.to_lowercase()


def _digits_view(normalized: pl.Series) -> pl.Series:
    return normalized.str.replace_all(_ISO_RUST, "#").str.replace_all(_DIGIT_SEPARATORS_RUST, "")


def count_values(values: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """How many distinct values of each kind are searched for (the check's metadata: the forms
    of one value count once)."""
    return {kind: len(set(vs)) for kind, vs in sorted(values.items())}
