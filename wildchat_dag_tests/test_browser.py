"""A real browser opens the Dagster UI of a demo instance: the asset graph and an asset's page.

The GraphQL tests in test_webserver.py prove the data is there; this one proves the web app
renders it (JavaScript bundle, routing, graph layout). Screenshots go to test-artifacts/browser/.
"""

import os
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from wildchat_dag.defs.anonymization.redaction_rules import DEFAULT_RULES_PATH
from wildchat_dag_tests.deployment import free_port
from wildchat_dag_tests.test_scripts import ui_started
from wildchat_dag_tests.test_webserver import REPO, dagster_env, run_module, webserver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get install -y --no-install-recommends chromium chromium-driver"
ARTIFACTS = REPO / "test-artifacts" / "browser"
# Generous: on a two-core machine the first page load compiles a large JavaScript bundle
# while the code server is still answering its first GraphQL queries.
TIMEOUT = 240
CHROMIUM_ARGS = [
    "--headless=new",
    # Root in a container has no user namespace for the sandbox.
    "--no-sandbox",
    "--disable-gpu",
    # /dev/shm is small in containers and Chromium crashes when it fills up.
    "--disable-dev-shm-usage",
    # No traffic to Google: the test must pass on a machine without network.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--window-size=1600,1000",
]
GROUPS = [
    "ingest",
    "linking",
    "pii_detection",
    "anonymization",
    "geo",
    "language",
    "moderation",
    "release",
    "takedowns",
    "browse",
]
# One path through the pipeline, raw layer to release, each asset in its own group.
LINEAGE_PATH = [
    "raw_requests",
    "linked_conversations",
    "anonymized_conversations",
    "release_records",
]
DAY = "2024-01-01"

# The text of each graph node (group box or asset card) that lies wholly inside the window:
# the graph draws its nodes as HTML inside SVG foreignObjects and culls those off screen.
VISIBLE_GRAPH_LINES = """
const lines = [];
for (const node of document.querySelectorAll('svg foreignObject > *')) {
  const r = node.getBoundingClientRect();
  if (r.width > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth
      && r.bottom <= innerHeight) {
    lines.push(...node.innerText.split('\\n').map((s) => s.trim()));
  }
}
return lines;
"""

# The pan and zoom of the graph, as the transform of the layer that holds the nodes' SVG.
GRAPH_TRANSFORM = """
const svg = document.querySelector('svg foreignObject')?.ownerSVGElement;
return svg ? svg.parentElement.style.transform : null;
"""

# The element that pans and zooms the graph, around the layer that scales the nodes' SVG.
GRAPH_VIEWPORT = "//*[local-name()='svg'][.//*[local-name()='foreignObject']]/../.."

T = TypeVar("T")


def require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if not missing:
        return
    reason = (
        f"{' and '.join(missing)} missing: install them with `sudo {INSTALL}` "
        "(scripts/_system_packages.sh does it)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must install the browser for this test: {reason}")
    pytest.skip(reason)


@contextmanager
def chromium(profile: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in [*CHROMIUM_ARGS, f"--user-data-dir={profile}"]:
        options.add_argument(arg)
    # An explicit driver path means Selenium Manager, which would download a driver and a
    # browser, is never asked for one.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(TIMEOUT)
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T], what: str, shot: Path) -> T:
    try:
        # React re-renders replace elements between finding and reading them.
        return WebDriverWait(
            driver, TIMEOUT, poll_frequency=1, ignored_exceptions=[StaleElementReferenceException]
        ).until(condition)
    except TimeoutException:
        driver.save_screenshot(str(shot))
        raise AssertionError(
            f"{what}: not within {TIMEOUT} s at {driver.current_url}; the page then: {shot}"
        ) from None


def click(driver: WebDriver, xpath: str, shot: Path) -> None:
    # Menus open with an animation, so the element may take a moment to appear.
    wait_for(driver, lambda d: d.find_element(By.XPATH, xpath), xpath, shot).click()


