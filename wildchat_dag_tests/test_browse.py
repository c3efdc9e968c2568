"""The review app (python -m wildchat_dag.browse) over a real demo: its release, the release's
search index asset, and the warehouse. HTTP through the real FastAPI app, then the same pages in
Chromium, as a reviewer uses them."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml
from dagster import materialize
from fastapi.testclient import TestClient

from wildchat_dag.browse.app import BrowseConfig, create_app
from wildchat_dag.defs.anonymization.redaction import Decision
from wildchat_dag.defs.anonymization.redaction_rules import DEFAULT_RULES_PATH
from wildchat_dag.defs.browse.assets import search_indexes
from wildchat_dag.defs.browse.release_reader import INDEX_MANIFEST, release_shards
from wildchat_dag.defs.browse.resource import SearchIndexFolder
from wildchat_dag.defs.browse.search_index import SearchIndex
from wildchat_dag.defs.release.release_versions import history_root_of, load_versions
from wildchat_dag.defs.release.resource import ReleaseFolder
from wildchat_dag_tests.deployment import free_port
from wildchat_dag_tests.moderation_server import ModerationServer

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "test-artifacts" / "browser" / "browse"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """``bash scripts/demo.sh``: two days of sample logs through the pipeline, the releases and
    their search indexes; OpenAI's moderation answered by the local stand-in of its API, so
    the conversations carry scores."""
    root = tmp_path_factory.mktemp("browse")
    home = root / "wildchat"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WILDCHAT_", "OPENAI_")) and k != "DAGSTER_HOME"
    }
    env.update(WILDCHAT_HOME=str(home), DAGSTER_HOME=str(root / "dagster_home"))
    with ModerationServer() as server:
        env.update(OPENAI_API_KEY="sk-local-test", OPENAI_BASE_URL=server.base_url)
        subprocess.run(
            ["bash", "scripts/demo.sh", "--days", "2", "--conversations-per-day", "60"],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
            timeout=900,
        )
    return home


@pytest.fixture(scope="module")
def emails_rules(demo: Path) -> Path:
    """Another version of the rules: every email address redacted, placeholder domains too."""
    data = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    data["redact"]["EMAIL_ADDRESS"] = {}
    path = demo.parent / "emails.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def config_of(home: Path, rules: Path) -> BrowseConfig:
    return BrowseConfig(
        release="public",
        release_root=home / "releases",
        search_root=home / "search",
        database=str(home / "warehouse.duckdb"),
        rules={"current": DEFAULT_RULES_PATH, "all-emails": rules},
    )


@pytest.fixture(scope="module")
def client(demo: Path, emails_rules: Path) -> Iterator[TestClient]:
    with TestClient(create_app(config_of(demo, emails_rules))) as client:
        yield client


@pytest.fixture(scope="module")
def released(demo: Path) -> pl.DataFrame:
    return pl.read_parquet(demo / "releases" / "public" / "data" / "*.parquet")


def facet_counts(html: str, facet: str) -> dict[str, int]:
    block = re.search(rf'data-facet="{facet}">(.*?)</div>', html, re.S)
    assert block, facet
    return {
        value: int(count.replace(",", ""))
        for value, count in re.findall(
            r'data-value="([^"]*)"[^>]*><span class="v">[^<]*</span><span class="n">([\d,]+)<',
            block.group(1),
        )
    }


def total_of(html: str) -> int:
    match = re.search(r'id="total"><strong>([\d,]+)</strong>', html)
    assert match, html[:2000]
    return int(match.group(1).replace(",", ""))


def test_the_demo_indexes_each_release_at_its_current_version(demo: Path):
    for release in ("public", "full"):
        folder = demo / "search" / release
        manifest = (folder / INDEX_MANIFEST).read_text()
        versions = load_versions(history_root_of(demo / "releases"), release)
        rows = sum(n for _, n in release_shards(demo / "releases" / release))
        assert f'"release_version": "{versions[-1].version}"' in manifest
        assert f'"documents": {rows}' in manifest and rows > 0
    # Each document leads to its conversation in the warehouse (the review's key).
    index = SearchIndex.open(demo / "search" / "public")
    hits = index.search("", limit=10_000).hits
    con = duckdb.connect(str(demo / "warehouse.duckdb"), read_only=True)
    try:
        records = con.execute(
            "SELECT conversation_hash, conversation_id, CAST(partition_day AS DATE) "
            "FROM main.release_records WHERE in_public"
        ).fetchall()
    finally:
        con.close()
    assert sorted(
        (h.conversation_hash, h.conversation_id, h.partition_day) for h in hits
    ) == sorted(records)


def test_browsing_shows_every_conversation_with_exact_facet_counts(client, released):
    html = client.get("/").text
    assert total_of(html) == released.height
    languages = dict(released["language"].fill_null("(none)").value_counts().iter_rows())
    shown = facet_counts(html, "language")
    # The top ten, each with its exact count.
    assert shown == {k: v for k, v in languages.items() if k in shown} and len(shown) == min(
        10, len(languages)
    )
    # The demo scores nothing: every conversation is of unknown toxicity, never "false".
    toxic = released["toxic"].cast(pl.String).str.to_lowercase().fill_null("unknown")
    assert facet_counts(html, "toxic") == dict(toxic.value_counts().iter_rows())


def test_a_filter_narrows_the_hits_and_the_other_facets(client, released):
    language = released["language"].drop_nulls().mode().sort()[0]
    html = client.get("/", params={"language": language}).text
    subset = released.filter(pl.col("language") == language)
    assert total_of(html) == subset.height
    countries = dict(subset["country"].fill_null("(none)").value_counts().iter_rows())
    assert facet_counts(html, "country").items() <= countries.items()
    # Its own facet keeps every value (multi-select), the chosen one marked.
    assert f'class="selected" data-value="{language}"' in html


def test_a_word_search_finds_the_conversations_that_hold_it(client, released):
    texts = released.select(
        text=pl.col("conversation").list.eval(pl.element().struct.field("content")).list.join(" ")
    )["text"]
    word = "cover"  # in the generator's prompts ("a cover letter")
    expected = int(texts.str.contains(r"(?i)\bcover\b").sum())
    assert expected > 0
    html = client.get("/", params={"q": word}).text
    assert total_of(html) == expected
    assert "<mark>cover</mark>" in html.lower() or "<mark>Cover</mark>" in html


def test_hostile_requests_get_a_page_that_says_why(client):
    cases = {
        "/?nope=1": 400,
        "/?page=abc": 400,
        "/?page=1000000": 400,
        "/?turns=7-9": 400,
        "/conversation/not-a-hash": 404,
        "/review/2024-13-01/1": 400,
        "/review/2024-01-01/x": 400,
        "/review/2024-01-01/999999999": 404,
        "/rules?a=current&b=missing": 400,
    }
    for url, status in cases.items():
        response = client.get(url)
        assert response.status_code == status, (url, response.text[:500])
        assert "Traceback" not in response.text and 'id="error"' in response.text
    long = client.get("/", params={"q": "x" * 5000 + ' "unbalanced'})
    assert long.status_code == 200 and 'id="query-error"' in long.text
    for query in [
        '"unbalanced',
        "title:",
        "*",
        "((",
        "\x00\x07",
        "AND OR NOT",
        "中文",
        "ｈｅｌｌｏ",
    ]:
        response = client.get("/", params={"q": query})
        assert response.status_code == 200, (query, response.text[:500])


def test_the_conversation_view_shows_turns_languages_places_and_placeholders(client, released):
    redacted = released.filter(pl.col("redacted")).row(0, named=True)
    html = client.get(f"/conversation/{redacted['conversation_hash']}").text
    turns = redacted["conversation"]
    assert html.count('<div class="turn ') == len(turns)
    placeholders = sum(
        len(re.findall(r"<PRESIDIO_ANONYMIZED_[A-Z_]+>", t["content"] or "")) for t in turns
    )
    assert html.count('<mark class="placeholder">') == placeholders > 0
    for turn in turns:
        if turn["language"]:
            assert turn["language"] in html
    assert 'id="review-link"' in html
    # OpenAI scored every turn: each has its table of scores.
    scored = [m for m in redacted["openai_moderation"] if m and m["category_scores"]]
    assert scored and html.count("<th>OpenAI category</th>") == len(scored)


def removed_values(home: Path) -> dict[tuple, list[str]]:
    """Per (day, conversation): the raw values detection found that its anonymized text no
    longer holds, read from the raw layer here, by the test: what no page may show."""
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute(
            """
            SELECT CAST(s.partition_day AS DATE) AS day, s.conversation_id, c.text,
                   (SELECT string_agg(u.content, ' ')
                    FROM (SELECT unnest(a.conversation) AS u) AS t(u)) AS released
            FROM main.pii_candidates c
            JOIN main.pii_scanned_utterances s USING (partition_day, content_sha256)
            JOIN main.anonymized_conversations a
              ON a.partition_day = s.partition_day AND a.conversation_id = s.conversation_id
            """
        ).pl()
    finally:
        con.close()
    values: dict[tuple, list[str]] = {}
    for day, conversation, text, released in rows.iter_rows():
        if text and text not in (released or ""):
            values.setdefault((day, conversation), []).append(text)
    return values


def test_no_review_page_shows_a_value_the_rules_redacted(demo: Path, client):
    values = removed_values(demo)
    assert values, "the demo has conversations with redacted values"
    for (day, conversation), texts in values.items():
        response = client.get(f"/review/{day.isoformat()}/{conversation}")
        assert response.status_code == 200, response.text[:500]
        assert 'data-decision="redact"' in response.text, (day, conversation)
        assert 'id="stale"' not in response.text
        page = html.unescape(response.text)
        for text in texts:
            assert text not in page, (day, conversation)


def test_the_rules_diff_lists_what_another_version_changes(client, demo: Path):
    html = client.get("/rules", params={"a": "current", "b": "all-emails"}).text
    summary = re.search(r'id="diff-summary"><strong>([\d,]+)</strong> conversations', html)
    assert summary, html[:3000]
    changed = re.findall(
        r"<td>EMAIL_ADDRESS</td><td>[^<]*</td><td>[^<]*</td><td>(\w+)</td><td>redact</td>", html
    )
    assert changed and set(changed) <= {Decision.SKIP_PATTERN, Decision.FREQUENT}
    assert "PERSON</td>" not in html.split('id="by-change"')[1]
    # Compared with itself, nothing changes.
    same = client.get("/rules", params={"a": "current", "b": "current"}).text
    assert 'id="no-change"' in same


# -- in a real browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(demo: Path, emails_rules: Path) -> Iterator[str]:
    """``bash scripts/browse.sh`` on a free port, as the README says."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILDCHAT_")}
    env.update(WILDCHAT_HOME=str(demo))
    log = (demo.parent / "browse.log").open("w")
    process = subprocess.Popen(
        ["bash", "scripts/browse.sh", "--port", str(port), "--rules", f"all-emails={emails_rules}"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=5):
                    break
            except OSError:
                assert process.poll() is None, (demo.parent / "browse.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the app did not answer in 120 s"
                time.sleep(0.5)
        yield url
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait(timeout=30)
        log.close()


def loads_a_page(driver, action) -> None:
    """Does ``action`` (a click or submit that loads another page) and waits for that page.
    Selenium returns from a click before the browser navigates: an element found at once may
    be the old page's, and go stale as it is read."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")
    action()
    wait = WebDriverWait(driver, 60)
    wait.until(expected_conditions.staleness_of(old))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def test_a_reviewer_searches_filters_opens_and_reviews_in_chromium(
    served: str, tmp_path, monkeypatch
):
    from selenium.webdriver.common.by import By

    from wildchat_dag_tests.test_browser import chromium, require_browser

    require_browser()
    monkeypatch.setenv("SE_OFFLINE", "true")
    monkeypatch.setenv("SE_MANAGER_PATH", str(tmp_path / "no-selenium-manager"))
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with chromium(tmp_path / "profile") as driver:
        driver.set_window_size(1400, 1000)
        driver.get(served)
        total = int(driver.find_element(By.CSS_SELECTOR, "#total strong").text.replace(",", ""))
        box = driver.find_element(By.NAME, "q")
        box.send_keys("letter")
        loads_a_page(driver, box.submit)
        found = int(driver.find_element(By.CSS_SELECTOR, "#total strong").text.replace(",", ""))
        assert 0 < found < total
        driver.save_screenshot(str(SHOTS / "search.png"))
        # A facet: the first language listed.
        option = driver.find_element(By.CSS_SELECTOR, '[data-facet="language"] a')
        language, count = (
            option.get_attribute("data-value"),
            option.find_element(By.CLASS_NAME, "n").text,
        )
        loads_a_page(driver, option.click)
        assert driver.find_element(By.CSS_SELECTOR, "#total strong").text == count
        assert "language=" in driver.current_url and language
        driver.save_screenshot(str(SHOTS / "filtered.png"))
        # A redacted conversation: the redacted facet, then the first hit.
        driver.get(f"{served}/?redacted=true")
        loads_a_page(driver, driver.find_element(By.CSS_SELECTOR, "#hits a.open").click)
        marks = driver.find_elements(By.CSS_SELECTOR, "mark.placeholder")
        assert marks and all("PRESIDIO_ANONYMIZED" in m.text for m in marks)
        driver.save_screenshot(str(SHOTS / "conversation.png"))
        loads_a_page(driver, driver.find_element(By.ID, "review-link").click)
        rows = driver.find_elements(By.CSS_SELECTOR, "tr.candidate")
        assert rows and any(r.get_attribute("data-decision") == "redact" for r in rows)
        driver.save_screenshot(str(SHOTS / "review.png"))
        driver.get(f"{served}/rules")
        loads_a_page(driver, driver.find_element(By.ID, "compare").click)
        assert driver.find_element(By.ID, "versions")
        driver.get(f"{served}/rules?a=current&b=all-emails")
        assert driver.find_element(By.ID, "diff-summary")
        driver.save_screenshot(str(SHOTS / "rules-diff.png"))


class BulkServer(ThreadingHTTPServer):
    """Speaks the part of Elasticsearch's _bulk API that an index build uses."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), BulkHandler)
        self.documents: list[dict] = []
        self.paths: list[str] = []


class BulkHandler(BaseHTTPRequestHandler):
    server: BulkServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        lines = [json.loads(line) for line in body.splitlines() if line]
        self.server.paths.append(self.path)
        actions, sources = lines[::2], lines[1::2]
        self.server.documents.extend(sources)
        answer = json.dumps(
            {"errors": False, "items": [{"index": {"status": 201}} for _ in actions]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


def test_the_index_asset_also_pushes_its_documents_to_a_search_cluster(demo: Path, tmp_path):
    server = BulkServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = materialize(
            [search_indexes[0]],
            resources={
                "release_folder": ReleaseFolder(root=str(demo / "releases")),
                "search_indexes": SearchIndexFolder(
                    root=str(tmp_path / "search"),
                    push_url=f"http://127.0.0.1:{server.server_port}",
                ),
            },
        )
    finally:
        server.shutdown()
    assert result.success
    rows = sum(n for _, n in release_shards(demo / "releases" / "public"))
    metadata = result.asset_materializations_for_node("public_search_index")[0].metadata
    assert metadata["pushed_documents"].value == rows == metadata["documents"].value
    assert set(server.paths) == {"/_bulk"}
    hashes = {d["conversation_hash"] for d in server.documents}
    released = pl.read_parquet(demo / "releases" / "public" / "data" / "*.parquet")
    assert len(server.documents) == rows and hashes == set(released["conversation_hash"])
    assert SearchIndex.open(tmp_path / "search" / "public").num_docs == rows


def test_served_without_the_warehouse_it_shows_the_release_only(demo: Path, released):
    config = config_of(demo, DEFAULT_RULES_PATH)
    config.database = None
    with TestClient(create_app(config)) as client:
        home = client.get("/").text
        assert total_of(home) == released.height and "/rules" not in home
        redacted = released.filter(pl.col("redacted")).row(0, named=True)
        page = client.get(f"/conversation/{redacted['conversation_hash']}").text
        assert 'id="review-link"' not in page and "PRESIDIO_ANONYMIZED" in page
        for url in ("/review/2024-01-01/1", "/rules?a=current&b=current"):
            response = client.get(url)
            assert response.status_code == 400 and "warehouse" in response.text
