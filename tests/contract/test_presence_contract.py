"""The PresenceManager contract (presence/base.py), run against memory, Redis standalone and a Redis cluster."""

from __future__ import annotations

import asyncio

import pytest

from jansamvad.presence.base import Audience
from tests.contract.conftest import Backend, Parts

pytestmark = pytest.mark.anyio


async def test_presence_totals_sum_over_nodes(parts: Parts) -> None:
    presence = parts.presence()
    await presence.report("node-a", {"th1": Audience(10), "th2": Audience(1)})
    await presence.report("node-b", {"th1": Audience(5)})
    await presence.report("node-c", {"th3": Audience(7)})
    assert await presence.totals(["th1", "th2", "th3"]) == {"th1": Audience(15), "th2": Audience(1), "th3": Audience(7)}


async def test_presence_totals_of_unknown_townhalls_are_zero(parts: Parts) -> None:
    presence = parts.presence()
    await presence.report("node-a", {"th1": Audience(3)})
    assert await presence.totals(["th1", "nobody-here"]) == {"th1": Audience(3), "nobody-here": Audience(0)}
    assert await presence.totals([]) == {}


async def test_presence_report_replaces_the_previous_one(parts: Parts) -> None:
    presence = parts.presence()
    await presence.report("node-a", {"th1": Audience(10), "th2": Audience(4)})
    await presence.report("node-b", {"th1": Audience(1)})
    await presence.report("node-a", {"th1": Audience(2)})  # th2's listeners all left node-a
    assert await presence.totals(["th1", "th2"]) == {"th1": Audience(3), "th2": Audience(0)}
    await presence.report("node-a", {})
    assert await presence.totals(["th1", "th2"]) == {"th1": Audience(1), "th2": Audience(0)}


async def test_presence_nodes_reporting_concurrently_all_count(parts: Parts) -> None:
    presence = parts.presence()
    await asyncio.gather(*(presence.report(f"node-{i}", {"th1": Audience(i), "th2": Audience(1)}) for i in range(20)))
    assert await presence.totals(["th1", "th2"]) == {"th1": Audience(sum(range(20))), "th2": Audience(20)}


async def test_presence_dead_node_drops_out(parts: Parts, backend: Backend) -> None:
    if not backend.is_redis:
        pytest.skip("the memory presence is one process: its only node cannot die while others read")
    alive = parts.presence(ttl_s=0.3)
    doomed = parts.presence(ttl_s=0.3)  # another node, which will stop reporting
    await alive.report("node-alive", {"th1": Audience(4)})
    await doomed.report("node-doomed", {"th1": Audience(6)})
    assert await alive.totals(["th1"]) == {"th1": Audience(10)}

    async def alive_only() -> bool:
        await alive.report("node-alive", {"th1": Audience(4)})  # the living node keeps reporting every tick
        return (await alive.totals(["th1"])) == {"th1": Audience(4)}

    deadline = asyncio.get_running_loop().time() + 3
    while not await alive_only():
        assert asyncio.get_running_loop().time() < deadline, "the dead node never dropped out"
        await asyncio.sleep(0.05)
    # And not before its time: nodes that keep reporting stay counted for longer than the ttl.
    for _ in range(8):
        await asyncio.gather(
            alive.report("node-alive", {"th1": Audience(4)}), doomed.report("node-doomed", {"th1": Audience(6)})
        )
        assert await alive.totals(["th1"]) == {"th1": Audience(10)}
        await asyncio.sleep(0.1)


async def test_presence_close_withdraws_the_node(parts: Parts, backend: Backend) -> None:
    if not backend.is_redis:
        pytest.skip("after close the memory presence has no totals to read")
    staying = parts.presence()
    leaving = parts.presence()
    await staying.report("node-a", {"th1": Audience(1)})
    await leaving.report("node-b", {"th1": Audience(2)})
    assert await staying.totals(["th1"]) == {"th1": Audience(3)}
    await leaving.close()
    assert await staying.totals(["th1"]) == {"th1": Audience(1)}


async def test_presence_by_node_lists_each_live_node(parts: Parts) -> None:
    presence = parts.presence()
    await presence.report("node-a", {"th1": Audience(4)})
    await presence.report("node-b", {"th1": Audience(6), "th2": Audience(1)})
    assert await presence.by_node("th1") == {"node-a": Audience(4), "node-b": Audience(6)}
    await presence.report("node-b", {"th2": Audience(1)})
    assert await presence.by_node("th1") == {"node-a": Audience(4)}


async def test_presence_counts_citizens_and_staff_apart_across_nodes(parts: Parts, backend: Backend) -> None:
    node_a = parts.presence()
    node_b = parts.presence() if backend.is_redis else node_a  # two nodes on one Redis, as in a cluster
    await node_a.report("node-a", {"th1": Audience(citizens=2, staff=1)})  # two citizens and the leader
    await node_b.report("node-b", {"th1": Audience(citizens=0, staff=1)})  # a moderator alone on another node
    assert await node_a.totals(["th1"]) == {"th1": Audience(citizens=2, staff=2)}
    assert await node_b.by_node("th1") == {"node-a": Audience(2, 1), "node-b": Audience(0, 1)}
    await node_b.report("node-b", {})  # the moderator left
    assert await node_a.totals(["th1"]) == {"th1": Audience(2, 1)}
    assert await node_a.by_node("th1") == {"node-a": Audience(2, 1)}
