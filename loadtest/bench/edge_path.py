"""The node's CPU per connection at the edge, in this process: `python -m loadtest.bench.edge_path`.

One node runs in this process's uvloop (the embedded memory store, the joins bench's raised admission limits), and a
client in a child process opens `--n` connections, 100 at a time, and holds them:
- `--mode upgrade`: each sends a picows-like upgrade head and waits for the 101 (a raw asyncio client), so the
  node does only the edge: accept, the head, admission, the 101, the WebSocket connection and its session object;
- `--mode join`: `loadtest/join_client.py --client picows` joins a town hall with pre-minted citizen tokens (hello,
  JWT, welcome and snapshot), as `loadtest.bench.joins` does, but one node and no Valkey;
- `--floor` (upgrade only): no node, a protocol that writes a fixed 101 on the first packet: uvloop's own cost of an
  accepted connection, a read and a write.
Prints one JSON line: this process's CPU (user + system, getrusage) per connection between the client's start and
its last answer. The PYTHONPATH picks the tree, so two trees are compared by alternating runs of the same command.
Bounded: the client's every connection and the whole run have timeouts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import uvloop

from . import procstat

JOIN_CLIENT = Path(__file__).resolve().parent.parent / "join_client.py"
RUN_BUDGET_S = 120.0

_UPGRADE_CLIENT = r"""
import asyncio, base64, os, socket, sys, time, uvloop
port, n, concurrency, budget = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
HEAD = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Protocol: jansamvad.v1.json\r\n\r\n")
class Upgrader(asyncio.Protocol):
    def __init__(self, answer): self.answer = answer
    def connection_made(self, transport): transport.write(HEAD % (port, base64.b64encode(os.urandom(16))))
    def data_received(self, data):
        if not self.answer.done(): self.answer.set_result(data)
    def connection_lost(self, exc):
        if not self.answer.done(): self.answer.set_exception(ConnectionError("closed"))
async def main():
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    gate, held, upgraded = asyncio.Semaphore(concurrency), [], 0
    async def one(i):
        nonlocal upgraded
        async with gate:
            sock = socket.socket()
            sock.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT (join_client.py)
            sock.bind(("127.0.%d.%d" % (1 + i // 250 % 250, 1 + i % 250), 0))
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            answer = loop.create_future()
            transport, _ = await loop.create_connection(lambda: Upgrader(answer), sock=sock)
            answered = await asyncio.wait_for(answer, 30)
            upgraded += answered.startswith(b"HTTP/1.1 101 ")
            held.append(transport)
    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), budget)
    print('{"joined": %d}' % upgraded, flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
uvloop.run(main())
"""

_FLOOR_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"
)


class _Floor(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(_FLOOR_101)


def _cpu_s() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def measure(opts: argparse.Namespace) -> dict[str, Any]:
    from jansamvad.auth import TokenService
    from jansamvad.protocol.roles import Role
    from jansamvad.server import bind_socket, start_server, tune_gc
    from jansamvad.settings import Settings

    secret, admin_key = os.urandom(24).hex(), os.urandom(12).hex()
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    running = None
    if opts.floor:
        await asyncio.get_running_loop().create_server(_Floor, sock=sock)
    else:
        settings = Settings(
            secret=secret,
            admin_key=admin_key,
            log_level="warning",
            max_connections=opts.n + 100,
            max_connections_per_ip=100_000,
            max_unjoined_per_ip=100_000,
            ip_handshakes_per_second=1_000_000,
            ip_handshake_burst=1_000_000,
            handshakes_per_second=1_000_000,
            max_joining=100_000,  # upgrade mode holds every connection before its hello
            hello_timeout_s=60,
            ping_interval_s=600,
            ping_timeout_s=60,
        )
        running = await start_server(settings, sock=sock)
        tune_gc()
    tmp = Path(tempfile.mkdtemp(prefix="jansamvad-edge-"))
    if opts.mode == "join":
        townhall = await asyncio.to_thread(_create_townhall, port, admin_key)
        tokens = TokenService(secret)
        path = tmp / "tokens.txt"
        path.write_text(
            "".join(
                tokens.issue(sub=f"c-e-{i}", role=Role.CITIZEN, th=townhall, ttl_s=3600, name="नागरिक")[0] + "\n"
                for i in range(opts.n)
            )
        )
        argv = [sys.executable, str(JOIN_CLIENT), "--tokens", str(path), "--encoding", opts.encoding]
        argv += ["--client", "picows", "--concurrency", str(opts.concurrency), "--wait-go", "--source-block", "61"]
        argv += ["--hello", opts.hello]
        argv += ["--max-s", str(RUN_BUDGET_S), "--hold-s", str(RUN_BUDGET_S), "--url", f"ws://127.0.0.1:{port}/ws"]
    else:
        script = tmp / "upgrade_client.py"
        script.write_text(_UPGRADE_CLIENT)
        argv = [sys.executable, str(script), str(port), str(opts.n), str(opts.concurrency), str(RUN_BUDGET_S)]
    client = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert client.stdin is not None and client.stdout is not None
    try:
        line = await asyncio.wait_for(client.stdout.readline(), 60)
        if b"ready" not in line:
            raise RuntimeError(f"client not ready: {line!r}")
        user0, system0 = _cpu_s()
        client0 = procstat.cpu(client.pid)
        client.stdin.write(b"go\n")
        await client.stdin.drain()
        started = time.monotonic()
        line = await asyncio.wait_for(client.stdout.readline(), RUN_BUDGET_S + 30)
        user1, system1 = _cpu_s()
        client_cpu = (procstat.cpu(client.pid) - client0).seconds
        wall = time.monotonic() - started
        if not line:
            raise RuntimeError("the client exited early")
        joined = int(json.loads(line)["joined"])
    finally:
        client.stdin.close()
        try:
            await asyncio.wait_for(client.wait(), 20)
        except TimeoutError:
            client.kill()
            await client.wait()
        if running is not None:
            await running.stop()
    per = 1e6 / max(1, joined)
    import jansamvad

    return {
        "scenario": "edge_path",
        "mode": "floor" if opts.floor else opts.mode,
        "tree": str(Path(jansamvad.__file__).parent.parent),
        "connections": opts.n,
        "joined": joined,
        "cpu_us_per_connection": round((user1 - user0 + system1 - system0) * per, 1),
        "user_us": round((user1 - user0) * per, 1),
        "system_us": round((system1 - system0) * per, 1),
        "wall_s": round(wall, 2),
        "client_cpu_s": round(client_cpu, 2),  # the same client in every tree: a same-run reference
        "load": os.getloadavg(),
    }


def _create_townhall(port: int, admin_key: str) -> str:
    body = json.dumps({"title": "किनारा", "lang": "hi"}).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {admin_key}"}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/townhalls", body, headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["id"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mode", choices=("upgrade", "join"), default="upgrade")
    parser.add_argument("--n", type=int, default=5000, help="connections (held until the end: < 19,000)")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--encoding", choices=("json", "msgpack"), default="json", help="join mode")
    parser.add_argument("--hello", choices=("offer", "message"), default="offer", help="join mode: where the hello is")
    parser.add_argument("--floor", action="store_true", help="no node: uvloop's own cost (upgrade mode)")
    opts = parser.parse_args(argv)
    if opts.floor and opts.mode != "upgrade":
        parser.error("--floor is an upgrade-mode baseline")
    print(json.dumps(uvloop.run(measure(opts))))


if __name__ == "__main__":
    main()
