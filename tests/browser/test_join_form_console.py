"""A citizen who opens the page and stays on the join form sees a quiet console: no warning, no error. (Chromium
warns when a resource was preloaded but not used within a few seconds of the load event; the msgpack build used to be
preloaded on every visit although only a connection needs it.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.harness import Server, Tabs

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 360, "height": 740}, "locale": "hi-IN"}
# Chromium reports an unused preload about 3 s after the window's load event; wait comfortably past that.
QUIET_FOR_MS = 5000


def test_join_form_logs_no_console_warning_or_error(demo_server: Server, tabs: Tabs) -> None:
    from playwright.sync_api import expect

    citizen = tabs.open("citizen", **PHONE)
    logged: list[str] = []

    def on_console(msg: Any) -> None:
        if msg.type in ("warning", "error"):
            logged.append(f"{msg.type}: {msg.text}")

    citizen.on("console", on_console)
    citizen.goto(demo_server.links["citizen"], wait_until="load")
    expect(citizen.locator("#join")).to_be_visible()
    expect(citizen.locator("#join-btn")).to_have_text("जुड़ें")
    citizen.wait_for_timeout(QUIET_FOR_MS)
    assert logged == [], logged
    assert citizen.evaluate("typeof globalThis.MessagePack") == "undefined"  # not loaded before it is needed
    assert tabs.errors == [], tabs.errors
