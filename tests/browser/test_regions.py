"""A citizen by a region link, and one by the district autocomplete, in real headless Chromium: both end up with the
region unit signed into their token."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.harness import Server, Tabs

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _token_claims(page: Any, th: str) -> dict[str, Any]:
    saved = json.loads(page.evaluate(f"localStorage.getItem('jansamvad.token.{th}')"))
    payload = saved["token"].split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _th(server: Server) -> str:
    return parse_qs(urlsplit(server.links["citizen"]).query)["th"][0]


def test_regions_link_places_the_citizen_in_the_unit_without_typing(regions_server: Server, region_tabs: Tabs) -> None:
    from playwright.sync_api import expect

    th = _th(regions_server)
    page = region_tabs.open("citizen")
    page.goto(f"{regions_server.base}/j/BR-236?th={th}")
    page.wait_for_url(f"{regions_server.base}/?th={th}&unit=BR-236")
    expect(page.locator("#region-unit")).to_contain_text("गया")
    expect(page.locator("#district")).to_have_value("गया")
    page.fill("#name", "सीता")
    page.click("#join-btn")
    expect(page.locator("#live")).to_be_visible()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    claims = _token_claims(page, th)
    assert claims["ru"] == "BR-236" and claims["rg"] == "गया"
    assert not region_tabs.errors, region_tabs.errors


def test_regions_autocomplete_picks_a_district_from_hinglish_typing(regions_server: Server, region_tabs: Tabs) -> None:
    from playwright.sync_api import expect

    th = _th(regions_server)
    page = region_tabs.open("citizen")
    page.goto(regions_server.links["citizen"])
    expect(page.locator("#join")).to_be_visible()
    page.fill("#name", "राम")
    page.locator("#district").press_sequentially("muz", delay=50)
    options = page.locator("#district-units option")
    expect(options).to_have_count(1)
    expect(options.first).to_have_attribute("value", "मुज़फ़्फ़रपुर")
    page.fill("#district", "मुज़फ़्फ़रपुर")  # what choosing the suggestion does: the value, then an input event
    page.locator("#constituency").focus()  # the constituencies of that district are offered at once
    expect(page.locator("#constituency-units option").first).to_have_attribute("value", re.compile(r"\(जनरेटेड\)$"))
    page.click("#join-btn")
    expect(page.locator("#live")).to_be_visible()
    assert _token_claims(page, th)["ru"] == "BR-216"
    assert not region_tabs.errors, region_tabs.errors
