"""Moderation end to end: Dagster assets over a real DuckDB file, the real ``openai`` client
against a local Moderation API server, and the real Detoxify code on a tiny checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey

from wildchat_dag.core.utterances import linked_utterances
from wildchat_dag.defs.moderation.resource import DetoxifyResource, OpenAIModerationResource
from wildchat_dag.loggen.generator import generate_logs
from wildchat_dag_tests.detoxify_checkpoints import build_tiny_checkpoint
from wildchat_dag_tests.moderation_server import ModerationServer
from wildchat_dag_tests.pipeline import (
    MODERATION,
    Pipeline,
    check_results,
    materializations,
    partitions_of,
    write_json_lines,
)

START = date(2024, 6, 1)
MODERATION_TABLES = (
    "openai_moderation",
    "detoxify_moderation",
    "utterance_toxicity",
    "conversation_toxicity",
)

pytestmark = pytest.mark.usefixtures("ip_salt")


@pytest.fixture
def server() -> Iterator[ModerationServer]:
    with ModerationServer() as s:
        yield s


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("detoxify"))


def scorers(server: ModerationServer, checkpoint: Path | None, **openai_config) -> dict:
    return {
        "openai": OpenAIModerationResource(
            api_key="test-key",
            base_url=server.base_url,
            backoff_base_s=0.01,
            backoff_max_s=0.05,
            **openai_config,
        ),
        "detoxify": DetoxifyResource(
            checkpoint=str(checkpoint) if checkpoint else None, device="cpu"
        ),
    }


@pytest.fixture
def generated(tmp_path) -> Path:
    log_root = tmp_path / "logs"
    generate_logs(log_root, start_date=START, days=2, conversations_per_day=40, seed=11)
    return log_root


def distinct_texts(p: Pipeline, day: str) -> set[str]:
    linked = p.table("linked_conversations").filter(
        pl.col("partition_day") == pl.lit(date.fromisoformat(day)).cast(pl.Datetime("us"))
    )
    contents = linked_utterances(linked)["content"]
    return set(contents.filter(contents != "").to_list())


def test_a_crash_mid_partition_bills_nothing_twice_and_loses_no_utterance(
    tmp_path, generated, server, checkpoint
):
    day, next_day = partitions_of(generated)
    p = Pipeline(
        generated,
        tmp_path / "w.duckdb",
        resources=scorers(server, checkpoint, batch_size=8, max_in_flight=1, max_attempts=2),
    )
    p.ingest(day, next_day)
    p.link(day, next_day)

    # The API goes down after three requests.
    server.fail_after(3)
    failed = p.run(MODERATION, day, raise_on_error=False)
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.to_string()
    assert f"partition {day}: openai scoring failed" in message
    assert "24 of" in message and "re-run sends only the others" in message
    billed_before = list(server.scored_inputs)
    assert len(billed_before) == 24

    server.fail_after(None)
    p.moderate(day)
    texts = distinct_texts(p, day)
    # Every text billed exactly once over both runs.
    assert sorted(server.scored_inputs) == sorted(texts)
    openai = p.table("openai_moderation")
    [done] = materializations(p, "openai_moderation")[-1:]
    assert done.metadata["cache_hits"].value == 24
    assert done.metadata["api_inputs_scored"].value == len(texts) - 24

    # No utterance lost: one row each, in every table, each scored or empty.
    linked = p.table("linked_conversations")
    utterances = linked_utterances(
        linked.filter(pl.col("partition_day") == openai["partition_day"][0])
    )
    for name in ("openai_moderation", "detoxify_moderation", "utterance_toxicity"):
        table = p.table(name)
        assert table.height == utterances.height, name
        assert table.select("conversation_id", "utterance_index").is_unique().all(), name
    assert set(openai["status"]) <= {"scored", "empty"}
    assert set(p.table("detoxify_moderation")["status"]) <= {"scored", "empty"}
    assert (
        p.table("conversation_toxicity").height
        == linked.filter(pl.col("partition_day") == openai["partition_day"][0]).height
    )

    # Re-materializing costs nothing and gives the same rows; so does the other order of days.
    before = p.snapshot(MODERATION_TABLES)
    server.reset_log()
    p.moderate(day)
    assert server.requests == []
    after = p.snapshot(MODERATION_TABLES)
    for name in MODERATION_TABLES:
        assert after[name].equals(before[name]), name

    p.moderate(next_day)
    # Texts seen on the first day are not sent again.
    assert not set(server.scored_inputs) & texts
    assert sorted(server.scored_inputs) == sorted(distinct_texts(p, next_day) - texts)


def test_flags_follow_the_scorers_and_the_spec_shape_reaches_the_table(
    tmp_path, server, checkpoint, requests_factory
):
    first = requests_factory.first("I will kill you", "Please don't.", f"{START}T10:00:00")
    second = requests_factory.follow(first, "", "You sent an empty message.", f"{START}T10:01:00")
    calm = requests_factory.first("What is 2 + 2?", "4.", f"{START}T11:00:00", ip="192.0.2.9")
    write_json_lines(tmp_path / "logs" / START.isoformat(), [first, second, calm])
    p = Pipeline(tmp_path / "logs", tmp_path / "w.duckdb", resources=scorers(server, checkpoint))
    day = START.isoformat()
    p.ingest(day)
    p.link(day)
    result = p.moderate(day)

    openai = p.table("openai_moderation").sort("conversation_id", "utterance_index")
    kill = openai.row(0, named=True)
    assert kill["status"] == "scored" and kill["flagged"] is True
    assert kill["categories"]["violence"] is True
    assert kill["category_scores"]["violence"] == pytest.approx(0.9)
    # The API's extra categories are kept, not dropped.
    assert "illicit" in kill["extra_category_scores"]
    assert kill["model"] == "omni-moderation-latest"
    assert kill["model_version"] == server.model_version
    empty = openai.filter(pl.col("status") == "empty")
    assert empty.height == 1 and empty["categories"][0] is None

    # The tiny Detoxify model scores about 0.5, above 0.1: every non-empty text is toxic by
    # Detoxify, and the kill one by OpenAI too.
    flags = p.table("utterance_toxicity").sort("conversation_id", "utterance_index")
    assert flags.filter(pl.col("toxic").is_null()).is_empty()
    assert flags["flagged_by"][0].to_list() == ["openai", "detoxify"]
    conversations = p.table("conversation_toxicity")
    assert conversations["toxic"].to_list() == [True, True]
    assert conversations["scored_by"].to_list() == [["openai", "detoxify"]] * 2
    [check] = check_results(result, "every_utterance_scored")
    assert check.passed


def test_unconfigured_scorers_materialize_null_scores_and_say_how_to_enable_them(
    tmp_path, generated, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    day = partitions_of(generated)[0]
    # The embedded defaults: no key, no Detoxify weights.
    p = Pipeline(generated, tmp_path / "w.duckdb")
    p.ingest(day)
    p.link(day)
    result = p.moderate(day)
    assert result.success

    for name, hint in (
        ("openai_moderation", "OPENAI_API_KEY"),
        ("detoxify_moderation", "checkpoint"),
    ):
        [m] = materializations(p, name)
        assert m.metadata["scorer_ran"].value is False
        assert hint in m.metadata["not_configured"].value
        table = p.table(name)
        assert set(table["status"]) <= {"not_configured", "empty"}
        assert hint in table.filter(pl.col("status") == "not_configured")["detail"][0]

    conversations = p.table("conversation_toxicity")
    unscored = conversations.filter(pl.col("unscored_utterances") > 0)
    # Unknown, never "clean", and no scorer is credited.
    assert unscored.height > 0 and unscored["toxic"].is_null().all()
    assert (unscored["scored_by"].list.len() == 0).all()
    [check] = check_results(result, "every_utterance_scored")
    assert not check.passed
    assert check.severity.value == "WARN"
    [m] = materializations(p, "conversation_toxicity")
    assert (
        m.metadata["unknown_conversations"].value
        == conversations.filter(pl.col("toxic").is_null()).height
    )


def test_the_threshold_versions_the_toxic_flags(monkeypatch, tmp_path):
    from wildchat_dag.definitions import build_assets

    def code_version(threshold: str) -> str:
        monkeypatch.setenv("WILDCHAT_TOXICITY_THRESHOLD", threshold)
        [flags] = [
            a for a in build_assets() if AssetKey("utterance_toxicity") in getattr(a, "keys", ())
        ]
        return flags.code_versions_by_key[AssetKey("utterance_toxicity")]

    assert code_version("0.1") != code_version("0.3")
    assert "0.3" in code_version("0.3")
