"""Every reaction button says what it is in words, in both languages, so that none is an empty box on a device without
a colour-emoji font (Debian's Chromium here has none: `fc-list | grep -i emoji` finds nothing, and 👏 is drawn as the
missing-glyph box). An emoji the device cannot draw is left out; one it can draw stays beside the word. Checked by
measuring in real headless Chromium, with screenshots of the row in tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import Server, Tabs, go_live, join_as_citizen, open_staff

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 360, "height": 740}, "locale": "hi-IN"}
DESKTOP = {"viewport": {"width": 1280, "height": 860}}
NAMES = {
    "hi": {"clap": "ताली", "heart": "दिल", "thumbs_up": "पसंद", "laugh": "हँसी", "sad": "दुख"},
    "en": {"clap": "Clap", "heart": "Love", "thumbs_up": "Like", "laugh": "Laugh", "sad": "Sad"},
}
MIN_LABEL_PX = 12  # a visible word, not a 1 px screen-reader-only box

# The test's own judgement of "can this page draw that character": on a canvas in the page's font, compared with a
# private-use code point (the missing-glyph box).
DRAWS = """(ch) => {
  const c = document.createElement('canvas'); c.width = c.height = 32;
  const g = c.getContext('2d');
  g.font = `24px ${getComputedStyle(document.body).fontFamily}`; g.textBaseline = 'top';
  const px = (s) => { g.clearRect(0, 0, 32, 32); g.fillText(s, 2, 2); return g.getImageData(0, 0, 32, 32).data; };
  const a = px(ch), box = px('\\u{10FFFD}');
  return a.some((v, i) => v !== box[i]);
}"""


def reaction_faces(page: Any, selector: str) -> list[dict[str, Any]]:
    """Per element: its kind, the label's text and rendered size, and the emoji shown (if any)."""
    return list(
        page.locator(selector).evaluate_all(
            """els => els.map((b) => {
                const label = b.querySelector('.rname'), emoji = b.querySelector('.emoji');
                const r = label ? label.getBoundingClientRect() : {width: 0, height: 0};
                const box = b.getBoundingClientRect();
                return {kind: b.dataset.kind, label: label ? label.innerText : '', w: r.width, h: r.height,
                        emoji: emoji && emoji.offsetWidth ? emoji.textContent : null, bw: box.width, bh: box.height};
            })"""
        )
    )


def check_faces(page: Any, selector: str, lang: str, shot: Path) -> None:
    faces = reaction_faces(page, selector)
    assert [f["kind"] for f in faces] == list(NAMES[lang]), faces
    for face in faces:
        assert face["label"] == NAMES[lang][face["kind"]], face
        assert face["w"] >= MIN_LABEL_PX and face["h"] >= MIN_LABEL_PX, face
        if face["emoji"] is not None:
            assert page.evaluate(DRAWS, face["emoji"]), f"{face['kind']}: {face['emoji']} shown but not drawable"
    page.locator(selector).first.locator("..").screenshot(path=str(shot))


def test_reaction_buttons_have_visible_words_where_emoji_cannot_be_drawn(
    demo_server: Server, tabs: Tabs, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    citizen = tabs.open("citizen", **PHONE)
    leader = tabs.open("leader", **DESKTOP)
    join_as_citizen(citizen, demo_server.links["citizen"])
    open_staff(leader, demo_server.links["leader"])
    go_live(leader)
    clap_drawable = citizen.evaluate(DRAWS, "👏")
    print(f"this Chromium draws 👏: {clap_drawable}")

    check_faces(citizen, "#reactions button.react", "hi", tmp_path / "reactions-hi.png")
    check_faces(leader, "#react-totals .react-total", "hi", tmp_path / "react-totals-hi.png")
    clap = citizen.locator("#reactions [data-kind=clap]")
    expect(clap).to_have_accessible_name("ताली 0")
    if not clap_drawable:
        expect(clap.locator(".emoji")).to_have_count(0)  # no empty box

    # A reaction still counts, and shows up on the leader's console with its word.
    clap.click()
    expect(clap.locator(".rcount")).to_have_text("1")
    expect(leader.locator("#react-totals [data-kind=clap]")).to_have_text("ताली 1")

    citizen.click("#lang")
    expect(citizen.locator("html")).to_have_attribute("lang", "en")
    check_faces(citizen, "#reactions button.react", "en", tmp_path / "reactions-en.png")
    print(f"screenshots in {tmp_path}")
    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)
