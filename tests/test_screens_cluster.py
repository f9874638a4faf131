"""People reached across two real node processes on a real Valkey: booth screens on node A and node B say how many
people watch them, citizens listen by unit; the roll-up's `screens`, `audience` and `reached` per district are
exactly what the test's clients know, a screen that reconnects to the other node is counted once, and a node killed
with kill -9 takes its screens' people out of the roll-up within seconds, like its viewers."""

from __future__ import annotations

import asyncio
import signal

import pytest

from jansamvad.auth import TokenService
from jansamvad.cluster import LocalCluster
from jansamvad.protocol.roles import Role
from tests import helpers
from tests.test_cluster import Peer
from tests.test_rollup_cluster import citizen, rows_until, two_nodes

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

asyncio_client_loop = helpers.asyncio_client_loop
__all__ = ["two_nodes"]  # the fixture, shared with the roll-up's own cluster test


def screen(cluster: LocalCluster, th: str, sub: str, unit: str) -> str:
    return TokenService(cluster.secret).issue(sub=sub, role=Role.SCREEN, th=th, ttl_s=600, name=sub, unit=unit)[0]


async def set_people(peer: Peer, people: int) -> None:
    answer = await peer.request({"t": "audience", "people": people})
    assert answer == {"t": "ack", "re": answer["re"], "people": people}, answer


async def test_screens_people_reached_are_exact_across_two_nodes_and_leave_with_a_dead_node(
    two_nodes: LocalCluster,
) -> None:
    cluster = two_nodes
    th = await asyncio.to_thread(cluster.create_townhall, "बूथ स्क्रीन")
    a, b = cluster.node_procs
    citizens = [
        (await Peer.join(node.url, citizen(cluster, th, f"c-{i}", unit)))[0]
        for i, (node, unit) in enumerate([(a, "D1-B1"), (a, "D2-B1"), (b, "D1-B2")])
    ]
    one, _ = await Peer.join(a.url, screen(cluster, th, "s-1", "D1-B1"))
    two, _ = await Peer.join(b.url, screen(cluster, th, "s-2", "D1-B2"))
    three, _ = await Peer.join(b.url, screen(cluster, th, "s-3", "D2-B1"))
    await set_people(one, 40)
    await set_people(two, 25)
    await set_people(three, 100)
    top = f"{a.url}/api/townhalls/{th}/rollup?unit=S1"
    await rows_until(
        cluster,
        top,
        {
            "D1": {"viewers": 2, "screens": 2, "audience": 65, "reached": 67},
            "D2": {"viewers": 1, "screens": 1, "audience": 100, "reached": 101},
        },
    )

    # The screen of D1-B2 loses node B and comes back on node A, where its page says its number again: once.
    await two.ws.close()
    two, _ = await Peer.join(a.url, screen(cluster, th, "s-2", "D1-B2"), last_seq=0)
    await set_people(two, 30)
    await rows_until(
        cluster, f"{b.url}/api/townhalls/{th}/rollup?unit=D1", {"D1-B2": {"screens": 1, "audience": 30, "reached": 31}}
    )

    await asyncio.to_thread(cluster.kill, 1, signal.SIGKILL)  # node B dies with the D2 screen and a citizen
    await rows_until(
        cluster,
        top,
        {
            "D1": {"viewers": 1, "screens": 2, "audience": 70, "reached": 71},
            "D2": {"viewers": 1, "screens": 0, "audience": 0, "reached": 1},
        },
    )
    for peer in (citizens[0], citizens[1], one, two):
        await peer.ws.close()
