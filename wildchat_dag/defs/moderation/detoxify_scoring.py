"""Detoxify: loading it offline, and scoring texts longer than its 512 tokens.

Detoxify truncates at 512 tokens and ignores the rest, so a longer text is scored in windows of
``window_tokens`` tokens (overlapping by ``window_overlap``, so a phrase on a boundary is seen
whole once), and each field keeps its highest score over the windows. Texts are scored in
batches sorted by length, which keeps padding, and so wasted work, small.

Nothing is downloaded unless asked: with no checkpoint configured, the weights are taken from
torch's hub cache if they are there; otherwise the scorer is reported as not configured.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from wildchat_dag.core.hashing import file_sha256
from wildchat_dag.core.schema import DETOXIFY_FIELDS
from wildchat_dag.defs.moderation.moderation import ScoredText, ScoringReport, Unconfigured

if TYPE_CHECKING:
    from detoxify import Detoxify

DEFAULT_MODEL_TYPE = "multilingual"
WINDOW_TOKENS = 510  # 512 less the [CLS] and [SEP] the tokenizer adds
WINDOW_OVERLAP = 64
# Texts per save to the cache.
CHUNK_TEXTS = 1024


def model_key(model_type: str, checkpoint: str | None) -> str:
    """The cache's model: the model type, and the checkpoint's content when one is given (two
    checkpoints of one type score differently)."""
    if checkpoint is None:
        return f"detoxify-{model_type}"
    stat = os.stat(checkpoint)
    return f"detoxify-{model_type}@{file_sha256(checkpoint, stat.st_size, stat.st_mtime_ns)[:16]}"


def default_checkpoint(model_type: str) -> Path:
    """Where torch's hub cache keeps the released weights of ``model_type``."""
    import torch
    from detoxify.detoxify import MODEL_URLS

    if model_type not in MODEL_URLS:
        raise ValueError(f"Unknown Detoxify model type {model_type!r}: one of {sorted(MODEL_URLS)}")
    return Path(torch.hub.get_dir()) / "checkpoints" / MODEL_URLS[model_type].rsplit("/", 1)[1]


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _with_local_config(checkpoint: str, huggingface_config_path: str) -> str | io.BytesIO:
    """The checkpoint, re-pointed at a local config folder when its own ``model_type`` names a
    hub model (``xlm-roberta-base``): Detoxify always calls ``from_pretrained(model_type)``,
    which would go to the hub. torch.load reads a file object as well as a path."""
    import torch

    loaded = torch.load(checkpoint, map_location="cpu", weights_only=False)
    args = loaded.get("config", {}).get("arch", {}).get("args", {})
    if Path(str(args.get("model_type", ""))).is_dir():
        return checkpoint
    args["model_type"] = huggingface_config_path
    buffer = io.BytesIO()
    torch.save(loaded, buffer)
    buffer.seek(0)
    return buffer


def load_detoxify(
    model_type: str = DEFAULT_MODEL_TYPE,
    checkpoint: str | None = None,
    huggingface_config_path: str | None = None,
    device: str = "auto",
    allow_download: bool = False,
) -> tuple[Detoxify, str] | Unconfigured:
    """The model and its cache key, or why it cannot run here. A configured checkpoint that
    cannot be loaded is an error, naming the file."""
    from detoxify import Detoxify

    if checkpoint is None:
        cached = default_checkpoint(model_type)
        if cached.is_file():
            checkpoint = str(cached)
        elif not allow_download:
            return Unconfigured(
                "detoxify",
                f"no Detoxify weights on this machine: set the detoxify resource's checkpoint "
                f"(WILDCHAT_DETOXIFY_CHECKPOINT) to a local {model_type!r} checkpoint, with "
                f"huggingface_config_path (WILDCHAT_DETOXIFY_CONFIG_PATH) for its config and "
                f"tokenizer, or put {cached.name} in {cached.parent}; or allow downloads "
                "(allow_download: true) on a machine that can reach GitHub and Hugging Face",
            )
        else:
            model = Detoxify(model_type, device=resolve_device(device))
            return model, model_key(model_type, None)
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"Detoxify checkpoint {checkpoint} does not exist")
    source: str | io.BytesIO = str(path)
    if huggingface_config_path:
        source = _with_local_config(str(path), huggingface_config_path)
    try:
        model = Detoxify(
            model_type,
            checkpoint=source,
            device=resolve_device(device),
            huggingface_config_path=huggingface_config_path,
        )
    except Exception as exc:
        raise RuntimeError(f"Detoxify could not load the checkpoint {checkpoint}: {exc}") from exc
    return model, model_key(model_type, str(path))


