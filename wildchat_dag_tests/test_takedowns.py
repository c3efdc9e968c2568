"""Takedown requests: the ledger, the CLI that adds to it, and a takedown by each kind of key
through both releases, with a real DuckDB file and the real assets in-process."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance

from wildchat_dag.core.ip_addresses import SALT_ENV_VAR, hash_ip
from wildchat_dag.defs.release.release_versions import history_root_of, load_versions
from wildchat_dag.defs.takedowns.ledger import (
    LEDGER_SCHEMA,
    LedgerError,
    add_request,
    check_note,
    ledger_frame,
    ledger_version,
    match_requests,
    raw_ip_keys,
    read_ledger,
)
from wildchat_dag.takedown import rebuild_assets
from wildchat_dag_tests.conftest import TEST_SALT, RequestFactory
from wildchat_dag_tests.deployment import REPO
from wildchat_dag_tests.pipeline import EXPORTS, Pipeline, partitions_of, write_json_lines

START = date(2024, 8, 1)
DAYS = ["2024-08-01", "2024-08-02"]
HASH = "0123456789abcdef0123456789abcdef"
# Every per-day table outside the raw layer, keyed by conversation.
NON_RAW_DAILY = (
    "anonymized_conversations",
    "user_turn_locations",
    "conversation_locations",
    "utterance_languages",
    "conversation_languages",
    "openai_moderation",
    "detoxify_moderation",
    "utterance_toxicity",
    "conversation_toxicity",
    "release_records",
)
IP_HASH = "ab" * 32

# -- the ledger ----------------------------------------------------------------------------------


def test_requests_are_appended_under_the_next_id_and_read_back(tmp_path):
    ledger = tmp_path / "takedowns.jsonl"
    assert read_ledger(ledger) == [] and ledger_version(ledger) == "empty"
    first = add_request(
        ledger, date(2024, 10, 17), "pii_found", "conversation_hash", [HASH.upper()]
    )
    second = add_request(
        ledger, date(2024, 10, 18), "consent_withdrawn", "turn_identifier", [42, "43", 42], "x"
    )
    assert (first.request_id, second.request_id) == ("td-0001", "td-0002")
    assert first.keys == (HASH,) and second.keys == ("42", "43")
    assert read_ledger(ledger) == [first, second]
    version = ledger_version(ledger)
    assert len(version) == 16
    frame = ledger_frame(read_ledger(ledger))
    assert frame.schema == LEDGER_SCHEMA and frame.height == 3
    # A ledger whose last line lacks its newline still gets one line per request.
    ledger.write_bytes(ledger.read_bytes().rstrip(b"\n"))
    add_request(ledger, date(2024, 10, 19), "policy", "hashed_ip", [IP_HASH])
    assert [r.request_id for r in read_ledger(ledger)] == ["td-0001", "td-0002", "td-0003"]


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("not json", "Expecting value"),
        ("[1, 2]", "a JSON object"),
        ('{"request_id": "td-0001"}', "missing field(s)"),
        ('{"request_id": "x", "requested_on": "2024-01-01", "reason": "policy", '
         '"key_type": "hashed_ip", "keys": ["' + IP_HASH + '"]}', "td-0001"),
        ('{"request_id": "td-0001", "requested_on": "2024-13-01", "reason": "policy", '
         '"key_type": "hashed_ip", "keys": ["' + IP_HASH + '"]}', "a date"),
        ('{"request_id": "td-0001", "requested_on": "2024-01-01", "reason": "because", '
         '"key_type": "hashed_ip", "keys": ["' + IP_HASH + '"]}', "reason must be"),
        ('{"request_id": "td-0001", "requested_on": "2024-01-01", "reason": "policy", '
         '"key_type": "raw_ip", "keys": ["1.2.3.4"]}', "key_type must be"),
        ('{"request_id": "td-0001", "requested_on": "2024-01-01", "reason": "policy", '
         '"key_type": "hashed_ip", "keys": []}', "non-empty list"),
        ('{"request_id": "td-0001", "requested_on": "2024-01-01", "reason": "policy", '
         '"key_type": "hashed_ip", "keys": ["abc"]}', "64 hex digits"),
        ('{"request_id": "td-0001", "requested_on": "2024-01-01", "reason": "policy", '
         '"key_type": "turn_identifier", "keys": [true]}', "an integer"),
        ('{"request_id": "td-0001", "requested_on": "2024-01-01", "reason": "policy", '
         '"key_type": "turn_identifier", "keys": [1.5]}', "an integer"),
        ('{"request_id": "td-0001", "requested_on": "2024-01-01", "reason": "policy", '
         '"key_type": "turn_identifier", "keys": ["١٢"]}', "positive 64-bit"),
        ('{"request_id": "td-0001", "requested_on": "2024-01-01", "reason": "policy", '
         '"key_type": "turn_identifier", "keys": [99999999999999999999]}', "positive 64-bit"),
        ('{"request_id": "td-0001", "requested_on": "2024-01-01", "reason": "policy", '
         '"key_type": "hashed_ip", "keys": ["' + IP_HASH + '"], "extra": 1}', "unknown field"),
        ("[" * 100_000, ""),
    ],
)  # fmt: skip
def test_a_malformed_line_is_an_error_naming_the_file_and_line(tmp_path, line, error):
    ledger = tmp_path / "takedowns.jsonl"
    good = add_request(ledger, date(2024, 1, 1), "policy", "hashed_ip", [IP_HASH])
    with ledger.open("a") as f:
        f.write("\n" + line + "\n")
    with pytest.raises(LedgerError) as raised:
        read_ledger(ledger)
    assert str(raised.value).startswith(f"{ledger}:3: ") and error in str(raised.value)
    # Nothing is appended to a ledger that cannot be read.
    size = ledger.stat().st_size
    with pytest.raises(LedgerError):
        add_request(ledger, date(2024, 1, 2), "policy", "hashed_ip", [IP_HASH])
    assert ledger.stat().st_size == size and good.request_id == "td-0001"


def test_a_ledger_that_is_not_utf8_is_an_error_naming_the_line(tmp_path):
    ledger = tmp_path / "takedowns.jsonl"
    add_request(ledger, date(2024, 1, 1), "policy", "hashed_ip", [IP_HASH])
    with ledger.open("ab") as f:
        f.write(b'{"note": "\xff"}\n')
    with pytest.raises(LedgerError, match=r":2: not UTF-8"):
        read_ledger(ledger)


def test_a_repeated_request_id_is_an_error(tmp_path):
    ledger = tmp_path / "takedowns.jsonl"
    request = add_request(ledger, date(2024, 1, 1), "policy", "hashed_ip", [IP_HASH])
    with ledger.open("a") as f:
        f.write(request.as_json() + "\n")
    with pytest.raises(LedgerError, match=r":2: td-0001 is already on line 1"):
        read_ledger(ledger)


@pytest.mark.parametrize(
    "note",
    [
        "reported from 203.0.113.7",
        "mail me at someone@example.com",
        "key sk-abcdefghijklmnopqrstuvwxyz0123456789",
        "x" * 201,
    ],
)
def test_a_note_that_would_publish_a_value_is_refused(note):
    with pytest.raises(LedgerError, match="note"):
        check_note(note)


def test_a_public_note_is_kept_in_any_script_and_normalized():
    assert (
        check_note("Breaking News\u200b article,\n2024-10-17")
        == "Breaking News article, 2024-10-17"
    )
    assert check_note("ニュース記事 / مقال إخباري") == "ニュース記事 / مقال إخباري"
    assert check_note("  \u200b ") is None and check_note(None) is None
    with pytest.raises(LedgerError, match="a string"):
        check_note(5)


def test_a_raw_ip_becomes_the_hashes_of_every_notation_ingest_may_store():
    v4 = raw_ip_keys(" 203.0.113.7 ", TEST_SALT)
    mapped = ipaddress.ip_address("::ffff:203.0.113.7").compressed
    assert v4 == (hash_ip("203.0.113.7", TEST_SALT), hash_ip(mapped, TEST_SALT))
    assert raw_ip_keys("2001:DB8::0001", TEST_SALT) == (hash_ip("2001:db8::1", TEST_SALT),)
    with pytest.raises(LedgerError, match="not an IP"):
        raw_ip_keys("203.0.113.777", TEST_SALT)


def test_matching_by_each_kind_of_key():
    conversations = pl.DataFrame(
        {
            "conversation_id": [1, 2, 3, 4],
            "conversation_hash": [HASH, "f" * 32, "e" * 32, "d" * 32],
            # 3 is a branch of 2: it inherits turn 20.
            "turn_identifiers": [[1, 10], [2, 20], [20, 30], [4]],
            "hashed_ips": [["a" * 64], ["b" * 64], ["b" * 64], [IP_HASH, "c" * 64]],
        }
    )
    ledger = pl.DataFrame(
        [
            ("td-0001", date(2024, 1, 1), "pii_found", "conversation_hash", HASH, None),
            ("td-0002", date(2024, 1, 1), "policy", "turn_identifier", "20", None),
            ("td-0003", date(2024, 1, 1), "consent_withdrawn", "hashed_ip", IP_HASH, None),
            ("td-0004", date(2024, 1, 1), "policy", "turn_identifier", "999", None),
        ],
        schema=LEDGER_SCHEMA,
        orient="row",
    )
    matched = match_requests(ledger, conversations)
    assert matched.rows() == [(1, "td-0001"), (2, "td-0002"), (3, "td-0002"), (4, "td-0003")]
    assert match_requests(ledger.clear(), conversations).is_empty()
    assert match_requests(ledger, conversations.clear()).is_empty()


# -- end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Iterator[Pipeline]:
    """Two generated days plus one user's conversations on both days, through both releases.
    No scorer runs; the releases keep unscored conversations, as the demo's do."""
    tmp = tmp_path_factory.mktemp("takedowns")
    log_root = tmp / "logs"
    from wildchat_dag.loggen.generator import generate_logs

    generate_logs(log_root, start_date=START, days=2, conversations_per_day=20, seed=5)
    factory = RequestFactory()
    factory.next_id = 20_000_000
    one = factory.first("Plan my week, please.", "Sure.", f"{DAYS[0]}T08:00:00", ip="203.0.113.7")
    two = factory.first("What is a prime?", "A number ...", f"{DAYS[1]}T08:00:00", ip="203.0.113.7")
    write_json_lines(log_root / DAYS[0], [one])
    write_json_lines(log_root / DAYS[1], [two])
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SALT_ENV_VAR, TEST_SALT)
        env.delenv("WILDCHAT_MODE", raising=False)
        env.setenv("WILDCHAT_RELEASE_INCLUDE_UNSCORED", "1")
        p = Pipeline(log_root, tmp / "w.duckdb", instance=DagsterInstance.ephemeral())
        p.through_release(*partitions_of(log_root))
        yield p