def graph_shows(names: list[str]) -> Callable[[WebDriver], bool]:
    def shown(driver: WebDriver) -> bool:
        lines = driver.execute_script(VISIBLE_GRAPH_LINES)
        # Group boxes first say "(fetching statuses)": a screenshot then shows no statuses.
        return set(names) <= set(lines) and not any("fetching" in line for line in lines)

    return shown


def graph_settled(driver: WebDriver) -> bool:
    # Fitting the graph is animated: a screenshot mid-way shows it off centre.
    before = driver.execute_script(GRAPH_TRANSFORM)
    time.sleep(0.5)
    return before is not None and before == driver.execute_script(GRAPH_TRANSFORM)


def metadata_value(driver: WebDriver, key: str) -> str | None:
    """The value cell of a row of the asset page's metadata table, once it is rendered."""
    rows = driver.find_elements(By.XPATH, f"//tr[td[normalize-space()='{key}']]")
    return rows[0].find_elements(By.TAG_NAME, "td")[-1].text.strip() if rows else None


@pytest.mark.slow
def test_the_ui_draws_the_asset_graph_and_an_assets_latest_metadata(tmp_path, monkeypatch):
    require_browser()
    # Selenium Manager downloads drivers and browsers. Pointing it at a file that does not
    # exist turns any call to it into an error, so this test can never reach the network.
    monkeypatch.setenv("SE_OFFLINE", "true")
    monkeypatch.setenv("SE_MANAGER_PATH", str(tmp_path / "no-selenium-manager"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    graph_shot = ARTIFACTS / "asset-graph.png"
    path_shot = ARTIFACTS / "asset-graph-lineage-path.png"
    asset_shot = ARTIFACTS / "asset-raw_requests.png"

    env = dagster_env(tmp_path, WILDCHAT_MODE="demo")
    env.pop("WILDCHAT_IP_SALT", None)
    run_module("wildchat_dag.demo", env, "--days", "1", "--conversations-per-day", "40")
    # Read before the webserver starts: the UI must show what the warehouse holds.
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        kept = db.sql("SELECT count(*) FROM raw_requests").fetchone()[0]
        quarantined = db.sql("SELECT count(*) FROM quarantined_log_lines").fetchone()[0]
    assert kept > 0

    version = subprocess.run(
        [str(CHROMIUM), "--version"], capture_output=True, text=True, check=True
    ).stdout
    with webserver(env) as port, chromium(tmp_path / "chromium-profile") as driver:
        assert driver.capabilities["browserVersion"] in version, (
            f"selenium drove {driver.capabilities['browserVersion']}, not {CHROMIUM}: {version}"
        )
        ui = f"http://127.0.0.1:{port}"

        # The global asset lineage opens with one collapsed box per group.
        driver.get(f"{ui}/asset-groups")
        wait_for(driver, graph_shows(GROUPS), f"the asset graph with groups {GROUPS}", graph_shot)
        driver.save_screenshot(str(graph_shot))

        # The whole graph does not fit the window legibly (zoomed out, the UI shortens names),
        # so it is filtered to one lineage path, as a user would in its search box.
        selection = " or ".join(f'key:"{name}"' for name in LINEAGE_PATH)
        driver.get(f"{ui}/asset-groups~{urllib.parse.quote(selection, safe='')}/")
        wait_for(driver, graph_shows(["ingest", "release"]), "the filtered graph", path_shot)
        # Even four expanded groups need the width of the side panels to be drawn at full size.
        # The asset tree's toggle goes first: while the navigation is shown, its panel button
        # is the only one without a label.
        click(
            driver, "//button[normalize-space()=''][*[@aria-label='panel_show_right']]", path_shot
        )
        click(driver, "//button[normalize-space()='Hide navigation']", path_shot)
        click(driver, "//button[*[@role='img' and @aria-label='settings']]", path_shot)
        click(driver, "//*[@role='menuitem'][contains(., 'Expand all groups')]", path_shot)
        # Expanding keeps the old zoom; a double click on the background fits the graph. The
        # bottom left corner is background: the graph is centred, the search bar is at the top
        # and the zoom buttons at the bottom right.
        viewport = driver.find_element(By.XPATH, GRAPH_VIEWPORT)
        width, height = viewport.rect["width"], viewport.rect["height"]
        ActionChains(driver).move_to_element_with_offset(
            viewport, 20 - width // 2, height // 2 - 20
        ).double_click().perform()
        wait_for(driver, graph_shows(LINEAGE_PATH), f"asset nodes {LINEAGE_PATH}", path_shot)
        wait_for(driver, graph_settled, "the graph to stop moving", path_shot)
        driver.save_screenshot(str(path_shot))

        # The asset's overview shows the metadata of its latest materialization.
        driver.get(f"{ui}/assets/raw_requests")
        shown = wait_for(
            driver,
            lambda d: metadata_value(d, "requests_kept"),
            "metadata of raw_requests",
            asset_shot,
        )
        driver.save_screenshot(str(asset_shot))
        assert shown == str(kept), f"requests_kept {shown}, warehouse rows {kept}: {asset_shot}"
        lines_read = metadata_value(driver, "lines_read")
        assert lines_read == str(kept + quarantined), f"lines_read {lines_read}: {asset_shot}"
        page = driver.find_element(By.TAG_NAME, "body").text
        assert "Latest materialization" in page and DAY in page, f"no {DAY} run: {asset_shot}"


DEMO_SHOTS = REPO / "test-artifacts" / "browser" / "demo"
SHOTS = (
    "catalog",
    "lineage",
    "anonymization-before",
    "anonymization-after",
    "release-after",
    "anonymized-check",
)
ANONYMIZATION_GROUP = ["redaction_rules", "pii_entity_frequency", "anonymized_conversations"]


def checks_warning(lines: list[str]) -> int:
    """How many graph nodes say that not all of their asset checks passed ("2 / 3 Passed")."""
    counts = [re.fullmatch(r"(\d+) / (\d+) Passed", line) for line in lines]
    return sum(1 for m in counts if m and int(m.group(1)) < int(m.group(2)))


@pytest.mark.slow
def test_the_demo_looks_finished_and_a_rules_edit_shows_what_is_stale(tmp_path, monkeypatch):
    """What a new user meets: `bash scripts/demo.sh`, then `bash scripts/ui.sh` (webserver and
    daemon). Every daily asset is 100% filled; after a rules edit, without a reload, the redaction
    assets and what follows them show as stale in the graph and on their pages."""
    require_browser()
    monkeypatch.setenv("SE_OFFLINE", "true")
    monkeypatch.setenv("SE_MANAGER_PATH", str(tmp_path / "no-selenium-manager"))
    DEMO_SHOTS.mkdir(parents=True, exist_ok=True)
    shot = {name: DEMO_SHOTS / f"{name}.png" for name in SHOTS}
    rules = tmp_path / "redaction_rules.yaml"
    shutil.copy(DEFAULT_RULES_PATH, rules)
    home = tmp_path / "wildchat"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WILDCHAT_", "OPENAI_")) and k != "DAGSTER_HOME"
    }
    env.update(
        WILDCHAT_HOME=str(home),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
        WILDCHAT_REDACTION_RULES=str(rules),
    )
    subprocess.run(
        ["bash", "scripts/demo.sh", "--days", "2", "--conversations-per-day", "30"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=900,
    )
    days = sorted(p.name for p in (home / "logs").iterdir())
    port = free_port()
    extra = {"WILDCHAT_REDACTION_RULES": str(rules)}
    with (
        ui_started(tmp_path, in_background=False, port=port, extra_env=extra),
        chromium(tmp_path / "chromium-profile") as driver,
    ):
        ui = f"http://127.0.0.1:{port}"
        # The catalog: every daily asset has all of the demo's days, and no more.
        driver.get(f"{ui}/assets")
        filled = wait_for(
            driver,
            lambda d: d.find_elements(By.XPATH, f"//*[normalize-space()='{len(days)} partitions']"),
            f"assets with {len(days)} partitions",
            shot["catalog"],
        )
        driver.save_screenshot(str(shot["catalog"]))
        page = driver.find_element(By.TAG_NAME, "body").text
        assert len(filled) >= 8 and "Missing" not in page, shot["catalog"]

        # The whole lineage on one screen: a box per step, each named after its folder in
        # wildchat_dag/defs/.
        driver.get(f"{ui}/asset-groups")
        wait_for(driver, graph_shows(GROUPS), f"the step groups {GROUPS}", shot["lineage"])
        wait_for(driver, graph_settled, "the graph to stop moving", shot["lineage"])
        driver.save_screenshot(str(shot["lineage"]))

        before, after = shot["anonymization-before"], shot["anonymization-after"]
        driver.get(f"{ui}/locations/wildchat_dag/asset-groups/anonymization")
        wait_for(driver, graph_shows(ANONYMIZATION_GROUP), "the anonymization group", before)
        wait_for(driver, graph_settled, "the graph to stop moving", before)
        # The nodes' statuses come in their own request, after the graph is drawn.
        wait_for(
            driver,
            lambda d: "100% filled" in d.execute_script(VISIBLE_GRAPH_LINES),
            "the group's partition status",
            before,
        )
        lines = driver.execute_script(VISIBLE_GRAPH_LINES)
        driver.save_screenshot(str(before))
        # anonymized_conversations is the group's one daily asset.
        assert lines.count("100% filled") == 1, lines
        assert not any("Unsynced" in line for line in lines), lines

        # A rules edit that changes the released text, not where detection runs.
        text = rules.read_text()
        rules.write_text(text.replace('"<PRESIDIO_ANONYMIZED_{entity}>"', '"[{entity}]"'))

        def stale_shown(d: WebDriver) -> bool:
            d.refresh()
            time.sleep(3)
            lines = d.execute_script(VISIBLE_GRAPH_LINES)
            # pii_entity_frequency reads the rules itself: Dagster marks it Unsynced.
            # anonymized_conversations: its no_stale_days check warns.
            return any(line.startswith("Unsynced") for line in lines) and checks_warning(lines) == 1

        # The sensor ticks every 30 s: one tick observes the file, the next judges the days.
        wait_for(driver, stale_shown, "the anonymization group marked stale", after)
        wait_for(driver, graph_settled, "the graph to stop moving", after)
        driver.save_screenshot(str(after))

        driver.get(f"{ui}/locations/wildchat_dag/asset-groups/release")
        wait_for(
            driver,
            # Every asset of the group was built from the stale days.
            lambda d: checks_warning(d.execute_script(VISIBLE_GRAPH_LINES)) == 5,
            "the release group marked stale",
            shot["release-after"],
        )
        wait_for(driver, graph_settled, "the graph to stop moving", shot["release-after"])
        driver.save_screenshot(str(shot["release-after"]))

        # The asset's page: its check says how many days, why, and what rebuilds them.
        driver.get(f"{ui}/assets/anonymized_conversations?view=checks")
        click(driver, "//*[normalize-space()='no_stale_days']", shot["anonymized-check"])
        wait_for(
            driver,
            lambda d: "redaction-refresh.sh" in d.find_element(By.TAG_NAME, "body").text,
            "the no_stale_days result",
            shot["anonymized-check"],
        )
        driver.save_screenshot(str(shot["anonymized-check"]))
        page = driver.find_element(By.TAG_NAME, "body").text
        assert f"Stale: {len(days)} of {len(days)} days" in page, shot["anonymized-check"]
        assert "redaction_rules: has a new data version" in page, shot["anonymized-check"]
