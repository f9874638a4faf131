"""How long a citizen waits for a join over a slow network: `python -m loadtest.bench.join_rtt`.

A node (the real CLI, the embedded default: no Valkey) and, in this process, a TCP relay that holds every chunk for
half the round trip in each direction, as a mobile link's latency does (bandwidth is not limited: a join's bytes are
few). Through it `loadtest/join_client.py`'s websockets client (none of the node's code) joins a live town hall,
one citizen at a time, with the hello in the subprotocol offer (the page's way since 2026-12-04) and as a message (the
page's way before), alternating, and reports the time from `connect()` to the snapshot: TCP's handshake, the
upgrade, and the hello's round trip when it has one of its own.

    PYTHONPATH=. .venv/bin/python -m loadtest.bench.join_rtt --rtt-ms 0 --rtt-ms 100 --rtt-ms 300 --rtt-ms 600

Bounded: `--joins` per mode and round trip, every join with a timeout. Load stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest.join_client import join_one

from jansamvad.auth import TokenService
from jansamvad.protocol.roles import Role

from .serverproc import ServerConfig, ServerProcess

JOIN_TIMEOUT_S = 30.0


class Relay:
    """A TCP relay on 127.0.0.1 that delivers each chunk `delay_s` after it was read, in order, in each direction."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._pair, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _pair(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(self.delay_s)  # the SYN's way there; the connection's own setup is the other half
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.sleep(self.delay_s)  # and the SYN-ACK's way back before the client may send
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    break
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(chunk)
            writer.close()

        sender = loop.create_task(deliver())
        try:
            while chunk := await reader.read(65536):
                queue.put_nowait((loop.time() + self.delay_s, chunk))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait((loop.time(), b""))
            await sender


async def measure(opts: argparse.Namespace) -> dict[str, Any]:
    secret, admin_key = os.urandom(24).hex(), os.urandom(12).hex()
    log = Path(tempfile.mkdtemp(prefix="jansamvad-join-rtt-")) / "node.log"
    node = ServerProcess(ServerConfig(secret=secret, admin_key=admin_key, log_path=log))
    await node.start()
    rows: list[dict[str, Any]] = []
    try:
        th = await node.create_townhall("धीमा नेटवर्क")
        tokens = TokenService(secret)
        n = 0
        for rtt_ms in opts.rtt_ms:
            relay = Relay(node.port, rtt_ms / 2000)
            await relay.start()
            times: dict[str, list[float]] = {"offer": [], "message": []}
            try:
                for i in range(opts.joins):
                    for mode in ("offer", "message") if i % 2 == 0 else ("message", "offer"):
                        n += 1
                        token, _ = tokens.issue(sub=f"c-rtt-{n}", role=Role.CITIZEN, th=th, ttl_s=600, name="नागरिक")
                        started = time.monotonic()
                        ws = await join_one(
                            f"ws://127.0.0.1:{relay.port}/ws",
                            token,
                            "json",
                            "127.0.0.1",
                            JOIN_TIMEOUT_S,
                            mode == "offer",
                        )
                        times[mode].append((time.monotonic() - started) * 1000)
                        ws.transport.abort()
            finally:
                await relay.stop()
            row: dict[str, Any] = {"rtt_ms": rtt_ms}
            for mode, values in times.items():
                row[f"{mode}_p50_ms"] = round(statistics.median(values), 1)
                row[f"{mode}_max_ms"] = round(max(values), 1)
            row["saved_p50_ms"] = round(row["message_p50_ms"] - row["offer_p50_ms"], 1)
            rows.append(row)
    finally:
        await node.stop()
    return {"scenario": "join_rtt", "joins_per_mode": opts.joins, "encoding": "json", "rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtt-ms", type=float, action="append", help="round trip to simulate (repeat); 0 100 300 600")
    parser.add_argument("--joins", type=int, default=20, help="joins per mode and round trip")
    opts = parser.parse_args(argv)
    opts.rtt_ms = opts.rtt_ms or [0.0, 100.0, 300.0, 600.0]
    result = asyncio.run(asyncio.wait_for(measure(opts), 600))
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
