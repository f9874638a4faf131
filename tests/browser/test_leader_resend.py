"""The leader console when a long speech fails part-way: what was said stays said, and the part in doubt goes again
with its first key. Real headless Chromium against a real `jansamvad serve --demo`; the only thing changed on the way
is one acknowledgement, replaced in the page's WebSocket (Playwright's route_web_socket) by an error, as when a node
stores a speech and then cannot answer."""

from __future__ import annotations

import re
from typing import Any

import msgpack
import pytest

from tests.browser.harness import Server, Tabs, go_live, join_as_citizen, open_staff, speak

pytestmark = pytest.mark.browser

DESKTOP = {"viewport": {"width": 1280, "height": 860}}
PHONE = {"viewport": {"width": 360, "height": 740}, "locale": "hi-IN"}
# Four sentences of about 700 characters: the console sends them as two parts (2,000 characters at most each).
SENTENCES = [f"वाक्य {n}: " + "सड़क बिजली पानी स्कूल अस्पताल " * 23 + "।" for n in range(1, 5)]


def relay(kind: str, nth: int, sent: list[dict[str, Any]], swallowed: list[int]) -> Any:
    """A route_web_socket handler: passes every frame through, records the console's `kind` requests in `sent`, and
    answers the node's ack of the `nth` one with an error instead (the node has stored it; the console never knows)."""

    def handler(ws: Any) -> None:
        server = ws.connect_to_server()
        answered_by_us: set[int] = set()

        def from_page(message: str | bytes) -> None:
            msg = msgpack.unpackb(message)  # the console speaks msgpack (binary frames)
            if msg.get("t") == kind:
                sent.append(msg)
                if len(sent) == nth:
                    answered_by_us.add(msg["id"])
            server.send(message)

        def from_server(message: str | bytes) -> None:
            msg = msgpack.unpackb(message)
            if msg.get("t") == "ack" and msg.get("re") in answered_by_us:
                swallowed.append(msg["seq"])
                error = {"t": "error", "re": msg["re"], "code": "forbidden", "msg": "injected by the test"}
                ws.send(msgpack.packb(error))
                return
            ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    return handler


def leader_with_a_lost_ack(
    demo_server: Server, tabs: Tabs, kind: str, nth: int
) -> tuple[Any, Any, list[Any], list[int]]:
    """A citizen, and a live leader console whose `nth` `kind` request will be stored but its ack lost: (citizen,
    leader, the `kind` requests as sent, the seqs of the acks swallowed)."""
    citizen = tabs.open("citizen", **PHONE)
    join_as_citizen(citizen, demo_server.links["citizen"])
    leader = tabs.open("leader", **DESKTOP)
    sent: list[dict[str, Any]] = []
    swallowed: list[int] = []
    leader.route_web_socket(re.compile(r".*/ws(\?.*)?$"), relay(kind, nth, sent, swallowed))
    open_staff(leader, demo_server.links["leader"])
    go_live(leader)
    return citizen, leader, sent, swallowed


def test_leader_speech_failing_part_way_keeps_only_the_unsent_part_and_says_nothing_twice(
    demo_server: Server, tabs: Tabs
) -> None:
    from playwright.sync_api import expect

    citizen, leader, speeches, swallowed = leader_with_a_lost_ack(demo_server, tabs, "speech", 2)

    leader.fill("#speech-text", " ".join(SENTENCES))
    leader.click("#speech-send")
    first_part, second_part = " ".join(SENTENCES[:2]), " ".join(SENTENCES[2:])
    # The first part was said and acknowledged; only the second is left in the box.
    expect(leader.locator("#speech-text")).to_have_value(second_part)
    assert [s["text"] for s in speeches] == [first_part, second_part] and len(swallowed) == 1

    leader.click("#speech-send")  # the leader sends what is left: the same part, with the same key
    expect(leader.locator("#speech-text")).to_have_value("")
    assert len(speeches) == 3 and speeches[2]["key"] == speeches[1]["key"] and speeches[2]["text"] == second_part

    # Everyone heard each part exactly once (the second was stored the first time; the resend was acked `dup`).
    spoken = citizen.locator("#speech li.speech .text")
    expect(spoken).to_have_count(2)
    assert spoken.all_inner_texts() == [first_part, second_part]
    expect(leader.locator("#speech li.speech .text")).to_have_count(2)
    assert tabs.errors == [] or all("injected by the test" in e for e in tabs.errors), tabs.errors


def test_leader_announcement_in_doubt_goes_again_with_its_key_after_a_speech_in_between(
    demo_server: Server, tabs: Tabs
) -> None:
    from playwright.sync_api import expect

    citizen, leader, notices, swallowed = leader_with_a_lost_ack(demo_server, tabs, "announce", 1)

    leader.fill("#announce-text", "गेट 2 खुला है")
    leader.click("#announce-send")
    expect(leader.locator("#announce-state")).to_have_text(re.compile("नहीं भेजा गया|Not sent"))
    assert len(swallowed) == 1
    expect(leader.locator("#announce-text")).to_have_value("गेट 2 खुला है")  # nothing was said: the box is as it was
    speak(leader, "बीच में एक वाक्य")  # a speech in between does not make the console forget the announcement's key
    leader.click("#announce-send")
    expect(leader.locator("#announce-text")).to_have_value("")
    assert len(notices) == 2 and notices[1]["key"] == notices[0]["key"]
    notes = citizen.locator("#speech li.announce .text")
    expect(notes).to_have_count(1)  # stored the first time, acked `dup` the second
    assert notes.all_inner_texts() == ["गेट 2 खुला है"]


def test_leader_speech_never_answered_goes_again_with_its_key(demo_server: Server, tabs: Tabs) -> None:
    """The node drops a message without an answer when a client floods it (docs/protocol.md section 10.2); a client
    resends an id it never hears back about, with the same key. Here the first speech never reaches the node."""
    from playwright.sync_api import expect

    sent: list[dict[str, Any]] = []

    def drop_first_speech(ws: Any) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            msg = msgpack.unpackb(message)
            if msg.get("t") == "speech":
                sent.append(msg)
                if len(sent) == 1:
                    return  # lost on the way: no ack, no error, the socket stays up
            server.send(message)

        ws.on_message(from_page)
        server.on_message(ws.send)

    citizen = tabs.open("citizen", **PHONE)
    join_as_citizen(citizen, demo_server.links["citizen"])
    leader = tabs.open("leader", **DESKTOP)
    leader.route_web_socket(re.compile(r".*/ws(\?.*)?$"), drop_first_speech)
    open_staff(leader, demo_server.links["leader"])
    go_live(leader)

    leader.fill("#speech-text", SENTENCES[0])
    leader.click("#speech-send")
    expect(leader.locator("#speech-text")).to_have_value("", timeout=30_000)  # the console waits about 10 s
    assert len(sent) == 2 and sent[1]["key"] == sent[0]["key"] and sent[1]["id"] != sent[0]["id"], sent
    spoken = citizen.locator("#speech li.speech .text")
    expect(spoken).to_have_count(1)
    assert spoken.all_inner_texts() == [SENTENCES[0]]
    assert tabs.errors == [], tabs.errors
