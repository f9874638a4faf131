"""A leader pastes a long speech (230 parts): every part is spoken once, in order, and the session stays open, also
when the node answers parts with `rate_limited` (as it does for a burst of keyed speech, docs/protocol.md): the console
waits `retry_ms` and sends the same part again with the same key. Real headless Chromium against a real
`jansamvad serve --demo`; Playwright's route_web_socket sits in the leader's WebSocket, records what the console sends
and answers a few parts with `rate_limited` in the node's place (those never reach the node)."""

from __future__ import annotations

import re
import time
from typing import Any

import msgpack
import pytest

from tests.browser.harness import Server, Tabs, go_live, join_as_citizen, open_staff

pytestmark = pytest.mark.browser

DESKTOP = {"viewport": {"width": 1280, "height": 860}}
PHONE = {"viewport": {"width": 360, "height": 740}, "locale": "hi-IN"}
PARTS = 230
# About 1,100 characters a sentence: the console cuts at the sentence end, one sentence a part (2,000 at most each).
SENTENCES = [f"वाक्य {n}: " + "सड़क बिजली पानी " * 70 + "।" for n in range(1, PARTS + 1)]
LIMITED = {3, 4, 120, 230}  # the requests (1-based, counting resends) the "node" answers with rate_limited
RETRY_MS = 250


class LimitingRelay:
    """Passes every frame through, except the speech requests numbered in LIMITED: those are answered
    `error rate_limited` with `retry_ms` and never reach the node. Counts the sockets the page opens and closes."""

    def __init__(self) -> None:
        self.speeches: list[dict[str, Any]] = []
        self.limited: list[dict[str, Any]] = []
        self.acks: dict[int, dict[str, Any]] = {}
        self.errors: list[dict[str, Any]] = []
        self.sockets = 0
        self.closes: list[int | None] = []

    def __call__(self, ws: Any) -> None:
        self.sockets += 1
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            msg = msgpack.unpackb(message)
            if msg.get("t") == "speech":
                self.speeches.append(msg)
                if len(self.speeches) in LIMITED:
                    self.limited.append(msg)
                    refusal = {"t": "error", "re": msg["id"], "code": "rate_limited", "msg": "too many messages"}
                    ws.send(msgpack.packb({**refusal, "retry_ms": RETRY_MS}))
                    return
            server.send(message)

        def from_server(message: str | bytes) -> None:
            msg = msgpack.unpackb(message)
            if msg.get("t") == "ack":
                self.acks[msg["re"]] = msg
            elif msg.get("t") == "error":
                self.errors.append(msg)
            ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)
        server.on_close(lambda code, reason: (self.closes.append(code), ws.close(code=code, reason=reason)))


@pytest.mark.timeout(180)
def test_leader_long_paste_is_spoken_completely_once_in_order_without_closing(demo_server: Server, tabs: Tabs) -> None:
    from playwright.sync_api import expect

    citizen = tabs.open("citizen", **PHONE)
    join_as_citizen(citizen, demo_server.links["citizen"])
    leader = tabs.open("leader", **DESKTOP)
    relay = LimitingRelay()
    leader.route_web_socket(re.compile(r".*/ws(\?.*)?$"), relay)
    open_staff(leader, demo_server.links["leader"])
    go_live(leader)

    # Pasted (a quarter of a million characters: typing it key by key would take minutes).
    leader.locator("#speech-text").evaluate("(box, text) => { box.value = text; }", " ".join(SENTENCES))
    start = time.monotonic()
    leader.click("#speech-send")
    expect(leader.locator("#speech-send")).to_be_disabled()  # one send at a time: a second press cannot double it
    expect(leader.locator("#speech-text")).to_have_value("", timeout=120_000)
    took = time.monotonic() - start
    expect(leader.locator("#speech-state")).to_contain_text("✓")

    # Everyone heard every part once, in order.
    spoken = citizen.locator("#speech li.speech .text")
    expect(spoken).to_have_count(PARTS, timeout=30_000)
    assert spoken.all_inner_texts() == SENTENCES
    seqs = [int(s) for s in citizen.locator("#speech li").evaluate_all("els => els.map((e) => e.dataset.seq)")]
    assert seqs == sorted(set(seqs)) and len(seqs) == PARTS, seqs[:5]
    expect(leader.locator("#speech li.speech .text")).to_have_count(PARTS)

    # Each refused part went again, next, with its key and text; nothing else was sent twice.
    assert len(relay.limited) == len(LIMITED), len(relay.limited)
    for refused in relay.limited:
        after = relay.speeches[relay.speeches.index(refused) + 1]
        assert (after["key"], after["text"]) == (refused["key"], refused["text"]), (after["id"], refused["id"])
    assert len(relay.speeches) == PARTS + len(LIMITED)
    assert [s["text"] for s in relay.speeches if s not in relay.limited] == SENTENCES
    assert len({s["key"] for s in relay.speeches}) == PARTS

    # The session was never closed: one socket, still live, no error from the node itself.
    assert relay.sockets == 1 and relay.closes == [], (relay.sockets, relay.closes)
    expect(leader.locator("#conn")).to_have_attribute("data-state", "live")
    assert relay.errors == [], relay.errors[:3]
    assert tabs.errors == [], tabs.errors
    print(f"{PARTS} parts ({len(LIMITED)} answered rate_limited) spoken in {took:.1f} s")
