"""Opt-in audio and the data ladder in headless Chromium with a fake microphone (docs/protocol.md section 4.2).

- a citizen who taps "audio" hears the leader (Media Source Extensions append the chunks); one who does not receives
  no audio bytes at all, counted from the WebSocket frames Chromium's network layer reports (CDP);
- on a throttled 2G link (CDP network emulation: 20 kbit/s down, 600 ms latency) the page steps down by itself
  from audio to captions or text-light, the captions keep flowing, and once the link is back it climbs back to audio.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import msgpack
import pytest

from tests.browser.harness import Server, Tabs, go_live, join_as_citizen, open_staff, speak

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 360, "height": 740}, "locale": "hi-IN"}
DESKTOP = {"viewport": {"width": 1280, "height": 860}}
TWO_G = {"offline": False, "latency": 600, "downloadThroughput": 20_000 / 8, "uploadThroughput": 16_000 / 8}
NO_THROTTLE = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}


def expect(*args: Any, **kwargs: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


class FrameCounter:
    """Every WebSocket frame a page receives, as Chromium's network layer reports it (CDP Network events)."""

    def __init__(self, page: Any) -> None:
        self.frames: list[dict[str, Any]] = []
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.on("Network.webSocketFrameReceived", self._frame)
        self.cdp.send("Network.enable")

    def _frame(self, event: dict[str, Any]) -> None:
        response = event["response"]
        raw = base64.b64decode(response["payloadData"]) if response["opcode"] == 2 else b""
        message = msgpack.unpackb(raw) if raw else {}
        self.frames.append({"bytes": len(raw), "t": message.get("t")})

    def since(self, start: int) -> list[dict[str, Any]]:
        return self.frames[start:]


def mode_of(page: Any) -> str:
    return str(page.evaluate("document.body.dataset.mode"))


def test_audio_opted_in_listener_hears_and_one_not_opted_in_gets_no_audio_bytes(
    demo_server: Server, tabs: Tabs
) -> None:
    leader = tabs.open("leader", **DESKTOP)
    listener = tabs.open("listener", **PHONE)
    reader = tabs.open("reader", **PHONE)
    counter = FrameCounter(reader)
    open_staff(leader, demo_server.links["leader"])
    join_as_citizen(listener, demo_server.links["citizen"], name="सुनने वाली")
    join_as_citizen(reader, demo_server.links["citizen"], name="पढ़ने वाला")
    go_live(leader)
    expect(reader.locator("#ladder button[data-mode=captions]")).to_have_attribute("aria-checked", "true")
    listener.click("#ladder button[data-mode=audio]")
    expect(listener.locator("#ladder button[data-mode=audio]")).to_have_attribute("aria-checked", "true")
    start = len(counter.frames)
    leader.click("#mic")  # the fake microphone is on air until the next tap
    listener.wait_for_function("() => +document.querySelector('#player').dataset.appended >= 8", timeout=20_000)
    speak(leader, "सुनने वालों और पढ़ने वालों को नमस्कार।")
    expect(reader.locator("#speech li.speech .text").last).to_have_text("सुनने वालों और पढ़ने वालों को नमस्कार।")
    leader.click("#mic")
    received = counter.since(start)
    assert [f for f in received if f["t"] == "speech"], received
    assert not [f for f in received if f["t"] == "audio"], "a citizen who never chose audio got audio frames"
    assert sum(f["bytes"] for f in received) < 4_000, received  # the speech and a few counts, not 3 KB/s of audio
    assert listener.evaluate("+document.querySelector('#player').dataset.received") >= 8
    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)


