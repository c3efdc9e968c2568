"""The project as a user meets it: the code location loads, and the README's demo command runs."""

import json
import os
import re
import stat
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml
from dagster import AssetKey, DagsterInstance, Definitions, asset, define_asset_job

from wildchat_dag import settings
from wildchat_dag.definitions import defs
from wildchat_dag.local_runs import run_stage

REPO = Path(__file__).resolve().parents[1]

# Run in a process of its own: the partitions are fixed when wildchat_dag.partitions loads, from
# that process's environment. Prints, as JSON, the days of the partitions (of collection_days and
# of each partitioned asset) and the days the instance at $DAGSTER_HOME has materialized.
PARTITIONS_AND_MATERIALIZATIONS = """
import json
from dagster import DagsterInstance
from wildchat_dag.definitions import defs
from wildchat_dag.local_runs import run_stage
from wildchat_dag.partitions import collection_days

graph = defs.resolve_asset_graph()
partitioned = [k for k in graph.get_all_asset_keys() if graph.get(k).is_partitioned]
instance = DagsterInstance.get()
print(json.dumps({
    "days": collection_days.get_partition_keys(),
    "assets": {
        k.to_user_string(): graph.get(k).partitions_def.get_partition_keys() for k in partitioned
    },
    "materialized": {
        k.to_user_string(): sorted(instance.get_materialized_partitions(k)) for k in partitioned
    },
}))
"""


