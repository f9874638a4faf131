"""The live roll-up across two real node processes on a real Valkey: citizens join by unit on node A and node B,
some reconnect; the roll-up API's totals per district equal what the test's clients know; a node killed with kill -9
takes its viewers out of the roll-up within seconds, while what its citizens did stays counted."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jansamvad.auth import TokenService
from jansamvad.cluster import LocalCluster
from jansamvad.protocol.roles import Role
from tests import helpers
from tests.test_cluster import Peer

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

asyncio_client_loop = helpers.asyncio_client_loop

TREE = """code,parent,level,name_hi,name_en
S1,,state,राज्य एक,State One
D1,S1,district,ज़िला एक,District One
D2,S1,district,ज़िला दो,District Two
D1-B1,D1,booth,बूथ 1,Booth 1
D1-B2,D1,booth,बूथ 2,Booth 2
D2-B1,D2,booth,बूथ 3,Booth 3
"""


@pytest.fixture
async def two_nodes() -> AsyncIterator[LocalCluster]:
    async with helpers.two_nodes_with_regions(TREE) as cluster:
        yield cluster


def citizen(cluster: LocalCluster, th: str, sub: str, unit: str) -> str:
    return TokenService(cluster.secret).issue(sub=sub, role=Role.CITIZEN, th=th, ttl_s=600, name=sub, unit=unit)[0]


def get_json(url: str, key: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


async def rows_until(cluster: LocalCluster, url: str, expected: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Read the roll-up until the named rows' counters are the expected ones (a tick or three), else fail."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        view = await asyncio.to_thread(get_json, url, cluster.admin_key)
        rows = {row["code"]: row for row in view["rows"]}
        seen = {code: {k: rows.get(code, {}).get(k) for k in want} for code, want in expected.items()}
        if seen == expected:
            return view
        assert asyncio.get_running_loop().time() < deadline, seen
        await asyncio.sleep(0.3)


async def test_rollup_counts_per_district_across_two_nodes_and_a_dead_node_drops_out(two_nodes: LocalCluster) -> None:
    cluster = two_nodes
    th = await asyncio.to_thread(cluster.create_townhall, "रोल-अप")
    a, b = cluster.node_procs
    placed = [  # (node, booth) of every citizen; "" joins without a unit
        (a, "D1-B1"), (a, "D1-B1"), (a, "D1-B1"), (a, "D2-B1"), (a, ""),
        (b, "D1-B2"), (b, "D1-B2"), (b, "D2-B1"), (b, "D2-B1"),
    ]  # fmt: skip
    peers = []
    for i, (node, unit) in enumerate(placed):
        peer, _ = await Peer.join(node.url, citizen(cluster, th, f"c-{i}", unit))
        peers.append(peer)
    asked = await peers[7].request({"t": "ask", "key": "rollup-1", "text": "ज़िला दो में सड़क कब बनेगी?"})
    await peers[0].send({"t": "react", "kind": "clap"})
    await peers[5].send({"t": "react", "kind": "clap"})
    # A citizen of booth D1-B2 on node B reconnects to node A: counted once, where it is now.
    await peers[6].close()
    peers[6], _ = await Peer.join(a.url, citizen(cluster, th, "c-6", "D1-B2"), last_seq=0)
    moderator = TokenService(cluster.secret).issue(sub="m-1", role=Role.MODERATOR, th=th, ttl_s=600, name="m")[0]
    mod, _ = await Peer.join(a.url, moderator)
    decided = await mod.request({"t": "moderate", "action": "approve", "qid": asked["qid"]})
    assert decided["t"] == "ack", decided

    top = f"{a.url}/api/townhalls/{th}/rollup"
    view = await rows_until(cluster, top, {"S1": {"viewers": 8, "joins": 9, "asked": 1}, "unknown": {"viewers": 1}})
    assert view["counts"]["viewers"] == 9  # staff are not viewers
    state = f"{b.url}/api/townhalls/{th}/rollup?unit=S1"  # any node answers the same
    view = await rows_until(
        cluster,
        state,
        {
            "D1": {"viewers": 5, "joins": 6, "reactions": 2},
            "D2": {"viewers": 3, "joins": 3, "asked": 1, "approved": 1},
        },
    )
    rows = {row["code"]: row for row in view["rows"]}
    assert [q["qid"] for q in rows["D2"]["top_questions"]] == [asked["qid"]]
    assert rows["D1"]["top_questions"] == []
    district = f"{a.url}/api/townhalls/{th}/rollup?unit=D1"
    await rows_until(cluster, district, {"D1-B1": {"viewers": 3}, "D1-B2": {"viewers": 2}})

    await asyncio.to_thread(cluster.kill, 1, signal.SIGKILL)  # node B dies with its citizens, no goodbye
    # Left on node A: 3 in D1-B1 and the one that moved to D1-B2; 1 in D2-B1. What B's citizens did stays.
    await rows_until(
        cluster,
        f"{a.url}/api/townhalls/{th}/rollup?unit=S1",
        {
            "D1": {"viewers": 4, "joins": 6, "reactions": 2},
            "D2": {"viewers": 1, "joins": 3, "asked": 1, "approved": 1},
        },
    )
    for peer in (*peers[:5], peers[6], mod):
        await peer.close()
