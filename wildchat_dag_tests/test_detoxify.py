"""Detoxify through a tiny checkpoint built offline: the real loading and prediction code.

The tiny model's scores are meaningless, so these tests check shape, windows, batching, the
cache and determinism, not what is toxic.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest
import torch

from wildchat_dag.core.schema import DETOXIFY_FIELDS
from wildchat_dag.defs.moderation.detoxify_scoring import DetoxifyScorer, model_key
from wildchat_dag.defs.moderation.moderation import (
    ResultCache,
    ScoredText,
    Unconfigured,
    detoxify_moderation_table,
    score_day,
)
from wildchat_dag.defs.moderation.resource import DetoxifyResource
from wildchat_dag.resources.duckdb_io import locked_connection
from wildchat_dag_tests.detoxify_checkpoints import build_tiny_checkpoint
from wildchat_dag_tests.scoring import SavedResults, texts
from wildchat_dag_tests.test_toxicity import DAY, linked

# Each one token in the tiny vocabulary, so a text of n of them is n tokens.
WORDS = [
    "the",
    "be",
    "to",
    "of",
    "and",
    "a",
    "in",
    "that",
    "have",
    "it",
    "for",
    "not",
    "on",
    "with",
    "he",
    "as",
    "you",
    "do",
    "at",
    "this",
    "but",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("detoxify"))


def scorer_for(checkpoint: Path, **config) -> DetoxifyScorer:
    scorer = DetoxifyResource(checkpoint=str(checkpoint), device="cpu", **config).scorer()
    assert isinstance(scorer, DetoxifyScorer)
    return scorer


def long_text(tokens: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(tokens))


class CountingPredict:
    """Counts the calls into Detoxify's own predict, and the texts of each."""

    def __init__(self, scorer: DetoxifyScorer) -> None:
        self.calls: list[int] = []
        self._predict = scorer.detoxify.predict
        scorer.detoxify.predict = self

    def __call__(self, batch):
        self.calls.append(len(batch))
        return self._predict(batch)


def score(scorer: DetoxifyScorer, *contents: str) -> dict[str, ScoredText]:
    saved = SavedResults()
    scorer.score(texts(*contents), saved)
    return {text: saved.of(text) for text in contents}


def test_the_spec_fields_and_null_for_what_the_model_lacks(checkpoint):
    result = score(scorer_for(checkpoint), "hello world")["hello world"]
    # The original labels, renamed by Detoxify; it has no sexual_explicit.
    assert set(result.result) == set(DETOXIFY_FIELDS) - {"sexual_explicit"}
    assert all(0.0 < v < 1.0 for v in result.result.values())

    scores = score_day(
        DAY, linked(["hello world", ""]), scorer_for(checkpoint), cache_in(checkpoint)
    )
    table = detoxify_moderation_table(scores).utterances.sort("utterance_index")
    assert table["sexual_explicit"].to_list() == [None, None]
    assert table["toxicity"][0] == pytest.approx(result.result["toxicity"])
    assert table["status"].to_list() == ["scored", "empty"]
    assert table["toxicity"][1] is None


def cache_in(folder: Path) -> ResultCache:
    return ResultCache(functools.partial(locked_connection, str(folder.parent / "cache.duckdb")))


def test_a_3000_token_text_is_scored_in_windows_and_keeps_each_fields_highest(checkpoint):
    scorer = scorer_for(checkpoint)
    text = long_text(3_000)
    tokens = len(scorer.detoxify.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert tokens == 3_000

    windows = scorer.windows(text)
    # 510 tokens each, 64 shared: starts at 0, 446, ..., 2676.
    assert len(windows) == 7
    for window in windows:
        assert len(scorer.detoxify.tokenizer(window, add_special_tokens=False)["input_ids"]) <= 510
    assert text.startswith(windows[0]) and text.endswith(windows[-1])
    assert len(set(windows)) == 7

    result = score(scorer, text)[text]
    assert result.parts == 7
    separately = [scorer.detoxify.predict([w]) for w in windows]
    for name, value in result.result.items():
        assert value == pytest.approx(max(s[name] for s in separately), abs=1e-5)
    # Truncating, as Detoxify alone does, would see only the first window.
    assert scorer.detoxify.predict([text]) == pytest.approx(separately[0], abs=1e-5)


def test_batches_follow_batch_size_and_agree_with_one_at_a_time(checkpoint):
    contents = [long_text(n) for n in range(1, 41)]
    batched = scorer_for(checkpoint, batch_size=32)
    counted = CountingPredict(batched)
    together = score(batched, *contents)
    assert counted.calls == [32, 8]

    alone = scorer_for(checkpoint, batch_size=1)
    one_by_one = CountingPredict(alone)
    separately = score(alone, *contents)
    assert one_by_one.calls == [1] * 40
    for text in contents:
        assert together[text].result == pytest.approx(separately[text].result, abs=1e-5)


def test_scores_are_deterministic(checkpoint):
    contents = ["hello world", long_text(700), "you are bad"]
    first = score(scorer_for(checkpoint), *contents)
    again = score(scorer_for(checkpoint), *contents)
    assert {t: r.result for t, r in first.items()} == {t: r.result for t, r in again.items()}


def test_cached_texts_are_not_scored_again(checkpoint, tmp_path):
    cache = ResultCache(functools.partial(locked_connection, str(tmp_path / "c.duckdb")))
    scorer = scorer_for(checkpoint)
    counted = CountingPredict(scorer)
    conversations = linked(["hello world", "you are bad"], ["hello world", ""])
    first = score_day(DAY, conversations, scorer, cache)
    assert first.stats["cache_hits"] == 0 and sum(counted.calls) == 2

    again = score_day(DAY, linked(["you are bad", "a new text"]), scorer, cache)
    assert again.stats["cache_hits"] == 1 and sum(counted.calls) == 3
    assert again.utterances["status"].to_list() == ["scored", "scored"]


def test_another_checkpoint_is_another_cache_key(checkpoint, tmp_path):
    other = build_tiny_checkpoint(tmp_path / "other", seed=1)
    assert model_key("original", str(checkpoint)) != model_key("original", str(other))
    assert scorer_for(other).model == model_key("multilingual", str(other))


def test_a_checkpoint_of_a_hub_model_loads_from_a_local_config_folder(checkpoint, tmp_path):
    """A released checkpoint names a hub model (``bert-base-uncased``); offline, its config and
    tokenizer come from huggingface_config_path instead."""
    loaded = torch.load(checkpoint, weights_only=False)
    local_folder = loaded["config"]["arch"]["args"]["model_type"]
    loaded["config"]["arch"]["args"]["model_type"] = "bert-base-uncased"
    released = tmp_path / "released.ckpt"
    torch.save(loaded, released)

    scorer = scorer_for(released, huggingface_config_path=local_folder)
    assert score(scorer, "hello world")["hello world"].result == pytest.approx(
        score(scorer_for(checkpoint), "hello world")["hello world"].result
    )


def test_no_weights_means_not_configured_and_a_missing_file_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    unconfigured = DetoxifyResource().scorer()
    assert isinstance(unconfigured, Unconfigured)
    assert "no Detoxify weights on this machine" in unconfigured.reason
    assert "multilingual_debiased-0b549669.ckpt" in unconfigured.reason

    with pytest.raises(FileNotFoundError, match=r"nowhere\.ckpt"):
        DetoxifyResource(checkpoint=str(tmp_path / "nowhere.ckpt")).scorer()
