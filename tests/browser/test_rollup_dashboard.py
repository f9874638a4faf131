"""The war room's roll-up by region in real headless Chromium: the dashboard drills down from the town hall to Bihar
to its districts, and a citizen who joins by a district's link shows up in that district's row while the page is
open, without a reload."""

from __future__ import annotations

import re

import pytest

from tests.browser.harness import Server, Tabs
from tests.browser.test_regions import _th

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _join_by_link(tabs: Tabs, server: Server, th: str, code: str, name: str) -> None:
    from playwright.sync_api import expect

    page = tabs.open(f"citizen-{code}")
    page.goto(f"{server.base}/j/{code}?th={th}")
    page.wait_for_url(f"{server.base}/?th={th}&unit={code}")
    page.fill("#name", name)
    page.click("#join-btn")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")


def test_rollup_dashboard_drills_down_to_districts_and_updates_live(regions_server: Server, region_tabs: Tabs) -> None:
    from playwright.sync_api import expect

    th = _th(regions_server)
    (admin_key,) = re.findall(r"admin key \(for the REST API\): (\S+)", "".join(regions_server.stdout))
    _join_by_link(region_tabs, regions_server, th, "BR-236", "सीता")  # Gaya

    admin = region_tabs.open("admin")
    admin.goto(f"{regions_server.base}/dashboard.html#key={admin_key}")
    card = admin.locator(f'article[data-th="{th}"]')
    card.locator('details[data-part="rollup"] summary').click()
    bihar = card.locator('tr[data-code="BR"]')
    expect(bihar.locator('td[data-col="viewers"]')).to_have_text("1")
    bihar.locator('a[data-unit="BR"]').click()  # drill down: Bihar's districts
    gaya, patna = card.locator('tr[data-code="BR-236"]'), card.locator('tr[data-code="BR-230"]')
    expect(gaya.locator('td[data-col="viewers"]')).to_have_text("1")
    expect(patna.locator('td[data-col="viewers"]')).to_have_text("0")
    expect(card.locator(".wr-crumbs")).to_contain_text("बिहार")

    _join_by_link(region_tabs, regions_server, th, "BR-230", "गीता")  # Patna, while the war room watches
    expect(patna.locator('td[data-col="viewers"]')).to_have_text("1")
    expect(card.locator('tr[data-code="BR-230"] td[data-col="joins"]')).to_have_text("1")
    # Sorted by viewers, most first: the two districts with a citizen lead the table.
    codes = card.locator("tbody tr").evaluate_all("rows => rows.slice(0, 2).map(r => r.dataset.code).sort()")
    assert codes == ["BR-230", "BR-236"]
    card.locator('th[data-sort="joins"]').click()
    expect(card.locator('th[data-sort="joins"]')).to_have_attribute("aria-sort", "descending")
    card.locator('.wr-crumbs a[data-unit=""]').click()  # back to the whole town hall
    expect(bihar.locator('td[data-col="viewers"]')).to_have_text("2")
    assert region_tabs.errors == []
