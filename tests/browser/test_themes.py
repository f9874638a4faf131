"""Moderator views and themes in headless Chromium against a real `jansamvad serve --demo` subprocess.

Two citizens from one district ask near-duplicates in Hindi, a third asks in English from another district. The
moderator's language and region filters show only those questions, and select-all and the keyboard act on the
filtered view only; the two Hindi questions are one theme ("+1 similar", expandable) decided with one button. After
upvotes the leader's themes view ranks the theme by its summed votes (`votes.g`).

Run: `.venv/bin/pytest -m browser tests/browser/test_themes.py -v`.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.harness import Server, Tabs, ask, go_live, join_as_citizen, open_staff

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 360, "height": 740}, "locale": "hi-IN"}
DESKTOP = {"viewport": {"width": 1280, "height": 860}}

ROAD = "हमारे गाँव में सड़क कब बनेगी?"
ROAD_AGAIN = "हमारे गांव में सड़क कब बनेगी"  # anusvara for chandrabindu, no question mark: the same question
BUS = "When will the bus to the district hospital start?"


def expect(*args: Any, **kwargs: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


def test_moderator_views_and_themes(demo_server: Server, tabs: Tabs) -> None:
    leader = tabs.open("leader", **DESKTOP)
    moderator = tabs.open("moderator", **DESKTOP)
    open_staff(leader, demo_server.links["leader"])
    open_staff(moderator, demo_server.links["moderator"])
    go_live(leader)

    sita = tabs.open("sita", **PHONE)
    gita = tabs.open("gita", **PHONE)
    rahul = tabs.open("rahul", **PHONE)
    join_as_citizen(sita, demo_server.links["citizen"], name="सीता", district="पटना")
    join_as_citizen(gita, demo_server.links["citizen"], name="गीता", district="पटना")
    join_as_citizen(rahul, demo_server.links["citizen"], name="Rahul", district="Gaya")
    for citizen, text in ((sita, ROAD), (gita, ROAD_AGAIN), (rahul, BUS)):
        expect(ask(citizen, text)).to_have_attribute("data-status", "acked")

    # --- all three arrive; the two Hindi ones are one theme under the first, its similar question folded away
    rows = moderator.locator("#queue li")
    theme = moderator.locator("#queue li.theme")
    expect(rows).to_have_count(2)
    expect(theme).to_have_count(1)
    expect(theme.locator(".qtext")).to_have_text(ROAD)
    expect(theme.locator("button.similar")).to_have_text("+1 मिलते-जुलते")
    expect(theme.locator("button.theme-approve")).to_contain_text("2")
    expect(moderator.locator("#queue li", has_text=ROAD_AGAIN)).to_have_count(0)
    theme.locator("button.similar").click()
    expect(rows).to_have_count(3)
    expect(moderator.locator("#queue li.member .qtext")).to_have_text(ROAD_AGAIN)
    expect(theme.locator("button.similar")).to_have_attribute("aria-expanded", "true")
    theme.locator("button.similar").click()
    expect(rows).to_have_count(2)
    expect(moderator.locator("#lang-filter [data-lang=hi] .n")).to_have_text("2")
    expect(moderator.locator("#lang-filter [data-lang=en] .n")).to_have_text("1")

    # --- only Hindi: the English question is out of the view, and so out of reach of select-all and the keyboard
    moderator.click("#lang-filter [data-lang=hi]")
    expect(moderator.locator("#lang-filter [data-lang=hi]")).to_have_attribute("aria-pressed", "true")
    expect(rows).to_have_count(1)
    expect(moderator.locator("#queue li", has_text=BUS)).to_have_count(0)
    expect(moderator.locator("#queue-count")).to_have_text("2 / 3")
    moderator.check("#select-all")
    expect(moderator.locator("#selected-count")).to_contain_text("2")  # the theme, not the English question
    moderator.uncheck("#select-all")
    for key in ("j", "j", "j"):
        moderator.locator("body").press(key)
    expect(moderator.locator("#queue li.cur")).to_have_count(1)
    expect(moderator.locator("#queue li.cur")).to_have_attribute("data-lang", "hi")

    # --- only English: the Hindi theme is gone
    moderator.click("#lang-filter [data-lang=en]")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".qtext")).to_have_text(BUS)
    moderator.click("#lang-filter [data-lang='']")
    expect(rows).to_have_count(2)

    # --- a region: the select offers the regions seen in the queue; Gaya shows only Rahul's question, and a bulk
    # approval there leaves the Patna theme waiting (regions in Hindi order: Devanagari first)
    expect(moderator.locator("#region-filter option")).to_have_text(["सभी क्षेत्र", "पटना", "Gaya"])
    moderator.select_option("#region-filter", "पटना")
    expect(rows).to_have_count(1)
    expect(theme).to_have_count(1)
    moderator.click("#lang-filter [data-lang=en]")
    expect(rows).to_have_count(0)
    expect(moderator.locator("#queue-empty")).to_have_text("इस फ़िल्टर में कोई प्रश्न नहीं है।")
    moderator.click("#lang-filter [data-lang='']")
    moderator.select_option("#region-filter", "Gaya")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Rahul · Gaya")
    moderator.check("#select-all")
    expect(moderator.locator("#selected-count")).to_contain_text("1")
    moderator.click("#approve-selected")
    expect(rows).to_have_count(0)
    expect(moderator.locator("#log li[data-action=approve]")).to_have_count(1)
    moderator.select_option("#region-filter", "")
    expect(rows).to_have_count(1)
    expect(moderator.locator("#queue li", has_text=ROAD)).to_have_count(1)

    # --- the whole theme approved with one press
    theme.locator("button.theme-approve").click()
    expect(rows).to_have_count(0)
    expect(moderator.locator("#queue-empty")).to_have_text("कोई प्रश्न प्रतीक्षा में नहीं।")
    expect(moderator.locator("#log li[data-action=approve]")).to_have_count(3)
    for text in (ROAD, ROAD_AGAIN, BUS):
        expect(leader.locator("#questions li", has_text=text)).to_have_attribute("data-state", "approved")

    # --- votes: 2 + 2 for the road theme, 1 for the bus; the leader's themes view sums them per group (nobody upvotes
    # their own question: the page offers no button there)
    for citizen, texts in ((sita, [ROAD_AGAIN, BUS]), (gita, [ROAD]), (rahul, [ROAD, ROAD_AGAIN])):
        for text in texts:
            public = citizen.locator("#questions li", has_text=text)
            public.locator("button.upvote").click()
            expect(public.locator("button.upvote")).to_have_attribute("aria-pressed", "true")
    themes = leader.locator("#themes li.theme")
    expect(themes).to_have_count(2)
    expect(themes.first).to_have_attribute("data-votes", "4")
    expect(themes.first.locator(".qtext")).to_have_text(ROAD)
    expect(themes.first.locator(".tcount")).to_have_text("2 प्रश्न")
    expect(themes.first.locator(".votebox b")).to_have_text("4")
    expect(themes.nth(1)).to_have_attribute("data-votes", "1")
    expect(themes.nth(1).locator(".qtext")).to_have_text(BUS)
    expect(leader.locator("#themes-count")).to_have_text("2")

    # --- English on the leader page: the same view, translated
    leader.click("#lang")
    expect(leader.locator("#themes-h")).to_contain_text("Themes")
    expect(themes.first.locator(".tcount")).to_have_text("2 questions")
    moderator.click("#lang")
    expect(moderator.locator("#region-filter option").first).to_have_text("All regions")
    expect(moderator.locator("#lang-filter [data-lang='']")).to_contain_text(re.compile(r"^All"))

    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)
