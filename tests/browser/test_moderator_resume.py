"""The moderator page resumes its live queue: after a dropped connection it sends last_seq and last_mseq, the node
replays the moderation notices it missed (no snapshot), and every question is in the queue once. Real headless
Chromium against a real `jansamvad serve --demo`; the page's WebSocket goes through a tap (Playwright's
route_web_socket) that records frames and can hold the reconnect."""

from __future__ import annotations

import re

import pytest

from tests.browser.harness import Server, Tabs, ask, join_as_citizen, open_staff
from tests.browser.test_townhall_flow import WsTap, expect

pytestmark = pytest.mark.browser


def test_moderator_page_resumes_the_queue_with_last_mseq(demo_server: Server, tabs: Tabs) -> None:
    tap = WsTap()
    citizen = tabs.open("citizen")
    moderator = tabs.open("moderator")
    moderator.route_web_socket(re.compile(r"/ws(\?.*)?$"), tap)  # the staff pages use /ws?lane=staff
    join_as_citizen(citizen, demo_server.links["citizen"])
    open_staff(moderator, demo_server.links["moderator"])
    queue = moderator.locator("#queue li")
    before = queue.count()
    ask(citizen, "पहला सवाल: सड़क कब बनेगी?")
    expect(queue).to_have_count(before + 1)
    added = [m for m in tap.received if m.get("t") == "queue_add"]
    assert len(added) == 1 and isinstance(added[0].get("mseq"), int), added

    # The node drops the moderator (4009: reconnect and resume); the next attempt is held while citizens ask.
    tap.hold = True
    tap.routes[-1].close(code=4009, reason="test")
    expect(moderator.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    ask(citizen, "दूसरा सवाल: पानी कब आएगा?")
    ask(citizen, "तीसरा सवाल: बिजली कब आएगी?")
    tap.release()
    expect(moderator.locator("#conn")).to_have_attribute("data-state", "live")
    expect(queue).to_have_count(before + 3)
    hello = tap.hellos()[-1]
    assert hello.get("last_mseq") == added[0]["mseq"] and "last_seq" in hello, hello
    welcome = [m for m in tap.received if m.get("t") == "welcome"][-1]
    assert welcome["recovered"] is True, welcome
    replayed = [m for m in tap.received if m.get("t") == "queue_add"][1:]
    assert [m["mseq"] for m in replayed] == [added[0]["mseq"] + 1, added[0]["mseq"] + 2], replayed
    qids = moderator.locator("#queue li").evaluate_all("els => els.map((e) => e.dataset.qid)")
    assert len(qids) == len(set(qids)), qids  # each question once
    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)
