"""What every page shows once the leader ends the town hall. The node sends `status ended` (after a closed `poll` for
each open poll), then closes every socket with 4005 townhall_ended: each page says "ended" in its header (not a red
"offline"), stops showing a frozen viewer count and never reconnects; the leader's console offers nothing that acts on
the town hall any more and shows its polls closed with their final counts. Real headless Chromium against a real
`jansamvad serve --demo`."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.harness import Server, Tabs, go_live, join_as_citizen, open_staff, speak

pytestmark = pytest.mark.browser

DESKTOP = {"viewport": {"width": 1280, "height": 860}}
PHONE = {"viewport": {"width": 360, "height": 740}, "locale": "hi-IN"}
# Backoff starts at up to 0.5 s: a page that meant to reconnect would have tried within this.
NO_RECONNECT_FOR_MS = 3000


def expect(*args: Any, **kwargs: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


def count_sockets(page: Any) -> list[str]:
    opened: list[str] = []
    page.on("websocket", lambda ws: opened.append(ws.url))
    return opened


def end_townhall(leader: Any) -> None:
    leader.click("#end")
    leader.click("#end")  # the second press within 4 s confirms
    expect(leader.locator("#status")).to_have_attribute("data-status", "ended")


def test_townhall_end_shows_ended_on_every_page_without_reconnecting(demo_server: Server, tabs: Tabs) -> None:
    citizen = tabs.open("citizen", **PHONE)
    moderator = tabs.open("moderator", **DESKTOP)
    leader = tabs.open("leader", **DESKTOP)
    sockets = {role: count_sockets(page) for role, page in tabs.pages.items()}
    join_as_citizen(citizen, demo_server.links["citizen"])
    open_staff(moderator, demo_server.links["moderator"])
    open_staff(leader, demo_server.links["leader"])
    go_live(leader)
    speak(leader, "धन्यवाद, आज की सभा यहीं समाप्त होती है।")
    for page in tabs.pages.values():
        expect(page.locator(".meta .viewers")).to_be_visible()

    end_townhall(leader)
    for role, page in tabs.pages.items():
        conn = page.locator("#conn")
        expect(conn, role).to_have_attribute("data-state", "ended")  # closed with 4005: over, not a network failure
        expect(conn.locator(".label"), role).to_have_text("प्रसारण समाप्त")
        expect(page.locator("#status"), role).to_have_text("समाप्त")
        expect(page.locator("#notice"), role).to_have_text("यह जनसंवाद समाप्त हो गया है। धन्यवाद!")
        expect(page.locator(".meta .viewers"), role).to_be_hidden()  # nobody is watching: no frozen count
    page_sockets = {role: len(opened) for role, opened in sockets.items()}
    assert page_sockets == {"citizen": 1, "moderator": 1, "leader": 1}, page_sockets

    # No reconnect attempts after 4005, on any page.
    leader.wait_for_timeout(NO_RECONNECT_FOR_MS)
    assert {role: len(opened) for role, opened in sockets.items()} == page_sockets, sockets
    for role, page in tabs.pages.items():
        expect(page.locator("#conn"), role).to_have_attribute("data-state", "ended")

    # English says it too.
    leader.click("#lang")
    expect(leader.locator("#conn .label")).to_have_text("ended")
    expect(leader.locator("#status")).to_have_text("Ended")

    # The citizen can no longer ask or react; the leader can no longer speak, go live or end.
    expect(citizen.locator("#ask-btn")).to_be_disabled()
    expect(citizen.locator("#reactions button").first).to_be_disabled()
    expect(citizen.locator("#listen")).to_be_disabled()  # no live audio to come
    expect(leader.locator("#fig-viewers")).to_be_hidden()  # nor a frozen audience figure
    for control in ("#go-live", "#end", "#speech-send", "#announce-send", "#mic", "#slow-mode"):
        expect(leader.locator(control), control).to_be_hidden()
    expect(moderator.locator("#slow-mode")).to_be_hidden()
    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)


def test_leader_after_end_offers_no_poll_actions_and_shows_final_counts(demo_server: Server, tabs: Tabs) -> None:
    citizen = tabs.open("citizen", **PHONE)
    leader = tabs.open("leader", **DESKTOP)
    join_as_citizen(citizen, demo_server.links["citizen"])
    open_staff(leader, demo_server.links["leader"])
    go_live(leader)

    # A poll is open and has a vote when the town hall ends.
    leader.click("#poll-new summary")
    leader.fill("#poll-q", "अगली सभा कहाँ हो?")
    leader.fill("#poll-opt-1", "पटना")
    leader.fill("#poll-opt-2", "गया")
    leader.click("#poll-open")
    on_citizen = citizen.locator("#poll-list .poll")
    expect(on_citizen).to_have_attribute("data-state", "open")
    on_citizen.locator("button.poll-opt", has_text="गया").click()
    expect(on_citizen.locator(".pv-status")).to_have_class(re.compile(r"\backed\b"))
    poll = leader.locator("#poll-list .poll")
    expect(poll.locator("li[data-option='1'] .poll-pct")).to_have_text("100%")
    expect(poll.locator("button.poll-close")).to_be_visible()
    expect(leader.locator("#poll-new")).to_be_visible()

    end_townhall(leader)
    # The node closed the poll with its final counts before `status ended`: the console shows it so, with no actions.
    expect(poll).to_have_attribute("data-state", "closed")
    expect(poll.locator(".badge.closed")).to_have_text("मतदान बंद — अंतिम परिणाम")
    expect(poll.locator("li[data-option='1'] .poll-pct")).to_have_text("100%")
    expect(poll.locator(".poll-total")).to_have_text("1 वोट")
    expect(leader.locator("#poll-list button")).to_have_count(0)
    expect(leader.locator("#poll-new")).to_be_hidden()
    for control in ("#go-live", "#end", "#speech-send", "#mic"):
        expect(leader.locator(control), control).to_be_hidden()
    # The citizen sees the same final result.
    expect(on_citizen).to_have_attribute("data-state", "closed")
    expect(on_citizen.locator("li[data-option='1'] .poll-pct")).to_have_text("100%")
    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)
