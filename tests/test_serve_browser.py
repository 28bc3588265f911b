"""End to end: a real headless Chromium drives `phototag serve` (a real uvicorn process).

Upload a photo -> suggestions appear -> accept one, reject another -> the decisions are
in the database. Needs Debian's ``chromium`` (scripts/setup.sh installs it) and the
Playwright package (dev extra); skipped without them, failed when CI=true.
"""

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_serve import EXAMPLES, tiny_model  # noqa: F401  (the session fixture)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
TOKEN = "browser-test-token-0123456789abcdef"


def _require(condition: bool, message: str) -> None:
    if condition:
        return
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def sync_playwright():
    _require(CHROMIUM.is_file(), f"{CHROMIUM} not found (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "the playwright package is not installed (pip install -e '.[dev]')")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tiny_model, tmp_path):  # noqa: F811
    """`phototag serve` in a subprocess on a free localhost port, with a token."""
    port = _free_port()
    data = tmp_path / "data"
    command = [sys.executable, "-m", "phototag.app.cli", "serve", "--port", str(port),
               "--model", tiny_model, "--data", str(data), "--store", str(tmp_path / "store"),
               "--runtime", "torch", "--token", TOKEN]  # fmt: skip
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited: {(tmp_path / 'server.log').read_text()}")
            try:
                request = urllib.request.Request(
                    f"{url}/api/info", headers={"Authorization": f"Bearer {TOKEN}"}
                )
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("server did not answer within 120 s")
                time.sleep(0.3)
        yield url, data / "feedback.sqlite"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_upload_suggest_accept_in_chromium(sync_playwright, server, tmp_path):
    url, database = server
    profile = tmp_path / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"{url}/#token={TOKEN}")
            page.wait_for_selector("#app:not([hidden])", timeout=30_000)
            assert "#token" not in page.url  # the token is taken out of the address bar
            page.set_input_files("#upload", str(EXAMPLES / "chelsea.jpg"))
            page.wait_for_selector(".card[data-photo-id] .chip", timeout=120_000)
            chips = page.locator(".card .chip")
            labels = [chips.nth(i).get_attribute("data-label") for i in range(chips.count())]
            assert set(labels[:2]) == {"cat", "animal"}
            assert page.locator('.chip[data-label="cat"] .score').inner_text() != ""
            page.click('.chip[data-label="cat"] button.accept')
            page.wait_for_selector('.chip[data-label="cat"].accepted', timeout=30_000)
            rejected = labels[-1]
            page.click(f'.chip[data-label="{rejected}"] button.reject')
            page.wait_for_selector(f'.chip[data-label="{rejected}"].rejected', timeout=30_000)
            page.fill(".add-tag input", "tabby")
            page.click(".add-tag button")
            page.wait_for_selector('.chip[data-label="tabby"].accepted', timeout=30_000)
            assert page.locator(".card .error").is_hidden()
        finally:
            browser.close()
    assert all(r.startswith((url, "blob:", "data:")) for r in requests), requests
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT p.name, p.source, d.label, d.decision FROM decisions d "
            "JOIN photos p ON p.id = d.photo_id ORDER BY d.decided_at"
        ).fetchall()
    assert rows == [("chelsea.jpg", "upload", "cat", "accepted"),
                    ("chelsea.jpg", "upload", rejected, "rejected"),
                    ("chelsea.jpg", "upload", "tabby", "accepted")]  # fmt: skip
