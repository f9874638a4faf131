"""The war-room dashboard when the node says "not now": after too many wrong admin keys from one address the node
locks the address out (429, docs/security.md), and the page says so in words instead of failing on the error body.
Real headless Chromium against a real `jansamvad serve --demo`."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.browser.harness import Server, Tabs

pytestmark = pytest.mark.browser


def test_dashboard_shows_the_lockout_and_keeps_the_key(demo_server: Server, tabs: Tabs) -> None:
    from playwright.sync_api import expect

    statuses = []
    for i in range(11):  # 10 failures a minute per address, then every call with a key is refused
        request = urllib.request.Request(demo_server.base + "/api/dashboard", headers={"Authorization": f"Bearer x{i}"})
        try:
            urllib.request.urlopen(request, timeout=5)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
    assert statuses == [401] * 10 + [429]

    page = tabs.open("admin")
    page.goto(demo_server.base + "/dashboard.html#key=whatever-the-key-is")
    health = page.locator("#wr-health")
    expect(health).to_contain_text("HTTP 429 rate_limited")
    expect(health).to_contain_text("too many requests")
    assert page.locator("#wr-login").is_hidden()  # not "wrong key": the key is kept for the next try
    assert tabs.errors == []
