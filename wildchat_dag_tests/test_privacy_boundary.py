"""The privacy boundary, accepted end to end (issue 15): nothing placed leaves the raw layer.

One day of raw logs carries every case of the labelled set (``wildchat_dag.loggen.pii_cases``:
PII the rules redact, secrets and client IPs in every position, script and notation; decoys),
plus a line whose ``headers`` is a string holding a client IP, and quarantined lines holding PII
and a secret. It runs from ingest to both releases, every step through Dagster, on a Dagster
instance in a temporary ``DAGSTER_HOME`` (SQLite storage) and a real DuckDB file, with the
table checks on and both moderation scorers (the local Moderation API stand-in, the tiny
Detoxify network). Then no placed value, no quarantined value and no client IP of the logs may
appear, in the form written, in its normalized (plain) form, or JSON-escaped:

(a) in the release folders' files: every string of every Parquet file (nested ones too), and a
    plain byte search of every file;
(b) in any table of the DuckDB file outside ``RAW_LAYER_TABLES``: every string, nested too;
(c) anywhere in the Dagster instance: a byte search of every file under ``DAGSTER_HOME``
    (the SQLite run, event-log and schedule storage, compute logs, anything else);

and (d) every decoy must be in both releases as written. Failures are reported per case id,
with where and in which form the value was found; never the values.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance

from wildchat_dag.core.ip_addresses import SALT_ENV_VAR
from wildchat_dag.core.schema import RAW_LAYER_TABLES
from wildchat_dag.defs.moderation.resource import DetoxifyResource, OpenAIModerationResource
from wildchat_dag.loggen.pii_cases import (
    CaseLogs,
    PiiCaseSet,
    build_case_set,
    normalized_form,
    write_case_logs,
)
from wildchat_dag_tests.conftest import TEST_SALT
from wildchat_dag_tests.detoxify_checkpoints import build_tiny_checkpoint
from wildchat_dag_tests.moderation_server import ModerationServer
from wildchat_dag_tests.pipeline import (
    ANONYMIZATION,
    DETECTION,
    EXPORTS,
    FREQUENCY,
    GEO,
    INGEST,
    LANGUAGE,
    LINKING,
    MODERATION,
    RELEASE_RECORDS,
    TOXICITY,
    Pipeline,
)

pytestmark = pytest.mark.slow

SEED = 15
DAY = date(2024, 9, 2)
STAGES = (
    ("ingest", INGEST, True),
    ("linking", LINKING, True),
    ("detection", DETECTION, True),
    ("frequency", FREQUENCY, False),
    ("anonymization", ANONYMIZATION, True),
    ("geo", GEO, True),
    ("language", LANGUAGE, True),
    ("moderation", MODERATION + TOXICITY, True),
    ("release records", RELEASE_RECORDS, True),
    ("exports", EXPORTS, False),
)
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-f]{4})")
_RUN = re.compile(r"[^\W_]{10,}")


# -- what must not appear ---------------------------------------------------------------------


@dataclass(frozen=True)
class Needle:
    owner: str
    """A case id, ``quarantine/...`` or ``client_ip/<conversation key>``."""
    form: str
    text: str


def forms_of(
    value: str, canonical: str, entity: str, unique: Callable[[str], bool]
) -> dict[str, str]:
    """The forms in which ``value`` could be written out: as written, normalized, plain, JSON
    (``\\uXXXX``, either case, and with only control characters escaped), phone and card
    numbers as digits; and pieces of it that a partial redaction or a cut preview would leave:
    its longest word (a LinkedIn slug, an e-mail's local part) and the ends of a long key, where
    ``unique(piece)`` says the piece is written nowhere else in the set."""
    forms = {"written": value, "normalized": normalized_form(value), "canonical": canonical}
    for name, text in list(forms.items()):
        escaped = json.dumps(text)[1:-1]
        forms[f"{name}/json"] = escaped
        forms[f"{name}/JSON"] = _UNICODE_ESCAPE.sub(lambda m: "\\u" + m.group(1).upper(), escaped)
        forms[f"{name}/json-utf8"] = json.dumps(text, ensure_ascii=False)[1:-1]
    if entity in ("PHONE_NUMBER", "CREDIT_CARD"):
        forms["digits"] = re.sub(r"\D", "", canonical)
    runs = _RUN.findall(canonical)
    if runs:
        longest = max(runs, key=len)
        pieces = {"longest word": longest}
        if len(longest) >= 30:
            pieces |= {"head of the longest word": longest[:20], "its tail": longest[-20:]}
        forms |= {name: piece for name, piece in pieces.items() if unique(piece)}
    kept: dict[str, str] = {}
    for name, text in forms.items():
        if text not in kept.values() and len(text) >= 6:
            kept[name] = text
    return kept


def needles_of(cases: PiiCaseSet, logs: CaseLogs) -> list[Needle]:
    written = "\x00".join(
        [m["content"] for c in cases.conversations for m in c.messages]
        + [q.line for q in logs.quarantined]
    )

    def unique(piece: str) -> bool:
        return written.count(piece) == 1

    needles = []
    for v in cases.values:
        for form, text in forms_of(v.value, v.canonical, v.entity_type, unique).items():
            needles.append(Needle(v.case_id, form, text))
    for line in logs.quarantined:
        for q in line.values:
            for form, text in forms_of(q.value, q.canonical, q.entity_type, unique).items():
                needles.append(Needle(f"{q.case_id}:{q.entity_type}", form, text))
    for c in cases.conversations:
        needles.append(Needle(f"client_ip/{c.key}", "canonical", c.client_ip))
    return needles


@dataclass
class Findings:
    """Where each owner's values were found: ``{owner: {(place, form), ...}}``."""

    by_owner: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))
    searched: list[str] = field(default_factory=list)

    def search_text(self, place: str, text: str, needles: Iterable[Needle]) -> None:
        self.searched.append(place)
        for n in needles:
            if n.text in text:
                self.by_owner[n.owner].add((place, n.form))

    def search_bytes(self, place: str, data: bytes, needles: Iterable[Needle]) -> None:
        self.searched.append(place)
        for n in needles:
            if n.text.encode("utf-8") in data:
                self.by_owner[n.owner].add((place, n.form))

    def report(self, what: str, cases: PiiCaseSet) -> str:
        labels = {v.case_id: v for v in cases.values}
        lines = [
            f"{len(self.by_owner)} value(s) found {what} (searched {len(self.searched)} places):",
            "",
            "| case | entity | notation | script | found in (form) |",
            "|---|---|---|---|---|",
        ]
        for owner in sorted(self.by_owner):
            label = labels.get(owner)
            where = "; ".join(sorted(f"{place} ({form})" for place, form in self.by_owner[owner]))
            if label is None:
                lines.append(f"| {owner} | | | | {where[:300]} |")
            else:
                lines.append(
                    f"| {owner} | {label.entity_type} | {label.notation} | {label.script} | "
                    f"{where[:300]} |"
                )
        return "\n".join(lines)


