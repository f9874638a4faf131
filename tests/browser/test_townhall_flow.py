"""The three-tab town hall flow in headless Chromium against a real `jansamvad serve --demo` subprocess.

leader goes live and speaks -> the citizen sees the speech -> the citizen asks -> the moderator approves ->
the citizen sees the question -> the leader marks it answered -> the citizen sees it answered; every page shows
at least one viewer. A second test cuts the citizen's connection (through Playwright's WebSocket routing) while the
leader speaks and a question is in flight: the page resumes with `last_seq`, gets the missed speech exactly once, and
resends the question from its outbox with the same idempotency key.

Needs Debian's Chromium at /usr/bin/chromium and the `playwright` Python package (CI installs both); it never
downloads a browser. Run: `.venv/bin/pytest -m browser tests/browser -v`.
"""

from __future__ import annotations

import json
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
def demo_server(tmp_path: Path) -> Iterator[Server]:
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


class Tabs:
    """One browser context per role; collects uncaught page errors and console errors."""

    def __init__(self, browser, tmp_path: Path) -> None:
        self.browser = browser
        self.tmp_path = tmp_path
        self.pages: dict[str, object] = {}
        self.errors: list[str] = []

    def open(self, role: str, **ctx_args):
        ctx = self.browser.new_context(**ctx_args)
        ctx.set_default_timeout(UI_TIMEOUT_MS)
        page = ctx.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{role}: {exc}"))
        page.on("console", lambda msg: self._console(role, msg))
        self.pages[role] = page
        return page

    def _console(self, role: str, msg) -> None:
        # Chromium logs a refused WebSocket handshake itself while a page retries; that is not a page bug.
        if msg.type == "error" and "WebSocket connection to" not in msg.text:
            self.errors.append(f"{role} console: {msg.text}")

    def screenshots(self) -> None:
        for role, page in self.pages.items():
            try:
                page.screenshot(path=str(self.tmp_path / f"{role}.png"), full_page=True)
            except Exception:  # best effort diagnostics
                pass
        print(f"screenshots in {self.tmp_path}")


@pytest.fixture
def tabs(request: pytest.FixtureRequest, demo_server: Server, browser, tmp_path: Path) -> Iterator[Tabs]:
    expect.set_options(timeout=UI_TIMEOUT_MS)
    for role, url in demo_server.links.items():
        assert url.startswith(demo_server.base), f"{role} link {url} is not on {demo_server.base}"
    t = Tabs(browser, tmp_path)
    yield t
    report = getattr(request.node, "rep_call", None)  # set by conftest.py
    if report is None or report.failed:
        t.screenshots()
        print(demo_server.output())


def join_as_citizen(page, url: str, name: str = "सीता", region: str = "पटना") -> None:
    page.goto(url)
    expect(page.locator("#join")).to_be_visible()
    page.fill("#name", name)
    page.fill("#region", region)
    page.click("#join-btn")
    expect(page.locator("#live")).to_be_visible()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#me")).to_have_text(name)


def open_staff(page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    assert "token=" not in page.url, "the staff token should be taken out of the address bar"


def go_live(leader) -> None:
    leader.click("#go-live")
    expect(leader.locator("#status")).to_have_attribute("data-status", "live")


def speak(leader, text: str) -> None:
    leader.fill("#speech-text", text)
    leader.click("#speech-send")
    expect(leader.locator("#speech li.speech .text").last).to_have_text(text)
    expect(leader.locator("#speech-text")).to_have_value("")


def test_townhall_flow(demo_server: Server, tabs: Tabs) -> None:
    # Citizen on a small phone screen, staff on desktop ones.
    citizen = tabs.open("citizen", viewport={"width": 360, "height": 740}, locale="hi-IN")
    moderator = tabs.open("moderator", viewport={"width": 1024, "height": 800})
    leader = tabs.open("leader", viewport={"width": 1024, "height": 800})

    # --- the citizen joins with a Hindi name; staff open their links
    join_as_citizen(citizen, demo_server.links["citizen"])
    open_staff(moderator, demo_server.links["moderator"])
    open_staff(leader, demo_server.links["leader"])

    # --- the leader goes live and speaks; the citizen sees it as it happens
    go_live(leader)
    expect(citizen.locator("#status")).to_have_attribute("data-status", "live")
    speech = "नमस्ते साथियों, आज की सभा शुरू होती है।"
    speak(leader, speech)
    expect(leader.locator("#speech-state")).to_contain_text("✓")
    expect(citizen.locator("#speech li.speech .text").last).to_have_text(speech)

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
    for role, page in tabs.pages.items():
        expect(page.locator("#viewers"), f"{role} viewer count").to_have_text(re.compile(r"^[1-9]\d*$"))
        expect(page.locator("#conn"), f"{role} connection").to_have_attribute("data-state", "live")

    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)


