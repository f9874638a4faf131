"""Plain helpers shared by the browser tests (conftest.py) and `make screenshots` (screenshots.py): a `jansamvad serve
--demo` subprocess, Debian's Chromium, and the steps each role takes on its page."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jansamvad.localredis import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    # A fake microphone (a beep) for the leader's push-to-talk, with the permission prompt answered yes.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
REPO = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 20.0
UI_TIMEOUT_MS = 10_000


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


def _drain(stream: Any, sink: list[str], links: dict[str, str], found: threading.Event) -> None:
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


class ServerFailed(RuntimeError):
    pass


@contextmanager
def demo_server(stderr_path: Path) -> Iterator[Server]:
    """`python -m jansamvad serve --demo` on a free loopback port, until the block ends."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "jansamvad", "serve", "--demo", "--port", str(port), "--host", "127.0.0.1"]
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True
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
            raise ServerFailed(f"server printed no citizen/leader/moderator links (exit {proc.poll()})\n{srv.output()}")
        while not _ready(base):
            if proc.poll() is not None:
                raise ServerFailed(f"server exited with {proc.returncode} before /readyz was 200\n{srv.output()}")
            if time.monotonic() > deadline:
                raise ServerFailed(f"/readyz not 200 within {SERVER_START_TIMEOUT_S} s\n{srv.output()}")
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


def launch(playwright: Any) -> Any:
    """Debian's Chromium, headless; never a downloaded browser."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


class Tabs:
    """One browser context per role; collects uncaught page errors and console errors."""

    def __init__(self, browser: Any, tmp_path: Path) -> None:
        self.browser = browser
        self.tmp_path = tmp_path
        self.pages: dict[str, Any] = {}
        self.errors: list[str] = []

    def open(self, role: str, **ctx_args: Any) -> Any:
        ctx = self.browser.new_context(**ctx_args)
        ctx.set_default_timeout(UI_TIMEOUT_MS)
        page = ctx.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{role}: {exc}"))
        page.on("console", lambda msg: self._console(role, msg))
        self.pages[role] = page
        return page

    def _console(self, role: str, msg: Any) -> None:
        # Chromium logs refused WebSocket handshakes and failed loads itself while a page is offline or retries;
        # those are not page bugs.
        noise = ("WebSocket connection to", "net::ERR_INTERNET_DISCONNECTED", "Failed to load resource")
        if msg.type == "error" and not any(n in msg.text for n in noise):
            self.errors.append(f"{role} console: {msg.text}")

    def screenshots(self) -> None:
        for role, page in self.pages.items():
            try:
                page.screenshot(path=str(self.tmp_path / f"{role}.png"), full_page=True)
            except Exception:  # best effort diagnostics
                pass
        print(f"screenshots in {self.tmp_path}")


# ---------------------------------------------------------------- what each role does on its page


def join_as_citizen(page: Any, url: str, name: str = "सीता", district: str = "पटना", constituency: str = "") -> None:
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#join")).to_be_visible()
    page.fill("#name", name)
    page.fill("#district", district)
    page.fill("#constituency", constituency)
    page.click("#join-btn")
    expect(page.locator("#live")).to_be_visible()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#me")).to_contain_text(name)


def open_staff(page: Any, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    assert "token=" not in page.url, "the staff token should be taken out of the address bar"


def go_live(leader: Any) -> None:
    from playwright.sync_api import expect

    leader.click("#go-live")
    expect(leader.locator("#status")).to_have_attribute("data-status", "live")


def speak(leader: Any, text: str) -> None:
    from playwright.sync_api import expect

    leader.fill("#speech-text", text)
    leader.click("#speech-send")
    expect(leader.locator("#speech li.speech .text").last).to_have_text(text)
    expect(leader.locator("#speech-text")).to_have_value("")


def announce(leader: Any, text: str) -> None:
    from playwright.sync_api import expect

    leader.fill("#announce-text", text)
    leader.click("#announce-send")
    expect(leader.locator("#speech li.announce .text").last).to_have_text(text)


def ask(citizen: Any, text: str) -> Any:
    from playwright.sync_api import expect

    citizen.fill("#ask-text", text)
    citizen.click("#ask-btn")
    mine = citizen.locator("#mine li", has_text=text)
    expect(mine).to_have_count(1)
    return mine
