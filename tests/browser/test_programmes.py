"""Programmes in real headless Chromium against a real `jansamvad serve --demo` (issue 18 item 1): the programme page
on a 360 px phone in Hindi and English, the lobby (countdown, asking allowed, reminder links) that turns live by
itself when the leader goes live, and the war room's form that schedules, edits and cancels.

JANSAMVAD_SCREENSHOT_DIR=docs/screenshots writes programmes-hi.png, programmes-en.png and lobby-hi.png there."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from jansamvad.programmes import IST
from tests.browser.harness import (
    UI_TIMEOUT_MS,
    Server,
    ServerFailed,
    Tabs,
    demo_server as start_demo,
    go_live,
    open_staff,
)

pytestmark = pytest.mark.browser

ADMIN_KEY = "browser-test-admin-key-0123"
PHONE = {"viewport": {"width": 360, "height": 740}, "locale": "hi-IN"}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}


def expect(*args: Any, **kwargs: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


@pytest.fixture
def programme_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """`serve --demo` with a known admin key (the harness passes the environment), so the test can schedule."""
    monkeypatch.setenv("JANSAMVAD_ADMIN_KEY", ADMIN_KEY)
    try:
        with start_demo(tmp_path / "server.stderr") as srv:
            yield srv
    except ServerFailed as exc:
        pytest.fail(str(exc))


@pytest.fixture
def phone_tabs(
    programme_server: Server, browser: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Tabs]:
    from playwright.sync_api import expect as _expect

    _expect.set_options(timeout=UI_TIMEOUT_MS)
    tabs = Tabs(browser, tmp_path)
    yield tabs
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:
        tabs.screenshots()
        print(programme_server.output())


def api(server: Server, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        server.base + path,
        data=json.dumps(body).encode() if body is not None else b"",
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def at_ist(days: int, hour: int, minute: int = 0) -> str:
    day = datetime.now(IST) + timedelta(days=days)
    return day.replace(hour=hour, minute=minute, second=0, microsecond=0).isoformat()


def demo_th(server: Server) -> str:
    return parse_qs(urlsplit(server.links["citizen"]).query)["th"][0]


def shoot(page: Any, tmp_path: Path, name: str) -> None:
    page.evaluate("document.activeElement && document.activeElement.blur(); scrollTo(0, 0)")
    page.screenshot(path=str(tmp_path / name), full_page=True)
    shots = os.environ.get("JANSAMVAD_SCREENSHOT_DIR")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / name), full_page=True)


def no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page is {width} px wide on a 360 px phone"


def test_programmes_page_on_a_phone_in_hindi_and_english(
    programme_server: Server, phone_tabs: Tabs, tmp_path: Path
) -> None:
    srv = programme_server
    live_th = demo_th(srv)
    api(srv, f"/api/programmes/{live_th}", {"leader": "मुख्यमंत्री", "starts_at": at_ist(0, 0)})
    api(srv, f"/api/townhalls/{live_th}/start")
    evening = api(
        srv,
        "/api/programmes",
        {
            "title": "पटना जनसंवाद: युवाओं के सवाल",
            "leader": "शिक्षा मंत्री",
            "starts_at": at_ist(2, 19),
            "description": "रोज़गार, परीक्षा और छात्रवृत्ति पर खुली बातचीत। अपना सवाल पहले से भेजिए।",
        },
    )
    api(srv, "/api/programmes", {"title": "Gaya farmers' town hall", "leader": "Agriculture minister",
                                 "starts_at": at_ist(5, 11, 30), "lang": "en"})  # fmt: skip
    past = api(srv, "/api/programmes", {"title": "दरभंगा स्वास्थ्य संवाद", "leader": "स्वास्थ्य मंत्री",
                                         "starts_at": at_ist(0, 0)})  # fmt: skip
    api(srv, f"/api/townhalls/{past['th']}/end")

    page = phone_tabs.open("programmes", **PHONE)
    page.goto(srv.base + "/programmes")
    expect(page.locator("h1")).to_have_text("कार्यक्रम")
    live = page.locator("#live article")
    expect(live).to_have_count(1)
    expect(live.locator(".badge")).to_have_text("अभी लाइव")
    expect(live.locator("a.go")).to_have_attribute("href", f"/?th={live_th}")
    upcoming = page.locator("#upcoming article")
    expect(upcoming).to_have_count(2)
    first = upcoming.first
    expect(first.locator("h3")).to_have_text("पटना जनसंवाद: युवाओं के सवाल")
    expect(first.locator(".when")).to_contain_text("शाम 7:00 बजे IST")
    expect(first.locator(".meta")).to_have_text("वक्ता: शिक्षा मंत्री · भाषा: हिन्दी")
    expect(first.locator(f'a[href="/programmes/{evening["th"]}.ics"]')).to_have_text("कैलेंडर में जोड़ें")
    expect(upcoming.nth(1).locator(".when")).to_contain_text("सुबह 11:30 बजे IST")
    expect(upcoming.nth(1).locator(".meta")).to_contain_text("भाषा: अंग्रेज़ी")
    share = first.locator("a", has_text="WhatsApp पर भेजें").get_attribute("href")
    assert share is not None and "शाम 7:00 बजे IST" in parse_qs(urlsplit(share).query)["text"][0]
    expect(page.locator("#past article a.go")).to_have_attribute("href", f"/record/{past['th']}")
    no_sideways_scroll(page)
    shoot(page, tmp_path, "programmes-hi.png")

    page.click("header a")  # English
    expect(page.locator("h1")).to_have_text("Programmes")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#upcoming article").first.locator(".when")).to_contain_text("7:00 pm IST")
    expect(page.locator("#upcoming article").first.locator(".meta")).to_have_text(
        "Speaker: शिक्षा मंत्री · Language: Hindi"
    )
    expect(page.locator("#past h2")).to_have_text("Past programmes")
    no_sideways_scroll(page)
    shoot(page, tmp_path, "programmes-en.png")
    assert phone_tabs.errors == []


def test_programmes_lobby_counts_down_takes_questions_then_goes_live_by_itself(
    programme_server: Server, phone_tabs: Tabs, tmp_path: Path
) -> None:
    srv = programme_server
    th = demo_th(srv)
    starts = datetime.now(IST) + timedelta(hours=2, minutes=5)
    api(srv, f"/api/programmes/{th}", {"leader": "मुख्यमंत्री", "starts_at": starts.isoformat(), "description": "बाढ़ राहत"})

    citizen = phone_tabs.open("citizen", **PHONE)
    citizen.goto(srv.links["citizen"])
    lobby = citizen.locator("#lobby")
    expect(lobby).to_be_visible()  # before joining too: the visitor learns when to come back
    expect(citizen.locator("#lobby-countdown")).to_contain_text("शुरू होने में 2 घंटे 4 मिनट")
    expect(citizen.locator("#lobby-leader")).to_have_text("मुख्यमंत्री")
    expect(citizen.locator("#lobby-when")).to_contain_text("बजे IST")
    expect(citizen.locator("#lobby-ics")).to_have_attribute("href", f"{srv.base}/programmes/{th}.ics")
    share = citizen.locator("#lobby-share").get_attribute("href")
    assert share is not None and share.startswith("https://wa.me/?text=")
    before = citizen.locator("#lobby-countdown").text_content()
    citizen.wait_for_timeout(1200)
    assert citizen.locator("#lobby-countdown").text_content() != before, "the countdown ticks"

    citizen.fill("#name", "सीता")
    citizen.click("#join-btn")
    expect(citizen.locator("#conn")).to_have_attribute("data-state", "live")
    expect(lobby).to_be_visible()
    expect(citizen.locator("#status")).to_have_text("जल्द शुरू होगा")
    citizen.fill("#ask-text", "बाढ़ राहत का पैसा कब मिलेगा?")  # asking is allowed in the lobby
    citizen.click("#ask-btn")
    expect(citizen.locator("#mine li", has_text="बाढ़ राहत का पैसा")).to_have_attribute("data-status", "acked")
    shoot(citizen, tmp_path, "lobby-hi.png")

    moderator = phone_tabs.open("moderator", **DESKTOP)
    open_staff(moderator, srv.links["moderator"])
    moderator.locator("#queue li", has_text="बाढ़ राहत का पैसा").locator("button.approve").click()
    expect(citizen.locator("#questions li", has_text="बाढ़ राहत का पैसा")).to_have_count(1)  # seen in the lobby

    leader = phone_tabs.open("leader", **DESKTOP)
    open_staff(leader, srv.links["leader"])
    go_live(leader)
    expect(lobby).to_be_hidden()  # no reload: the status event turned the page live
    expect(citizen.locator("#status")).to_have_text("लाइव प्रसारण")
    expect(citizen.locator("#questions li", has_text="बाढ़ राहत का पैसा")).to_have_count(1)
    assert phone_tabs.errors == []


def test_programmes_war_room_schedules_edits_and_cancels(programme_server: Server, phone_tabs: Tabs) -> None:
    srv = programme_server
    page = phone_tabs.open("dashboard", **DESKTOP)
    page.goto(f"{srv.base}/dashboard.html#key={ADMIN_KEY}")
    page.click("#wr-programmes summary")
    form = page.locator("#pg-form")
    form.locator("[name=title]").fill("मुज़फ़्फ़रपुर जनसंवाद")
    form.locator("[name=leader]").fill("उपमुख्यमंत्री")
    form.locator("[name=starts]").fill(at_ist(3, 18, 30)[:16])
    form.locator("[name=description]").fill("सड़क और बिजली")
    page.click("#pg-submit")
    expect(page.locator("#pg-result")).to_contain_text("तय हुआ · scheduled: मुज़फ़्फ़रपुर जनसंवाद")
    item = page.locator("#pg-list li", has_text="मुज़फ़्फ़रपुर जनसंवाद")
    expect(item).to_contain_text("शाम 6:30 बजे IST")

    item.locator("button.pg-edit").click()
    expect(form.locator("[name=leader]")).to_have_value("उपमुख्यमंत्री")
    form.locator("[name=leader]").fill("मुख्यमंत्री")
    page.click("#pg-submit")
    expect(page.locator("#pg-result")).to_contain_text("बदला · saved")
    expect(item).to_contain_text("IST · मुख्यमंत्री ")

    item.locator("button.pg-cancel").click()
    item.locator("button.pg-cancel").click()  # the second press confirms
    expect(page.locator("#pg-result")).to_contain_text("रद्द · cancelled")
    expect(page.locator("#pg-list li", has_text="मुज़फ़्फ़रपुर जनसंवाद")).to_contain_text("रद्द · cancelled")
    public = page.context.new_page()
    public.goto(srv.base + "/programmes")
    expect(public.locator("#upcoming article", has_text="मुज़फ़्फ़रपुर जनसंवाद").locator(".badge")).to_have_text("रद्द")
    assert phone_tabs.errors == []


def test_programmes_leader_corrects_the_time_from_the_console(programme_server: Server, phone_tabs: Tabs) -> None:
    srv = programme_server
    th = demo_th(srv)
    api(srv, f"/api/programmes/{th}", {"leader": "मुख्यमंत्री", "starts_at": at_ist(1, 19)})
    leader = phone_tabs.open("leader", **DESKTOP)
    open_staff(leader, srv.links["leader"])
    expect(leader.locator("#programme")).to_be_visible()
    expect(leader.locator("#prog-when")).to_contain_text("शाम 7:00 बजे IST")
    leader.click("#prog-edit summary")
    expect(leader.locator("#prog-leader")).to_have_value("मुख्यमंत्री")
    leader.fill("#prog-starts", at_ist(1, 20, 30)[:16])
    leader.fill("#prog-desc", "बाढ़ राहत और सड़कें")
    leader.click("#prog-save")
    expect(leader.locator("#prog-result")).to_contain_text("सहेजा गया")
    expect(leader.locator("#prog-when")).to_contain_text("रात 8:30 बजे IST")
    with urllib.request.urlopen(f"{srv.base}/api/programmes/{th}", timeout=10) as response:
        public = json.loads(response.read())
    assert public["description"] == "बाढ़ राहत और सड़कें" and public["when_hi"].endswith("रात 8:30 बजे IST")
    assert phone_tabs.errors == []
