"""The war-room dashboard when the node says "not now": after too many wrong admin keys from one address the node
locks the address out (429, docs/security.md). The open page says so in words instead of failing on the error body,
keeps its key, and shows the report again on its own once the lockout is over. Real headless Chromium against a real
`jansamvad serve --demo`."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from tests.browser.harness import Server, Tabs

pytestmark = pytest.mark.browser


def test_dashboard_shows_the_lockout_keeps_the_key_and_recovers(demo_server: Server, tabs: Tabs) -> None:
    from playwright.sync_api import expect

    (admin_key,) = re.findall(r"admin key \(for the REST API\): (\S+)", "".join(demo_server.stdout))
    page = tabs.open("admin")
    page.goto(f"{demo_server.base}/dashboard.html#key={admin_key}")
    health = page.locator("#wr-health")
    expect(health).to_contain_text("ready")  # the report, with the right key

    statuses = []
    for i in range(11):  # 10 failures a minute per address, then every call with a key is refused for a while
        request = urllib.request.Request(demo_server.base + "/api/dashboard", headers={"Authorization": f"Bearer x{i}"})
        try:
            urllib.request.urlopen(request, timeout=5)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
    assert statuses == [401] * 10 + [429]

    # The page polls every 2 s with the right key; a token comes back after 6 s: its next poll meets the lockout.
    expect(health).to_contain_text("HTTP 429 rate_limited")
    expect(health).to_contain_text("too many requests")
    assert page.locator("#wr-login").is_hidden()  # not "wrong key": the key is kept
    expect(health).to_contain_text("ready", timeout=20_000)  # the lockout is over: the report is back by itself
    assert tabs.errors == []
