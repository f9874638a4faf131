"""The programme page's rendering on its own (programmes_page.py): pure functions, so no server is needed.

The routes around it (caching, HTTP, the store) are tested in test_programmes_http.py.
"""

from __future__ import annotations

from jansamvad.models import Status, Townhall, now_ms
from jansamvad.programmes import Programme
from jansamvad.programmes_page import PAST_ON_PAGE, render_page, sections

HOUR_MS = 3_600_000


def _pair(th: str, status: Status, starts_ms: int, *, cancelled: bool = False) -> tuple[Townhall, Programme]:
    return Townhall(th, f"title {th}", status=status), Programme(th, starts_ms, "leader", cancelled=cancelled)


def test_programmes_page_sections_keep_a_cancelled_one_until_its_time_and_cap_the_past() -> None:
    now = now_ms()
    live = _pair("live", Status.LIVE, now - HOUR_MS)
    later = _pair("later", Status.SCHEDULED, now + 2 * HOUR_MS)
    cancelled_ahead = _pair("off-ahead", Status.ENDED, now + HOUR_MS, cancelled=True)
    cancelled_gone = _pair("off-gone", Status.ENDED, now - 5 * HOUR_MS, cancelled=True)
    past = [_pair(f"past{i}", Status.ENDED, now - (i + 10) * HOUR_MS) for i in range(PAST_ON_PAGE + 5)]

    groups = sections([*past, cancelled_gone, later, cancelled_ahead, live])

    assert [t.id for t, _ in groups["live"]] == ["live"]
    assert [t.id for t, _ in groups["upcoming"]] == ["later", "off-ahead"]
    assert [t.id for t, _ in groups["past"]] == [f"past{i}" for i in range(PAST_ON_PAGE)]  # newest first


def test_programmes_page_escapes_every_text_and_speaks_hindi_first() -> None:
    townhall = Townhall("th1", '<script>alert("x")</script>', status=Status.SCHEDULED)
    programme = Programme("th1", now_ms() + HOUR_MS, "<b>leader</b>", description="a & b")
    groups = sections([(townhall, programme)])

    hindi = render_page(groups, "hi", "https://example.test")
    english = render_page(groups, "en", "https://example.test")

    for html in (hindi, english):
        assert "<script>" not in html and "<b>" not in html
        assert "&lt;script&gt;" in html and "&lt;b&gt;leader&lt;/b&gt;" in html and "a &amp; b" in html
    assert '<html lang="hi">' in hindi and "आने वाले कार्यक्रम" in hindi
    assert '<html lang="en">' in english and "Upcoming" in english
