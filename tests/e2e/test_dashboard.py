"""The status page (issue 15 item 4) in a real headless browser: Debian's chromium, driven through chromium-driver,
renders GET /api/sync/dashboard from emulator-backed state; the test reads the rendered DOM and presses the page's
retry and dismiss buttons. `make deps` installs both packages."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from sync.engine.fullsync import FullSyncRequest, start_full_sync
from tests.e2e.function_host import function_host, runtime_of
from tests.e2e.test_operate_errors import _ambiguous_lead, _waiting_contacts
from tests.e2e.world import World

KEY = "dashboard-test-key"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make deps` installs Debian's chromium and chromium-driver")
    return path


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1100")
    driver = webdriver.Chrome(service=Service(_binary("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def host(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The function app configured with the world's settings (emulators, Azurite, its tables), served on loopback."""
    with runtime_of(world.env_file, monkeypatch), function_host(KEY) as base_url:
        yield f"{base_url}/api/sync/dashboard?code={KEY}"


DETACHED = "Node with given id does not belong to the document"  # Chromium, while the old document is torn down


def _left(old_page: WebElement) -> Callable[[WebDriver], bool]:
    """Whether the old page is gone. Chromium sometimes reports a node of a document it is replacing with a generic
    inspector error instead of a stale reference: that is gone too (expected_conditions.staleness_of raises it)."""

    def gone(_: WebDriver) -> bool:
        try:
            old_page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if DETACHED not in str(exc.msg):
                raise
            return True
        return False

    return gone


def _press(browser: WebDriver, selector: str) -> None:
    """Click a button and wait for the page its form posts to (the click returns before the navigation ends)."""
    old_page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, selector).click()
    WebDriverWait(browser, 30).until(_left(old_page))
    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "notice")))


def _row(browser: WebDriver, stream: str) -> dict[str, str]:
    row = browser.find_element(By.CSS_SELECTOR, f'#streams tr[data-stream="{stream}"]')
    return {td.get_attribute("class").split()[0]: td.text for td in row.find_elements(By.TAG_NAME, "td")}


def test_the_status_page_shows_streams_errors_and_jobs_and_its_buttons_work(
    world: World, host: str, browser: WebDriver
) -> None:
    contacts = _waiting_contacts(world, 2)  # two contacts wait for their accounts: record errors
    lead = _ambiguous_lead(world)  # a lead that matches two persons: a record error no retry fixes
    world.dv_create("lead", lastname="Flow", emailaddress1="flow@example.com", companyname="F")
    synced = world.cycle("lead")  # something synced in the last hour
    world.dv_create("account", name="Backlog Co")  # one change waiting in Dynamics for the account stream
    job = start_full_sync(world.ctx, world.queue, FullSyncRequest(entities=["systemuser"], dry_run=True))

    browser.get(host)
    assert browser.title == "Marketo - Dynamics sync status"
    streams = [
        r.get_attribute("data-stream") for r in browser.find_elements(By.CSS_SELECTOR, "#streams tr[data-stream]")
    ]
    assert streams == [s.name for s in world.ctx.mapping.ordered_entities()]
    lead_row = _row(browser, "lead")
    assert lead_row["state"] == "partial" and lead_row["errors"] == "1"
    assert lead_row["synced-day"] == str(synced.counts.created + synced.counts.updated + synced.counts.deleted)
    assert lead_row["last-run"].startswith("20") and "partial" in lead_row["last-run"]
    account_row = _row(browser, "account")
    assert "to_marketo: 3" in account_row["backlog"]  # the waiting contacts' two accounts and Backlog Co
    chart = browser.find_element(By.CSS_SELECTOR, '#streams tr[data-stream="lead"] svg.chart')
    bars = chart.find_elements(By.TAG_NAME, "rect")
    assert len(bars) == 12 and float(bars[-1].get_attribute("height")) > 0  # the newest 5 minutes synced records
    assert bars[-1].rect["height"] > 0  # laid out by the browser, not just present in the markup
    errors = {r.get_attribute("data-record") for r in browser.find_elements(By.CSS_SELECTOR, "#errors tr.error")}
    assert errors == {*contacts, lead}
    [job_row] = browser.find_elements(By.CSS_SELECTOR, f'#jobs tr[data-job="{job.job_id}"]')
    assert job_row.find_element(By.CLASS_NAME, "job-state").text == "queued" and "systemuser" in job_row.text
    if os.environ.get("UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))

    world.cycle("account")  # the accounts reach Marketo: retrying the contacts now succeeds
    retry = f'#errors tr[data-record="{contacts[0]}"] button.retry'
    _press(browser, retry)
    assert browser.find_element(By.ID, "notice").text == f"Retried contact record {contacts[0]}: synced."
    errors = {r.get_attribute("data-record") for r in browser.find_elements(By.CSS_SELECTOR, "#errors tr.error")}
    assert errors == {lead}  # the contact cycle retried both contacts
    assert world.mk_by_email("wait0@example.com")[0]["company"] == "Waiting Co 0"

    _press(browser, f'#errors tr[data-record="{lead}"] button.dismiss')
    assert browser.find_element(By.ID, "notice").text == f"Dismissed 1 error of lead record {lead}."
    assert browser.find_element(By.ID, "no-errors").text == "No record errors."
    assert world.ctx.state.errors.count() == 0
