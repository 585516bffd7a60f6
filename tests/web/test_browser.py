"""The dashboard in a real browser: Debian's chromium driven by Playwright.

One journey, end to end against a live server with the embedded worker: sign in, add
a webhook endpoint whose receiver is failing, run a playground job with the shared
media to SUCCEEDED while watching its progress, play the result, open the task page,
find a failed delivery and resend it once the receiver is back. Every page is
screenshotted (1280x800) into docs/screenshots/ for the README (with CALLBOARD_SCREENSHOTS=1).

Skips, naming the reason, when /usr/bin/chromium or the playwright package is missing
(CI installs both: ``apt-get install chromium``, ``pip install playwright``; never
``playwright install``).
"""

from __future__ import annotations

import http.server
import os
import pathlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from service import accounts
from service import settings as settings_mod
from service.db import Database
from tests.support import MEDIA, ROOT, free_port, live_server

CHROMIUM = Path("/usr/bin/chromium")
# The README's screenshots are refreshed with CALLBOARD_SCREENSHOTS=1; otherwise they go
# to a scratch folder, so an everyday test run leaves the checkout clean.
SHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("CALLBOARD_SCREENSHOTS") == "1"
    else pathlib.Path(tempfile.gettempdir()) / "callboard-screenshots"
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEP_MS = 20_000  # the longest any single expectation may wait


def _playwright() -> Any:
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright package (pip install playwright)")
    return sync_playwright


