"""The Rollup contract (rollup/base.py), run against memory, Redis standalone and a Redis cluster."""

from __future__ import annotations

import asyncio

import pytest

from jansamvad.models import QState
from tests.contract.conftest import Backend, Parts

pytestmark = pytest.mark.anyio

UNITS = ("B1", "B2", "B3", "B9", "unknown")  # every unit these tests write


async def test_rollup_counts_sum_over_nodes(parts: Parts) -> None:
    rollup = parts.rollup()
    await rollup.write("node-a", "th1", {"B1": 3, "B2": 1}, {"asked": {"B1": 2}}, full=True)
    activity = {"asked": {"B1": 1}, "reactions": {"B2": 7}}
    await rollup.write("node-b", "th1", {"B1": 2, "unknown": 4}, activity, full=True)
    await rollup.write("node-a", "th2", {"B9": 5}, {}, full=True)
    assert await rollup.read("th1", UNITS) == {
        "B1": {"viewers": 5, "asked": 3},
        "B2": {"viewers": 1, "reactions": 7},
        "unknown": {"viewers": 4},
    }
    assert await rollup.read("th2", UNITS) == {"B9": {"viewers": 5}}
    assert await rollup.read("nobody", UNITS) == {}


async def test_rollup_numbers_are_absolute_so_a_repeated_write_changes_nothing(parts: Parts) -> None:
    rollup = parts.rollup()
    assert await rollup.write("node-a", "th1", {"B1": 3}, {"votes": {"B1": 2}}, full=True)
    assert await rollup.write("node-a", "th1", {"B1": 3}, {"votes": {"B1": 2}}, full=False)
    assert await rollup.write("node-a", "th1", {"B1": 1, "B2": 2}, {"votes": {"B2": 1}}, full=False)
    assert await rollup.read("th1", UNITS) == {"B1": {"viewers": 1, "votes": 2}, "B2": {"viewers": 2, "votes": 1}}
    await rollup.write("node-a", "th1", {"B1": 0}, {}, full=False)  # the last one there left
    assert await rollup.read("th1", UNITS) == {"B1": {"votes": 2}, "B2": {"viewers": 2, "votes": 1}}


async def test_rollup_full_write_replaces_the_node_report(parts: Parts) -> None:
    rollup = parts.rollup()
    await rollup.write("node-a", "th1", {"B1": 3, "B2": 2}, {"asked": {"B2": 1}}, full=True)
    await rollup.write("node-b", "th1", {"B1": 1}, {}, full=True)
    await rollup.write("node-a", "th1", {"B3": 1}, {"asked": {"B3": 1}}, full=True)
    assert await rollup.read("th1", UNITS) == {"B1": {"viewers": 1}, "B3": {"viewers": 1, "asked": 1}}


async def test_rollup_write_to_an_unknown_report_must_be_full(parts: Parts) -> None:
    rollup = parts.rollup()
    assert not await rollup.write("node-new", "th1", {"B1": 1}, {}, full=False)
    assert await rollup.read("th1", UNITS) == {}
    assert await rollup.write("node-new", "th1", {"B1": 1}, {}, full=True)
    assert await rollup.read("th1", UNITS) == {"B1": {"viewers": 1}}


async def test_rollup_concurrent_nodes_all_count(parts: Parts) -> None:
    rollup = parts.rollup()
    await asyncio.gather(
        *(rollup.write(f"node-{i}", "th1", {"B1": i, "B2": 1}, {"votes": {"B1": 1}}, full=True) for i in range(20))
    )
    assert await rollup.read("th1", UNITS) == {"B1": {"viewers": sum(range(20)), "votes": 20}, "B2": {"viewers": 20}}


async def test_rollup_read_gives_only_the_units_and_counters_asked_for(parts: Parts) -> None:
    rollup = parts.rollup()
    await rollup.write("node-a", "th1", {"B1": 3, "B2": 1}, {"asked": {"B1": 2}, "poll:p1:0": {"B2": 4}}, full=True)
    assert await rollup.read("th1", ["B2", "B7"]) == {"B2": {"viewers": 1}}
    picked = await rollup.read("th1", ["B1", "B2"], ["asked", "poll:p1:0"])
    assert picked == {"B1": {"asked": 2}, "B2": {"poll:p1:0": 4}}
    many = [f"U{i}" for i in range(2500)]  # more than one slice of every HSET, HMGET and read call
    await rollup.write("node-a", "th2", dict.fromkeys(many, 1), {"votes": dict.fromkeys(many, 2)}, full=True)
    await rollup.write("node-b", "th2", dict.fromkeys(many, 2), {}, full=True)
    read = await rollup.read("th2", many, ["viewers", "votes"])
    assert len(read) == 2500 and read["U2499"] == {"viewers": 3, "votes": 2}


