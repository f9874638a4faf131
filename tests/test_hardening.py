"""Hostile clients: slow request heads, ping floods, cross-origin API calls; and nothing personal in the logs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from jansamvad.models import Status
from jansamvad.server import RunningServer
from tests.helpers import RawClient, joined, make_hall

pytestmark = pytest.mark.anyio


async def open_socket(server: RunningServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(server.host, server.port)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(1024):
                pass
        return True
    except TimeoutError:
        return False


async def test_hardening_slowloris_request_head_is_cut_off(make_server: Any) -> None:
    server = await make_server(http_head_timeout_s=0.5)
    reader, writer = await open_socket(server)
    try:
        writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # one more header line now and then, never the end of the head
            await asyncio.sleep(0.2)
            writer.write(b"X-Slow: 1\r\n")
        assert await closed_within(reader, 2.0)
    finally:
        writer.close()


async def test_hardening_silent_socket_is_closed(make_server: Any) -> None:
    server = await make_server(http_head_timeout_s=0.5)
    reader, writer = await open_socket(server)
    try:
        assert await closed_within(reader, 2.0)
    finally:
        writer.close()


async def test_hardening_prompt_requests_are_unaffected(make_server: Any) -> None:
    server = await make_server(http_head_timeout_s=0.5)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for _ in range(3):
            assert (await http.get("/healthz")).status_code == 200
            await asyncio.sleep(0.3)  # keep-alive between requests is uvicorn's own timer


async def test_hardening_ping_flood_is_closed_with_4010(make_server: Any) -> None:
    server = await make_server(max_pings_per_s=5)
    hall = await make_hall(server)
    client = await RawClient.open(server)
    client.send_message({"t": "hello", "token": hall.citizen_token()})
    for _ in range(20):
        client.send_frame(0x9, b"p")
    assert await client.close_code() == 4010


async def test_hardening_cors_only_for_allowed_origins(make_server: Any) -> None:
    server = await make_server(allowed_origins=("https://jansamvad.example",))
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        good = await http.options("/api/townhalls/x/join", headers={"Origin": "https://jansamvad.example", **preflight})
        bad = await http.options("/api/townhalls/x/join", headers={"Origin": "https://evil.example", **preflight})
    assert good.headers.get("access-control-allow-origin") == "https://jansamvad.example"
    assert "access-control-allow-origin" not in bad.headers


async def test_hardening_logs_hold_no_tokens_names_or_phone_numbers(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jansamvad")
    hall = await make_hall(server)
    await server.node.store.set_status(hall.th, Status.LIVE)
    token = hall.citizen_token(name="गुप्त नाम", region="गुप्त क्षेत्र")
    citizen = await joined(server, token)
    await citizen.request({"t": "ask", "key": "privacy-01", "text": "मेरा नंबर 9876543210 है"})
    await citizen.request({"t": "ask", "key": "privacy-02", "text": "x" * 400})
    await citizen.ws.send(b"\xc1")  # not msgpack at all
    await citizen.send({"t": "leave"})
    await citizen.expect_close()
    text = caplog.text
    for secret in (token, "9876543210", "गुप्त नाम", "गुप्त क्षेत्र"):
        assert secret not in text


async def test_hardening_upgrade_head_split_over_packets_still_works(server: RunningServer) -> None:
    """The fast path takes a whole upgrade head in one packet; a head in pieces goes through uvicorn's parser."""
    reader, writer = await open_socket(server)
    try:
        head = (
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        writer.write(head[:30])
        await asyncio.sleep(0.05)
        writer.write(head[30:])
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert response.startswith(b"HTTP/1.1 101")
    finally:
        writer.close()


async def test_hardening_forwarded_for_from_a_trusted_network_names_the_client(make_server: Any) -> None:
    server = await make_server(trusted_proxies=("127.0.0.0/8",), max_connections_per_ip=1)
    # Two header lines (a client's own, then the balancer's): the last value is the client; no crash.
    first = await RawClient.open(server, headers="X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 203.0.113.7\r\n")
    second = await RawClient.open(server, headers="X-Forwarded-For: 198.51.100.9\r\n")
    third = await RawClient.open(server, headers="X-Forwarded-For: 203.0.113.7\r\n")
    assert (first.status, second.status, third.status) == (101, 101, 503)  # one connection per client address
    assert {c.ip for c in server.node.connections} >= {"203.0.113.7", "198.51.100.9"}


async def test_hardening_joins_and_admin_key_guesses_are_limited_per_ip(make_server: Any) -> None:
    server = await make_server(joins_per_minute_per_ip=3)
    hall = await make_hall(server)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        joins = [await http.post(f"/api/townhalls/{hall.th}/join", json={"name": "x"}) for _ in range(4)]
        guesses = [await http.get("/api/townhalls", headers={"Authorization": f"Bearer guess-{i}"}) for i in range(12)]
        page = await http.get("/")
    assert [r.status_code for r in joins] == [201, 201, 201, 429] and joins[-1].headers["Retry-After"]
    assert [r.status_code for r in guesses][:10] == [401] * 10 and guesses[-1].status_code == 429
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