def partitions_and_materializations(env: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PARTITIONS_AND_MATERIALIZATIONS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_definitions_load_with_descriptions_and_partitions():
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {
        "raw_requests",
        "raw_message_texts",
        "quarantined_log_lines",
        "linked_conversations",
        "orphaned_requests",
        "withdrawn_conversations",
        "pii_candidates",
        "pii_scanned_utterances",
        "redaction_rules",
        "takedown_ledger",
        "pii_entity_frequency",
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
        "release_day_statistics",
        "release_statistics",
        "public_release",
        "full_release",
        "public_search_index",
        "full_search_index",
    }
    # The rules file, the corpus frequencies, the releases and their indexes span every day; all
    # else is one day a partition.
    unpartitioned = {
        "redaction_rules",
        "takedown_ledger",
        "pii_entity_frequency",
        "release_statistics",
        "public_release",
        "full_release",
        "public_search_index",
        "full_search_index",
    }
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 60
        if key.to_user_string() in unpartitioned:
            assert node.partitions_def is None
        else:
            assert node.partitions_def.timezone == "UTC"
    assert defs.resolve_job_def("wildchat_daily")
    assert defs.resolve_job_def("redaction_refresh")


def test_dagster_cli_lists_the_assets():
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")),
            "asset",
            "list",
            "-m",
            "wildchat_dag.definitions",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == [
        "anonymized_conversations",
        "conversation_languages",
        "conversation_locations",
        "conversation_toxicity",
        "detoxify_moderation",
        "full_release",
        "full_search_index",
        "linked_conversations",
        "openai_moderation",
        "orphaned_requests",
        "pii_candidates",
        "pii_entity_frequency",
        "pii_scanned_utterances",
        "public_release",
        "public_search_index",
        "quarantined_log_lines",
        "raw_message_texts",
        "raw_requests",
        "release_day_statistics",
        "release_records",
        "release_statistics",
        "user_turn_locations",
        "utterance_languages",
        "utterance_toxicity",
        "withdrawn_conversations",
    ]


def test_readme_demo_command_runs_end_to_end(tmp_path):
    # A machine with no moderation set up: no API key, nothing in torch's hub cache.
    env = {**os.environ, "WILDCHAT_HOME": str(tmp_path / "home"), "TORCH_HOME": str(tmp_path)}
    for name in ("DAGSTER_HOME", "WILDCHAT_IP_SALT", "WILDCHAT_MODE", "OPENAI_API_KEY"):
        env.pop(name, None)
    result = subprocess.run(
        ["bash", "scripts/demo.sh", "--days", "2", "--conversations-per-day", "40"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "2024-01-01" in result.stdout and "2024-01-02" in result.stdout
    # A short report: the stages' one-line results, and of Dagster's event lines (one per
    # event at the console's default level, DEBUG) only warnings and errors.
    assert " - DEBUG - " not in result.stderr and " - INFO - " not in result.stderr
    assert "Days: 2024-01-01 .. 2024-01-02 (2 partitions)" in result.stdout
    assert "  release        all days  : ok" in result.stdout
    con = duckdb.connect(str(tmp_path / "home" / "warehouse.duckdb"), read_only=True)
    conversations = con.sql("SELECT count(*) FROM main.linked_conversations").fetchone()[0]
    anonymized = con.sql("SELECT count(*) FROM main.anonymized_conversations").fetchone()[0]
    located = con.sql("SELECT count(*) FROM main.conversation_locations").fetchone()[0]
    languages = con.sql("SELECT count(*) FROM main.conversation_languages").fetchone()[0]
    flagged = con.sql("SELECT count(*) FROM main.conversation_toxicity").fetchone()[0]
    con.close()
    assert conversations >= 70
    assert anonymized == located == languages == flagged == conversations
    # Neither scorer can run on embedded defaults; the demo says so rather than call all clean.
    assert "Moderation did not run: no API key: set OPENAI_API_KEY" in result.stdout
    assert "Moderation did not run: no Detoxify weights on this machine" in result.stdout
    # The demo ends with both releases and cards whose numbers are the files'. With no scorer,
    # the demo's policy keeps unscored conversations, and the card says not to publish.
    for release in ("public", "full"):
        folder = tmp_path / "home" / "releases" / release
        card = (folder / "README.md").read_text()
        header = yaml.safe_load(card.split("---")[1])
        rows = pq.read_table(folder / "data").num_rows
        assert header["dataset_info"]["splits"][0]["num_examples"] == rows == conversations
        assert f"{rows:,} conversations between users and chatbots" in card
        assert "Do not publish it." in card and "2018-07-03" in card
        # The demo says where each release is and how big it is on disk.
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        said = re.search(
            rf"^{release} release: {rows:,} conversations, ([0-9.,]+) MB on disk .* in (.+)$",
            result.stdout,
            re.M,
        )
        assert said, result.stdout
        assert said.group(1) == f"{size / 1e6:,.2f}" and Path(said.group(2)) == folder
    # The embedded 2018 GeoLite2 database was used, and the demo said so.
    assert "GeoLite2-City snapshot of 2018-07-03" in result.stdout + result.stderr
    assert "located" in result.stdout and "languages" in result.stdout
    # Demo mode made up a per-install salt, kept private, and said so.
    salt = tmp_path / "home" / "ip_salt"
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600
    assert f"per-install IP salt at {salt}" in result.stdout + result.stderr
    runs = list((tmp_path / "home" / "dagster_home" / "storage").iterdir())
    assert runs, "the demo's runs are in the persistent instance for `dagster dev`"
    # What the UI (scripts/ui.sh: demo mode, the same home) loads: partitions that are exactly
    # the demo's days, and each of them materialized for every partitioned asset.
    ui_env = {
        **env,
        "WILDCHAT_MODE": "demo",
        "DAGSTER_HOME": str(tmp_path / "home" / "dagster_home"),
    }
    seen = partitions_and_materializations(ui_env)
    folders = sorted(p.name for p in (tmp_path / "home" / "logs").iterdir() if p.is_dir())
    assert seen["days"] == folders == ["2024-01-01", "2024-01-02"]
    assert len(seen["assets"]) >= 15
    for key, days in seen["assets"].items():
        assert days == folders, key
        assert seen["materialized"][key] == folders, f"{key}: not every partition filled"


def end_date(monkeypatch, **env: str) -> date | None:
    for name in ("WILDCHAT_START_DATE", "WILDCHAT_END_DATE", "WILDCHAT_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings.partitions_end_date()


def test_the_partitions_end_at_the_demos_last_day_in_demo_mode_only(tmp_path, monkeypatch):
    logs = tmp_path / "logs"
    monkeypatch.setenv("WILDCHAT_LOG_ROOT", str(logs))
    # Production: open, up to today, unless told.
    assert end_date(monkeypatch) is None
    assert end_date(monkeypatch, WILDCHAT_END_DATE="2024-03-31") == date(2024, 3, 31)
    # Demo mode before the demo generated any logs (the UI may start first): the demo's
    # default days.
    assert settings.DEMO_DAYS == 3
    assert end_date(monkeypatch, WILDCHAT_MODE="demo") == date(2024, 1, 3)
    # Then the last day folder from the first day on; what else lies there does not count.
    for name in ("2023-12-31", "2024-01-01", "2024-01-02", "2024-01-05", "notes", "2024-1-9"):
        (logs / name).mkdir(parents=True)
    (logs / "2024-02-01").write_text("a file, not a day folder")
    assert end_date(monkeypatch, WILDCHAT_MODE="demo") == date(2024, 1, 5)
    assert end_date(monkeypatch, WILDCHAT_MODE="demo", WILDCHAT_START_DATE="2024-01-06") == date(
        2024, 1, 8
    )
    # WILDCHAT_END_DATE decides in demo mode too.
    assert end_date(monkeypatch, WILDCHAT_MODE="demo", WILDCHAT_END_DATE="2024-01-02") == date(
        2024, 1, 2
    )
    with pytest.raises(ValueError, match=r"WILDCHAT_END_DATE \(2023-12-31\) is before"):
        end_date(monkeypatch, WILDCHAT_END_DATE="2023-12-31")
    with pytest.raises(ValueError, match="WILDCHAT_END_DATE must be a date, YYYY-MM-DD"):
        end_date(monkeypatch, WILDCHAT_END_DATE="January")
    with pytest.raises(ValueError, match="WILDCHAT_START_DATE must be a date, YYYY-MM-DD"):
        end_date(monkeypatch, WILDCHAT_START_DATE="2024-13-01")


def test_the_daily_partitions_include_their_last_day(tmp_path):
    """WILDCHAT_END_DATE is the last partition, not the day after it (Dagster's end_date)."""
    env = {**os.environ, "WILDCHAT_HOME": str(tmp_path), "WILDCHAT_END_DATE": "2024-01-04"}
    env["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    (tmp_path / "dagster_home").mkdir()
    env.pop("WILDCHAT_MODE", None)
    seen = partitions_and_materializations(env)
    assert seen["days"] == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    assert all(days == seen["days"] for days in seen["assets"].values())


def test_local_runs_print_a_stage_line_and_dagsters_warnings_and_errors_only(capfd):
    """What the demo and the redaction refresh print of a run: one line for it, the root cause
    of a failure, and of Dagster's own event lines those at WARNING and above."""

    @asset
    def fine(context) -> int:
        context.log.info("an info line")
        context.log.warning("a warning line")
        return 1

    @asset
    def broken() -> int:
        raise RuntimeError("the failing step's own message")

    job = Definitions(assets=[fine, broken], jobs=[define_asset_job("j")]).resolve_job_def("j")
    with DagsterInstance.ephemeral() as instance:
        assert run_stage(job, "fine", [AssetKey("fine")], [None], instance)
        assert not run_stage(job, "broken", [AssetKey("broken")], [None], instance)
    out, err = capfd.readouterr()
    assert out.splitlines() == [
        "  fine           all days  : ok",
        "  broken         all days  : FAILED",
        "    RuntimeError: the failing step's own message",
    ]
    assert "a warning line" in err and "STEP_FAILURE" in err
    assert "the failing step's own message" in err
    assert "an info line" not in err and " - DEBUG - " not in err and " - INFO - " not in err


# The Dagster side of a step folder; every other module there, and every shared helper of core/,
# is pure logic that imports no dagster.
DAGSTER_SIDE = {
    "assets.py",
    "definitions.py",
    "resource.py",
    "stale_days.py",
    "day_statistics.py",
    "gate.py",
    "raw_ip_check.py",
    "table_checks.py",
    "instance_check.py",
    "automation.py",
    "jobs.py",
    "scale_out.py",
}
PACKAGE = Path(__file__).resolve().parents[1] / "wildchat_dag"


def imported_modules(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


PIPELINE_FOLDERS = [
    "anonymization",
    "automation",
    "browse",
    "checks",
    "geo",
    "ingest",
    "language",
    "linking",
    "moderation",
    "pii_detection",
    "release",
    "takedowns",
]


def test_each_step_is_a_folder_of_defs_and_its_pure_logic_imports_no_dagster():
    steps = sorted(p.name for p in (PACKAGE / "defs").iterdir() if (p / "__init__.py").exists())
    assert steps == PIPELINE_FOLDERS
    pure = [
        path
        for path in [*(PACKAGE / "core").glob("*.py"), *(PACKAGE / "defs").glob("*/*.py")]
        if path.name != "__init__.py" and path.name not in DAGSTER_SIDE
    ]
    assert len(pure) > 30
    for path in pure:
        dagster = {m for m in imported_modules(path) if m.split(".")[0].startswith("dagster")}
        assert not dagster, f"{path.relative_to(PACKAGE)} imports {sorted(dagster)}"
        # Nor anything that does, through another module of the project.
        project = {m for m in imported_modules(path) if m.startswith("wildchat_dag.")}
        for module in project:
            target = PACKAGE.parent / (module.replace(".", "/") + ".py")
            assert target.name not in DAGSTER_SIDE or not target.exists(), (path, module)


def test_each_assets_group_is_the_step_folder_that_defines_it():
    """The UI's groups are the steps a newcomer finds in wildchat_dag/defs/: one box per step in
    the global lineage, and a group page that shows one step."""
    from dagster import SourceAsset

    graph = defs.resolve_asset_graph()
    groups: dict[str, set[str]] = {}
    for definition in defs.assets or []:
        if isinstance(definition, SourceAsset):  # the rules file, an observable source
            keys, fn = [definition.key], definition.observe_fn
        else:
            keys, fn = list(definition.keys), definition.op.compute_fn
        module = getattr(fn, "decorated_fn", fn).__module__
        assert module.startswith("wildchat_dag.defs."), (keys, module)
        step = module.split(".")[2]
        for key in keys:
            assert graph.get(key).group_name == step, (key, module)
            groups.setdefault(step, set()).add(key.to_user_string())
    assert set().union(*groups.values()) == {k.to_user_string() for k in graph.get_all_asset_keys()}
    # Every step folder but the two that hold no assets.
    assert sorted(groups) == [s for s in PIPELINE_FOLDERS if s not in {"automation", "checks"}]
    assert groups["anonymization"] == {
        "redaction_rules",
        "pii_entity_frequency",
        "anonymized_conversations",
    }


def test_the_defs_folder_holds_every_asset_that_build_assets_builds():
    """The code location loads wildchat_dag/defs/; the tests build the same steps with other
    rules through build_assets. Both must hold the same assets and checks."""
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

    from wildchat_dag.definitions import build_assets

    graph = defs.resolve_asset_graph()
    built = AssetGraph.from_assets(build_assets())
    assert graph.get_all_asset_keys() == built.get_all_asset_keys()
    own = {k for k in built.asset_check_keys}
    assert own <= set(graph.asset_check_keys)


def test_dg_check_defs_passes():
    env = {**os.environ, "WILDCHAT_MODE": "demo"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dg"), "check", "defs"],
        cwd=PACKAGE.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "All definitions loaded successfully" in done.stdout + done.stderr


def test_the_default_rules_file_is_the_packages_own_copy():
    from wildchat_dag.defs.anonymization.redaction_rules import DEFAULT_RULES_PATH

    assert DEFAULT_RULES_PATH.is_file()
    assert DEFAULT_RULES_PATH == PACKAGE / "redaction_rules.yaml"
