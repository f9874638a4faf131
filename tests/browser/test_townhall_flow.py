"""The three-tab town hall flow in headless Chromium against a real `jansamvad serve --demo` subprocess.

leader goes live and speaks -> the citizen sees the speech -> the citizen asks -> the moderator approves ->
the citizen sees the question -> the leader marks it answered -> the citizen sees it answered; every page shows
at least one viewer.

Needs Debian's Chromium at /usr/bin/chromium and the `playwright` Python package (CI installs both); it never
downloads a browser. Run: `.venv/bin/pytest -m browser tests/browser -v`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 20.0
UI_TIMEOUT_MS = 10_000

pytestmark = pytest.mark.browser

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install playwright)"
)
expect = sync_api.expect


def server_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "jansamvad", "serve", "--demo", "--port", str(port), "--host", "127.0.0.1"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[str]
    base: str
    links: dict[str, str]
    stdout: list[str] = field(default_factory=list)
    stderr_path: Path | None = None

    def output(self) -> str:
        err = self.stderr_path.read_text(errors="replace") if self.stderr_path else ""
        return "--- stdout ---\n" + "".join(self.stdout)[-4000:] + "\n--- stderr ---\n" + err[-6000:]


def _drain(stream, sink: list[str], links: dict[str, str], found: threading.Event) -> None:
    for line in stream:
        sink.append(line)
        m = re.match(r"\s*(citizen|leader|moderator):\s*(https?://\S+)", line)
        if m:
            links[m.group(1)] = m.group(2)
            if len(links) == 3:
                found.set()
    found.set()  # EOF: the server is gone; let the waiter notice


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stderr_path = tmp_path / "server.stderr"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(
            server_argv(port),
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            encoding="utf-8",
        )
    links: dict[str, str] = {}
    srv = Server(proc, base, links, stderr_path=stderr_path)
    found = threading.Event()
    reader = threading.Thread(target=_drain, args=(proc.stdout, srv.stdout, links, found), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        found.wait(SERVER_START_TIMEOUT_S)
        if len(links) < 3:
            pytest.fail(f"server printed no citizen/leader/moderator links (exit {proc.poll()})\n{srv.output()}")
        while not _ready(base):
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode} before /readyz was 200\n{srv.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"/readyz not 200 within {SERVER_START_TIMEOUT_S} s\n{srv.output()}")
            time.sleep(0.1)
        yield srv
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        reader.join(timeout=5)
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def test_townhall_flow(server: Server, browser, tmp_path: Path) -> None:
    expect.set_options(timeout=UI_TIMEOUT_MS)
    for role, url in server.links.items():
        assert url.startswith(server.base), f"{role} link {url} is not on {server.base}"

    errors: list[str] = []
    pages = {}

    def open_page(role: str, **ctx_args):
        ctx = browser.new_context(**ctx_args)
        ctx.set_default_timeout(UI_TIMEOUT_MS)
        page = ctx.new_page()
        page.on("pageerror", lambda exc, role=role: errors.append(f"{role}: {exc}"))
        page.on(
            "console",
            lambda msg, role=role: errors.append(f"{role} console: {msg.text}") if msg.type == "error" else None,
        )
        pages[role] = page
        return page

    try:
        # Citizen on a small phone screen, staff on desktop ones.
        citizen = open_page("citizen", viewport={"width": 360, "height": 740}, locale="hi-IN")
        moderator = open_page("moderator", viewport={"width": 1024, "height": 800})
        leader = open_page("leader", viewport={"width": 1024, "height": 800})

        # --- the citizen joins with a Hindi name
        citizen.goto(server.links["citizen"])
        expect(citizen.locator("#join")).to_be_visible()
        citizen.fill("#name", "सीता")
        citizen.fill("#region", "पटना")
        citizen.click("#join-btn")
        expect(citizen.locator("#live")).to_be_visible()
        expect(citizen.locator("#conn")).to_have_attribute("data-state", "live")
        expect(citizen.locator("#me")).to_have_text("सीता")

        moderator.goto(server.links["moderator"])
        expect(moderator.locator("#conn")).to_have_attribute("data-state", "live")

        # --- the leader goes live and speaks; the citizen sees it as it happens
        leader.goto(server.links["leader"])
        expect(leader.locator("#conn")).to_have_attribute("data-state", "live")
        assert "token=" not in leader.url, "the leader token should be taken out of the address bar"
        leader.click("#go-live")
        expect(leader.locator("#status")).to_have_attribute("data-status", "live")
        expect(citizen.locator("#status")).to_have_attribute("data-status", "live")

        speech = "नमस्ते साथियों, आज की सभा शुरू होती है।"
        leader.fill("#speech-text", speech)
        leader.click("#speech-send")
        expect(leader.locator("#speech-state")).to_contain_text("✓")
        expect(citizen.locator("#speech li.speech .text").last).to_have_text(speech)
        expect(leader.locator("#speech li.speech .text").last).to_have_text(speech)

        # --- the citizen asks; the node acks ("received ✓")
        question = "हमारे गाँव में नई सड़क कब बनेगी?"
        citizen.fill("#ask-text", question)
        citizen.click("#ask-btn")
        mine = citizen.locator("#mine li", has_text=question)
        expect(mine).to_have_attribute("data-status", "acked")
        expect(mine).to_contain_text("received ✓")

        # --- the moderator sees it in the queue and approves it
        queued = moderator.locator("#queue li", has_text=question)
        expect(queued).to_be_visible()
        expect(queued).to_contain_text("सीता")
        queued.locator("button.approve").click()
        expect(queued).to_have_count(0)
        expect(moderator.locator("#questions li", has_text=question)).to_have_attribute("data-state", "approved")

        # --- the citizen sees it in the public list
        public = citizen.locator("#questions li", has_text=question)
        expect(public).to_have_attribute("data-state", "approved")
        expect(public).to_contain_text("सीता")

        # --- the leader marks it answered; the citizen sees it answered
        on_leader = leader.locator("#questions li", has_text=question)
        expect(on_leader).to_be_visible()
        on_leader.locator("button.answer").click()
        expect(on_leader).to_have_attribute("data-state", "answered")
        expect(public).to_have_attribute("data-state", "answered")
        expect(public.locator(".badge.answered")).to_be_visible()

        # --- every page shows a live viewer count
        for role, page in pages.items():
            expect(page.locator("#viewers"), f"{role} viewer count").to_have_text(re.compile(r"^[1-9]\d*$"))
            expect(page.locator("#conn"), f"{role} connection").to_have_attribute("data-state", "live")

        assert not errors, "browser errors:\n" + "\n".join(errors)
    except BaseException:
        for role, page in pages.items():
            try:
                page.screenshot(path=str(tmp_path / f"{role}.png"), full_page=True)
            except Exception:  # best effort diagnostics
                pass
        print(f"screenshots in {tmp_path}\n{server.output()}")
        raise
