"""A local moderator's page in real headless Chromium (issue 16 item 4): scoped to Gaya district, it names its area
(Hindi first), lists only Gaya's questions while Muzaffarpur asks too, and forwards one up; the town-hall-wide
moderator's page and the leader's page then show it among the districts' best questions. And the leader announces
to Gaya only, picking it with the region autocomplete."""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.harness import Server, Tabs, ask, go_live, open_staff, speak

pytestmark = [pytest.mark.browser, pytest.mark.slow]

GAYA, MUZAFFARPUR = "BR-236", "BR-216"


def _post(url: str, key: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _join_by_link(page: Any, server: Server, th: str, unit: str, name: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.base}/j/{unit}?th={th}")
    page.wait_for_url(f"{server.base}/?th={th}&unit={unit}")
    page.fill("#name", name)
    page.click("#join-btn")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")


def test_scoped_moderator_page_shows_only_its_district_and_forwards_up(
    regions_server: Server, region_tabs: Tabs
) -> None:
    from playwright.sync_api import expect

    th = parse_qs(urlsplit(regions_server.links["citizen"]).query)["th"][0]
    (admin_key,) = re.findall(r"admin key \(for the REST API\): (\S+)", "".join(regions_server.stdout))
    minted = _post(f"{regions_server.base}/api/townhalls/{th}/tokens", admin_key, {"role": "moderator", "scope": GAYA})
    gaya, muzaffarpur = region_tabs.open("gaya"), region_tabs.open("muzaffarpur")
    _join_by_link(gaya, regions_server, th, GAYA, "सीता")
    _join_by_link(muzaffarpur, regions_server, th, MUZAFFARPUR, "राम")
    ask(muzaffarpur, "मुज़फ़्फ़रपुर में लीची किसानों का क्या?")
    ask(gaya, "गया में पानी की किल्लत कब ख़त्म होगी?")

    local = region_tabs.open("local-moderator")
    open_staff(local, f"{regions_server.base}/moderator.html?th={th}#token={minted['token']}")
    expect(local.locator("#scope")).to_contain_text("गया")
    expect(local.locator("#scope")).to_have_attribute("data-scope", GAYA)
    queue = local.locator("#queue li")
    expect(queue).to_have_count(1)
    expect(queue.first).to_contain_text("गया में पानी")
    ask(muzaffarpur, "मुज़फ़्फ़रपुर का दूसरा सवाल")  # live: still not shown here
    ask(gaya, "गया का दूसरा सवाल: सड़क?")
    expect(queue).to_have_count(2)
    expect(local.locator("#queue")).not_to_contain_text("मुज़फ़्फ़रपुर")

    queue.filter(has_text="गया में पानी").locator("button.forward").click()
    expect(queue.filter(has_text="गया में पानी").locator(".fwd")).to_be_visible()
    expect(local.locator("#log li[data-action='forward']")).to_have_count(1)

    root = region_tabs.open("root-moderator")
    open_staff(root, regions_server.links["moderator"])
    expect(root.locator("#scope")).to_have_attribute("data-scope", "")
    best = root.locator(f"#best-list li[data-unit='{GAYA}']")
    expect(best).to_contain_text("गया में पानी")
    expect(root.locator("#queue li")).to_have_count(4)  # the whole town hall's queue
    leader = region_tabs.open("leader")
    open_staff(leader, regions_server.links["leader"])
    expect(leader.locator(f"#best-list li[data-unit='{GAYA}']")).to_contain_text("गया में पानी")
    assert not region_tabs.errors, region_tabs.errors


def test_scoped_announcement_from_the_leader_page_reaches_only_the_picked_district(
    regions_server: Server, region_tabs: Tabs
) -> None:
    from playwright.sync_api import expect

    th = parse_qs(urlsplit(regions_server.links["citizen"]).query)["th"][0]
    gaya, muzaffarpur = region_tabs.open("gaya"), region_tabs.open("muzaffarpur")
    _join_by_link(gaya, regions_server, th, GAYA, "सीता")
    _join_by_link(muzaffarpur, regions_server, th, MUZAFFARPUR, "राम")
    leader = region_tabs.open("leader")
    open_staff(leader, regions_server.links["leader"])
    go_live(leader)
    leader.locator("#announce-to").press_sequentially("gaya", delay=50)
    expect(leader.locator("#announce-to-units option").first).to_have_attribute("value", "गया")
    leader.fill("#announce-to", "गया")  # what choosing the suggestion does: the value, then an input event
    leader.fill("#announce-text", "गया के सभी बूथ: शाम 5 बजे सभा")
    leader.click("#announce-send")
    sent = leader.locator("#speech li.announce").last
    expect(sent).to_contain_text("गया के सभी बूथ")
    expect(sent.locator(".to")).to_have_attribute("data-to", GAYA)
    expect(gaya.locator("#speech li.announce .text").last).to_have_text("गया के सभी बूथ: शाम 5 बजे सभा")
    speak(leader, "सबके लिए: नमस्ते")  # after the announcement: Muzaffarpur hears this, and never the announcement
    expect(muzaffarpur.locator("#speech li.speech .text").last).to_have_text("सबके लिए: नमस्ते")
    expect(muzaffarpur.locator("#speech li.announce")).to_have_count(0)
    assert not region_tabs.errors, region_tabs.errors
