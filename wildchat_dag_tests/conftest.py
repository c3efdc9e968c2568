from __future__ import annotations

import json
import os
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from wildchat_dag.core.ip_addresses import SALT_ENV_VAR
from wildchat_dag.defs.ingest.parsing import parse_lines

SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLE = SHARED / "data" / "wildchat-sample" / "conversations.jsonl"


# A test salt: real ones come from the environment, and the pipeline tests set it there.
TEST_SALT = "test-salt-0123456789abcdef"


@pytest.fixture
def salt_only(monkeypatch):
    """A salt in the environment and nothing else changed: runs that link a day mark its
    withdrawn conversations, which matches hashed IPs."""
    monkeypatch.setenv(SALT_ENV_VAR, TEST_SALT)


@pytest.fixture
def ip_salt(monkeypatch):
    """The environment of a production run (a salt, not demo mode, the default database)."""
    monkeypatch.setenv(SALT_ENV_VAR, TEST_SALT)
    monkeypatch.delenv("WILDCHAT_MODE", raising=False)
    monkeypatch.delenv("WILDCHAT_GEOIP_PATH", raising=False)


@pytest.fixture
def wildchat_sample() -> list[dict[str, Any]]:
    if not SAMPLE.is_file():
        pytest.skip(f"the real WildChat sample is not at {SAMPLE} (../shared is absent)")
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()]


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RequestFactory:
    """Builds contract-v1 request dicts; ``follow`` continues a request's history."""

    def __init__(self) -> None:
        self.next_id = 1

    def first(self, user: str, reply: str, at: str, **kw: Any) -> dict[str, Any]:
        return self.request([], user, reply, at, **kw)

    def follow(self, prev: dict[str, Any], user: str, reply: str, at: str, **kw: Any):
        history = [*prev["messages"], {"role": "assistant", "content": prev["response"]}]
        kw.setdefault("ip", prev["headers"]["x-forwarded-for"])
        kw.setdefault("ua", prev["headers"]["user-agent"])
        return self.request(history, user, reply, at, **kw)

    def request(
        self,
        history,
        user,
        reply,
        at,
        ip="198.51.100.7",
        ua="UA-1",
        model="gpt-4-0314",
        turn_id=None,
    ):
        t = datetime.fromisoformat(at)
        if turn_id is None:
            turn_id, self.next_id = self.next_id, self.next_id + 1
        return {
            "turn_id": turn_id,
            "timestamp": iso(t),
            "model": model,
            "headers": {"user-agent": ua, "accept-language": "en-US", "x-forwarded-for": ip},
            "messages": [*history, {"role": "user", "content": user}],
            "response": reply,
            "response_timestamp": iso(t + timedelta(seconds=2)),
        }


@pytest.fixture
def requests_factory() -> RequestFactory:
    return RequestFactory()


def raw_frame(requests: list[dict[str, Any]]) -> pl.DataFrame:
    """Requests through the real ingest path, day by day, as ingest parses them (before
    ``split_texts`` stores their texts apart)."""
    by_day: dict[str, list[dict[str, Any]]] = {}
    for r in requests:
        by_day.setdefault(r["timestamp"][:10], []).append(r)
    frames = []
    for day, rows in sorted(by_day.items()):
        lines = pl.DataFrame(
            {
                "line": [json.dumps(r) for r in rows],
                "source_file": f"{day}/test.jsonl",
                "line_number": list(range(1, len(rows) + 1)),
            }
        )
        result = parse_lines(lines, date.fromisoformat(day), max_line_bytes=1 << 24)
        assert result.quarantine.is_empty(), result.quarantine
        frames.append(result.requests)
    return pl.concat(frames)


def utterance_frame(conversations: list[list[str]]) -> pl.DataFrame:
    """Detector input: conversation i's texts as alternating user and assistant utterances."""
    rows = [
        (cid, i, "user" if i % 2 == 0 else "assistant", text)
        for cid, texts in enumerate(conversations)
        for i, text in enumerate(texts)
    ]
    return pl.DataFrame(
        rows, schema=["conversation_id", "utterance_index", "role", "content"], orient="row"
    )


@pytest.fixture(autouse=True, scope="session")
def _private_homes_per_worker(tmp_path_factory):
    """Under pytest-xdist (scripts/test.sh), each worker its own WILDCHAT_HOME and DAGSTER_HOME
    (the project's dagster.yaml): the few tests that use the checkout's, such as the Dagster
    CLI's, would otherwise share one SQLite instance between two processes."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    names = ("WILDCHAT_HOME", "DAGSTER_HOME")
    previous = {name: os.environ.get(name) for name in names}
    home = tmp_path_factory.mktemp("wildchat_home")
    dagster_home = home / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "dagster.yaml", dagster_home)
    os.environ.update(WILDCHAT_HOME=str(home), DAGSTER_HOME=str(dagster_home))
    yield
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True, scope="session")
def _private_request_limit(tmp_path_factory):
    """The OpenAI request limit's lock folder, this session's own: by default it lives under the
    checkout's WILDCHAT_HOME, where a demo or a second test session on the same checkout would
    share (and slow down) it. Set in os.environ so that the runs tests start inherit it."""
    from wildchat_dag.defs.moderation.inflight_limit import LOCK_DIR_ENV_VAR

    previous = os.environ.get(LOCK_DIR_ENV_VAR)
    os.environ[LOCK_DIR_ENV_VAR] = str(tmp_path_factory.mktemp("request-limit-locks"))
    yield
    if previous is None:
        os.environ.pop(LOCK_DIR_ENV_VAR, None)
    else:
        os.environ[LOCK_DIR_ENV_VAR] = previous
