"""Viewer counts by role. The node's `viewers` message is `{n: citizens, staff: leaders + moderators + admins}` and the
snapshot has `viewers` (citizens) and `staff`: the citizen page shows the citizens, the leader and moderator consoles
show citizens and team apart ("2 दर्शक · 2 टीम"), and a console whose node sends no `staff` shows the citizens alone.
Real headless Chromium against a real `jansamvad serve --demo`; for the missing field, Playwright's route_web_socket
takes `staff` out of what the node sends to one console."""

from __future__ import annotations

import re
from typing import Any

import msgpack
import pytest

from tests.browser.harness import Server, Tabs, join_as_citizen, open_staff

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 360, "height": 740}, "locale": "hi-IN"}
DESKTOP = {"viewport": {"width": 1280, "height": 860}}
VIEWERS_TICK_MS = 15_000  # `viewers` is conflated to at most one a second; presence may take a few


def expect(*args: Any, **kwargs: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


def without_staff(ws: Any) -> None:
    """A route_web_socket handler: the node's messages with their `staff` field removed (an older node)."""
    server = ws.connect_to_server()

    def from_server(message: str | bytes) -> None:
        msg = msgpack.unpackb(message)
        if msg.get("t") in ("viewers", "snapshot") and "staff" in msg:
            del msg["staff"]
            message = msgpack.packb(msg)
        ws.send(message)

    ws.on_message(server.send)
    server.on_message(from_server)


def test_viewer_counts_show_citizens_and_team_apart(demo_server: Server, tabs: Tabs) -> None:
    sita = tabs.open("sita", **PHONE)
    gita = tabs.open("gita", **PHONE)
    leader = tabs.open("leader", **DESKTOP)
    moderator = tabs.open("moderator", **DESKTOP)
    old_console = tabs.open("old-console", **DESKTOP)  # a second moderator console, behind a node without `staff`
    old_console.route_web_socket(re.compile(r".*/ws(\?.*)?$"), without_staff)
    join_as_citizen(sita, demo_server.links["citizen"], name="सीता")
    join_as_citizen(gita, demo_server.links["citizen"], name="गीता")
    open_staff(leader, demo_server.links["leader"])
    open_staff(moderator, demo_server.links["moderator"])
    open_staff(old_console, demo_server.links["moderator"])

    # Two citizens; the team is one leader and two moderator consoles.
    for citizen in (sita, gita):
        expect(citizen.locator("#viewers")).to_have_text("2", timeout=VIEWERS_TICK_MS)
        expect(citizen.locator("#staff-count")).to_have_count(0)  # the citizen page shows citizens only
        expect(citizen.locator(".meta .viewers")).to_have_text("2 दर्शक")
    for console in (leader, moderator):
        expect(console.locator(".meta .viewers")).to_have_text("2 दर्शक · 3 टीम", timeout=VIEWERS_TICK_MS)
    expect(leader.locator("#fig-viewers")).to_have_text("2")

    # No `staff` from the node: the citizens alone, no "– टीम", no error.
    expect(old_console.locator(".meta .viewers")).to_have_text("2 दर्शक", use_inner_text=True, timeout=VIEWERS_TICK_MS)
    expect(old_console.locator("#staff-count")).to_be_hidden()

    # In English, and the count follows a citizen who leaves.
    leader.click("#lang")
    gita.click("#leave")
    expect(leader.locator(".meta .viewers")).to_have_text("1 watching · 3 team", timeout=VIEWERS_TICK_MS)
    expect(sita.locator("#viewers")).to_have_text("1", timeout=VIEWERS_TICK_MS)
    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)