def short_clip(source: Path, target: Path, seconds: float = 3.2, size: int = 256) -> Path:
    """Re-encode the first ``seconds`` of ``source`` as a small H.264 MP4 (a quick render)."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        fps = int(round(inp.streams.video[0].average_rate or 30))
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for index, frame in enumerate(inp.decode(video=0)):
            if index >= seconds * fps:
                break
            small = frame.reformat(width=size, height=size, format="yuv420p")
            small.pts = index
            small.time_base = Fraction(1, fps)
            for packet in stream.encode(small):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return target


class Receiver:
    """A loopback webhook receiver that answers 500 until ``healthy`` is set."""

    def __init__(self) -> None:
        self.healthy = threading.Event()
        self.hits = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                receiver.hits += 1
                ok = receiver.healthy.is_set()
                body = b'{"ok":true}' if ok else b'{"error":"receiver is down for maintenance"}'
                self.send_response(200 if ok else 500)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/callboard"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stack(tmp_path: Path, sqlite_template: Path) -> Iterator[dict[str, Any]]:
    """A live Callboard (embedded worker, SQLite) with an examples folder and one account."""
    examples = tmp_path / "examples"
    examples.mkdir()
    shutil.copy(MEDIA / "character_photo.jpg", examples / "character_photo.jpg")
    short_clip(MEDIA / "driving_short.mp4", examples / "driving_3s.mp4")
    db_path = tmp_path / "callboard.db"
    shutil.copy(sqlite_template, db_path)
    port = free_port()
    settings = settings_mod.load(
        {
            "CALLBOARD_DATA_DIR": str(tmp_path / "data"),
            "CALLBOARD_DATABASE_URL": f"sqlite:///{db_path}",
            "CALLBOARD_SECRET_KEY": "browser-test-secret-key-0123456789",
            "CALLBOARD_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "CALLBOARD_ALLOW_PRIVATE_TARGETS": "127.0.0.1",
            "CALLBOARD_EXAMPLES_DIR": str(examples),
            "CALLBOARD_WEBHOOK_SCHEDULE": "0",  # one attempt, so a 500 is a failed delivery at once
            "CALLBOARD_WORKER_POLL_INTERVAL": "0.1",
            "CALLBOARD_STREAM_POLL_INTERVAL": "0.25",
        }
    )
    db = Database(settings.database_url)

    def unit(conn: Any) -> str:
        account = accounts.create_account(conn, "studio", 0.0)
        return accounts.create_key(conn, account["id"], 0.0)[0]

    key = db.write_sync(unit)
    from service.api.app import create_app

    app = create_app(settings, database=db, embedded_worker=True)
    try:
        with Receiver() as receiver, live_server(app, port=port) as base:
            yield {"base": base, "key": key, "receiver": receiver, "examples": examples}
    finally:
        db.close()


@pytest.fixture
def page(stack: dict[str, Any]) -> Iterator[Any]:
    sync_playwright = _playwright()
    profile = tempfile.mkdtemp(prefix="callboard-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                args=ARGS,
                headless=True,
                viewport={"width": 1280, "height": 800},
                accept_downloads=True,
            )
            context.set_default_timeout(STEP_MS)
            try:
                yield context.new_page()
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def nav(page: Any, name: str) -> Any:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def shot(page: Any, name: str) -> None:
    """Screenshot once the page's images and videos have something to show."""
    page.wait_for_function(
        """() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)
              && Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 1)"""
    )
    page.wait_for_timeout(300)  # let the first video frames paint
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def test_playground_job_runs_to_success_and_a_failed_delivery_is_resent(
    stack: dict[str, Any], page: Any
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=STEP_MS)
    base, receiver = stack["base"], stack["receiver"]

    # sign in
    page.goto(f"{base}/ui/tasks")
    expect(page).to_have_url(f"{base}/ui/signin?next=%2Fui%2Ftasks")
    page.get_by_label("API key").fill(stack["key"])
    shot(page, "signin")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Tasks", level=1)).to_be_visible()

    # a subscription whose receiver is failing
    nav(page, "Webhooks").click()
    page.get_by_label("URL", exact=True).fill(receiver.url)
    page.get_by_label("Description").fill("order system")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#secret-value")).to_contain_text("whsec_")

    # the playground: character and a 3 s driving clip, a small ratio
    nav(page, "Playground").click()
    page.get_by_label("Upload a file").first.set_input_files(str(MEDIA / "character_photo.jpg"))
    page.get_by_label("or pick an example").nth(1).select_option("driving_3s.mp4")
    page.get_by_label("Ratio").select_option("960:960")
    page.get_by_label("Expression intensity").select_option("4")
    page.get_by_label("Seed").fill("42")
    expect(page.locator("#character-preview img")).to_be_visible()
    shot(page, "playground")
    page.get_by_role("button", name="Run").click()

    # live progress, then the result
    panel = page.locator("[data-task-stream]")
    expect(panel).to_be_visible()
    task_id = panel.get_attribute("data-task-stream")
    seen_progress = page.wait_for_function(
        """() => { const p = document.querySelector('[data-field="progress"]');
                   const s = document.querySelector('[data-task-stream]').dataset.status;
                   return (p && p.value > 0 && s === 'RUNNING') || s === 'SUCCEEDED' || s === 'FAILED'; }""",
        timeout=40_000,
    )
    assert seen_progress
    if page.locator("[data-task-stream]").get_attribute("data-status") == "RUNNING":
        shot(page, "playground-running")
    expect(panel).to_have_attribute("data-status", "SUCCEEDED", timeout=50_000)
    expect(panel.locator('[data-field="status"]')).to_have_text("SUCCEEDED")
    video = panel.locator("video")
    expect(video).to_be_visible()
    played = page.evaluate(
        """async () => { const v = document.querySelector('[data-task-stream] video');
                         v.muted = true; await v.play();
                         await new Promise(r => setTimeout(r, 700));
                         return {t: v.currentTime, w: v.videoWidth, h: v.videoHeight}; }"""
    )
    assert played["t"] > 0 and played["w"] == 960 and played["h"] == 960
    with page.expect_download() as download:
        panel.get_by_role("link", name="Download result").click()
    assert Path(download.value.path()).stat().st_size > 1000
    shot(page, "playground-result")

    # the tasks list and the task page, with its timeline and failed deliveries
    nav(page, "Tasks").click()
    expect(page.locator(f'tr[data-task="{task_id}"]')).to_contain_text("SUCCEEDED")
    shot(page, "tasks")
    page.locator(f'tr[data-task="{task_id}"] a').first.click()
    expect(page.locator(".timeline")).to_contain_text("task.succeeded")
    failed = page.locator("table.deliveries tr", has_text="failed").first
    expect(failed).to_be_visible()
    shot(page, "task")

    # the receiver is back: resend one failed delivery from the task page
    receiver.healthy.set()
    event_type = failed.locator("td").first.inner_text().split("\n")[0]
    failed.get_by_role("button", name="Resend").click()
    expect(page.get_by_role("status")).to_contain_text("queued to be sent again")
    for _ in range(40):
        if page.locator(".badge-d-succeeded").count():
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(page.locator(".badge-d-succeeded")).to_be_visible()
    expect(page.locator("table")).to_contain_text("HTTP 200")
    expect(page.locator("table")).to_contain_text("manual")
    assert event_type.startswith("task.")
    shot(page, "delivery")

    # the webhooks overview and the endpoint's health
    nav(page, "Webhooks").click()
    expect(page.locator("table.endpoints")).to_contain_text("order system")
    shot(page, "webhooks")
    page.locator("table.endpoints a").first.click()
    expect(page.get_by_role("heading", name="Health")).to_be_visible()
    shot(page, "endpoint")