class DetoxifyScorer:
    """Scores texts with a loaded Detoxify model: the spec's seven fields, in windows."""

    name = "detoxify"

    def __init__(
        self,
        detoxify: Detoxify,
        model: str,
        batch_size: int = 32,
        window_tokens: int = WINDOW_TOKENS,
        window_overlap: int = WINDOW_OVERLAP,
    ) -> None:
        if not 0 <= window_overlap < window_tokens:
            raise ValueError("window_overlap must be at least 0 and less than window_tokens")
        self.detoxify = detoxify
        self.model = model
        self.batch_size = max(1, batch_size)
        self.window_tokens = window_tokens
        self.window_overlap = window_overlap

    def windows(self, text: str) -> list[str]:
        """``text`` as pieces of at most ``window_tokens`` tokens; itself when it fits."""
        # A token spans at least one character, so a text this short fits.
        if len(text) <= self.window_tokens:
            return [text]
        offsets = self.detoxify.tokenizer(
            text,
            add_special_tokens=False,
            return_offsets_mapping=True,
            truncation=False,
            verbose=False,
        )["offset_mapping"]
        if len(offsets) <= self.window_tokens:
            return [text]
        stride = self.window_tokens - self.window_overlap
        pieces = []
        for start in range(0, len(offsets), stride):
            end = min(start + self.window_tokens, len(offsets))
            pieces.append(text[offsets[start][0] : offsets[end - 1][1]])
            if end == len(offsets):
                break
        return pieces

    def predict(self, texts: list[str]) -> list[dict[str, float]]:
        """The spec's fields for each text (each within the model's limit), batched longest
        first by token count: a batch is padded to its longest text, and the padding is work
        thrown away."""
        lengths = [len(ids) for ids in self.detoxify.tokenizer(texts, verbose=False)["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: lengths[i], reverse=True)
        scores: list[dict[str, float]] = [{} for _ in texts]
        for at in range(0, len(order), self.batch_size):
            batch = order[at : at + self.batch_size]
            predicted = self.detoxify.predict([texts[i] for i in batch])
            for name, values in predicted.items():
                if name not in DETOXIFY_FIELDS:
                    continue
                # A batch of one comes back as a number, not a list.
                values = values if isinstance(values, list) else [values]
                for i, value in zip(batch, values, strict=True):
                    scores[i][name] = float(value)
        return scores

    def score(self, texts: pl.DataFrame, save: Callable[[list[ScoredText]], None]) -> ScoringReport:
        started = time.perf_counter()
        windows = 0
        for chunk in texts.iter_slices(CHUNK_TEXTS):
            pieces = [self.windows(t) for t in chunk["content"].to_list()]
            flat = [p for text_pieces in pieces for p in text_pieces]
            predicted = iter(self.predict(flat))
            results = []
            for sha, text_pieces in zip(chunk["content_sha256"].to_list(), pieces, strict=True):
                per_window = [next(predicted) for _ in text_pieces]
                results.append(ScoredText(sha, _highest(per_window), len(text_pieces)))
            windows += len(flat)
            save(results)
        seconds = time.perf_counter() - started
        return ScoringReport(
            stats={
                "texts_scored": texts.height,
                "windows_scored": windows,
                "batch_size": self.batch_size,
                "device": str(self.detoxify.device),
                "scoring_seconds": round(seconds, 3),
                "texts_per_second": round(texts.height / seconds, 1) if seconds else None,
            }
        )


def _highest(per_window: list[dict[str, float]]) -> dict[str, Any]:
    return {name: max(w[name] for w in per_window) for name in per_window[0]}
