"""Cross-site scripting: markup typed by a citizen (name, question) or by staff (speech, announcement) is shown as
text on every page that renders it, and never runs.

Each payload, if it were parsed as HTML, would set `window.__xss` (or open a dialog). The test checks, in real
headless Chromium on all three pages: the literal text is displayed, no element was created from it, no script ran,
no dialog opened, no console error appeared (so the CSP had nothing to block either: the pages never built markup
from the text in the first place).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.harness import Server, Tabs, announce, ask, go_live, join_as_citizen, open_staff, speak

pytestmark = pytest.mark.browser

DESKTOP = {"viewport": {"width": 1280, "height": 860}}
PHONE = {"viewport": {"width": 360, "height": 740}, "locale": "hi-IN"}

NAME = "<img src=x onerror=alert(1)>राम"  # names are short (40 characters): this one would open a dialog
QUESTION = "<script>window.__xss='q1'</script><img src=x onerror=\"window.__xss='q2'\"> सड़क <b>कब</b>?"
SPEECH = "<svg onload=\"window.__xss='speech'\"></svg>नमस्ते <iframe src=javascript:alert(1)>"
NOTICE = "<a href=\"javascript:window.__xss='notice'\">गेट 2</a><style>body{display:none}</style>"
# What the payloads would create if parsed: nothing on the pages themselves matches (icons are <svg> without onload).
INJECTED = "[onerror], [onload], img[src='x'], iframe, script:not([src]), a[href^='javascript'], style"


def expect(*args: Any, **kwargs: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


def assert_nothing_ran(page: Any, dialogs: list[str], *containers: str) -> None:
    assert page.evaluate("window.__xss") is None, f"injected script ran: {page.evaluate('window.__xss')}"
    assert dialogs == []
    for container in containers:
        created = page.locator(f"{container} :is({INJECTED})")
        found = created.evaluate_all("es => es.map(e => e.outerHTML.slice(0, 200))")
        assert found == [], f"{container} holds elements made from user text"


def test_xss_markup_from_users_is_shown_as_text_and_never_runs(demo_server: Server, tabs: Tabs) -> None:
    citizen = tabs.open("citizen", **PHONE)
    moderator = tabs.open("moderator", **DESKTOP)
    leader = tabs.open("leader", **DESKTOP)
    dialogs: list[str] = []
    for page in (citizen, moderator, leader):
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    join_as_citizen(citizen, demo_server.links["citizen"], name=NAME)
    open_staff(moderator, demo_server.links["moderator"])
    open_staff(leader, demo_server.links["leader"])
    go_live(leader)

    # Staff text reaches citizens verbatim.
    speak(leader, SPEECH)
    announce(leader, NOTICE)
    expect(citizen.locator("#speech li.speech .text").last).to_have_text(SPEECH)
    expect(citizen.locator("#speech li.announce .text").last).to_have_text(NOTICE)

    # A citizen's question (and name) reaches the moderator's queue verbatim, then everyone once approved.
    mine = ask(citizen, QUESTION)
    expect(mine).to_contain_text(QUESTION)
    queued = moderator.locator("#queue li", has_text=QUESTION)
    expect(queued).to_have_count(1)
    expect(queued).to_contain_text("राम")
    queued.locator("button.approve").click()
    for page in (citizen, moderator, leader):
        expect(page.locator("#questions li", has_text=QUESTION)).to_have_count(1)
    expect(citizen.locator("#me")).to_contain_text(NAME)

    for page in (citizen, moderator, leader):
        page.wait_for_timeout(200)  # an onerror handler of a (missing) image would have fired by now
        assert_nothing_ran(page, dialogs, "body")
        expect(page.locator("body")).to_be_visible()  # the injected <style> did not hide the page
    # The moderator sees who asked, as text.
    expect(queued.or_(moderator.locator("#questions li", has_text=QUESTION))).to_contain_text(NAME)
    assert tabs.errors == []
