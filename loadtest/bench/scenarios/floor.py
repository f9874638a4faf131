"""The floor for single broadcasts: the same clients and rounds against floor_server.py (one transport.write per
listener, no engine), so the node's CPU per delivery can be split into the unavoidable syscall and the engine."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from typing import Any

from ..children import die_with_parent
from ..harness import BenchOptions, Receipts
from ..pool import REPO, WorkerPool, WorkerProc
from ..procstat import cpu
from ..serverproc import free_port
from .common import check_delivery, cpu_summary, idle_cpu_rate_pid, latency_summary


async def measure(opts: BenchOptions, *, n: int, rounds: int, same_core: bool = False) -> dict[str, Any]:
    """`same_core`: the clients run on the floor server's core, so no write has to wake a process on another core."""
    client_core = opts.server_core if same_core else opts.client_core
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "loadtest.bench.floor_server",
        "--port",
        str(port),
        "--lifetime",
        str(opts.lifetime_s),
    ]
    if opts.server_core is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(opts.server_core), *argv]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        preexec_fn=die_with_parent,
    )
    floor = WorkerProc(-1, proc)
    workers = max(1, -(-n // opts.conns_per_worker))
    pool = await WorkerPool.start(workers, cpu=client_core, lifetime=opts.lifetime_s)
    try:
        await asyncio.sleep(0.5)  # the listening socket
        k = len(pool)
        shares = [n // k + (1 if i < n % k else 0) for i in range(k)]
        args = {
            "host": "127.0.0.1",
            "port": port,
            "secret": "x" * 32,
            "th": "floor",
            "concurrency": 200,
            "timeout": 30.0,
        }
        replies = await pool.call_each("open", 60.0 + n / 500, [{**args, "count": share} for share in shares])
        citizens = sum(r["open_joined"] for r in replies)
        await pool.call_all("collect", 30.0, reset=True)
        idle_rate = await idle_cpu_rate_pid(proc.pid, 1.0)
        before, clients_before, t0 = cpu(proc.pid), pool.cpu(), time.monotonic()
        seqs = []
        for _ in range(rounds):
            seq = (await floor.call("broadcast", 30.0, text_bytes=opts.text_bytes))["seq"]
            seqs.append(seq)
            await pool.call_all("wait", opts.round_timeout_s, seq=seq, timeout=opts.round_timeout_s)
        wall = time.monotonic() - t0
        delta, clients_delta = cpu(proc.pid) - before, pool.cpu() - clients_before
        receipts = Receipts()
        for part in await pool.call_all("collect", 30.0, reset=True):
            receipts.add(part)
        deliveries = sum(receipts.counts.get(s, 0) for s in seqs)
        return {
            "scenario": "floor",
            "clients": "on the node's core" if same_core else "on the other core",
            "n": citizens,
            "rounds": rounds,
            "deliveries": deliveries,
            "check": check_delivery(receipts, seqs, citizens),
            "cpu": cpu_summary(delta, wall, idle_rate, deliveries),
            "client_cpu": {
                **clients_delta.as_dict(),
                "us_per_receipt": round(clients_delta.seconds * 1e6 / max(1, deliveries), 3),
            },
            "latency": latency_summary(receipts, seqs),
        }
    finally:
        try:
            await pool.call_all("close", 30.0)
        finally:
            await pool.stop()
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