async def test_rollup_dead_node_viewers_vanish_and_its_activity_stays(parts: Parts, backend: Backend) -> None:
    if not backend.is_redis:
        pytest.skip("the memory roll-up is one process: its only node cannot die while others read")
    alive, doomed = parts.rollup(ttl_s=0.3), parts.rollup(ttl_s=0.3)
    await alive.write("node-alive", "th1", {"B1": 4}, {}, full=True)
    await doomed.write("node-doomed", "th1", {"B1": 6, "B2": 1}, {"asked": {"B2": 1}}, full=True)
    assert await alive.read("th1", UNITS) == {"B1": {"viewers": 10}, "B2": {"viewers": 1, "asked": 1}}
    deadline = asyncio.get_running_loop().time() + 3
    while True:
        await alive.write("node-alive", "th1", {}, {}, full=False)  # the living node renews its report every tick
        if await alive.read("th1", UNITS) == {"B1": {"viewers": 4}, "B2": {"asked": 1}}:
            break
        assert asyncio.get_running_loop().time() < deadline, await alive.read("th1", UNITS)
        await asyncio.sleep(0.1)
    # The doomed node comes back: its write of changes is refused, so it starts again with everything it has not
    # had counted yet (its earlier question is retired: counted once).
    assert not await doomed.write("node-doomed", "th1", {"B2": 0}, {"asked": {"B2": 2}}, full=False)
    assert await doomed.write("node-doomed", "th1", {"B1": 5}, {"asked": {"B2": 1}}, full=True)
    assert await alive.read("th1", UNITS) == {"B1": {"viewers": 9}, "B2": {"asked": 2}}


async def test_rollup_close_withdraws_the_node_viewers_and_keeps_its_activity(parts: Parts, backend: Backend) -> None:
    if not backend.is_redis:
        pytest.skip("closing the memory roll-up ends the process's only copy")
    leaving, staying = parts.rollup(), parts.rollup()
    await leaving.write("node-a", "th1", {"B1": 2}, {"joins": {"B1": 2}}, full=True)
    await staying.write("node-b", "th1", {"B1": 1}, {"joins": {"B1": 1}}, full=True)
    await leaving.close()
    assert await staying.read("th1", UNITS) == {"B1": {"viewers": 1, "joins": 3}}


async def test_rollup_gauges_of_booth_screens_sum_over_nodes_and_vanish_with_a_dead_node(
    parts: Parts, backend: Backend
) -> None:
    """Booth screens and their audience are gauges like viewers (rollup/base.py GAUGES): summed over the live
    nodes, set to 0 when gone, and (Redis) gone with a node that stops renewing its report."""
    alive = parts.rollup(ttl_s=0.3)
    doomed = parts.rollup(ttl_s=0.3) if backend.is_redis else alive  # the memory roll-up: one process, one copy
    await alive.write("node-a", "th1", {"B1": 2, "screens|B1": 1, "audience|B1": 40}, {}, full=True)
    await doomed.write("node-b", "th1", {"screens|B1": 2, "audience|B1": 60, "audience|B2": 7}, {}, full=True)
    gauges = ("viewers", "screens", "audience")
    assert await alive.read("th1", UNITS, gauges) == {
        "B1": {"viewers": 2, "screens": 3, "audience": 100},
        "B2": {"audience": 7},
    }
    assert await alive.read("th1", ("B1",), ("audience",)) == {"B1": {"audience": 100}}
    await alive.write("node-a", "th1", {"screens|B1": 0, "audience|B1": 0}, {}, full=False)  # its screen left
    assert (await alive.read("th1", ("B1",), gauges))["B1"] == {"viewers": 2, "screens": 2, "audience": 60}
    if not backend.is_redis:
        return  # the memory roll-up is one process: its only node cannot die while others read
    deadline = asyncio.get_running_loop().time() + 3
    while await alive.read("th1", UNITS, gauges) != {"B1": {"viewers": 2}}:
        assert asyncio.get_running_loop().time() < deadline, await alive.read("th1", UNITS, gauges)
        await alive.write("node-a", "th1", {}, {}, full=False)  # the living node renews its report every tick
        await asyncio.sleep(0.1)


async def test_store_question_keeps_the_askers_unit(parts: Parts) -> None:
    store = parts.store()
    townhall = await store.create_townhall("t", "hi")
    q, _ = await store.add_question(townhall.id, author="c-1", key="k1", text="सड़क", name="n", region="", unit="B7")
    assert q.unit == "B7"
    decided = await store.decide(townhall.id, q.qid, "approve", "m-1", "")
    assert decided.unit == "B7" and decided.state is QState.APPROVED
    plain, _ = await store.add_question(townhall.id, author="c-2", key="k1", text="पानी", name="n", region="")
    assert plain.unit == "" and plain.for_export()["unit"] == ""
