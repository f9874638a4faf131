"""An outside join client: an independent library's client, none of the bench's code, to cross-check join rates.

Two clients (`--client`): `websockets` (the `websockets` library's asyncio client, the default loop) and `picows`
(picows' Cython client on uvloop, several times less CPU per connection: on a 2-core machine the client shares the
cores with the nodes, so a lighter client makes the run short and its length steady).

Each connection does what a citizen's page does: TCP connect, HTTP upgrade with the JSON (or msgpack) subprotocol and
the `hello` with a pre-minted citizen token in the subprotocol offer (`--hello offer`, the page's way since
2026-12-04; `--hello message`: the hello as the first frame after the 101, the page's way before), then waits for
`welcome` and `snapshot` (or a `welcome` with `recovered: true`). It keeps every connection open (a growing room)
until its stdin closes or --hold-s passes, so a parent can measure the nodes' CPU while the room grows.

    python loadtest/join_client.py --url ws://127.0.0.1:8001/ws --url ws://127.0.0.1:8002/ws \
        --tokens tokens.txt --concurrency 100 --encoding json

Prints one JSON line: joined, failed (by reason), started/finished (CLOCK_MONOTONIC ns), connect ms percentiles.
Bounded: every connection has a timeout, the whole run --max-s, the hold --hold-s. Load goes to the URLs given
(the bench passes loopback addresses only).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import msgpack
from websockets.asyncio.client import ClientConnection, connect

SUBPROTOCOLS = {"json": "jansamvad.v1.json", "msgpack": "jansamvad.v1.msgpack"}
CLIENTS = ("websockets", "picows")


def _decode(frame: str | bytes) -> dict[str, Any]:
    if isinstance(frame, str):
        out: dict[str, Any] = json.loads(frame)
    else:
        out = msgpack.unpackb(frame, raw=False)
    return out


# Linux's IP_BIND_ADDRESS_NO_PORT (not in Python's socket module): the port of a socket bound to a source address is
# chosen at connect(), by the whole 4-tuple. Without it, bind((source, 0)) searches the ephemeral range for a port
# free for every destination, in the kernel, and on a machine holding tens of thousands of loopback sockets (other
# benches, TIME_WAIT) that search took 80 % of a join client's CPU: 20-30 s of system time per 5,000 joins in the
# runs that fell into the slow group (docs/benchmarks.md, "Joins (issue 19)", fourth round).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def bound_socket(source: str) -> socket.socket:
    """A non-blocking TCP socket on the `source` address whose port the kernel picks at connect()."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def connected_socket(url: str, source: str) -> socket.socket:
    parts = urlsplit(url)
    sock = bound_socket(source)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port or 80))
    except BaseException:
        sock.close()
        raise
    return sock


def _hello(token: str, encoding: str) -> str | bytes:
    hello = {"t": "hello", "token": token}
    return json.dumps(hello) if encoding == "json" else msgpack.packb(hello)


def offer_with_hello(encoding: str, hello: str | bytes) -> list[str]:
    """The subprotocols a citizen's page offers with its hello in them (docs/protocol.md, section 1): the `+hello`
    name, the plain one for a node that does not take it, and the hello entry (the message, base64url, no padding)."""
    data = hello.encode() if isinstance(hello, str) else hello
    entry = base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    name = SUBPROTOCOLS[encoding]
    return [name + "+hello", name, "jansamvad.v1.hello." + entry]


def _joined(msg: dict[str, Any]) -> bool:
    """The join's own frames arrived: a snapshot, or a resumed session's welcome."""
    t = msg.get("t")
    if t == "error":
        raise RuntimeError(f"error_{msg.get('code')}")
    return t == "snapshot" or (t == "welcome" and bool(msg.get("recovered")))


