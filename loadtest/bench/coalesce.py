"""Writes per listener per second with and without coalescing, and what it costs in latency (docs/benchmarks.md).

The node's own fan-out engine (fanout.Fanout, hub.Hub) on one event loop, fed a realistic town hall for `--seconds`
at the node's tick (5 ms): the leader's partial transcripts about 4 times a second (100-400 ms apart, as a recogniser
emits them) and a final sentence every 16 words, an audio chunk every 300 ms (+-20 ms of uplink jitter; 900 bytes,
24 kbit/s), and the aggregates the node queues every presence tick (viewers, votes, reactions; each second), with
`--listeners` members: 30 % in audio mode, 60 % captions, 10 % text-light. The same schedule runs twice, without
coalescing (every frame at the next tick, as before) and with it (partials, audio and aggregates wait up to 40 ms for
company). Listeners count their writes; one probe listener per mode decodes what it gets and reports, per message
type, the time from the enqueue to its write (the latency coalescing adds).

    PYTHONPATH=. .venv/bin/python -m loadtest.bench.coalesce [--seconds 20] [--listeners 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Mapping
from typing import Any

import msgpack

from jansamvad.fanout import Fanout
from jansamvad.feeds import COALESCE_S, Mode, feed_of
from jansamvad.hub import Hub
from jansamvad.protocol.codec import Encoding

SHARES = ((Mode.AUDIO, 0.3), (Mode.CAPTIONS, 0.6), (Mode.LIGHT, 0.1))


class Listener:
    __slots__ = ("encoding", "feed", "paused", "writes")

    def __init__(self, mode: Mode) -> None:
        self.encoding = Encoding.MSGPACK
        self.feed = feed_of(Encoding.MSGPACK, mode)
        self.paused: list[tuple[str, int, bytes]] | None = None
        self.fast_write = None  # always the fan-out's checked path (write_broadcast)
        self.writes = 0

    def write_broadcast(self, blob: bytes, must_deliver: bool) -> None:
        self.writes += 1

    def resume(self, after: Mapping[str, int]) -> None:
        self.paused = None


class Probe(Listener):
    __slots__ = ("delays", "sent")

    def __init__(self, mode: Mode, sent: dict[str, float]) -> None:
        super().__init__(mode)
        self.sent = sent
        self.delays: dict[str, list[float]] = {}

    def write_broadcast(self, blob: bytes, must_deliver: bool) -> None:
        self.writes += 1
        now = time.perf_counter()
        for message in _frames(blob):
            key = str(message.get("k", ""))
            if key in self.sent:
                kind = key.split(":")[0]
                self.delays.setdefault(kind, []).append((now - self.sent[key]) * 1000)


def _frames(blob: bytes) -> list[dict[str, Any]]:
    out, i = [], 0
    while i < len(blob):
        n, start = blob[i + 1] & 0x7F, i + 2
        if n == 126:
            n, start = int.from_bytes(blob[i + 2 : i + 4], "big"), i + 4
        out.append(msgpack.unpackb(blob[start : start + n]))
        i = start + n
    return out


async def one_run(seconds: float, listeners: int, coalesce_s: float) -> dict[str, Any]:
    fanout = Fanout(tick_s=0.005, writes_per_yield=1000, coalesce_s=coalesce_s)
    fanout.start()
    hub = Hub()
    sent: dict[str, float] = {}
    members: dict[Mode, list[Listener]] = {}
    probes: dict[Mode, Probe] = {}
    for mode, share in SHARES:
        probe = probes[mode] = Probe(mode, sent)
        members[mode] = [probe, *(Listener(mode) for _ in range(int(listeners * share) - 1))]
        for member in members[mode]:
            hub.add("th:x", member)
    room = hub.room("th:x")
    assert room is not None
    loop = asyncio.get_running_loop()
    rng = random.Random(17)  # the same town hall in both runs
    start = loop.time()
    next_chunk = next_partial = start
    next_tick = start + 1
    seq, n, words = 0, 0, 0
    while loop.time() - start < seconds:
        now = loop.time()
        if now >= next_chunk:
            n += 1
            sent[f"audio:{n}"] = time.perf_counter()
            fanout.enqueue_audio(room, {"t": "audio", "data": bytes(900), "n": n, "k": f"audio:{n}"})
            next_chunk += 0.3 + rng.uniform(-0.02, 0.02)  # the recorder's timeslice, with the uplink's jitter
        if now >= next_partial:
            seq, words = seq + 1, words + 1
            final = words == 16
            kind = "final" if final else "partial"
            sent[f"{kind}:{seq}"] = time.perf_counter()
            message = {"t": "speech", "text": "शब्द " * words, "final": final, "k": f"{kind}:{seq}"}
            fanout.enqueue(room, seq, message)
            words = 0 if final else words
            next_partial += rng.uniform(0.1, 0.4)  # interim results come when the recogniser has them
        if now >= next_tick:
            second = int(now - start)
            sent[f"aggregate:{second}"] = time.perf_counter()
            fanout.conflate(room, {"t": "viewers", "n": 1000 + second, "staff": 2, "k": f"aggregate:{second}"})
            fanout.conflate(room, {"t": "votes", "v": {"q1": second}, "g": {}})
            fanout.conflate(room, {"t": "reactions", "c": {"clap": second}})
            next_tick += 1
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.1)
    await fanout.stop()
    elapsed = loop.time() - start
    result: dict[str, Any] = {"coalesce_ms": round(coalesce_s * 1000), "seconds": round(elapsed, 1)}
    for mode, group in members.items():
        result[f"{mode}_writes_per_listener_s"] = round(statistics.mean(m.writes for m in group) / elapsed, 2)
        result[f"{mode}_delay_ms"] = {
            kind: {"p50": round(statistics.median(d), 1), "p95": round(sorted(d)[int(len(d) * 0.95)], 1)}
            for kind, d in sorted(probes[mode].delays.items())
        }
    total = sum(len(g) for g in members.values())
    result["writes_per_listener_s"] = round(sum(m.writes for g in members.values() for m in g) / total / elapsed, 2)
    return result


async def measure(seconds: float, listeners: int) -> list[dict[str, Any]]:
    return [await one_run(seconds, listeners, c) for c in (0.0, COALESCE_S)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--listeners", type=int, default=1000)
    args = parser.parse_args()
    for result in asyncio.run(measure(args.seconds, args.listeners)):
        print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