def strings_in(value: object) -> Iterator[str]:
    """Every string inside a value read from Parquet or DuckDB (lists, structs, maps; binary
    values decoded)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode("utf-8", errors="replace")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings_in(k)
            yield from strings_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings_in(v)


def blob(rows: Iterable[object]) -> str:
    return "\x00".join(s for row in rows for s in strings_in(row))


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Boundary:
    cases: PiiCaseSet
    logs: CaseLogs
    pipeline: Pipeline
    home: Path
    needles: list[Needle]
    failures: list[str]

    def __repr__(self) -> str:
        # Without the values: a failing test prints its arguments.
        return f"Boundary({self.cases!r}, {len(self.needles)} needles, home={self.home})"


def stage_failures(stage: str, result) -> list[str]:
    """Failed steps and failed checks of a run: names and error classes, never messages (an
    error message may quote the data)."""
    found = []
    for event in result.all_events:
        data = event.event_specific_data
        if event.event_type_value == "STEP_FAILURE":
            error = getattr(data, "error", None)
            found.append(
                f"{stage}: step {event.step_key} failed ({getattr(error, 'cls_name', '')})"
            )
        elif event.event_type_value == "RUN_FAILURE":
            found.append(f"{stage}: run failed")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION" and not data.passed:
            found.append(f"{stage}: check {data.check_name} on {data.asset_key.to_user_string()}")
    return found


@pytest.fixture(scope="module")
def boundary(tmp_path_factory) -> Iterator[Boundary]:
    tmp = tmp_path_factory.mktemp("boundary")
    home = tmp / "dagster_home"
    home.mkdir()
    cases = build_case_set(SEED)
    logs = write_case_logs(cases, tmp / "logs", DAY, seed=SEED, quarantined=True)
    with pytest.MonkeyPatch.context() as env, ModerationServer() as server:
        env.setenv("DAGSTER_HOME", str(home))
        env.setenv(SALT_ENV_VAR, TEST_SALT)
        env.delenv("WILDCHAT_MODE", raising=False)
        env.delenv("WILDCHAT_RELEASE_INCLUDE_UNSCORED", raising=False)
        # The tiny Detoxify network scores about 0.5: above this, only OpenAI flags.
        env.setenv("WILDCHAT_TOXICITY_THRESHOLD", "0.99")
        instance = DagsterInstance.from_config(str(home))
        try:
            p = Pipeline(
                tmp / "logs",
                tmp / "warehouse.duckdb",
                instance=instance,
                table_checks=True,
                resources={
                    "openai": OpenAIModerationResource(api_key="k", base_url=server.base_url),
                    "detoxify": DetoxifyResource(
                        checkpoint=str(build_tiny_checkpoint(tmp / "detoxify")), device="cpu"
                    ),
                },
            )
            failures: list[str] = []
            for stage, keys, partitioned in STAGES:
                result = p.run(keys, DAY.isoformat() if partitioned else None, False)
                failures += stage_failures(stage, result)
            yield Boundary(cases, logs, p, home, needles_of(cases, logs), failures)
        finally:
            instance.dispose()


def test_every_stage_ran_and_every_check_passed(boundary):
    assert not boundary.failures, "\n".join(boundary.failures)
    quarantined = boundary.pipeline.table("quarantined_log_lines")
    assert sorted(quarantined["reason"].to_list()) == sorted(
        q.reason for q in boundary.logs.quarantined
    )
    assert boundary.pipeline.table("raw_requests").height == boundary.logs.requests


def test_nothing_placed_is_in_the_release_files(boundary):
    releases = boundary.pipeline.releases
    files = sorted(p for p in releases.rglob("*") if p.is_file())
    assert any(p.suffix == ".parquet" for p in files), f"no release under {releases}"
    found = Findings()
    for path in files:
        place = str(path.relative_to(releases))
        found.search_bytes(place, path.read_bytes(), boundary.needles)
        if path.suffix == ".parquet":
            found.search_text(
                f"{place} strings", blob(pq.read_table(path).to_pylist()), boundary.needles
            )
    assert not found.by_owner, found.report("in the release folders", boundary.cases)


def test_nothing_placed_is_in_a_table_outside_the_raw_layer(boundary):
    con = duckdb.connect(str(boundary.pipeline.database), read_only=True)
    found = Findings()
    try:
        tables = con.sql(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('information_schema', 'pg_catalog') ORDER BY ALL"
        ).fetchall()
        outside = [(s, t) for s, t in tables if t not in RAW_LAYER_TABLES]
        assert ("main", "anonymized_conversations") in outside
        assert ("main", "release_records") in outside
        for schema, table in outside:
            rows = con.sql(f'SELECT * FROM "{schema}"."{table}"').to_arrow_table().to_pylist()
            text = blob(rows)
            found.search_text(f"{schema}.{table}", text, boundary.needles)
            if table == "anonymized_conversations":
                # The search reads the texts: the decoys are there.
                assert all(d.value in text for d in boundary.cases.decoys)
    finally:
        con.close()
    assert not found.by_owner, found.report("in tables outside the raw layer", boundary.cases)


def test_nothing_placed_is_in_the_dagster_instance(boundary):
    found = Findings()
    seen_events = False
    for root, _, names in os.walk(boundary.home):
        for name in names:
            path = Path(root) / name
            data = path.read_bytes()
            found.search_bytes(str(path.relative_to(boundary.home)), data, boundary.needles)
            # The search reads the event logs: the materializations are there.
            seen_events |= b"anonymized_conversations" in data
    assert any(p.endswith(".db") for p in found.searched), found.searched
    assert seen_events, "no event of anonymized_conversations in the instance's storage"
    assert not found.by_owner, found.report("in the Dagster instance's storage", boundary.cases)


@pytest.mark.parametrize("release", ["public", "full"])
def test_decoys_are_in_the_release_as_written(boundary, release):
    folder = boundary.pipeline.releases / release / "data"
    texts = blob(
        row["conversation"]
        for path in sorted(folder.glob("*.parquet"))
        for row in pq.read_table(path, columns=["conversation"]).to_pylist()
    )
    rows = sum(pq.read_metadata(p).num_rows for p in folder.glob("*.parquet"))
    missing = [d.decoy_id for d in boundary.cases.decoys if d.value not in texts]
    assert not missing, (
        f"{len(missing)} decoy(s) not in the {release} release as written ({rows} of "
        f"{len(boundary.cases.conversations)} conversations released): {missing[:40]}"
    )
