"""A citizen's own question has no upvote button (the node refuses it with `own_question`): the page remembers the
qids of its `ask` acks per town hall and identity in localStorage, shows "आपका सवाल" and the vote count instead, also
after a reload; and if the node ever answers `own_question` (the same identity asked from another device), the page
says so in words and the button goes. Real headless Chromium against a real `jansamvad serve --demo`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.harness import Server, Tabs, ask, join_as_citizen, open_staff

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 360, "height": 740}, "locale": "hi-IN"}
DESKTOP = {"viewport": {"width": 1280, "height": 860}}
QUESTION = "हमारे स्कूल में शिक्षक कब आएँगे?"


def expect(*args: Any, **kwargs: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


def asked_and_approved(demo_server: Server, tabs: Tabs) -> tuple[Any, Any]:
    """A citizen asked QUESTION and a moderator approved it: (the asker, the asker's row of it)."""
    asker = tabs.open("asker", **PHONE)
    moderator = tabs.open("moderator", **DESKTOP)
    join_as_citizen(asker, demo_server.links["citizen"], name="सीता")
    open_staff(moderator, demo_server.links["moderator"])
    expect(ask(asker, QUESTION)).to_have_attribute("data-status", "acked")
    moderator.locator("#queue li", has_text=QUESTION).locator("button.approve").click()
    row = asker.locator("#questions li", has_text=QUESTION)
    expect(row).to_have_attribute("data-state", "approved")
    return asker, row


def test_own_question_shows_your_question_instead_of_an_upvote_button_across_reloads(
    demo_server: Server, tabs: Tabs
) -> None:
    asker, row = asked_and_approved(demo_server, tabs)
    expect(row.locator(".badge.own")).to_have_text("आपका सवाल")
    expect(row.locator("button.upvote")).to_have_count(0)
    expect(row.locator(".votebox b")).to_have_text("0")

    # Someone else can upvote it; the asker sees the count grow.
    other = tabs.open("other", **PHONE)
    join_as_citizen(other, demo_server.links["citizen"], name="गीता")
    theirs = other.locator("#questions li", has_text=QUESTION)
    expect(theirs.locator(".badge.own")).to_have_count(0)
    theirs.locator("button.upvote").click()
    expect(theirs.locator("button.upvote")).to_have_attribute("aria-pressed", "true")
    expect(row.locator(".votebox b")).to_have_text("1")

    # A reload keeps it (localStorage, per town hall and identity); English says it too.
    asker.reload()
    expect(asker.locator("#conn")).to_have_attribute("data-state", "live")
    expect(row.locator(".badge.own")).to_have_text("आपका सवाल")
    expect(row.locator("button.upvote")).to_have_count(0)
    asker.click("#lang")
    expect(row.locator(".badge.own")).to_have_text("Your question")
    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)


def test_own_question_error_from_the_node_is_shown_in_words(demo_server: Server, tabs: Tabs) -> None:
    asker, row = asked_and_approved(demo_server, tabs)
    # The same identity on a device that never saw the ack: it knows nothing of its own questions.
    asker.evaluate(
        "for (const k of Object.keys(localStorage))"
        " if (k.startsWith('jansamvad.own.') || k.startsWith('jansamvad.mine.')) localStorage.removeItem(k)"
    )
    asker.reload()
    expect(asker.locator("#conn")).to_have_attribute("data-state", "live")
    expect(asker.locator("#mine li")).to_have_count(0)
    row.locator("button.upvote").click()

    # The node refuses with own_question: the page says why in words, and offers no button any more.
    expect(asker.locator("#notice")).to_have_text("यह आपका अपना प्रश्न है: अपने प्रश्न का समर्थन नहीं किया जा सकता।")
    expect(row.locator("button.upvote")).to_have_count(0)
    expect(row.locator(".badge.own")).to_have_text("आपका सवाल")
    expect(row.locator(".votebox b")).to_have_text("0")
    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)