class WsTap:
    """Sits between the citizen page and the node (Playwright's WebSocket routing): logs frames, can swallow
    `ask` frames, hold a new connection unanswered, and close the page's socket with a chosen code."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.received: list[dict] = []
        self.routes: list = []
        self.held: list = []
        self.drop_asks = False
        self.hold = False

    def __call__(self, route) -> None:
        if self.hold:
            self.held.append(route)
            route.on_message(lambda msg: self.sent.append(json.loads(msg)))
            return  # no node behind it: the page's hello goes unanswered until the test closes the socket
        self.routes.append(route)
        node = route.connect_to_server()

        def up(msg: str | bytes) -> None:
            frame = json.loads(msg)
            self.sent.append(frame)
            if self.drop_asks and frame.get("t") == "ask":
                return
            node.send(msg)

        def down(msg: str | bytes) -> None:
            self.received.append(json.loads(msg))
            route.send(msg)

        route.on_message(up)
        node.on_message(down)
        node.on_close(lambda code, reason: route.close(code=code, reason=reason))

    def hellos(self) -> list[dict]:
        return [m for m in self.sent if m.get("t") == "hello"]


def test_resume_replays_missed_events_and_outbox_resends(demo_server: Server, tabs: Tabs) -> None:
    tap = WsTap()
    citizen = tabs.open("citizen")
    citizen.route_web_socket(re.compile(r"/ws$"), tap)
    leader = tabs.open("leader")
    moderator = tabs.open("moderator")
    join_as_citizen(citizen, demo_server.links["citizen"])
    open_staff(leader, demo_server.links["leader"])
    open_staff(moderator, demo_server.links["moderator"])
    go_live(leader)
    speak(leader, "पहला")
    expect(citizen.locator("#speech li.speech .text").last).to_have_text("पहला")

    # The question leaves the page but never reaches the node: it stays in the outbox, "sending…".
    tap.drop_asks = True
    citizen.fill("#ask-text", "क्या यह प्रश्न खो जाएगा?")
    citizen.click("#ask-btn")
    mine = citizen.locator("#mine li")
    expect(mine).to_have_attribute("data-status", "sending")
    outbox = citizen.evaluate("Object.entries(localStorage).filter(([k]) => k.startsWith('jansamvad.outbox.'))")
    assert len(outbox) == 1 and "क्या यह प्रश्न खो जाएगा?" in outbox[0][1], outbox

    # The node drops the citizen (4009, slow consumer: reconnect and resume); the next attempt is held.
    tap.hold = True
    tap.drop_asks = False
    tap.routes[-1].close(code=4009, reason="test")
    expect(citizen.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    speak(leader, "दूसरा")  # said while the citizen is away
    expect(citizen.locator("#speech li.speech .text").last).to_have_text("पहला")

    # Let it through: the page resumes with last_seq, gets the missed speech once, and resends the question
    # with the same key.
    tap.hold = False
    for route in tap.held:
        route.close(code=1013, reason="test")  # try again later: the page backs off and reconnects
    expect(citizen.locator("#conn")).to_have_attribute("data-state", "live")
    expect(citizen.locator("#speech li.speech .text")).to_have_text(["पहला", "दूसरा"])
    expect(mine).to_have_attribute("data-status", "acked")
    resumed = tap.hellos()[-1]
    assert resumed.get("last_seq") == 2, resumed  # status live = 1, "पहला" = 2
    welcome = [m for m in tap.received if m.get("t") == "welcome"][-1]
    assert welcome["recovered"] is True, welcome
    asks = [m for m in tap.sent if m.get("t") == "ask"]
    assert len(asks) == 2 and asks[0]["key"] == asks[1]["key"], asks
    expect(moderator.locator("#queue li")).to_have_count(1)

    # A reload keeps the identity (no join form) and a resend of an acked key changes nothing (dup).
    citizen.evaluate(
        """([key, text]) => {
            const k = Object.keys(localStorage).find((k) => k.startsWith('jansamvad.outbox.'));
            localStorage.setItem(k, JSON.stringify([{ key, msg: { t: 'ask', key, text }, ts: Date.now() }]));
        }""",
        [asks[0]["key"], asks[0]["text"]],
    )
    citizen.reload()
    expect(citizen.locator("#conn")).to_have_attribute("data-state", "live")
    expect(citizen.locator("#join")).to_be_hidden()
    expect(citizen.locator("#mine li")).to_have_count(1)
    expect(citizen.locator("#mine li")).to_have_attribute("data-status", "acked")
    assert "last_seq" not in tap.hellos()[-1], "a fresh page has no state to resume from"
    citizen.wait_for_function(
        "() => Object.entries(localStorage).filter(([k]) => k.startsWith('jansamvad.outbox.'))"
        ".every(([, v]) => v === '[]')"
    )
    dup = [m for m in tap.received if m.get("t") == "ack" and m.get("key") == asks[0]["key"]]
    assert [m.get("dup", False) for m in dup] == [False, True], dup
    expect(moderator.locator("#queue li")).to_have_count(1)

    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)
