"""A minimal but fair picows fan-out server: the other side of the `picows` scenario (scenarios/vs_picows.py).

Like a JanSamvad node it holds the bench's citizens (upgrade, any hello, a `welcome`) and listens to one Redis
pub/sub channel; every publication (a msgpack `speech` map built by the bench's leader) is framed once and written to
every local listener, either through `transport.underlying_transport.write` of the pre-built frame (`--write raw`,
the default and the fastest), through picows' own `transport.send` (`--write send`, framed in C per listener), or
with `os.write` on the socket (`--write oswrite`: write(2), as uvloop does, where aiofastnet uses send(2)).
It has no rooms, no ticks, no history, no tokens, no buffer checks: the floor JanSamvad's engine is measured against.

It prints `ready <port>` on stdout once it listens and is subscribed; it exits at stdin EOF or after --lifetime.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import msgpack
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server
from picows.common import WSUpgradeResponse, WSUpgradeResponseWithListener
from redis.asyncio import Redis

from jansamvad.protocol.codec import OP_BINARY, server_frame

SUBPROTOCOL = "jansamvad.v1.msgpack"
WELCOME = msgpack.packb({"t": "welcome", "seq": 0})


class Citizen(WSListener):  # type: ignore[misc]  # picows ships no stubs for subclassing its Cython class
    __slots__ = ("conns", "fd", "transport")

    def __init__(self, conns: dict[Citizen, WSTransport]) -> None:
        self.conns = conns
        self.fd = -1

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()
        elif frame.msg_type == WSMsgType.BINARY and self not in self.conns:  # the hello: not checked
            transport.send(WSMsgType.BINARY, WELCOME)
            self.fd = transport.underlying_transport.get_extra_info("socket").fileno()
            self.conns[self] = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.conns.pop(self, None)


async def serve(port: int, redis_url: str, channel: str, write: str, read_buffer: int, lifetime: float) -> None:
    conns: dict[Citizen, WSTransport] = {}

    def factory(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
        response = WSUpgradeResponse.create_101_response({"Sec-WebSocket-Protocol": SUBPROTOCOL})
        return WSUpgradeResponseWithListener(response, Citizen(conns))

    server = await ws_create_server(factory, "127.0.0.1", port, backlog=4096, read_buffer_init_size=read_buffer)
    redis = Redis.from_url(redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    sys.stdout.write(f"ready {port}\n")
    sys.stdout.flush()

    async def fan_out() -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            payload: bytes = message["data"]
            if write == "raw":
                frame = server_frame(payload, OP_BINARY)  # once per publication, like the node
                for transport in conns.values():
                    transport.underlying_transport.write(frame)
            elif write == "oswrite":
                # write(2) instead of aiofastnet's send(2), to compare the two syscalls in the same server; a
                # short or refused write falls back to the transport (which then keeps the order).
                frame = server_frame(payload, OP_BINARY)
                for citizen, transport in conns.items():
                    try:
                        if os.write(citizen.fd, frame) == len(frame):
                            continue
                    except BlockingIOError:
                        pass
                    transport.underlying_transport.write(frame)
            else:
                for transport in conns.values():
                    transport.send(WSMsgType.BINARY, payload)

    async def stdin_closed() -> None:
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while await reader.readline():
            pass

    tasks = [asyncio.create_task(fan_out()), asyncio.create_task(stdin_closed())]
    try:
        await asyncio.wait(tasks, timeout=lifetime, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        server.close()
        for transport in list(conns.values()):
            transport.disconnect(graceful=False)
        await pubsub.aclose()
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--channel", default="bench:speech")
    parser.add_argument("--write", choices=("raw", "send", "oswrite"), default="raw")
    parser.add_argument("--read-buffer", type=int, default=16 * 1024, help="picows read_buffer_init_size")
    parser.add_argument("--lifetime", type=float, default=3600.0)
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.redis_url, args.channel, args.write, args.read_buffer, args.lifetime))


if __name__ == "__main__":
    main()
