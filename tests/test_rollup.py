"""The roll-up by region unit on one node: the node's tally (what a tick writes), the sum up the tree, the drill-down
API's answers to bad requests, and the export per unit (JSON and CSV) over real HTTP and WebSocket sessions."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from jansamvad.protocol.roles import Role
from jansamvad.regions import read_csv
from jansamvad.rollup.tally import UnitTally, path_in
from jansamvad.server import RunningServer
from tests.helpers import ADMIN_KEY, joined, make_hall

pytestmark = pytest.mark.anyio

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TREE = read_csv(
    """code,parent,level,name_hi,name_en
S1,,state,राज्य एक,State One
D1,S1,district,ज़िला एक,District One
D2,S1,district,ज़िला दो,District Two
D1-B1,D1,booth,बूथ 1,Booth 1
D2-B1,D2,booth,बूथ 2,Booth 2
"""
)


def leaf(code: str) -> tuple[str, ...]:
    return (code,)


def test_rollup_tally_writes_only_the_units_that_changed() -> None:
    tally = UnitTally()
    tally.join("th", "B1")
    tally.join("th", "B1")
    tally.join("th", "")
    assert tally.take("th", leaf) == ({"B1": 2, "unknown": 1}, {"joins": {"B1": 2, "unknown": 1}}, True)
    tally.written("th", "written")
    assert tally.take("th", leaf) == ({}, {}, False)  # nothing changed: the write only renews the report
    tally.written("th", "written")
    tally.leave("th", "B1")
    tally.count("th", "asked", "B1")
    assert tally.take("th", leaf) == ({"B1": 1}, {"asked": {"B1": 1}}, False)
    tally.written("th", "written")
    tally.count("th", "asked", "B1")
    assert tally.take("th", leaf) == ({}, {"asked": {"B1": 2}}, False)  # totals: a repeated write is harmless
    tally.written("th", "written")
    tally.leave("th", "B1")
    tally.leave("th", "")
    tally.leave("th", "B1")  # a leave without a join (never happens) changes nothing
    assert tally.take("th", leaf) == ({"B1": 0, "unknown": 0}, {}, False)
    report = tally.report("th")
    tally.written("th", "written")
    assert tally.pending() == []  # nobody left: no more writes; the report retires
    tally.join("th", "B1")
    assert tally.report("th") != report  # serving the town hall again: a new report, sent whole
    assert tally.take("th", leaf) == ({"B1": 1}, {"joins": {"B1": 1}}, True)


def test_rollup_tally_sums_every_unit_up_the_tree() -> None:
    tally, path_of = UnitTally(), path_in(TREE)
    for unit in ("D1-B1", "D1-B1", "D2", "", "GONE"):
        tally.join("th", unit)
    tally.count("th", "asked", "D1-B1")
    viewers, activity, full = tally.take("th", path_of)
    tally.written("th", "written")
    assert full and viewers == {"S1": 3, "D1": 2, "D1-B1": 2, "D2": 1, "unknown": 1, "GONE": 1}
    assert activity["asked"] == {"S1": 1, "D1": 1, "D1-B1": 1}
    tally.leave("th", "D1-B1")
    # A unit leaves along the path it joined by, even under a tree that no longer has it.
    assert tally.take("th", path_in(None)) == ({"S1": 2, "D1": 1, "D1-B1": 1}, {}, False)


def test_rollup_tally_after_a_failed_write_sends_everything_and_after_a_forgotten_one_only_the_new() -> None:
    tally, path_of = UnitTally(), path_in(TREE)
    tally.join("th", "D1-B1")
    tally.take("th", path_of)
    tally.written("th", "written")
    tally.join("th", "D2-B1")
    tally.take("th", path_of)
    tally.written("th", "failed")  # it may have landed or not: absolute numbers, everything again
    everyone = {"S1": 2, "D1": 1, "D1-B1": 1, "D2": 1, "D2-B1": 1}
    joins = {"S1": 2, "D1": 1, "D1-B1": 1, "D2": 1, "D2-B1": 1}
    assert tally.take("th", path_of) == (everyone, {"joins": joins}, True)
    tally.written("th", "written")
    tally.count("th", "asked", "D2-B1")
    tally.take("th", path_of)
    # The report was taken for dead and its joins retired: the new one carries only the question since.
    tally.written("th", "forgotten")
    assert tally.take("th", path_of) == (everyone, {"asked": {"S1": 1, "D2": 1, "D2-B1": 1}}, True)


async def call(server: RunningServer, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        return await http.get(path, headers=headers if headers is not None else ADMIN)


async def test_rollup_api_refuses_citizens_unknown_units_and_bad_levels(server: RunningServer) -> None:
    hall = await make_hall(server)
    citizen = {"Authorization": f"Bearer {hall.citizen_token()}"}
    assert (await call(server, f"/api/townhalls/{hall.th}/rollup", citizen)).status_code == 401
    assert (await call(server, f"/api/townhalls/{hall.th}/export?by=district", citizen)).status_code == 401
    await server.node.store.put_region_tree(TREE)
    unknown = await call(server, f"/api/townhalls/{hall.th}/rollup?unit=NOPE")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    bad = await call(server, f"/api/townhalls/{hall.th}/export?by=planet")
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_field"
    moderator = {"Authorization": f"Bearer {hall.moderator}"}
    assert (await call(server, f"/api/townhalls/{hall.th}/rollup?unit=S1", moderator)).status_code == 200


async def test_rollup_export_per_unit_needs_a_region_tree(server: RunningServer) -> None:
    hall = await make_hall(server)
    no_tree = await call(server, f"/api/townhalls/{hall.th}/export?by=district")
    assert no_tree.status_code == 400 and no_tree.json()["error"] == "invalid_field"
    assert (await call(server, f"/api/townhalls/{hall.th}/rollup")).status_code == 200  # without a tree: `unknown`


async def test_rollup_export_per_district_counts_questions_reach_and_poll_votes(server: RunningServer) -> None:
    node = server.node
    await node.store.put_region_tree(TREE)
    hall = await make_hall(server)

    def citizen(sub: str, unit: str) -> str:
        return node.tokens.issue(sub=sub, role=Role.CITIZEN, th=hall.th, ttl_s=600, name=sub, unit=unit)[0]

    one, two, three = (
        await joined(server, citizen("c-1", "D1-B1")),
        await joined(server, citizen("c-2", "D1")),
        await joined(server, citizen("c-3", "D2-B1")),
    )
    nowhere = await joined(server, citizen("c-4", ""))
    moderator, leader = await joined(server, hall.moderator), await joined(server, hall.leader)
    assert (await leader.request({"t": "go_live"}))["t"] == "ack"
    asked = [
        await s.request({"t": "ask", "key": f"rollup-key-{i}", "text": f"सवाल नंबर {i} पानी"})
        for i, s in enumerate((one, two, three))
    ]
    assert all(a["t"] == "ack" for a in asked), asked
    await moderator.request({"t": "moderate", "qid": asked[0]["qid"], "action": "approve"})
    await moderator.request({"t": "moderate", "qid": asked[2]["qid"], "action": "reject"})
    pid = (await leader.request({"t": "poll_create", "question": "पहले?", "options": ["सड़क", "बिजली"]}))["pid"]
    await leader.request({"t": "poll_open", "pid": pid})
    for session, option in ((one, 0), (two, 1), (three, 1), (nowhere, 0)):
        assert (await session.request({"t": "poll_vote", "pid": pid, "option": option}))["t"] == "ack"
    await node.rollup_once()  # what the next tick does

    response = await call(server, f"/api/townhalls/{hall.th}/export?by=district")
    assert response.status_code == 200
    report: dict[str, Any] = response.json()
    assert report["by"] == "district" and [p["pid"] for p in report["polls"]] == [pid]
    rows = {row["code"]: row for row in report["units"]}
    assert list(rows) == ["D1", "D2", "unknown"]
    d1, d2, other = rows["D1"], rows["D2"], rows["unknown"]
    assert (d1["asked"], d1["approved"], d1["pending"], d1["decisions"]) == (2, 1, 1, 1)
    assert (d2["asked"], d2["rejected"], d2["decisions"]) == (1, 1, 1)
    assert (d1["joins"], d1["viewers"], d2["joins"], other["joins"]) == (2, 2, 1, 1)
    assert d1["polls"] == {f"{pid}:0": 1, f"{pid}:1": 1} and d2["polls"] == {f"{pid}:1": 1}
    assert other["polls"] == {f"{pid}:0": 1} and (d1["votes"], d2["votes"], other["votes"]) == (2, 1, 1)

    as_csv = await call(server, f"/api/townhalls/{hall.th}/export?by=district&format=csv")
    assert as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["code"] for r in table] == ["D1", "D2", "unknown"]
    assert table[0]["asked"] == "2" and table[0][f"{pid}:1 बिजली"] == "1" and table[1][f"{pid}:0 सड़क"] == "0"

    # The whole export names each question's unit.
    full = (await call(server, f"/api/townhalls/{hall.th}/export")).json()
    assert sorted(q["unit"] for q in full["questions"]) == ["D1", "D1-B1", "D2-B1"]
