"""Booth screens on one node: the admin API issues a screen token for a region unit; a screen listens, may only say
how many people watch it (`audience`), and the roll-up counts its screens and people per unit and up the tree, as
"people reached" beside the citizens online, without counting the screen as a viewer; the count leaves with it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jansamvad.protocol.roles import Role
from jansamvad.regions import read_csv
from jansamvad.rollup.tally import UnitTally, path_in
from jansamvad.screens import ScreenAudiences
from jansamvad.server import RunningServer
from tests.helpers import ADMIN_KEY, joined, make_hall

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TREE = read_csv(
    """code,parent,level,name_hi,name_en
S1,,state,राज्य एक,State One
D1,S1,district,ज़िला एक,District One
D1-B1,D1,booth,बूथ 1,Booth 1
D1-B2,D1,booth,बूथ 2,Booth 2
"""
)


def test_screens_audience_moves_the_gauges_of_its_unit_and_leaves_with_the_screen() -> None:
    tally = UnitTally()
    screens = ScreenAudiences(tally)
    screens.joined("s1", "th", "D1-B1")
    screens.set_people("s1", 40)
    screens.set_people("s1", 55)  # replaces, never adds up
    screens.set_people("nobody", 9)  # not a screen here: nothing
    gauges, _, _ = tally.take("th", path_in(TREE))
    tally.written("th", "written")
    assert gauges == {
        "screens|S1": 1,
        "screens|D1": 1,
        "screens|D1-B1": 1,
        "audience|S1": 55,
        "audience|D1": 55,
        "audience|D1-B1": 55,
    }
    screens.left("s1")
    screens.left("s1")  # twice: once
    gauges, _, _ = tally.take("th", path_in(TREE))
    assert set(gauges.values()) == {0} and len(screens) == 0


async def token_for(server: RunningServer, th: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        return await http.post(f"/api/townhalls/{th}/tokens", json=body, headers=ADMIN)


async def rollup(server: RunningServer, th: str, unit: str = "") -> dict[str, Any]:
    await server.node.rollup_once()  # what the next tick does
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        answer = await http.get(f"/api/townhalls/{th}/rollup" + (f"?unit={unit}" if unit else ""), headers=ADMIN)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


async def test_screens_token_needs_a_known_unit_and_names_the_screen_page(server: RunningServer) -> None:
    await server.node.store.put_region_tree(TREE)
    hall = await make_hall(server)
    missing = await token_for(server, hall.th, {"role": "screen"})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_field"
    unknown = await token_for(server, hall.th, {"role": "screen", "unit": "NOPE"})
    assert unknown.status_code == 400 and "unit" in unknown.json()["msg"]
    made = await token_for(server, hall.th, {"role": "screen", "unit": "D1-B1", "name": "बूथ 1 की स्क्रीन"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["page"] == f"/screen/D1-B1?th={hall.th}#token={body['token']}"
    claims = server.node.tokens.verify(body["token"])
    assert (claims.role, claims.unit, claims.th) == (Role.SCREEN, "D1-B1", hall.th)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        page = await http.get(f"/screen/D1-B1?th={hall.th}")
        assert page.status_code == 302 and page.headers["location"] == f"/screen.html?th={hall.th}&unit=D1-B1"
        assert (await http.get("/screen/bad%20code?th=x")).status_code == 400


async def test_screens_may_only_listen_and_say_how_many_people_watch(server: RunningServer) -> None:
    await server.node.store.put_region_tree(TREE)
    hall = await make_hall(server)
    token = server.node.tokens.issue(sub="s-1", role=Role.SCREEN, th=hall.th, ttl_s=600, unit="D1-B1")[0]
    screen = await joined(server, token)
    for message in (
        {"t": "ask", "key": "screen-key-1", "text": "सवाल"},
        {"t": "react", "kind": "clap"},
        {"t": "upvote", "qid": "q1"},
        {"t": "speech", "text": "भाषण"},
    ):
        answer = await screen.request(message)
        assert answer["t"] == "error" and answer["code"] == "forbidden", (message, answer)
    over = await screen.request({"t": "audience", "people": 50_001})
    assert over["t"] == "error" and over["code"] == "invalid_field" and over["field"] == "people"
    citizen = await joined(server, hall.citizen_token())
    refused = await citizen.request({"t": "audience", "people": 5})
    assert refused["t"] == "error" and refused["code"] == "forbidden"
    ok = await screen.request({"t": "audience", "people": 120})
    assert ok == {"t": "ack", "re": ok["re"], "people": 120}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        metrics = (await http.get("/metrics")).text
    assert "jansamvad_booth_screens 1.0" in metrics.splitlines()


async def test_screens_people_reached_is_viewers_plus_audience_per_unit_and_up_the_tree(server: RunningServer) -> None:
    node = server.node
    await node.store.put_region_tree(TREE)
    hall = await make_hall(server)

    def token(role: Role, sub: str, unit: str) -> str:
        return node.tokens.issue(sub=sub, role=role, th=hall.th, ttl_s=600, name=sub, unit=unit)[0]

    citizens = [await joined(server, token(Role.CITIZEN, f"c-{i}", u)) for i, u in enumerate(("D1-B1", "D1-B2"))]
    one = await joined(server, token(Role.SCREEN, "s-1", "D1-B1"))
    two = await joined(server, token(Role.SCREEN, "s-2", "D1-B2"))
    assert (await one.request({"t": "audience", "people": 40}))["t"] == "ack"
    assert (await two.request({"t": "audience", "people": 7}))["t"] == "ack"
    assert (await one.request({"t": "audience", "people": 35}))["t"] == "ack"  # the volunteer counted again

    view = await rollup(server, hall.th, "D1")
    counts = view["counts"]
    assert (counts["viewers"], counts["screens"], counts["audience"], counts["reached"]) == (2, 2, 42, 44)
    rows = {row["code"]: row for row in view["rows"]}
    assert (rows["D1-B1"]["viewers"], rows["D1-B1"]["audience"], rows["D1-B1"]["reached"]) == (1, 35, 36)
    assert (rows["D1-B2"]["screens"], rows["D1-B2"]["reached"]) == (1, 8)
    top = await rollup(server, hall.th)
    assert top["counts"]["reached"] == 44 and top["counts"]["viewers"] == 2  # a screen is not a viewer

    await one.close()  # the screen at booth 1 goes away, and its people with it
    for _ in range(50):
        view = await rollup(server, hall.th, "D1")
        if view["counts"]["screens"] == 1:
            break
    assert (view["counts"]["audience"], view["counts"]["reached"]) == (7, 9)
    for session in (*citizens, two):
        await session.close()