def release_ids(p: Pipeline, release: str) -> set[int]:
    frame = pl.read_parquet(p.releases / release / "data" / "*.parquet")
    return {t[0]["turn_identifier"] for t in frame["conversation"].to_list()}


def takedown(p: Pipeline, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, SALT_ENV_VAR: TEST_SALT}
    env.pop("WILDCHAT_MODE", None)
    done = subprocess.run(
        [sys.executable, "-m", "wildchat_dag.takedown", "--ledger", str(p.ledger),
         "--database", str(p.database), "--release-root", str(p.releases), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_a_takedown_by_each_kind_of_key_leaves_both_releases_and_stays_out(released, tmp_path):
    p = released
    records = p.table("release_records")
    before = {r: release_ids(p, r) for r in ("public", "full")}
    assert len(before["public"]) == records.height >= 40
    rows = records.with_columns(
        first=pl.col("conversation").list.first().struct.field("turn_identifier")
    )
    generated = rows.filter(pl.col("first") < 20_000_000).sort("first")
    by_hash = generated.row(0, named=True)
    # A turn of a conversation that is not its first: the whole conversation goes.
    by_turn = generated.filter(pl.col("turn") > 1).row(0, named=True)
    later_turn = by_turn["conversation"][-1]["turn_identifier"]
    other = generated.filter(
        ~pl.col("first").is_in([by_hash["first"], by_turn["first"]])
        & (pl.col("hashed_ip") != hash_ip("203.0.113.7", TEST_SALT))
    ).row(0, named=True)

    takedown(p, "add", "--reason", "pii_found", "--conversation-hash", by_hash["conversation_hash"],
             "--note", "Breaking News article", "--date", "2024-10-17")  # fmt: skip
    takedown(p, "add", "--reason", "policy", "--turn-identifier", str(later_turn))
    added = takedown(p, "add", "--reason", "consent_withdrawn", "--raw-ip", "203.0.113.7")
    # The raw IP is hashed on entry: in no output and nowhere in the ledger.
    assert "203.0.113.7" not in added.stdout + added.stderr + p.ledger.read_text()
    assert "names 2 released record(s) on 2 day(s)" in added.stdout
    takedown(p, "add", "--reason", "policy", "--hashed-ip", other["hashed_ip"])
    listed = takedown(p, "list").stdout
    assert "td-0004" in listed and "Breaking News article" in listed
    user_ip = hash_ip("203.0.113.7", TEST_SALT)
    turns = pl.col("conversation").list.eval(pl.element().struct.field("turn_identifier"))
    ips = pl.col("conversation").list.eval(pl.element().struct.field("hashed_ip"))
    named = rows.filter(
        (pl.col("conversation_hash") == by_hash["conversation_hash"])
        | turns.list.contains(later_turn)
        | ips.list.contains(user_ip)
        | ips.list.contains(other["hashed_ip"])
        | pl.col("hashed_ip").is_in([user_ip, other["hashed_ip"]])
    )
    named_ids = set(named["first"].to_list())
    assert {by_hash["first"], by_turn["first"], other["first"], 20_000_000, 20_000_001} <= named_ids

    # Until the days are rebuilt, neither release can be cut, and the refusal names requests
    # and days, never a key.
    result = p.run(EXPORTS, None, raise_on_error=False)
    assert not result.success
    failure = next(
        e for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    ).event_specific_data.error.message
    assert "td-0001" in failure and "takedown apply" in failure and DAYS[0] in failure
    assert by_hash["conversation_hash"] not in failure and other["hashed_ip"] not in failure
    assert release_ids(p, "public") == before["public"]

    # What `apply` rebuilds: the named days from the mark on, then the releases.
    for day in DAYS:
        p.run([AssetKey(k) for k in rebuild_assets()], day)
    p.run(EXPORTS, None)
    # Gone from every table outside the raw layer, not only from the releases.
    for table in NON_RAW_DAILY:
        ids = set(p.table(table)["conversation_id"].to_list())
        assert not ids & set(named["conversation_id"].to_list()), table
    marks = p.table("withdrawn_conversations")
    assert set(marks["request_id"]) == {"td-0001", "td-0002", "td-0003", "td-0004"}
    assert set(marks["conversation_id"]) == set(named["conversation_id"].to_list())
    for release in ("public", "full"):
        after = release_ids(p, release)
        assert after == before[release] - named_ids, release
    records = p.table("release_records")
    assert not set(records["conversation"].list.first().struct.field("turn_identifier")) & named_ids
    meta = p.instance.get_latest_materialization_event(AssetKey("public_release"))
    metadata = meta.asset_materialization.metadata
    assert metadata["takedown_requests"].value == 4
    assert metadata["takedown_ledger_version"].value == ledger_version(p.ledger)
    assert metadata["conversations"].value == len(before["public"]) - len(named_ids)

    # The cut is a version whose manifest and changelog say what left, and why.
    [first, second] = load_versions(history_root_of(p.releases), "public")
    assert first.manifest["takedown_ledger_version"] == "empty"
    assert second.manifest["takedown_ledger_version"] == ledger_version(p.ledger)
    assert second.manifest["previous_version"] == first.version
    applied = {r["request_id"]: r["removed"] for r in second.manifest["takedown_requests_applied"]}
    assert sum(applied.values()) == len(named_ids) and applied["td-0003"] >= 2
    assert second.manifest["counts"]["removed"] == len(named_ids)
    entry = second.manifest["changelog_entry"]
    assert entry.startswith(f"- {second.built_on} (version {second.version}): ")
    assert f"{len(named_ids)} conversations removed at takedown requests (td-0001" in entry
    assert 'requested 2024-10-17, "Breaking News article": 1' in entry
    card = (p.releases / "public" / "README.md").read_text()
    assert "## Changelog" in card and entry in card and first.manifest["changelog_entry"] in card
    assert f"Version {second.version}" in card
    files = {f["path"]: f["sha256"] for f in second.manifest["files"]}
    assert "README.md" in files and any(k.startswith("data/") for k in files)
    diff = subprocess.run(
        [sys.executable, "-m", "wildchat_dag.releases", "diff", "public", first.version,
         second.version, "--root", str(p.releases)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert diff.returncode == 0 and "takedown td-0003" in diff.stdout, diff.stdout + diff.stderr
    # The hash request also holds the conversation's first turn id: new rules, a new hash,
    # and the conversation is still named.
    assert read_ledger(p.ledger)[0].resolved == (str(by_hash["first"]),)

    # A backfill of every step from the logs brings nothing back.
    p.through_release(*DAYS)
    assert release_ids(p, "public") == before["public"] - named_ids
    assert release_ids(p, "full") == before["full"] - named_ids
    for table in NON_RAW_DAILY:
        ids = set(p.table(table)["conversation_id"].to_list())
        assert not ids & set(named["conversation_id"].to_list()), table
    third = load_versions(history_root_of(p.releases), "public")[-1]
    assert "no conversations added, removed or changed" in third.manifest["changelog_entry"]


def test_apply_submits_exactly_the_named_days_then_the_releases(released, tmp_path):
    """`takedown apply` through the real dagster-graphql: the stored backfill targets the
    named days' records and statistics, and the releases once."""
    p = released
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    ledger = tmp_path / "takedowns.jsonl"
    records = p.table("release_records")
    day_two = records.filter(pl.col("partition_day").dt.date() == date(2024, 8, 2)).row(
        0, named=True
    )
    add_request(ledger, date(2024, 11, 1), "pii_found", "conversation_hash",
                [day_two["conversation_hash"]])  # fmt: skip
    env = {**os.environ, "DAGSTER_HOME": str(home), SALT_ENV_VAR: TEST_SALT}
    done = subprocess.run(
        [sys.executable, "-m", "wildchat_dag.takedown", "--ledger", str(ledger),
         "--database", str(p.database), "apply"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 day(s) hold a conversation the ledger names (2024-08-02)" in done.stdout
    with DagsterInstance.from_config(str(home)) as instance:
        [backfill] = instance.get_backfills()
        target = backfill.asset_backfill_data.target_subset
        days = {
            k.to_user_string(): sorted(s.get_partition_keys())
            for k, s in target.partitions_subsets_by_asset_key.items()
        }
        assert days == {key: ["2024-08-02"] for key in rebuild_assets()}
        assert {"withdrawn_conversations", "anonymized_conversations", "release_records"} <= set(
            days
        )
        assert {k.to_user_string() for k in target.non_partitioned_asset_keys} == {
            "release_statistics",
            "public_release",
            "full_release",
        }
        assert backfill.title == f"takedown ledger {ledger_version(ledger)}: 1 day(s)"


def test_the_cli_refuses_what_it_cannot_store(released, tmp_path):
    p = released
    ledger = tmp_path / "takedowns.jsonl"

    def add(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "wildchat_dag.takedown", "--ledger", str(ledger),
             "--database", str(p.database), "add", "--reason", "policy", *args],
            cwd=REPO, env={**os.environ, SALT_ENV_VAR: TEST_SALT}, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip

    for args, said in [
        ((), "exactly one kind of key"),
        (("--raw-ip", "10.0.0.1", "--hashed-ip", IP_HASH), "exactly one kind of key"),
        (("--raw-ip", "10.0.0.999"), "not an IP address"),
        (("--conversation-hash", "xyz"), "32 hex digits"),
        (("--hashed-ip", IP_HASH, "--note", "from 10.0.0.1"), "note holds"),
    ]:
        done = add(*args)
        assert done.returncode == 2 and said in done.stderr, (args, done.stderr)
        assert "10.0.0.1" not in done.stdout + done.stderr
    assert not ledger.exists() or read_ledger(ledger) == []


def test_the_job_adds_a_request_and_the_sensor_rebuilds_the_days_it_names(released, tmp_path):
    """From the UI: the add_takedown_request job appends a request; the takedown_application
    sensor observes the ledger and asks for one run per named day, once per ledger version."""
    from dagster import build_sensor_context

    from wildchat_dag.defs.release.resource import ReleaseFolder
    from wildchat_dag.defs.takedowns.assets import (
        TAKEDOWN_TAG,
        add_takedown_request_job,
        takedown_application,
    )
    from wildchat_dag.defs.takedowns.resource import TakedownLedger

    p = released
    ledger = TakedownLedger(path=str(tmp_path / "takedowns.jsonl"))
    resources = {
        "takedowns": ledger,
        "warehouse": p.resources["warehouse"],
        "release_folder": ReleaseFolder(root=str(p.releases)),
    }
    instance = DagsterInstance.ephemeral()
    records = p.table("release_records")
    target = records.filter(pl.col("partition_day").dt.date() == date(2024, 8, 2)).row(
        0, named=True
    )
    result = add_takedown_request_job.execute_in_process(
        run_config={
            "ops": {
                "add_to_takedown_ledger": {
                    "config": {
                        "reason": "pii_found",
                        "key_type": "conversation_hash",
                        "keys": [target["conversation_hash"]],
                        "note": "reported by its user",
                    }
                }
            }
        },
        resources=resources,
        instance=instance,
    )
    assert result.success
    [request] = read_ledger(ledger.path)
    assert request.keys == (target["conversation_hash"],) and request.note == "reported by its user"
    assert request.resolved == (str(target["conversation_id"]),)
    assert result.output_for_node("add_to_takedown_ledger") == "td-0001"

    with build_sensor_context(instance=instance, resources=resources) as context:
        first = takedown_application(context)
        assert [r.partition_key for r in first.run_requests] == ["2024-08-02"]
        assert first.run_requests[0].tags[TAKEDOWN_TAG] == ledger.version()
        assert [e.asset_key for e in first.asset_events] == [AssetKey("takedown_ledger")]
        cursor = context.cursor
    instance.report_runless_asset_event(first.asset_events[0])
    with build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        again = takedown_application(context)
        assert not getattr(again, "run_requests", None)


@pytest.mark.slow
def test_the_takedown_demo_applies_two_requests_and_prints_the_changelog(tmp_path):
    """The README's takedown demo, after the demo: the releases lose what the requests name,
    and the changelog printed is the one in each card."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WILDCHAT_", "OPENAI_")) and k != "DAGSTER_HOME"
    }
    env.update(WILDCHAT_HOME=str(tmp_path / "home"), DAGSTER_HOME=str(tmp_path / "dagster_home"))
    demo = ["bash", "scripts/demo.sh", "--days", "2", "--conversations-per-day", "20"]
    subprocess.run(demo, cwd=REPO, env=env, check=True, capture_output=True, timeout=900)
    releases = tmp_path / "home" / "releases"
    before = pl.read_parquet(releases / "public" / "data" / "*.parquet").height
    done = subprocess.run(
        ["bash", "scripts/takedown-demo.sh"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    removed = int(done.stdout.split("They name ")[1].split(" ")[0])
    assert removed >= 2
    after = pl.read_parquet(releases / "public" / "data" / "*.parquet").height
    assert after == before - removed
    card = (releases / "public" / "README.md").read_text()
    entries = [line for line in done.stdout.splitlines() if line.startswith("- ")]
    assert len(entries) == 4 and all(entry in card for entry in entries[:2])
    assert f"{removed} conversations removed at takedown requests (td-0001, PII found" in entries[0]
    ledger = (tmp_path / "home" / "takedowns.jsonl").read_text()
    assert ledger.count("\n") == 2