def test_ladder_steps_down_on_a_throttled_2g_link_keeps_captions_and_climbs_back(
    demo_server: Server, tabs: Tabs
) -> None:
    leader = tabs.open("leader", **DESKTOP)
    citizen = tabs.open("citizen", **PHONE)
    open_staff(leader, demo_server.links["leader"])
    join_as_citizen(citizen, demo_server.links["citizen"])
    go_live(leader)
    leader.click("#mic")
    citizen.click("#ladder button[data-mode=audio]")
    citizen.wait_for_function("() => +document.querySelector('#player').dataset.appended >= 3", timeout=20_000)

    cdp = citizen.context.new_cdp_session(citizen)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", TWO_G)
    # Audio (24 kbit/s) does not fit: the page notices (its pings queue behind the audio) and steps down.
    citizen.wait_for_function("() => document.body.dataset.mode !== 'audio'", timeout=20_000)
    expect(citizen.locator("#ladder-note")).not_to_be_empty()
    stepped_down = time.monotonic()
    # Captions keep flowing on the 2G link, with the audio dropped.
    text = "धीमे नेटवर्क पर भी भाषण पहुँचता है।"
    speak(leader, text)
    expect(citizen.locator("#speech li.speech .text").last).to_have_text(text, timeout=30_000)
    assert not citizen.evaluate("document.querySelector('#player').src"), "the player should have stopped"
    print(f"2G: stepped down to {mode_of(citizen)}; a sentence arrived {time.monotonic() - stepped_down:.1f} s later")

    cdp.send("Network.emulateNetworkConditions", NO_THROTTLE)
    citizen.wait_for_function("() => document.body.dataset.mode === 'audio'", timeout=60_000)
    before = citizen.evaluate("+document.querySelector('#player').dataset.received")
    citizen.wait_for_function(
        f"() => +document.querySelector('#player').dataset.received >= {before + 3}", timeout=20_000
    )
    leader.click("#mic")
    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)


def test_leader_on_air_survives_a_network_drop_and_listeners_recover(demo_server: Server, tabs: Tabs) -> None:
    leader = tabs.open("leader", **DESKTOP)
    citizen = tabs.open("citizen", **PHONE)
    open_staff(leader, demo_server.links["leader"])
    join_as_citizen(citizen, demo_server.links["citizen"])
    go_live(leader)
    citizen.click("#ladder button[data-mode=audio]")
    leader.click("#onair")
    expect(leader.locator("#onair")).to_have_attribute("aria-pressed", "true")
    expect(leader.locator("#onair-badge")).to_be_visible()
    expect(leader.locator("#onair-badge")).to_have_attribute("data-state", "live")
    citizen.wait_for_function("() => +document.querySelector('#player').dataset.appended >= 4", timeout=20_000)
    # The level meter moves with the (fake, beeping) microphone.
    leader.wait_for_function("() => document.querySelector('#mic-level').value > 0.01", timeout=10_000)

    # The leader's phone loses its network: the WebSocket breaks, the page reconnects, on air goes on.
    cdp = leader.context.new_cdp_session(leader)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {**NO_THROTTLE, "offline": True})
    leader.evaluate("dispatchEvent(new Event('offline'))")
    expect(leader.locator("#onair-badge")).to_have_attribute("data-state", "reconnecting")
    expect(leader.locator("#onair")).to_have_attribute("aria-pressed", "true")
    time.sleep(2)
    inits = citizen.evaluate("+document.querySelector('#player').dataset.inits")
    cdp.send("Network.emulateNetworkConditions", NO_THROTTLE)
    leader.evaluate("dispatchEvent(new Event('online'))")
    expect(leader.locator("#conn")).to_have_attribute("data-state", "live", timeout=20_000)
    expect(leader.locator("#onair-badge")).to_have_attribute("data-state", "live")
    # A new recording (a new init chunk) after the reconnect, and the listener plays on without doing anything.
    assert int(leader.locator("#mic").get_attribute("data-recordings") or 0) >= 2
    citizen.wait_for_function(f"() => +document.querySelector('#player').dataset.inits > {inits}", timeout=20_000)
    appended = citizen.evaluate("+document.querySelector('#player').dataset.appended")
    citizen.wait_for_function(
        f"() => +document.querySelector('#player').dataset.appended >= {appended + 4}", timeout=20_000
    )
    played = citizen.evaluate("document.querySelector('#player').currentTime")
    citizen.wait_for_function(f"() => document.querySelector('#player').currentTime > {played + 0.5}", timeout=15_000)
    leader.click("#onair")
    expect(leader.locator("#onair-badge")).to_be_hidden()
    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)
