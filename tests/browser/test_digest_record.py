"""Issue 18 in real headless Chromium against a real `jansamvad serve --demo`: a citizen who joins late sees "what
you missed" (Hindi first), then "अब लाइव" and the live speech; after the end, the record page at /record/<id> shows
the transcript and the answered questions, and its audio element loads and plays the leader's recording (from
Chromium's fake microphone through push-to-talk)."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pytest

from tests.browser.harness import Server, Tabs, announce, ask, go_live, join_as_citizen, open_staff, speak

pytestmark = pytest.mark.browser

DESKTOP = {"viewport": {"width": 1280, "height": 860}}
PHONE = {"viewport": {"width": 360, "height": 740}, "locale": "hi-IN"}


def expect(*args: Any, **kwargs: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


def townhall_id(server: Server) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(server.links["citizen"]).query)["th"][0]


def test_late_joiner_sees_what_they_missed_then_live(demo_server: Server, tabs: Tabs) -> None:
    leader = tabs.open("leader", **DESKTOP)
    open_staff(leader, demo_server.links["leader"])
    go_live(leader)
    said = ["नमस्ते बिहार, आज हम सड़कों की बात करेंगे।", "हर पंचायत में पक्की सड़क पहुँचेगी।"]
    for text in said:
        speak(leader, text)
    announce(leader, "अगली सभा गया में होगी।")

    late = tabs.open("late", **PHONE)
    join_as_citizen(late, demo_server.links["citizen"], name="देर से")
    digest = late.locator("#digest")
    expect(digest).to_be_visible()
    expect(digest.locator("h2")).to_have_text("आपसे क्या छूटा")
    expect(digest.locator("#digest-body")).to_contain_text(said[0])
    expect(digest.locator("#digest-body")).to_contain_text(said[1])
    expect(digest.locator("#digest-body")).to_contain_text("अगली सभा गया में होगी।")
    expect(digest.locator("#digest-live")).to_have_text("अब लाइव")
    # The digest comes first on the page, the live speech after it.
    boxes = late.evaluate(
        "() => [document.querySelector('#digest'), document.querySelector('.stage')]"
        ".map((e) => e.getBoundingClientRect().top)"
    )
    assert boxes[0] < boxes[1], boxes

    # Live goes on below it.
    now = "अब यह बात लाइव कही गई।"
    speak(leader, now)
    expect(late.locator("#speech li.speech .text").last).to_have_text(now)
    expect(digest.locator("#digest-body")).not_to_contain_text(now)

    late.click("#lang")  # English too
    expect(digest.locator("h2")).to_have_text("What you missed")
    expect(digest.locator("#digest-live")).to_have_text("Now live")
    late.click("#digest-close")
    expect(digest).to_be_hidden()
    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)


def test_record_page_after_the_end_reads_and_plays(demo_server: Server, tabs: Tabs) -> None:
    leader = tabs.open("leader", **DESKTOP)
    moderator = tabs.open("moderator", **DESKTOP)
    citizen = tabs.open("citizen", **PHONE)
    open_staff(leader, demo_server.links["leader"])
    open_staff(moderator, demo_server.links["moderator"])
    join_as_citizen(citizen, demo_server.links["citizen"])
    go_live(leader)

    # Push-to-talk with the fake microphone for a few seconds: the node keeps the chunks.
    leader.click("#mic")
    expect(leader.locator("#mic")).to_have_attribute("aria-pressed", "true")
    leader.wait_for_function("() => +document.querySelector('#mic').dataset.chunks >= 8", timeout=20_000)
    leader.click("#mic")
    expect(leader.locator("#mic")).to_have_attribute("aria-pressed", "false")
    sentence = "पुल का काम अगले महीने शुरू होगा।"
    speak(leader, sentence)

    question = "हमारे गाँव का पुल कब बनेगा?"
    ask(citizen, question)
    queued = moderator.locator("#queue li", has_text=question)
    expect(queued).to_be_visible()
    moderator.locator("body").press("j")
    moderator.locator("body").press("a")
    on_leader = leader.locator("#questions li", has_text=question)
    on_leader.locator("button.answer").click()
    expect(on_leader).to_have_attribute("data-state", "answered")

    leader.click("#end")
    leader.click("#end")  # the second press confirms
    expect(leader.locator("#status")).to_have_attribute("data-status", "ended")

    # The citizen's page, now over, links to the record.
    link = citizen.locator("#record-link")
    expect(link).to_be_visible()
    expect(link).to_have_text("इस जनसंवाद का रिकॉर्ड देखें और सुनें")
    assert link.get_attribute("href") == f"/record/{townhall_id(demo_server)}"

    reader = tabs.open("reader", **PHONE)
    response = reader.goto(f"{demo_server.base}/record/{townhall_id(demo_server)}")
    assert response is not None and response.status == 200
    assert "public" in (response.headers.get("cache-control") or "") and response.headers.get("etag")
    expect(reader.locator("#transcript")).to_contain_text(sentence)
    expect(reader.locator("#transcript")).to_contain_text("लाइव शुरू")
    expect(reader.locator("#answered li", has_text=question)).to_contain_text("सीता")
    expect(reader.locator("#answered")).to_contain_text(re.compile(r"\(1\)"))

    audio = reader.locator("#recording audio").first
    expect(audio).to_be_attached()
    reader.wait_for_function("() => document.querySelector('#recording audio').readyState >= 1", timeout=15_000)
    audio.evaluate("(a) => { a.muted = true; return a.play(); }")
    reader.wait_for_function(
        "() => { const a = document.querySelector('#recording audio'); return a.currentTime > 0.3 && !a.error; }",
        timeout=15_000,
    )
    state = audio.evaluate("(a) => ({duration: a.duration, readyState: a.readyState, error: a.error && a.error.code})")
    assert state["error"] is None and state["duration"] > 0 and state["readyState"] >= 2, state
    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)
