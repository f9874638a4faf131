"""The leader and moderator pages connect on the staff lane (/ws?lane=staff), citizens on the plain endpoint: a storm
of citizen reconnects does not hold staff up (tests/test_staff_lane_storm.py). Real headless Chromium against a real
`jansamvad serve --demo`."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.browser.harness import Server, Tabs, join_as_citizen, open_staff

pytestmark = pytest.mark.browser


def test_staff_pages_open_their_websocket_on_the_staff_lane(demo_server: Server, tabs: Tabs) -> None:
    urls: dict[str, list[str]] = {"leader": [], "moderator": [], "citizen": []}
    for role in ("leader", "moderator"):
        page = tabs.open(role)
        page.on("websocket", lambda ws, role=role: urls[role].append(ws.url))
        open_staff(page, demo_server.links[role])
    citizen = tabs.open("citizen")
    citizen.on("websocket", lambda ws: urls["citizen"].append(ws.url))
    join_as_citizen(citizen, demo_server.links["citizen"])
    paths = {role: [urlsplit(url)[2:4] for url in seen] for role, seen in urls.items()}
    assert paths == {"leader": [("/ws", "lane=staff")], "moderator": [("/ws", "lane=staff")], "citizen": [("/ws", "")]}
    assert tabs.errors == [], tabs.errors
