"""The report in a real headless Chromium: loads from file:// without console errors, every image renders, and
markup inside generated responses shows as text.

Needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver). Skipped when they are
absent, except under CI (CI set), where their absence is a failure."""

import os
import shutil
from pathlib import Path

import pytest

from hyperstition.run import build_simulated_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.browser


def _require_browser():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {', '.join(missing)} is missing: apt-get install -y chromium chromium-driver")
    pytest.skip(
        f"{', '.join(missing)} not installed (apt-get install -y chromium chromium-driver); the browser check "
        "runs in CI"
    )


@pytest.fixture
def driver(tmp_path):
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_report_in_headless_chromium(driver, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    summary = build_simulated_run(tmp_path / "run", "smoke")
    page = summary.report
    driver.get(page.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    assert "hyperstition report" in driver.title

    errors = [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
    assert not errors, errors

    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]);"
    )
    assert len(images) >= 4
    for alt, complete, width, height in images:
        assert complete and width > 0 and height > 0, alt

    # The simulated response `<script>alert("pwned")</script>` is text on the page, never a script element.
    assert driver.execute_script("return document.scripts.length") == 0
    cells = driver.find_elements(By.XPATH, "//td[contains(., '<script>alert(\"pwned\")</script>')]")
    assert cells and cells[0].is_displayed()
    bold = driver.find_elements(By.XPATH, "//td[contains(., '<b>Nobody is watching</b>')]")
    assert bold and not driver.find_elements(By.XPATH, "//td/b")
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text
