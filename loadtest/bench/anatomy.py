"""Memory anatomy: what websockets' sans-I/O ServerProtocol, which the node keeps per connection, holds after a
handshake (tracemalloc, in this process, no node needed). `python -m loadtest.bench.anatomy` prints it.

The node's RSS per connection (scenario `memory`) is this plus the node's own objects (WsConnection, Client, Claims,
the uvloop transport, set and dict entries) and allocator overhead.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from websockets.datastructures import Headers
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

REQUEST = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: jansamvad.v1.msgpack\r\n\r\n"
)
REPO = Path(__file__).resolve().parents[2]
_log = logging.getLogger("loadtest.bench.anatomy")
_log.setLevel(logging.WARNING)


def _select(_: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    return offered[0] if offered else None


def _handshaken() -> ServerProtocol:
    """A ServerProtocol as the node builds it (connection.py), after accepting one upgrade request."""
    ws = ServerProtocol(select_subprotocol=_select, max_size=64 * 1024, logger=_log)
    ws.receive_data(REQUEST)
    for request in ws.events_received():
        ws.send_response(ws.accept(request))  # type: ignore[arg-type]
    ws.data_to_send()
    return ws


def measure(n: int = 5000, top: int = 8) -> dict[str, Any]:
    _handshaken()  # imports and caches first
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        keep = [_handshaken() for _ in range(n)]
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    by_line = after.compare_to(before, "lineno")
    total = sum(stat.size_diff for stat in by_line)
    # Who keeps the handshake's Request alive? (the parser generator's frame, see the report)
    holders = sorted(
        {
            type(ref).__name__ + (f" {ref.__qualname__}" if hasattr(ref, "__qualname__") else "")
            for headers in [o for o in gc.get_objects() if isinstance(o, Headers)][:1]
            for request in gc.get_referrers(headers)
            if type(request).__name__ == "Request"
            for ref in gc.get_referrers(request)
            if not isinstance(ref, list | dict)
        }
    )
    del keep
    return {
        "scenario": "anatomy",
        "n": n,
        "websockets_protocol_kib": round(total / n / 1024, 2),
        "headers_kib": round(
            sum(s.size_diff for s in by_line if s.traceback[0].filename.endswith("datastructures.py")) / n / 1024, 2
        ),
        "request_held_by": holders,
        "top_lines": [
            [f"{s.traceback[0].filename.split('site-packages/')[-1]}:{s.traceback[0].lineno}", round(s.size_diff / n)]
            for s in by_line[:top]
        ],
    }


async def measure_in_subprocess(timeout: float = 60.0) -> dict[str, Any]:
    """The same in a fresh interpreter, so nothing else this process allocates is counted."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtest.bench.anatomy", stdout=asyncio.subprocess.PIPE, cwd=REPO
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    result: dict[str, Any] = json.loads(out)
    return result


if __name__ == "__main__":
    print(json.dumps(measure(), indent=1))
