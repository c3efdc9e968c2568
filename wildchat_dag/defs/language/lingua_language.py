"""Utterance language with lingua, the detector WildChat labelled its languages with.

``lingua-language-detector`` (Apache-2.0) ships its models inside the wheel, so nothing is
downloaded. WildChat's labels are lingua's over all 75 of its languages, named
``language.name.title()`` (``"English"``, ``"Bokmal"``, ``"Slovene"``), ``"Nolang"`` where lingua
finds none; this backend gives lingua the whole, unaltered text to reproduce them. Unlike the
fastText path there is no code-or-markup rule: lingua already calls code English, the language of
its keywords, and WildChat had no such rule.

- ``language_code``: lingua's ISO 639-1 code, lower case (``"en"``, ``"nb"``); ISO 639-3 for a
  language without one (none of lingua 2.1's 75).
- ``language_confidence``: lingua's confidence in the chosen language, relative to its other
  languages (they sum to 1), rounded to 6 decimals: computing it is the detection itself, so it
  costs nothing more. A script only one language uses (Korean, Hebrew) gets 1.0. It is not
  comparable with fastText's probability.
- ``language_source``: ``lingua``, or ``empty`` for text with nothing but whitespace and
  zero-width characters. Text with no letters at all (``"123"``) is ``Nolang`` from lingua itself.

Loading: the detector is built without ``with_preloaded_language_models``; lingua loads a
language's models the first time a text could be in it and keeps them for the process (every
detector shares them). One Latin-script text loads most of them (about 0.9 GB and 8 CPU-seconds
here; 1.3 GB once every script has been seen: benchmarks/bench_language.py), so build one
detector per process.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import version

import polars as pl
from lingua import Language, LanguageDetector, LanguageDetectorBuilder

from wildchat_dag.defs.language.language import Labeller, LanguageSource
from wildchat_dag.defs.language.language_names import NOLANG

DISTRIBUTION = "lingua-language-detector"

LINGUA_PREDICTION_SCHEMA = pl.Schema(
    {"language": pl.String, "language_code": pl.String, "language_confidence": pl.Float64}
)

# Whitespace aside, the characters a text may hold and still say nothing: zero-width space,
# non-joiner, joiner, word joiner, byte-order mark.
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"

# lingua returns all 75 confidence values of a text as Python objects: batches bound that
# memory (a 100,000-text day at once would be millions of objects) yet stay long enough for
# its thread pool to share out.
BATCH_TEXTS = 2_000

# lingua's confidence for the same text varies in its last bits from call to call (its sums
# run in no fixed order); rounded, a day labelled again gives identical rows.
CONFIDENCE_DIGITS = 6


# What a warm worker labels before its first run. lingua loads the models of every language a
# text could be in, and a letter only some languages use (Russian "ы", Persian "چ") narrows that:
# so one text per shared script with only the letters all its languages write. Latin loads about
# 0.9 GB, Cyrillic 0.16, Arabic 0.08; a script one language writes (Greek, Hebrew, Korean, Thai)
# needs no model, and Devanagari and Han little.
WARM_TEXTS = (
    "The quick brown fox jumps over the lazy dog, said the teacher once again.",
    "Добар дан, как се зове ова село? Там на море.",
    "مرحبا، هل يمكنك مساعدتي في كتابة قصيدة قصيرة عن البحر؟",
    "नमस्ते, आप कैसे हैं? आज मौसम अच्छा है।",
    "こんにちは、今日はいい天気ですね。",
    "你好，今天天气很好，我们去公园散步吧。",
)


def lingua_version() -> str:
    return version(DISTRIBUTION)


def _code(language: Language) -> str:
    try:
        return language.iso_code_639_1.name.lower()
    except (AttributeError, ValueError):
        return language.iso_code_639_3.name.lower()


def names_and_codes() -> dict[Language, tuple[str, str]]:
    """WildChat's name and the ISO code of every language lingua knows."""
    return {language: (language.name.title(), _code(language)) for language in Language.all()}


def is_blank(texts: pl.Series) -> pl.Series:
    """Whether each text is empty, null, or only whitespace and zero-width characters."""
    return (
        texts.cast(pl.String)
        .fill_null("")
        .str.replace_all(f"[{ZERO_WIDTH}]", "")
        .str.strip_chars()
        .str.len_chars()
        == 0
    )


class LinguaIdentifier:
    """lingua over all its languages, in high-accuracy mode (WildChat's settings)."""

    def __init__(self, preload: bool = False) -> None:
        builder = LanguageDetectorBuilder.from_all_languages()
        if preload:
            builder = builder.with_preloaded_language_models()
        self._detector: LanguageDetector = builder.build()
        self._names = names_and_codes()
        self.version = lingua_version()

    def warm(self) -> None:
        """Load the models a day's texts would load: lingua loads a language's models the first
        time a text could be in it, so one text per script a warm worker would otherwise pay for
        in its first run (seconds of CPU and most of its 1.3 GB)."""
        self.predict(WARM_TEXTS)

    def description(self) -> str:
        return f"lingua {self.version} ({len(self._names)} languages, high accuracy)"

    def predict(self, texts: Iterable[str | None]) -> pl.DataFrame:
        """``language``, ``language_code`` and ``language_confidence`` for each text, in order;
        ``Nolang`` with null code and confidence where lingua finds no language."""
        series = pl.Series(list(texts), dtype=pl.String)
        blank = is_blank(series).to_list()
        todo = [text for text, empty in zip(series.to_list(), blank, strict=True) if not empty]
        found: list[tuple[str, str | None, float | None]] = []
        for start in range(0, len(todo), BATCH_TEXTS):
            batch = todo[start : start + BATCH_TEXTS]
            found.extend(
                self._top(values)
                for values in self._detector.compute_language_confidence_values_in_parallel(batch)
            )
        answers = iter(found)
        rows = [(NOLANG, None, None) if empty else next(answers) for empty in blank]
        return pl.DataFrame(rows, schema=LINGUA_PREDICTION_SCHEMA, orient="row")

    def _top(self, values: list) -> tuple[str, str | None, float | None]:
        # detect_language_of's own rule, on the values it is computed from: no language when
        # nothing scored (no letters) or when the two best tie.
        if not values or values[0].value <= 0.0:
            return (NOLANG, None, None)
        if len(values) > 1 and values[0].value == values[1].value:
            return (NOLANG, None, None)
        name, code = self._names[values[0].language]
        return (name, code, round(values[0].value, CONFIDENCE_DIGITS))


def identify_lingua(utterances: pl.DataFrame, identifier: LinguaIdentifier) -> pl.DataFrame:
    """``utterances`` with ``language``, ``language_code``, ``language_confidence`` and
    ``language_source``, as ``language.identify`` gives them; each distinct text is detected
    once (branch conversations repeat their history)."""
    texts = utterances.select(pl.col("content").unique())
    named = pl.concat([texts, identifier.predict(texts["content"])], how="horizontal")
    named = named.with_columns(
        language_source=pl.when(is_blank(named["content"]))
        .then(pl.lit(LanguageSource.EMPTY))
        .otherwise(pl.lit(LanguageSource.LINGUA))
    )
    return utterances.join(named, on="content", how="left", nulls_equal=True)


def lingua_labeller(identifier: LinguaIdentifier) -> Labeller:
    def label(utterances: pl.DataFrame) -> pl.DataFrame:
        return identify_lingua(utterances, identifier)

    return label
