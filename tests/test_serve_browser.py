"""End to end: a real headless Chromium drives `phototag serve` (a real uvicorn process).

Upload a photo -> suggestions appear -> accept one, reject another -> the decisions are
in the database. Needs Debian's ``chromium`` (scripts/setup.sh installs it) and the
Playwright package (dev extra); skipped without them, failed when CI=true.
"""

import contextlib
import http.server
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from functools import partial
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


@contextlib.contextmanager
def _serve(model: str, tmp_path: Path, *options: str):
    """`phototag serve` in a subprocess on a free localhost port; yields its URL and process."""
    port = _free_port()
    command = [sys.executable, "-m", "phototag.app.cli", "serve", "--port", str(port),
               "--model", model, "--data", str(tmp_path / "data"),
               "--store", str(tmp_path / "store"), "--runtime", "torch", *options]  # fmt: skip
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
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def server(tiny_model, tmp_path):  # noqa: F811
    """`phototag serve` with a token read from a file (so `ps` does not show it)."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with _serve(tiny_model, tmp_path, "--token-file", str(token_file)) as (url, process):
        assert TOKEN.encode() not in Path(f"/proc/{process.pid}/cmdline").read_bytes()
        yield url, tmp_path / "data" / "feedback.sqlite"


@pytest.mark.integration
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


EVIL_PAGE = """<!doctype html><title>cute cats</title>
<form id="form" method="post" enctype="multipart/form-data" action="TARGET/api/photos">
  <input name="file" value="not really a file"></form>
<script>
(async () => {
  // what any page can do without the service's consent: a "simple" cross-origin POST
  const photo = await (await fetch("chelsea.jpg")).blob();
  const form = new FormData();
  form.append("file", photo, "evil.jpg");
  await fetch("TARGET/api/photos", { method: "POST", mode: "no-cors", body: form });
  await fetch("TARGET/api/photos/1/decisions", { method: "POST", mode: "no-cors",
    headers: { "Content-Type": "text/plain" }, body: '{"label":"x","decision":"accepted"}' });
  document.title = "sent";
})();
</script>"""


@pytest.mark.integration
def test_other_sites_cannot_use_the_service_through_the_browser(
    sync_playwright,
    tiny_model,  # noqa: F811
    tmp_path,
):
    """A page on another origin posts a real photo (fetch no-cors) and a form to a service
    with no token: every request reaches the service and is refused; nothing is stored."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "chelsea.jpg").write_bytes((EXAMPLES / "chelsea.jpg").read_bytes())
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    profile = tmp_path / "chromium-profile"
    try:
        with _serve(tiny_model, tmp_path) as (url, _), sync_playwright() as playwright:
            (site / "evil.html").write_text(EVIL_PAGE.replace("TARGET", url))
            browser = playwright.chromium.launch_persistent_context(
                str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page()
                answers: list[tuple[str, int]] = []
                page.on("response", lambda r: answers.append((r.url, r.status)))
                # "localhost" is another site than "127.0.0.1", where the service is
                page.goto(f"http://localhost:{evil.server_address[1]}/evil.html")
                page.wait_for_function("document.title === 'sent'", timeout=30_000)
                with page.expect_navigation():
                    page.evaluate("document.getElementById('form').submit()")
            finally:
                browser.close()
    finally:
        evil.shutdown()
    to_service = [status for address, status in answers if address.startswith(url)]
    assert to_service == [403, 403, 403], answers  # the requests arrived and were refused
    assert list((tmp_path / "data" / "uploads").iterdir()) == []
    with sqlite3.connect(tmp_path / "data" / "feedback.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM photos").fetchone()[0] == 0


def _until(condition, timeout: float = 30.0) -> None:
    """Wait for `condition()` (the page's CSP forbids Playwright's string expressions)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the page did not get there within 30 s")
        time.sleep(0.1)


@pytest.mark.integration
def test_heic_preview_accept_all_and_keyword_filter_in_chromium(
    sync_playwright,
    tiny_model,  # noqa: F811
    tmp_path,
):
    """An uploaded HEIC shows the service's JPEG of it; "Accept all" writes every shown
    suggestion into the sidecar; the folder filter shows only photos with the keyword."""
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed")
    if not pillow_heif.libheif_info().get("encoders"):
        pytest.skip("this libheif has no HEIF encoder to make a test photo")
    from PIL import Image
    from test_serve_keywords import USER_SIDECAR

    from phototag.metadata import read_keywords

    heic = tmp_path / "cat.heic"
    photo = Image.open(EXAMPLES / "chelsea.jpg").convert("RGB").resize((96, 64))
    pillow_heif.from_pillow(photo).save(heic, quality=60)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee"):
        (folder / f"{name}.jpg").write_bytes((EXAMPLES / f"{name}.jpg").read_bytes())
    (folder / "chelsea.jpg.xmp").write_text(USER_SIDECAR)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    options = ("--token-file", str(token_file), "--folder", str(folder))
    with _serve(tiny_model, tmp_path, *options) as (url, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS,
        )  # fmt: skip
        try:
            page = browser.new_page()
            page.goto(f"{url}/#token={TOKEN}")
            page.wait_for_selector("#folder-photos figure", timeout=30_000)
            page.set_input_files("#upload", str(heic))
            card = page.locator(".card").first
            page.wait_for_selector(".card[data-photo-id] .chip", timeout=120_000)
            image = card.locator("img")
            _until(lambda: image.evaluate("img => img.naturalWidth") > 0)  # a picture shown
            assert card.locator("img").get_attribute("src").startswith("blob:")
            labels = card.locator(".chip").evaluate_all("cs => cs.map(c => c.dataset.label)")
            card.locator("button.accept-all").click()
            page.wait_for_selector(".card .written:text('cat.heic.xmp')", timeout=30_000)
            accepted = card.locator(".chip.accepted").count()
            assert accepted == len(labels) and card.locator(".error").is_hidden()

            page.fill("#folder-keyword", "TABBY")
            page.click("#folder-filter button")
            _until(lambda: page.locator("#folder-photos figure").count() == 1)
            assert page.locator("#folder-photos figcaption").inner_text() == "chelsea.jpg"
            page.click("#folder-photos figure")
            page.wait_for_selector(".card:first-child[data-photo-id] .chip", timeout=120_000)
            first = page.locator(".card").first
            assert first.locator(".existing span").inner_text() == "Tabby, cat"
            assert first.locator('.chip[data-label="cat"]').get_attribute("class").count("in-photo")
        finally:
            browser.close()
    uploads = list((tmp_path / "data" / "uploads").glob("*.heic"))
    assert len(uploads) == 1
    written = {a.label for a in read_keywords(uploads[0]).automatic}
    assert written == set(labels)
