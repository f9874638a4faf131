"""`make screenshots`: every view of the web client, in Hindi and in English, at 360 px and at desktop width, written
to docs/screenshots/ (or the directory given as the first argument).

A demo node is started and filled the way a real town hall fills: the leader goes live, speaks, announces and is on
air with the (fake) microphone; citizens ask, vote and react; the moderator approves, pins and rejects; the leader
answers. Devanagari renders with the system's Noto fonts (Debian: fonts-noto-core).

Run: `.venv/bin/python -m tests.browser.screenshots [OUT_DIR]`.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import expect, sync_playwright

from tests.browser.harness import REPO, announce, ask, demo_server, go_live, join_as_citizen, launch, open_staff, speak

WIDTHS = {"360": {"width": 360, "height": 780}, "desktop": {"width": 1280, "height": 860}}
SPEECH = [
    "नमस्ते साथियों! आज के जनसंवाद में आप सबका स्वागत है।",
    "पिछले एक साल में हमारे ज़िले में 42 नई सड़कें बनी हैं और 18 गाँवों तक पहली बार पक्की सड़क पहुँची है।",
    "आज मैं आपके प्रश्नों का उत्तर दूँगा — पानी, बिजली, सड़क, स्कूल और रोज़गार पर।",
]
ROAD_AGAIN = "हमारे गांव में नई सड़क कब बनेगी"
ANNOUNCEMENT = "कल सुबह 10 बजे से सभी प्रखंड कार्यालयों में राशन कार्ड शिविर लगेगा।"
CITIZENS = [
    ("सीता देवी", "पटना", "दानापुर", "हमारे गाँव में नई सड़क कब बनेगी?"),
    ("Rahul Kumar", "Gaya", "", "When will the new ITI in Gaya start admissions?"),
    ("मोहम्मद आरिफ़", "भागलपुर", "", "गर्मी में बिजली कटौती कब तक खत्म होगी?"),
    ("प्रिया", "मुज़फ़्फ़रपुर", "", "सरकारी स्कूलों में शिक्षकों की भर्ती कब होगी?"),
]
PENDING = [
    "हमारे मोहल्ले में पीने का पानी हफ़्ते में दो दिन ही आता है, क्या व्यवस्था होगी?",
    "किसानों को फ़सल बीमा का पैसा समय पर क्यों नहीं मिलता?",
    "Will there be a bus service from our block to the district hospital?",
    "आँगनवाड़ी केंद्र की छत टूटी है, कौन ठीक करवाएगा?",
    "युवाओं के लिए कौशल प्रशिक्षण केंद्र कब खुलेगा?",
    "हमारे मोहल्ले में पीने का पानी हफ़्ते में दो ही दिन आता है",  # the same as the first: one theme with it
    "क्या वृद्धावस्था पेंशन बढ़ेगी?",
    "Street lights on the highway near our village have not worked for months.",
    "बाढ़ राहत का पैसा अब तक नहीं मिला।",
]


def with_lang(url: str, lang: str) -> str:
    base, _, frag = url.partition("#")
    return f"{base}&lang={lang}" + (f"#{frag}" if frag else "")


def settle(page: Any) -> None:
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    page.wait_for_timeout(1300)  # the next viewers / votes / reactions tick
    page.evaluate(
        "document.activeElement && document.activeElement.blur(); getSelection().removeAllRanges(); scrollTo(0, 0)"
    )
    page.mouse.move(0, 0)  # no hover effects in the pictures


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, demo_server(Path(tmp) / "server.stderr") as srv, sync_playwright() as p:
        browser = launch(p)
        new = lambda **kw: browser.new_context(**kw).new_page()  # noqa: E731
        expect.set_options(timeout=15_000)

        leader = new(viewport=WIDTHS["desktop"])
        moderator = new(viewport=WIDTHS["desktop"])
        open_staff(leader, srv.links["leader"])
        open_staff(moderator, srv.links["moderator"])
        # Moderator consoles for the pictures, open from the start so their decision logs see every decision.
        mods = {}
        for lang in ("hi", "en"):
            for width, viewport in WIDTHS.items():
                mods[lang, width] = new(viewport=viewport)
                open_staff(mods[lang, width], with_lang(srv.links["moderator"], lang))
        go_live(leader)
        for line in SPEECH[:2]:
            speak(leader, line)

        # Citizens ask; the moderator approves the first four, the leader answers one and pins another.
        people = []
        for name, district, constituency, question in CITIZENS:
            page = new(viewport=WIDTHS["360"])
            join_as_citizen(page, srv.links["citizen"], name=name, district=district, constituency=constituency)
            expect(ask(page, question)).to_have_attribute("data-status", "acked")
            people.append(page)
        for _, _, _, question in CITIZENS[:3]:
            moderator.locator("#queue li", has_text=question).locator("button.approve").click()
        moderator.locator("#queue li", has_text=CITIZENS[3][3]).locator("button.approve-pin").click()
        expect(moderator.locator("#queue li")).to_have_count(0)
        # A near-duplicate of the first question, approved too: the leader's themes view sums their votes.
        expect(ask(people[1], ROAD_AGAIN)).to_have_attribute("data-status", "acked")
        moderator.locator("#queue li", has_text=ROAD_AGAIN).locator("button.approve").click()
        expect(moderator.locator("#queue li")).to_have_count(0)
        moderator.fill("#reason", "विषय से हटकर")
        expect(ask(people[0], "यह प्रश्न विषय से हटकर है")).to_have_attribute("data-status", "acked")
        moderator.locator("#queue li").first.locator("button.reject").click()
        expect(moderator.locator("#queue li")).to_have_count(0)
        for i, page in enumerate(people):
            for j, (_, _, _, question) in enumerate(CITIZENS[: 4 - i]):
                if j != i:  # one's own question has no upvote button
                    page.locator("#questions li", has_text=question).locator("button.upvote").click()
            if i >= 2:
                page.locator("#questions li", has_text=ROAD_AGAIN).locator("button.upvote").click()
            page.click(f"#reactions button >> nth={i % 3}")
            page.click("#reactions [data-kind=clap]")
        leader.locator("#questions li", has_text=CITIZENS[2][3]).locator("button.pin").click()
        leader.locator("#questions li", has_text=CITIZENS[1][3]).locator("button.answer").click()
        announce(leader, ANNOUNCEMENT)
        speak(leader, SPEECH[2])
        # More citizens for the pending queue (each citizen may ask 3 questions a minute).
        askers = []
        for i in range(len(PENDING) // 2):
            page = new(viewport=WIDTHS["360"])
            join_as_citizen(page, srv.links["citizen"], name=CITIZENS[i][0], district=CITIZENS[i][1])
            askers.append(page)
        for i, text in enumerate(PENDING):
            ask(askers[i % len(askers)], text)
        expect(moderator.locator("#queue li")).to_have_count(len(PENDING) - 1)  # one theme of two
        # A poll, open while the pictures are taken, with a few votes in.
        leader.click("#poll-new summary")
        leader.fill("#poll-q", "आपके क्षेत्र में सबसे ज़रूरी काम कौन-सा है?")
        for i, option in enumerate(("सड़क", "पीने का पानी", "बिजली", "स्कूल"), start=1):
            if i > 2:
                leader.click("#poll-add")
            leader.fill(f"#poll-opt-{i}", option)
        leader.click("#poll-open")
        for i, page in enumerate(people + askers):
            page.locator("#poll-list button.poll-opt").nth((i * 3) % 4 if i % 3 else 1).click()
        expect(people[0].locator("#poll-list .pv-status")).to_have_class(re.compile(r"\backed\b"))
        leader.click("#mic")  # on air with the fake microphone while the pictures are taken
        expect(leader.locator("#mic")).to_have_attribute("aria-pressed", "true")

        for lang in ("hi", "en"):
            for width, viewport in WIDTHS.items():
                # The join screen of a first-time visitor.
                page = new(viewport=viewport)
                page.goto(with_lang(srv.links["citizen"], lang))
                expect(page.locator("#join")).to_be_visible()
                page.wait_for_timeout(300)
                page.screenshot(path=str(out / f"citizen-join-{lang}-{width}.png"), full_page=True)
                # The live page, after asking a question.
                page.fill("#name", "अनीता" if lang == "hi" else "Anita")
                page.fill("#district", "नालंदा" if lang == "hi" else "Nalanda")
                page.click("#join-btn")
                settle(page)
                text = {
                    ("hi", "360"): "क्या हमारे ब्लॉक में नया अस्पताल बनेगा?",
                    ("hi", "desktop"): "मनरेगा की मज़दूरी कब बढ़ेगी?",
                    ("en", "360"): "Will our block get a new hospital?",
                    ("en", "desktop"): "When will the bridge over our river be finished?",
                }[lang, width]
                expect(ask(page, text)).to_have_attribute("data-status", "acked")
                page.locator("#questions li", has_text=CITIZENS[0][3]).locator("button.upvote").click()
                page.click("#listen")
                if width == "desktop":  # the phone pictures show the choices, the desktop ones the results
                    page.locator("#poll-list button.poll-opt").nth(1).click()
                page.click("#reactions [data-kind=heart]")
                settle(page)
                page.screenshot(path=str(out / f"citizen-{lang}-{width}.png"), full_page=True)

                staff = new(viewport=viewport)
                open_staff(staff, with_lang(srv.links["leader"], lang))
                people[1].click("#reactions [data-kind=thumbs_up]")
                settle(staff)
                staff.screenshot(path=str(out / f"leader-{lang}-{width}.png"), full_page=True)

                mod = mods[lang, width]
                expect(mod.locator("#queue li").nth(len(PENDING) - 2)).to_be_visible()
                mod.locator("body").press("j")  # the keyboard cursor on the newest question
                mod.locator("#queue li >> nth=1").locator("input.pick").check()
                mod.locator("#queue li >> nth=2").locator("input.pick").check()
                settle(mod)
                mod.screenshot(path=str(out / f"moderator-{lang}-{width}.png"), full_page=True)
        leader.click("#mic")
        time.sleep(0.5)
        browser.close()
    for path in sorted(out.glob("*.png")):
        print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "screenshots")
