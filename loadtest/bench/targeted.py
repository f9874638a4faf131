"""What a targeted announcement costs the fan-out, side by side with an ordinary event (docs/benchmarks.md).

One room of `--listeners` in-process listeners (each write is a list append, so this times the fan-out's own work,
not the kernel's), spread over `--units` booths of one district tree; the node's UnitIndex is built as joins build
it. Each round flushes one tick of an ordinary `announce` and one tick of an `announce` to one district (a tenth of
the room), alternately, and reports the median flush time of each, the frames encoded per tick and the ratio.
Bounded in count and time; no network.

    PYTHONPATH=. .venv/bin/python -m loadtest.bench.targeted [--listeners 20000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Mapping

from jansamvad.fanout import Fanout
from jansamvad.hub import Hub
from jansamvad.protocol.codec import Encoding
from jansamvad.targeting import UnitIndex


class Sink:
    """A listener that keeps the last blob written to it."""

    __slots__ = ("encoding", "last", "paused")

    def __init__(self) -> None:
        self.encoding = Encoding.MSGPACK
        self.paused: list[tuple[str, int, bytes]] | None = None
        self.fast_write = None  # always the fan-out's checked path (write_broadcast)
        self.last = b""

    def write_broadcast(self, blob: bytes, must_deliver: bool) -> None:
        self.last = blob

    def resume(self, after: Mapping[str, int]) -> None:
        self.paused = None


async def run(listeners: int, rounds: int, districts: int) -> dict[str, object]:
    fanout = Fanout(tick_s=0, writes_per_yield=1000)
    hub, index = Hub(), UnitIndex()
    paths: dict[tuple[str, int], tuple[str, ...]] = {}  # one tuple per booth, shared, as the tree's own cache is
    channel = "th:bench"
    for i in range(listeners):
        sink = Sink()
        district = f"D{i % districts}"
        index.add(sink, paths.setdefault((district, i % 97), ("S", district, f"{district}-B{i % 97}")))
        hub.add(channel, sink)
    room = hub.room(channel)
    assert room is not None
    timings: dict[str, list[float]] = {"ordinary": [], "targeted": []}
    frames: dict[str, int] = {}
    seq = 0
    for _ in range(rounds):
        for kind in ("ordinary", "targeted"):
            seq += 1
            message = {"t": "announce", "text": "गया के सभी बूथ: शाम 5 बजे सभा", "ts": 0}
            targeted = None
            if kind == "targeted":
                message["to"] = "D0"
                targeted = index.under("D0")
            fanout.enqueue(room, seq, message, targeted=targeted)
            built = fanout.frames_built
            started = time.perf_counter()
            await fanout.flush_now()
            timings[kind].append(time.perf_counter() - started)
            frames[kind] = fanout.frames_built - built
    ordinary, targeted_ms = (statistics.median(timings[k]) * 1000 for k in ("ordinary", "targeted"))
    return {
        "listeners": listeners,
        "in_target": sum(1 for path in index.paths.values() if "D0" in path),
        "rounds": rounds,
        "ordinary_flush_ms_median": round(ordinary, 3),
        "targeted_flush_ms_median": round(targeted_ms, 3),
        "targeted_over_ordinary": round(targeted_ms / ordinary, 2),
        "frames_per_tick": frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listeners", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--districts", type=int, default=10, help="the target: one of these")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.listeners, args.rounds, args.districts)), indent=2))


if __name__ == "__main__":
    main()
