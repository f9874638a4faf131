"""The fan-out's own Python cost per listener, without the kernel: `python -m loadtest.bench.fanout_loop`.

The real `Fanout` flushes one speech to N listeners whose "transport write" is a C builtin that does nothing, so
what is left is the engine's per-listener work. Two kinds of listener, side by side in one process:

- `fast`: what an open connection offers while its transport holds nothing (`fast_write`: since issue 19 its
  transport's write, since the direct sends its socket's send, which returns the bytes it took);
- `checked`: no fast write, so the fan-out calls `write_broadcast`, which checks the state and the buffer cap
  before writing, as every listener did before issue 19 (and as a closing, slow or replaying one still does).

Prints ns per listener (median of the repeats, best of two interleaved passes) for both, as JSON. Run against an
older engine (`PYTHONPATH=<its server/>`), `checked_ns` is that engine's loop. CPU-bound and tiny: no lock needed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable, Mapping

from jansamvad.fanout import Fanout
from jansamvad.feeds import DEFAULT_FEED
from jansamvad.hub import Hub
from jansamvad.protocol.codec import Encoding

# A C function of one argument that returns the blob's size: the cheapest stand-in for a send that took all of it
# (a fast write since the direct sends) and for transport.write (older engines ignore what it returns).
_SINK: Callable[[bytes], int] = len


class _Transport:
    __slots__ = ()
    write = staticmethod(_SINK)


class Fast:
    __slots__ = ("encoding", "fast_write", "feed", "paused")

    def __init__(self) -> None:
        self.encoding = Encoding.MSGPACK
        self.feed = DEFAULT_FEED
        self.paused: list[tuple[str, int, bytes]] | None = None
        self.fast_write: Callable[[bytes], int] | None = _SINK

    def write_broadcast(self, blob: bytes, must_deliver: bool) -> None:
        _SINK(blob)  # only an engine without the fast path comes here

    def write_rest(self, blob: bytes, sent: int) -> None:
        raise AssertionError("the stand-in send takes every byte")

    def resume(self, after: Mapping[str, int]) -> None:
        self.paused = None

    def close(self, code: object, detail: str = "") -> None: ...

    def send_frame(self, frame: bytes) -> None: ...


class Checked(Fast):
    """The checks WsConnection.write_broadcast makes before its write."""

    __slots__ = ("over_cap", "state", "transport")

    def __init__(self) -> None:
        super().__init__()
        self.fast_write = None
        self.state = "open"
        self.over_cap = False
        self.transport = _Transport()

    def write_broadcast(self, blob: bytes, must_deliver: bool) -> None:
        if self.state != "open":
            return
        if self.over_cap:
            return
        self.transport.write(blob)


async def _ns_per_listener(kind: type[Fast], n: int, repeats: int) -> float:
    fanout = Fanout(tick_s=3600.0, writes_per_yield=n + 1)  # one flush, no yield: the loop alone
    hub = Hub()
    for _ in range(n):
        hub.add("th:bench", kind())  # type: ignore[arg-type]  # the Session protocol's part the fan-out uses
    room = hub.room("th:bench")
    assert room is not None
    times = []
    for seq in range(1, repeats + 1):
        fanout.enqueue(room, seq, {"t": "speech", "text": "नमस्ते " * 30, "final": True})
        started = time.perf_counter()
        await fanout.flush_now()
        times.append(time.perf_counter() - started)
    assert fanout.writes == n * repeats
    return statistics.median(times) * 1e9 / n


async def measure(n: int, repeats: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for _ in range(2):  # interleaved twice: a drift of the machine's load hits both kinds
        for kind in (Checked, Fast):
            key = "checked_ns" if kind is Checked else "fast_ns"
            value = await _ns_per_listener(kind, n, repeats)
            out[key] = round(min(out.get(key, value), value), 1)
    return {"listeners": n, "repeats": repeats, **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listeners", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=31)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.listeners, args.repeats))))


if __name__ == "__main__":
    main()
