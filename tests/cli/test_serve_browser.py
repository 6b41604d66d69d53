"""The page at / of `sumctl serve`, in a real browser: Debian's chromium, headless, driven by
Selenium through Debian's chromedriver. It chooses the standup, submits it, waits for the job
and reads the minutes as the page renders them.

Set SUMCTL_KEEP_SCREENSHOT=1 to write docs/serve.png from the finished page."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serve_fixtures import STANDUP

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "serve.png"
HOSTILE_NAME = "<img src=x onerror=alert(1)>.txt"


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(f"no {CHROMIUM} or {CHROMEDRIVER}: apt-get install chromium chromium-driver "
                    "(.ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium is missing: pip install -e '.[dev]'")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1000,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_summarizes_the_standup_and_shows_its_action_items(
        browser, serve_process, extractive_bundle_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    server = serve_process(tmp_path / "state", extractive_bundle_dir)
    # A past job whose name is markup: the list must show it as text.
    with server.client() as c:
        assert c.post("/v1/jobs", json={"text": "Ann: We ship on Friday.\nBob: Fine.\n",
                                         "filename": HOSTILE_NAME}).status_code == 202
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(ready.text_to_be_present_in_element((By.ID, "jobs"), HOSTILE_NAME))

    browser.find_element(By.ID, "file").send_keys(str(STANDUP))
    wait.until(ready.element_to_be_clickable((By.ID, "submit"))).click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "done"))
    minutes = browser.find_element(By.ID, "minutes")
    wait.until(lambda _: minutes.find_elements(By.CSS_SELECTOR, "li.task"))

    headings = [h.text for h in minutes.find_elements(By.CSS_SELECTOR, "h1, h2")]
    assert "Minutes of standup.vtt" in headings and "Action items" in headings
    tasks = [li.text for li in minutes.find_elements(By.CSS_SELECTOR, "li.task")]
    for owner in ("@Marco", "@Lena", "@Sam"):
        assert any(owner in task for task in tasks), (owner, tasks)
    assert any("export fix" in task for task in tasks)
    boxes = minutes.find_elements(By.CSS_SELECTOR, "li.task input[type=checkbox]")
    assert len(boxes) == len(tasks) and not any(b.is_selected() for b in boxes)
    assert "**" not in minutes.text and "- [ ]" not in minutes.text  # rendered, not raw

    wait.until(ready.text_to_be_present_in_element((By.ID, "jobs"), "standup.vtt"))
    assert not browser.find_elements(By.CSS_SELECTOR, "#jobs img")  # the name stayed text
    if os.environ.get("SUMCTL_KEEP_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
    assert server.stop() == 0
    assert "Traceback" not in server.log()

