"""The audio scenario's listeners: client processes of lean raw WebSocket citizens that only count what they receive.

Each process (≤ 10,000 sockets: a process may hold 20,000 open files) connects from its own block of loopback source
addresses (connect.source_ip) and reports, when told to stop: bytes received, its probes' audio chunks and speech
events (20 per mode decode every frame), speech lag (the node's `ts` to the probe's receipt), close codes, and for
the stalled phones of process 0 what the slow-consumer policy did to them.

A stalled phone has a small receive buffer (`stall_rcvbuf`) and stops reading when the leader starts. After
`stall_s` (or when the run ends, if sooner) it reads again: what the node had queued, then (if the node closed it
with 4009) it reconnects with `last_seq` as a phone would, and listens to the end. Its speech seqs, before and after
the resume, are checked against those of a healthy probe of its mode: a speech event missing from them is a speech
event lost.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack

from . import wire
from .connect import source_ip

BATCH = 200  # connections opened at once per process
JOIN_WAIT_S = 120.0  # every connection has its welcome within this, or the process reports how many do not


@dataclass
class Plan:
    """What one listener process holds: (token, mode, probe) per citizen, and (token, mode) per stalled phone."""

    port: int
    group: int  # the source address block: 127.<group+1>.x.y
    citizens: list[tuple[str, str, bool]]
    stalled: list[tuple[str, str]] = field(default_factory=list)
    stall_rcvbuf: int = 4096
    stall_s: float = 30.0


def hello(token: str, mode: str, last_seq: int | None = None) -> bytes:
    message: dict[str, Any] = {"t": "hello", "token": token, "mode": mode}
    if last_seq is not None:
        message["last_seq"] = last_seq
    return msgpack.packb(message)


class Counting(asyncio.Protocol):
    """A citizen that upgrades, says hello, and then only counts what it receives (a probe also decodes it)."""

    def __init__(self, hello: bytes, probe: bool, totals: dict[str, int]) -> None:
        self.hello, self.probe, self.totals = hello, probe, totals
        self.buf, self.upgraded, self.joined = b"", False, False
        self.audio = self.speech = 0
        self.speech_seqs: list[int] = []
        self.lags_ms: list[float] = []
        self.last_seq = 0
        self.close_code = 0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport  # uvloop's transports are not asyncio.Transport subclasses
        host, port = transport.get_extra_info("peername")[:2]
        transport.write(wire.upgrade_request(host, port))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def data_received(self, data: bytes) -> None:
        self.totals["bytes"] += len(data)
        if not self.upgraded:
            self.buf += data
            end = self.buf.find(wire.HEAD_END)
            if end < 0:
                return
            self.upgraded, data, self.buf = True, self.buf[end + 4 :], b""
            self.transport.write(wire.client_frame(wire.OP_BINARY, self.hello))
            if not data:
                return
        if not self.joined:  # the first frame after the upgrade: the welcome (or a close)
            self.joined = True
            self.totals["joined"] += 1
        if not self.probe:
            return
        self.buf += data
        frames, self.buf = wire.split_frames(self.buf)
        for first, payload in frames:
            if first & 0x0F == wire.OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big")
                continue
            message = msgpack.unpackb(payload)
            t = message.get("t")
            if "seq" in message and t != "welcome":
                self.last_seq = max(self.last_seq, message["seq"])
            if t == "audio":
                self.audio += 1
            elif t == "speech":
                self.speech += 1
                self.speech_seqs.append(message["seq"])
                if len(self.lags_ms) < 5000:
                    self.lags_ms.append(time.time() * 1000 - message["ts"])
            elif t == "welcome" and not self.last_seq:
                self.last_seq = message["seq"]


async def _connect(plan: Plan, index: int, proto: Counting, rcvbuf: int = 0) -> Counting:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((source_ip(plan.group, index), 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", plan.port))
    except BaseException:
        sock.close()
        raise
    await loop.create_connection(lambda: proto, sock=sock)
    return proto


class StalledPhone:
    """A phone that stops reading for `stall_s`, then reads again and resumes after a 4009 (see the module doc)."""

    def __init__(self, plan: Plan, index: int, token: str, mode: str) -> None:
        self.plan, self.index, self.token, self.mode = plan, index, token, mode
        self.first: Counting | None = None
        self.resumed: Counting | None = None
        self.run_over = asyncio.Event()  # the run ends before stall_s: read again now

    async def open(self) -> None:
        proto = Counting(hello(self.token, self.mode), True, {"bytes": 0, "joined": 0})
        self.first = await _connect(self.plan, self.index, proto, self.plan.stall_rcvbuf)

    async def stall_then_resume(self) -> None:
        assert self.first is not None
        self.first.transport.pause_reading()
        try:
            await asyncio.wait_for(self.run_over.wait(), self.plan.stall_s)
        except TimeoutError:
            pass
        if not self.first.lost:
            self.first.transport.resume_reading()
        for _ in range(100):  # read what the node queued, up to its close frame
            if self.first.lost or self.first.close_code:
                break
            await asyncio.sleep(0.1)
        if self.first.close_code == 4009 or self.first.lost:
            proto = Counting(hello(self.token, self.mode, self.first.last_seq), True, {"bytes": 0, "joined": 0})
            self.resumed = await _connect(self.plan, self.index + 1, proto)

    def report(self) -> dict[str, Any]:
        assert self.first is not None
        parts = [p for p in (self.first, self.resumed) if p is not None]
        return {
            "mode": self.mode,
            "close_code": self.first.close_code or (-1 if self.first.lost else 0),
            "resumed": self.resumed is not None,
            "audio_before_stall_end": self.first.audio,
            "audio_total": sum(p.audio for p in parts),
            "speech_seqs": sorted({s for p in parts for s in p.speech_seqs}),
        }


def listeners_main(plan: Plan, conn: Any, seconds: float) -> None:
    """The body of one listener process: `joined` -> wait for `go` -> count -> wait for `stop` -> the report."""
    import uvloop

    async def run() -> None:
        totals = {"bytes": 0, "joined": 0}
        phones = [StalledPhone(plan, 2 * i, token, mode) for i, (token, mode) in enumerate(plan.stalled)]
        for phone in phones:
            await phone.open()
        base = 2 * len(phones)
        clients: list[tuple[Counting, str]] = []
        failed = 0
        for start in range(0, len(plan.citizens), BATCH):
            batch = plan.citizens[start : start + BATCH]
            protos = [Counting(hello(token, mode), probe, totals) for token, mode, probe in batch]
            made = await asyncio.gather(
                *(_connect(plan, base + start + i, p) for i, p in enumerate(protos)), return_exceptions=True
            )
            for proto, result, (_, mode, _) in zip(protos, made, batch, strict=True):
                if isinstance(result, BaseException):
                    failed += 1
                else:
                    clients.append((proto, mode))
        deadline = time.monotonic() + JOIN_WAIT_S
        while totals["joined"] < len(clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        await asyncio.sleep(1)
        loop = asyncio.get_running_loop()
        conn.send({"joined": totals["joined"], "failed": failed})
        await loop.run_in_executor(None, conn.recv)  # go: the leader starts
        stalls = [loop.create_task(phone.stall_then_resume()) for phone in phones]
        start_bytes, started = totals["bytes"], loop.time()
        await loop.run_in_executor(None, conn.recv)  # stop
        elapsed = loop.time() - started
        got_bytes = totals["bytes"] - start_bytes
        for phone in phones:  # a run shorter than the stall: the phones read what was kept for them now
            phone.run_over.set()
        if stalls:
            await asyncio.wait(stalls, timeout=15)
        await asyncio.sleep(3)  # the resumed phones read their replay and the last live events
        for task in stalls:
            task.cancel()
        probes: dict[str, list[Counting]] = {}
        for proto, mode in clients:
            if proto.probe:
                probes.setdefault(mode, []).append(proto)
        conn.send(
            {
                "bytes": got_bytes,
                "seconds": elapsed,
                "stalled": [phone.report() for phone in phones],
                "probes": {
                    mode: {
                        "audio": [p.audio for p in group],
                        "speech": [p.speech for p in group],
                        "speech_seqs": sorted(set(group[0].speech_seqs)) if group else [],
                        "lags_ms": [lag for p in group for lag in p.lags_ms],
                        "closed": [p.close_code for p in group if p.close_code],
                    }
                    for mode, group in probes.items()
                },
            }
        )
        for proto, _ in clients:
            proto.transport.abort()
        for phone in phones:
            for part in (phone.first, phone.resumed):
                if part is not None and not part.lost:
                    part.transport.abort()
        await asyncio.sleep(0.2)  # let the transports close before the loop does

    uvloop.run(asyncio.wait_for(run(), seconds + JOIN_WAIT_S + 120))
