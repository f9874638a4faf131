"""The REST API and health endpoints on the node's one port, over real HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from jansamvad.server import RunningServer
from tests.helpers import ADMIN_KEY, Session, joined, make_hall

pytestmark = pytest.mark.anyio

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def call(server: RunningServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as http:
        return await http.request(method, path, **kwargs)


async def test_http_healthz_and_readyz(server: RunningServer) -> None:
    assert (await call(server, "GET", "/healthz")).json() == {"ok": True}
    ready = await call(server, "GET", "/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


async def test_http_readyz_is_503_while_draining(server: RunningServer) -> None:
    server.node.ready = False
    assert (await call(server, "GET", "/readyz")).status_code == 503


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": ADMIN_KEY}]
)
async def test_http_admin_calls_need_the_admin_key(server: RunningServer, headers: dict[str, str]) -> None:
    response = await call(server, "POST", "/api/townhalls", json={"title": "x"}, headers=headers)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert (await call(server, "GET", "/api/townhalls", headers=headers)).status_code == 401


async def test_http_townhall_lifecycle(server: RunningServer) -> None:
    created = await call(server, "POST", "/api/townhalls", json={"title": " पटना\u202e टाउन हॉल "}, headers=ADMIN)
    assert created.status_code == 201
    townhall = created.json()
    assert townhall["title"] == "पटना टाउन हॉल" and townhall["status"] == "scheduled"
    th = townhall["id"]
    listed = (await call(server, "GET", "/api/townhalls", headers=ADMIN)).json()
    assert [t["id"] for t in listed] == [th]
    public = (await call(server, "GET", f"/api/townhalls/{th}")).json()
    assert public == {"id": th, "title": "पटना टाउन हॉल", "status": "scheduled", "lang": "hi"}
    assert (await call(server, "POST", f"/api/townhalls/{th}/start", headers=ADMIN)).json()["status"] == "live"
    assert (await call(server, "POST", f"/api/townhalls/{th}/end", headers=ADMIN)).json()["status"] == "ended"
    again = await call(server, "POST", f"/api/townhalls/{th}/start", headers=ADMIN)
    assert again.status_code == 409 and again.json()["error"] == "bad_state"


async def test_http_start_via_api_reaches_listeners_as_a_status_event(server: RunningServer) -> None:
    th = (await call(server, "POST", "/api/townhalls", json={"title": "x"}, headers=ADMIN)).json()["id"]
    token = (await call(server, "POST", f"/api/townhalls/{th}/join", json={"name": "राम"})).json()["token"]
    session = await Session.open(server)
    await session.hello(token)
    await call(server, "POST", f"/api/townhalls/{th}/start", headers=ADMIN)
    status = await session.recv_until(lambda m: m["t"] == "status")
    assert status["status"] == "live" and status["seq"] == 1


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({}, 400, "invalid_field"),
        ({"title": ""}, 400, "invalid_field"),
        ({"title": 5}, 400, "invalid_field"),
        ({"title": "x" * 121}, 400, "too_long"),
        ({"title": "x", "lang": "fr"}, 400, "invalid_field"),
    ],
)
async def test_http_create_townhall_rejects_bad_input(
    server: RunningServer, body: dict[str, Any], status: int, error: str
) -> None:
    response = await call(server, "POST", "/api/townhalls", json=body, headers=ADMIN)
    assert (response.status_code, response.json()["error"]) == (status, error)


async def test_http_rejects_bad_json_and_huge_bodies(server: RunningServer) -> None:
    bad = await call(server, "POST", "/api/townhalls", content=b"{nope", headers=ADMIN)
    assert (bad.status_code, bad.json()["error"]) == (400, "bad_json")
    huge = await call(server, "POST", "/api/townhalls", content=b"x" * 10_000, headers=ADMIN)
    assert huge.status_code == 413


async def test_http_issue_staff_tokens(server: RunningServer) -> None:
    th = (await call(server, "POST", "/api/townhalls", json={"title": "x"}, headers=ADMIN)).json()["id"]
    response = await call(
        server, "POST", f"/api/townhalls/{th}/tokens", json={"role": "leader", "name": "नेता"}, headers=ADMIN
    )
    assert response.status_code == 201
    claims = server.node.tokens.verify(response.json()["token"])
    assert (claims.role, claims.th, claims.name) == ("leader", th, "नेता")
    for body in ({"role": "admin"}, {"role": "citizen"}, {"role": "leader", "ttl": 10}, {"role": "leader", "ttl": "1"}):
        bad = await call(server, "POST", f"/api/townhalls/{th}/tokens", json=body, headers=ADMIN)
        assert bad.status_code == 400, body
    missing = await call(server, "POST", "/api/townhalls/nope/tokens", json={"role": "leader"}, headers=ADMIN)
    assert missing.status_code == 404


async def test_http_join_gives_a_stable_anonymous_identity_per_device(server: RunningServer) -> None:
    th = (await call(server, "POST", "/api/townhalls", json={"title": "x"}, headers=ADMIN)).json()["id"]
    body = {"name": "सीता", "region": "गया", "device_id": "device-abc-123"}
    first = (await call(server, "POST", f"/api/townhalls/{th}/join", json=body)).json()
    second = (await call(server, "POST", f"/api/townhalls/{th}/join", json=body)).json()
    other = (
        await call(server, "POST", f"/api/townhalls/{th}/join", json={**body, "device_id": "device-xyz-999"})
    ).json()
    assert first["sub"] == second["sub"] != other["sub"]
    assert first["sub"].startswith("c-") and "device" not in first["sub"]
    claims = server.node.tokens.verify(first["token"])
    assert (claims.role, claims.name, claims.region) == ("citizen", "सीता", "गया")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 41},
        {"name": "x", "device_id": "short"},
        {"name": "x", "device_id": "a b c d e f"},
    ],
)
async def test_http_join_rejects_bad_input(server: RunningServer, body: dict[str, Any]) -> None:
    th = (await call(server, "POST", "/api/townhalls", json={"title": "x"}, headers=ADMIN)).json()["id"]
    assert (await call(server, "POST", f"/api/townhalls/{th}/join", json=body)).status_code == 400


async def test_http_join_refused_for_unknown_or_ended_townhall(server: RunningServer) -> None:
    assert (await call(server, "POST", "/api/townhalls/nope/join", json={"name": "x"})).status_code == 404
    th = (await call(server, "POST", "/api/townhalls", json={"title": "x"}, headers=ADMIN)).json()["id"]
    await call(server, "POST", f"/api/townhalls/{th}/end", headers=ADMIN)
    assert (await call(server, "POST", f"/api/townhalls/{th}/join", json={"name": "x"})).status_code == 409


async def test_http_serves_the_web_pages(server: RunningServer) -> None:
    for path in ("/", "/leader.html", "/moderator.html"):
        response = await call(server, "GET", path)
        assert response.status_code == 200 and "text/html" in response.headers["content-type"], path


async def test_http_plain_get_on_ws_path_is_not_an_upgrade(server: RunningServer) -> None:
    response = await call(server, "GET", "/ws")
    assert response.status_code in (404, 426)


async def test_http_pages_and_scripts_are_served_gzipped(server: RunningServer) -> None:
    for path in ("/", "/js/citizen.js"):
        response = await call(server, "GET", path, headers={"Accept-Encoding": "gzip"})
        assert response.status_code == 200 and response.headers.get("content-encoding") == "gzip", path


async def test_http_dashboard_shows_live_townhalls_audience_and_queue(server: RunningServer) -> None:
    hall = await make_hall(server)
    await call(server, "POST", f"/api/townhalls/{hall.th}/start", headers=ADMIN)
    citizen = await joined(server, hall.citizen_token(region="गया"))
    await joined(server, hall.citizen_token(sub="c-two", region="पटना"))
    moderator = await joined(server, hall.moderator)
    qid = (await citizen.request({"t": "ask", "key": "dash-0001", "text": "सड़क?"}))["qid"]
    await citizen.request({"t": "ask", "key": "dash-0002", "text": "बिजली?"})
    await moderator.request({"t": "moderate", "qid": qid, "action": "approve"})
    await citizen.send({"t": "react", "kind": "clap"})
    assert (await call(server, "GET", "/api/dashboard")).status_code == 401
    async with asyncio.timeout(10):  # until a presence tick has counted everyone and summed the clap
        while True:
            report = (await call(server, "GET", "/api/dashboard", headers=ADMIN)).json()
            (card,) = [t for t in report["townhalls"] if t["id"] == hall.th]
            if card["viewers"] + card["staff"] >= 3 and card["reactions"]:
                break
            await asyncio.sleep(0.05)
    # Viewers are citizens, as on the wire; the moderator counts as staff.
    assert card["viewers"] == 2 and card["staff"] == 1 and card["viewers_by_node"] == {server.node.node_id: 2}
    assert card["viewers_by_region_here"]["गया"] == 1 and card["viewers_by_region_here"]["पटना"] == 1
    assert (card["questions"], card["queue_depth"], card["approval_rate"]) == (2, 1, 1.0)
    assert card["reactions"] == {"clap": 1}
    assert report["redis"] == {"configured": False, "healthy": True} and report["this_node"]["ready"] is True
    page = await call(server, "GET", "/dashboard.html")
    assert page.status_code == 200 and "/js/dashboard.js" in page.text


async def test_http_health_port_serves_only_probes_and_metrics(make_server: Any) -> None:
    from tests.redis_servers import free_port

    server = await make_server(health_port=free_port())
    assert server.health_port and server.health_port != server.port
    async with httpx.AsyncClient(base_url=f"http://{server.host}:{server.health_port}", timeout=5) as http:
        assert (await http.get("/healthz")).json() == {"ok": True}
        assert (await http.get("/readyz")).status_code == 200
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200 and "jansamvad_connections" in metrics.text
        # Nothing else: no API, no pages, no WebSocket upgrade.
        assert (await http.get("/api/townhalls", headers=ADMIN)).status_code == 404
        assert (await http.get("/")).status_code == 404
        upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
        assert (
            await http.get("/ws", headers={**upgrade, "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        ).status_code == 404
        # The same upgrade as one packet, as a browser sends it (the main port's fast path takes those): still 404.
        reader, writer = await asyncio.open_connection(server.host, server.health_port)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 404")
        writer.close()
        server.node.ready = False  # draining: the probe on the health port sees it too
        assert (await http.get("/readyz")).status_code == 503
    await server.stop()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=2) as http:
            await http.get(f"http://{server.host}:{server.health_port}/healthz")


async def test_http_health_port_taken_fails_the_start_without_leaving_the_main_port_open(make_server: Any) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(OSError):
            await make_server(health_port=taken.getsockname()[1])
    finally:
        taken.close()
