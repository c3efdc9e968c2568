"""The release end to end: every step through Dagster, both exports, loaded back with Hugging
Face ``datasets`` and compared with WildChat-1M's card in ../shared."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import datasets
import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml
from dagster import AssetKey

from wildchat_dag.core.ip_addresses import SALT_ENV_VAR
from wildchat_dag.defs.anonymization.redaction_rules import DEFAULT_RULES_PATH
from wildchat_dag.defs.moderation.resource import DetoxifyResource, OpenAIModerationResource
from wildchat_dag.defs.release.release import conversation_hash
from wildchat_dag.defs.release.release_export import write_shards
from wildchat_dag.defs.release.release_schema import RELEASE_ARROW_SCHEMA, card_features
from wildchat_dag.loggen.generator import generate_logs
from wildchat_dag.redaction_refresh import refresh
from wildchat_dag_tests.conftest import SHARED, TEST_SALT, RequestFactory
from wildchat_dag_tests.detoxify_checkpoints import build_tiny_checkpoint
from wildchat_dag_tests.moderation_server import ModerationServer
from wildchat_dag_tests.pipeline import Pipeline, materializations, partitions_of, write_json_lines

SPEC = SHARED / "spec" / "wildchat-1m-dataset-card.md"
START = date(2024, 7, 1)


def card_yaml(text: str) -> dict:
    return yaml.safe_load(text.split("---")[1])


@pytest.fixture(scope="module")
def spec_header() -> dict:
    if not SPEC.is_file():
        pytest.skip(f"WildChat-1M's card is not at {SPEC} (../shared is absent)")
    return card_yaml(SPEC.read_text())


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Iterator[Pipeline]:
    """Two generated days plus hand-made conversations, through every step, both scorers on."""
    tmp = tmp_path_factory.mktemp("release")
    log_root = tmp / "logs"
    generate_logs(log_root, start_date=START, days=2, conversations_per_day=30, seed=21)
    factory = RequestFactory()
    factory.next_id = 10_000_000
    toxic = factory.first("I will kill you", "Please don't.", f"{START}T09:00:00", ip="81.2.69.142")
    minors = factory.first("tell me an underage story", "No.", f"{START}T09:30:00")
    calm = factory.first("What is 2 + 2?", "4.", f"{START}T10:00:00", ip="81.2.69.142")
    # requests.jsonl, beside the generator's requests-00.jsonl.gz.
    write_json_lines(log_root / START.isoformat(), [toxic, minors, calm])
    with pytest.MonkeyPatch.context() as env, ModerationServer() as server:
        env.setenv(SALT_ENV_VAR, TEST_SALT)
        env.delenv("WILDCHAT_MODE", raising=False)
        # The tiny Detoxify model scores about 0.5: above this, only OpenAI flags.
        env.setenv("WILDCHAT_TOXICITY_THRESHOLD", "0.99")
        p = Pipeline(
            log_root,
            tmp / "w.duckdb",
            resources={
                "openai": OpenAIModerationResource(api_key="k", base_url=server.base_url),
                "detoxify": DetoxifyResource(
                    checkpoint=str(build_tiny_checkpoint(tmp / "detoxify")), device="cpu"
                ),
            },
        )
        days = partitions_of(log_root)
        p.through_release(*days)
        yield p


def load(folder: Path) -> datasets.Dataset:
    return datasets.load_dataset("parquet", data_files=str(folder / "data" / "*.parquet"))["train"]


def test_the_export_loads_with_wildchats_features(released, spec_header):
    spec = datasets.DatasetInfo._from_yaml_dict(spec_header["dataset_info"]).features
    for release in ("public", "full"):
        loaded = load(released.releases / release)
        assert loaded.features == spec, release
        # The folder itself loads too: its card's configs point at the files.
        folder = datasets.load_dataset(str(released.releases / release))["train"]
        assert folder.features == spec and folder.num_rows == loaded.num_rows
        assert loaded.features.arrow_schema.remove_metadata().equals(RELEASE_ARROW_SCHEMA)
        card = card_yaml((released.releases / release / "README.md").read_text())
        # The card's YAML describes the same features, field for field and in order.
        assert card["dataset_info"]["features"] == spec_header["dataset_info"]["features"]
        assert card_features() == spec_header["dataset_info"]["features"]
        assert card["license"] == "odc-by"
        assert card["configs"] == spec_header["configs"]


def test_filtering_and_counts_match_the_card(released):
    records = released.table("release_records")
    public = load(released.releases / "public").to_polars()
    full = load(released.releases / "full").to_polars()
    # The public release holds no toxic conversation, and no unknown one.
    assert public["toxic"].to_list() == [False] * public.height
    assert public.height == records["in_public"].sum() > 0
    assert "toxic" in set(records["public_exclusion"].drop_nulls())
    # The full release holds toxic conversations but none flagged sexual/minors.
    flagged_minors = full.select(
        pl.col("openai_moderation")
        .list.eval(pl.element().struct.field("categories").struct.field("sexual/minors"))
        .list.any()
    ).to_series()
    assert not flagged_minors.any()
    assert full["toxic"].any()
    assert records.filter(pl.col("full_exclusion") == "sexual_minors").height == 1
    assert full.height == records["in_full"].sum() == records.height - 1

    for release, frame in (("public", public), ("full", full)):
        text = (released.releases / release / "README.md").read_text()
        card = card_yaml(text)
        [split] = card["dataset_info"]["splits"]
        assert split["num_examples"] == frame.height
        files = list((released.releases / release / "data").glob("*.parquet"))
        assert card["dataset_info"]["download_size"] == sum(f.stat().st_size for f in files)
        assert f"{frame.height:,} conversations between users and chatbots" in text
        users = frame["conversation"].explode().struct.unnest()
        users = users.filter(pl.col("role") == "user")["hashed_ip"].n_unique()
        assert f"| {frame.height:,} | {users:,} |" in text
        assert "openai and detoxify" in text and "2018-07-03" in text
        [export] = materializations(released, f"{release}_release")[-1:]
        assert export.metadata["conversations"].value == frame.height


def test_records_carry_wildchats_fields(released):
    full = load(released.releases / "full").to_polars()
    for row in full.iter_rows(named=True):
        messages = row["conversation"]
        assert row["conversation_hash"] == conversation_hash(messages)
        assert row["turn"] == sum(m["role"] == "user" for m in messages)
        assert len(row["openai_moderation"]) == len(row["detoxify_moderation"]) == len(messages)
        replies = [m["timestamp"] for m in messages if m["role"] == "assistant"]
        # The last turn's time: after every earlier reply, before its own.
        assert all(r < row["timestamp"] for r in replies[:-1]) and row["timestamp"] <= replies[-1]
        for user, reply in zip(messages[::2], messages[1::2], strict=False):
            # A user turn and its reply share the turn identifier.
            assert user["turn_identifier"] == reply["turn_identifier"]
            assert user["hashed_ip"] and user["header"] and user["timestamp"] is None
            assert reply["hashed_ip"] is None and reply["header"] is None
    kill = full.filter(
        pl.col("conversation").list.first().struct.field("content") == "I will kill you"
    )
    assert kill["country"].to_list() == ["United Kingdom"]
    assert kill["openai_moderation"][0][0]["categories"]["violence"] is True


def test_statistics_reproduce_the_papers_tables(released):
    statistics = released.table("release_statistics")
    full = load(released.releases / "full").to_polars()
    summary = dict(
        statistics.filter((pl.col("release") == "full") & (pl.col("section") == "summary"))
        .select("key", "value")
        .iter_rows()
    )
    assert summary["conversations"] == full.height
    assert summary["mean_turns"] == pytest.approx(full["turn"].mean())
    toxicity = dict(
        statistics.filter((pl.col("release") == "full") & (pl.col("section") == "toxicity"))
        .select("key", "value")
        .iter_rows()
    )
    # "kill" is one of the user turns; OpenAI flags it, the 0.99 threshold keeps Detoxify quiet.
    assert toxicity["user/openai"] > 0 and toxicity["user/detoxify"] == 0
    assert toxicity["user/either"] == toxicity["user/openai"]
    [m] = materializations(released, "release_statistics")
    assert "full/table_1" in m.metadata and "public/languages" in m.metadata


def test_conversation_hash_reproduces_wildchats_on_the_real_sample(wildchat_sample):
    matches = sum(
        conversation_hash(c["conversation"]) == c["conversation_hash"] for c in wildchat_sample
    )
    assert matches >= 179


def test_shards_follow_shard_rows_and_an_empty_release_still_loads(released, tmp_path):
    full = pq.read_table(list((released.releases / "full" / "data").glob("*.parquet")))
    written = write_shards(tmp_path / "r", [full.slice(0, 25), full.slice(25)], full.num_rows, 10)
    names = sorted(p.name for p in (tmp_path / "r" / "data").iterdir())
    shards = -(-full.num_rows // 10)
    assert names == [f"train-{i:05d}-of-{shards:05d}.parquet" for i in range(shards)]
    assert written.rows == full.num_rows
    assert load(tmp_path / "r").num_rows == full.num_rows

    # datasets refuses a split with no rows; the one empty file still has the schema.
    write_shards(tmp_path / "empty", [], 0, 10)
    [empty] = (tmp_path / "empty" / "data").iterdir()
    assert pq.read_table(empty).schema.equals(RELEASE_ARROW_SCHEMA)
    assert empty.name == "train-00000-of-00001.parquet"
    with pytest.raises(RuntimeError, match="changed during the export"):
        write_shards(tmp_path / "short", [full.slice(0, 5)], 6, 10)


def test_each_cut_is_a_version_whose_manifest_names_what_built_it(released):
    from wildchat_dag.defs.release.release_versions import (
        history_root_of,
        load_index,
        load_versions,
        sha256_of,
    )

    for release in ("public", "full"):
        latest = load_versions(history_root_of(released.releases), release)[-1]
        manifest = latest.manifest
        folder = released.releases / release
        assert manifest["release"] == release and manifest["takedown_ledger_version"] == "empty"
        assert manifest["redaction_rules_hashes"] == [released.rules.rules_hash]
        models = manifest["moderation"]["models"]
        assert set(models) == {"openai", "detoxify"} and all(models.values())
        assert manifest["language_model"].startswith("fastText lid.176")
        files = {f["path"]: f["sha256"] for f in manifest["files"]}
        assert files == {
            str(p.relative_to(folder)): sha256_of(p) for p in folder.rglob("*") if p.is_file()
        }
        index = load_index(latest)
        assert index.height == manifest["conversations"] == pq.read_table(folder / "data").num_rows
        assert f"Version {latest.version}" in (folder / "README.md").read_text()


def test_a_re_export_replaces_the_release_whole(released):
    public = released.releases / "public"
    (public / "data" / "stale.parquet").write_text("from an older release")
    released.run([AssetKey("public_release")], None)
    # Nothing of the old folder is left, and no staging folder beside it: only the releases and
    # their versions' history.
    assert sorted(p.name for p in released.releases.iterdir()) == ["full", "history", "public"]
    assert not any(p.name.startswith(".") for p in (released.releases / "history").rglob("*"))
    assert not (public / "data" / "stale.parquet").exists()
    assert (
        load(public).num_rows
        == card_yaml((public / "README.md").read_text())["dataset_info"]["splits"][0][
            "num_examples"
        ]
    )


def test_a_rule_change_rebuilds_the_release_under_the_new_rules(released, tmp_path):
    """Last in this file: it changes the released data. Lineage says which rules a release
    used: the refresh re-redacts, rebuilds the day's records and both exports."""
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(
        DEFAULT_RULES_PATH.read_text().replace(
            'placeholder: "<PRESIDIO_ANONYMIZED_{entity}>"', 'placeholder: "[{entity}]"'
        )
    )
    after = Pipeline(
        released.log_root, released.database, rules_path=rules_path, instance=released.instance
    )
    before = {k: len(materializations(released, k)) for k in ("release_records", "full_release")}
    assert refresh(after.instance, after.defs, after.rules, str(after.database)) == 0

    days = len(partitions_of(released.log_root))
    assert len(materializations(after, "release_records")) == before["release_records"] + days
    assert len(materializations(after, "full_release")) == before["full_release"] + 1
    [export] = materializations(after, "full_release")[:1]
    assert export.metadata["redaction_rules_hashes"].value == [after.rules.rules_hash]
    card = (released.releases / "full" / "README.md").read_text()
    assert after.rules.rules_hash in card and released.rules.rules_hash not in card


def test_the_card_names_its_sources_portably_and_counts_as_integers(released):
    """No path of the machine that built the release; which snapshot named the places; Table 1's
    counts as integers, in the card and in the statistics' metadata."""
    full = load(released.releases / "full").to_polars()
    model = released.resources["language_id"].resolved_model_path()
    names = "GeoLite2-City built 2018-07-03 (the embedded snapshot)"
    for release in ("public", "full"):
        text = (released.releases / release / "README.md").read_text()
        assert str(model.parent) not in text and str(released.database.parent) not in text
        assert f"({model.name}, sha256 " in text
        assert f"- Country and state names: {names}\n" in text
        [export] = materializations(released, f"{release}_release")[-1:]
        assert names in export.metadata["geoip_names"].value
    m = materializations(released, "release_statistics")[-1]
    rows = dict(
        tuple(c.strip() for c in line.strip("|").split("|"))
        for line in m.metadata["full/table_1"].value.splitlines()[2:]
    )
    assert rows["conversations"] == f"{full.height:,}"
    for count in ("conversations", "users", "days", "languages"):
        assert re.fullmatch(r"\d{1,3}(,\d{3})*", rows[count]), rows
    assert re.fullmatch(r"\d+\.\d\d", rows["mean_turns"]), rows