async def join_one(
    url: str, token: str, encoding: str, source: str, timeout: float, in_offer: bool = True
) -> ClientConnection:
    """Connect, say hello (in the offer, or as a message), and return once the join's own frames (welcome, snapshot)
    arrived."""
    hello = _hello(token, encoding)
    async with asyncio.timeout(timeout):
        ws = await connect(
            url,
            subprotocols=offer_with_hello(encoding, hello) if in_offer else [SUBPROTOCOLS[encoding]],  # type: ignore[arg-type]
            compression=None,
            open_timeout=timeout,
            ping_interval=None,
            max_queue=None,
            sock=await connected_socket(url, source),
        )
        if ws.subprotocol != SUBPROTOCOLS[encoding] + "+hello":
            await ws.send(hello)
        while True:
            try:
                if _joined(_decode(await ws.recv())):
                    return ws
            except RuntimeError:
                await ws.close()
                raise


def picows_joiner(encoding: str, in_offer: bool = True) -> Any:
    """picows' client (imported only when chosen: it is in the `bench` extra): a join function and its closer."""
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    data_type = WSMsgType.TEXT if encoding == "json" else WSMsgType.BINARY
    subprotocol = SUBPROTOCOLS[encoding]
    with_hello = subprotocol + "+hello"

    class Citizen(WSListener):  # type: ignore[misc]  # picows ships no stubs for subclassing its Cython class
        """Says hello once connected, resolves `joined` at the snapshot; after it, reads frames and drops them.

        Pings are answered by picows itself (enable_auto_pong); a fragmented message is put back together."""

        __slots__ = ("hello", "joined", "parts")

        def __init__(self, hello: str | bytes, joined: asyncio.Future[None]) -> None:
            self.hello = hello
            self.joined = joined
            self.parts: list[bytes] = []

        def on_ws_connected(self, transport: WSTransport) -> None:
            got = transport.response.headers.get("Sec-WebSocket-Protocol")
            if got == with_hello and in_offer:
                return  # the node took the hello from the offer: the welcome is on its way
            if got != subprotocol:
                self._fail(RuntimeError(f"subprotocol {got}"))
                transport.disconnect()
                return
            hello = self.hello
            transport.send(data_type, hello.encode() if isinstance(hello, str) else hello)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind == WSMsgType.CLOSE:
                self._fail(RuntimeError(f"close_{frame.get_close_code()}"))
                transport.send_close(frame.get_close_code())
                transport.disconnect()
                return
            if self.joined.done() or kind not in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
                return  # held: the room's frames (viewers, speech) are read and dropped
            self.parts.append(frame.get_payload_as_bytes())
            if not frame.fin:
                return
            payload = b"".join(self.parts)
            self.parts.clear()
            try:
                msg = json.loads(payload) if encoding == "json" else msgpack.unpackb(payload, raw=False)
                if _joined(msg):
                    self.joined.set_result(None)
            except (RuntimeError, ValueError) as exc:
                self._fail(exc)
                transport.disconnect()

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            self._fail(ConnectionError("disconnected"))

        def _fail(self, exc: Exception) -> None:
            if not self.joined.done():
                self.joined.set_exception(exc)

    async def join(url: str, token: str, source: str, timeout: float) -> WSTransport:
        joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        hello = _hello(token, encoding)
        transport, _ = await asyncio.wait_for(
            ws_connect(
                lambda: Citizen(hello, joined),
                url,
                websocket_handshake_timeout=timeout,
                extra_headers={
                    "Sec-WebSocket-Protocol": ", ".join(offer_with_hello(encoding, hello)) if in_offer else subprotocol
                },
                socket_factory=lambda _: bound_socket(source),  # picows connects it
            ),
            timeout,
        )
        try:
            await asyncio.wait_for(joined, timeout)
        except BaseException:
            transport.disconnect()
            raise
        return transport

    def close(transport: WSTransport) -> None:
        transport.underlying_transport.abort()

    return join, close


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    with open(opts.tokens, encoding="utf-8") as f:
        tokens = [line.strip() for line in f if line.strip()]
    failed: Counter[str] = Counter()
    open_conns: list[Any] = []
    in_offer = opts.hello == "offer"
    if opts.client == "picows":
        join, close = picows_joiner(opts.encoding, in_offer)
    else:

        async def join(url: str, token: str, source: str, timeout: float) -> ClientConnection:
            return await join_one(url, token, opts.encoding, source, timeout, in_offer)

        def close(ws: ClientConnection) -> None:
            ws.transport.abort()

    connect_ms: list[float] = []
    next_index = 0

    async def runner() -> None:
        nonlocal next_index
        while next_index < len(tokens) and failed.total() < max(50, len(tokens) // 20):
            i = next_index
            next_index += 1
            url = opts.url[i % len(opts.url)]
            # A distinct loopback source per 20,000 connections keeps the ephemeral port range out of the way.
            source = f"127.{opts.source_block}.{i // 20_000}.1"
            started = time.monotonic_ns()
            try:
                ws = await join(url, tokens[i], source, opts.timeout)
            except (OSError, TimeoutError) as exc:
                failed[type(exc).__name__] += 1
                continue
            except Exception as exc:  # a refused upgrade, a close, an error frame: counted by what it was
                failed[str(exc)[:40] or type(exc).__name__] += 1
                continue
            connect_ms.append((time.monotonic_ns() - started) / 1e6)
            open_conns.append(ws)

    loop = asyncio.get_running_loop()
    if opts.wait_go:  # a parent that measures from the first join: "ready", then it sends one line
        print(json.dumps({"ready": len(tokens)}), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
    started_ns = time.monotonic_ns()
    async with asyncio.timeout(opts.max_s):
        async with asyncio.TaskGroup() as group:
            for _ in range(min(opts.concurrency, len(tokens))):
                group.create_task(runner())
    finished_ns = time.monotonic_ns()
    ms = sorted(connect_ms)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(p / 100 * len(ms)))], 1) if ms else 0.0

    wall = (finished_ns - started_ns) / 1e9
    result = {
        "client": opts.client,
        "hello": opts.hello,
        "joined": len(open_conns),
        "failed": dict(failed),
        "started_ns": started_ns,
        "finished_ns": finished_ns,
        "wall_s": round(wall, 3),
        "per_wall_s": round(len(open_conns) / wall) if wall else 0,
        "connect_ms": {"p50": pct(50), "p99": pct(99), "max": pct(100)},
    }
    print(json.dumps(result), flush=True)
    # Hold the room: until the parent closes our stdin (or the hold ends), then close every connection.
    try:
        async with asyncio.timeout(opts.hold_s):
            await loop.run_in_executor(None, sys.stdin.read)
    except TimeoutError:
        pass
    for ws in open_conns:
        close(ws)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", action="append", required=True, help="ws://host:port/ws; repeat for several nodes")
    parser.add_argument("--tokens", required=True, help="a file of citizen tokens, one a line")
    parser.add_argument("--encoding", choices=sorted(SUBPROTOCOLS), default="json")
    parser.add_argument("--client", choices=CLIENTS, default="websockets", help="whose WebSocket client joins")
    parser.add_argument(
        "--hello", choices=("offer", "message"), default="offer", help="the hello in the subprotocol offer, or a frame"
    )
    parser.add_argument("--concurrency", type=int, default=100, help="joins in flight")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per join")
    parser.add_argument("--max-s", type=float, default=300.0, help="seconds for all the joins")
    parser.add_argument("--hold-s", type=float, default=120.0, help="seconds to hold the connections at most")
    parser.add_argument("--wait-go", action="store_true", help="print a ready line, start on a line from stdin")
    parser.add_argument("--source-block", type=int, default=60, help="second octet of the 127/8 source addresses")
    opts = parser.parse_args(argv)
    if opts.client == "picows":  # picows is built for uvloop; the websockets client keeps the default loop
        import uvloop

        uvloop.run(run(opts))
    else:
        asyncio.run(run(opts))
    sys.stdout.flush()
    os._exit(0)  # the hold's stdin reader is a thread that may still wait: do not wait for it


if __name__ == "__main__":
    main()
