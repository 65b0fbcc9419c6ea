"""End to end in a real headless Chromium: open the board, see the counts, open the failed job,
click retry, see it leave the failed list.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``browser`` extra (selenium). Skipped
when they are missing, except under CI (``CI`` set), where that is a failure.
``POLYJOBS_BOARD_SCREENSHOT=path.png`` also saves a screenshot of the overview there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from polyjobs import Job, Queue, Worker, open_backend

if TYPE_CHECKING:
    pass

if TYPE_CHECKING:
    from tests.board.conftest import BoardCli


CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")
DRIVER = ("/usr/bin/chromedriver", "chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
)


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI requires it: apt-get install chromium chromium-driver)")
    pytest.skip(why)


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install 'polyjobs[browser]')")
    chromium, driver = _find(CHROMIUM), _find(DRIVER)
    if chromium is None or driver is None:
        _unavailable("Debian's chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in FLAGS:
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=str(driver)))
    chrome.set_page_load_timeout(30)
    try:
        yield chrome
    finally:
        chrome.quit()


async def _work(job: Job) -> dict[str, Any]:
    await job.log(f"handling {job.data}")
    await job.update_progress(100)
    if job.data.get("fail"):
        raise RuntimeError("the mail server said no")
    return {"ok": True}


def _seed(db: Path) -> str:
    async def go() -> str:
        async with open_backend(f"sqlite:///{db}") as backend:
            queue = Queue("mailer", backend)
            await queue.add_bulk([("send", {"to": f"user{i}@example.com"}) for i in range(3)])
            failed = await queue.add("send", {"to": "bounce@example.com", "fail": True})
            await Worker("mailer", _work, backend).run(burst=True)
            await queue.add("send", {"to": "later@example.com"}, delay=3600)
            await Queue("reports", backend).add("daily", {"day": "2026-11-29"})
            return failed.id

    return asyncio.run(go())


def test_retry_a_failed_job_from_the_browser(
    browser: Any, tmp_path: Path, board_cli: BoardCli
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    def wait_for(selector: str) -> Any:
        return WebDriverWait(browser, 15).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, selector))
        )

    db = tmp_path / "board.db"
    failed_id = _seed(db)
    with board_cli.serve(board_cli.env(), "--backend", f"sqlite:///{db}") as (base, _):
        browser.get(f"{base}/admin/queues")
        row = browser.find_element(By.CSS_SELECTOR, 'tr[data-queue="mailer"]')

        def count(state: str) -> str:
            cell = row.find_element(By.CSS_SELECTOR, f'td[data-state="{state}"]')
            return str(cell.text).strip()

        assert (count("completed"), count("failed"), count("delayed")) == ("3", "1", "1")
        shot = os.environ.get("POLYJOBS_BOARD_SCREENSHOT")
        if shot:
            browser.save_screenshot(shot)

        row.find_element(By.CSS_SELECTOR, 'td[data-state="failed"] a').click()
        wait_for("#jobs")
        listed = browser.find_elements(By.CSS_SELECTOR, "#jobs tr[data-job]")
        assert [r.get_attribute("data-job") for r in listed] == [failed_id]
        assert "the mail server said no" in listed[0].text

        listed[0].find_element(By.CSS_SELECTOR, "a.jobid").click()
        assert wait_for("#job-state").text == "failed"
        assert "bounce@example.com" in browser.find_element(By.ID, "job-data").text
        assert "the mail server said no" in browser.find_element(By.ID, "job-error").text

        browser.find_element(By.ID, "retry").click()
        assert "Job sent back to waiting." in wait_for(".flash").text
        assert browser.find_elements(By.CSS_SELECTOR, "#jobs tr[data-job]") == []
        assert browser.find_element(By.ID, "no-jobs").text == "No failed jobs."
        tab = browser.find_element(By.CSS_SELECTOR, '.tabs a[data-state="waiting"] .count')
        assert tab.text == "1"

        job = httpx.get(f"{base}/api/queues/mailer/jobs/{failed_id}").json()
        assert job["state"] == "waiting" and job["attempts_made"] == 0


def test_the_detectors_alerts_page_in_the_browser(
    browser: Any, tmp_path: Path, board_cli: BoardCli
) -> None:
    """The detector's listing, reached from the header link: rows, text titles, links out.
    ``POLYJOBS_BOARD_ALERTS_SCREENSHOT=path.png`` saves a screenshot of it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.board.test_board_listings import _seed_store

    _seed_store(board_cli.home)
    board_cli.create_database()
    with board_cli.serve(board_cli.env(), "--read-only") as (base, _):
        browser.get(f"{base}/admin/queues")
        browser.find_element(By.CSS_SELECTOR, 'header a[href="/admin/lists/alerts"]').click()
        WebDriverWait(browser, 15).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "#listing"))
        )
        rows = browser.find_elements(By.CSS_SELECTOR, "#listing tbody tr")
        assert len(rows) == 3
        assert "<b>Rain</b> in Paris?" in rows[0].text  # shown as typed, not as bold markup
        links = rows[0].find_elements(By.CSS_SELECTOR, 'a[href^="https://polygonscan.com/tx/"]')
        assert len(links) == 1
        shot = os.environ.get("POLYJOBS_BOARD_ALERTS_SCREENSHOT")
        if shot:
            browser.save_screenshot(shot)
