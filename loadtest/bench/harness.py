"""A stage for the scenarios: one node (child process) with a live town hall, leaders, and client workers."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .leader import Leaders
from .pool import WorkerPool
from .serverproc import ServerConfig, ServerProcess
from .stats import Histogram, merge

SERVER_CORE = 0
CLIENT_CORE = 1


# The cores this process may use, as it started (a container's cpuset may allow fewer than the machine has): read
# when the bench is imported, before `make bench` pins its orchestrator.
ALL_CORES = frozenset(os.sched_getaffinity(0))


@contextlib.contextmanager
def unpinned() -> Iterator[None]:
    """The orchestrator on every core while an unpinned scenario starts its processes, then back on its own.

    A child inherits the cores of the thread that starts it: with `make bench`'s orchestrator pinned to the client
    core, the nodes, Valkey and clients of an unpinned scenario (cross-node, joins, picows, audio) would all share that
    one core. Every thread of the orchestrator is unpinned, not only this one: some children start from the default
    executor's threads (`asyncio.to_thread`), which were made while it was pinned."""
    before = {tid: os.sched_getaffinity(tid) for tid in _threads()}
    for tid in before:
        os.sched_setaffinity(tid, ALL_CORES)
    try:
        yield
    finally:
        for tid in _threads():  # threads made inside the block were made unpinned: pin them as the rest
            with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.sched_setaffinity(tid, before.get(tid, before[threading.get_native_id()]))


def _threads() -> list[int]:
    return [int(tid) for tid in os.listdir("/proc/self/task")]


@dataclass
class BenchOptions:
    quick: bool = False
    pin: bool = True  # node on core 0, client workers and the orchestrator on core 1
    conns_per_worker: int = 10_000  # each client process stays far below the 20,000 open-file cap
    open_concurrency: int = 200  # handshakes in flight per client process while joining
    text_bytes: int = 100  # speech text size
    tick_ms: float = 5.0
    reports_dir: Path = Path("loadtest/reports")
    lifetime_s: float = 3600.0  # every child process exits by itself after this
    round_timeout_s: float = 30.0  # a broadcast round that has not reached everyone by then counts its losses

    @property
    def server_core(self) -> int | None:
        return SERVER_CORE if self.pin else None

    @property
    def client_core(self) -> int | None:
        return CLIENT_CORE if self.pin else None


@dataclass
class Receipts:
    """What the citizens received, merged over the client workers."""

    counts: Counter[int] = field(default_factory=Counter)
    max_lat_ns: dict[int, int] = field(default_factory=dict)
    min_lat_ns: dict[int, int] = field(default_factory=dict)
    hist: Histogram = field(default_factory=dict)
    gaps: int = 0
    dups: int = 0
    bad_frames: int = 0
    closes: Counter[str] = field(default_factory=Counter)
    other: Counter[str] = field(default_factory=Counter)

    def add(self, part: dict[str, Any]) -> None:
        for seq, count in part["counts"].items():
            self.counts[int(seq)] += count
        for seq, lat in part["max_lat_ns"].items():
            self.max_lat_ns[int(seq)] = max(lat, self.max_lat_ns.get(int(seq), 0))
        for seq, lat in part["min_lat_ns"].items():
            self.min_lat_ns[int(seq)] = min(lat, self.min_lat_ns.get(int(seq), lat))
        merge(self.hist, part["hist"])
        self.gaps += part["gaps"]
        self.dups += part["dups"]
        self.bad_frames += part["bad_frames"]
        self.closes.update(part["closes"])
        self.other.update(part["other"])

    def add_receipts(self, other: Receipts) -> None:
        """Merge another process's or node's Receipts (the same fields as a worker's collect reply)."""
        self.add(vars(other))


class Stage:
    def __init__(self, opts: BenchOptions, server: ServerProcess, pool: WorkerPool, th: str, secret: str) -> None:
        self.opts = opts
        self.server = server
        self.pool = pool
        self.th = th
        self.secret = secret
        self.leaders = Leaders("127.0.0.1", server.port, secret, th)
        self.citizens = 0  # joined and open, over all workers

    @classmethod
    async def create(
        cls,
        opts: BenchOptions,
        max_citizens: int,
        label: str,
        *,
        secret: str | None = None,
        th: str | None = None,
        first_worker: int = 0,
        workers: int | None = None,
        **server_kw: Any,
    ) -> Stage:
        """Start a node and client workers; create a town hall and go live, or (with `th`) join one that exists
        already, on another node of the same cluster, which needs the same `secret`."""
        secret = secret or secrets.token_urlsafe(32)
        config = ServerConfig(
            secret=secret,
            admin_key=secrets.token_urlsafe(18),
            log_path=opts.reports_dir / f"server-{label}.log",
            cpu=opts.server_core,
            tick_ms=opts.tick_ms,
            **server_kw,
        )
        server = ServerProcess(config)
        await server.start()
        workers = workers or max(1, math.ceil(max_citizens / opts.conns_per_worker))
        pool = None
        try:
            pool = await WorkerPool.start(
                workers, cpu=opts.client_core, lifetime=opts.lifetime_s, first_index=first_worker
            )
            stage = cls(opts, server, pool, th or await server.create_townhall(f"बेंचमार्क {label}"), secret)
            if th is None:
                await stage.leaders.go_live()
        except BaseException:
            if pool is not None:
                await pool.stop()
            await server.stop()
            raise
        return stage

    async def add_citizens(self, n: int) -> dict[str, Any]:
        """Open and join `n` more citizens, spread evenly over the workers; wall time and failures."""
        k = len(self.pool)
        shares = [n // k + (1 if i < n % k else 0) for i in range(k)]
        timeout = 60.0 + n / 100  # bounded and generous: joins run at hundreds to thousands per second
        started = time.monotonic()
        replies = await self.pool.call_each(
            "open",
            timeout,
            [
                {
                    "host": "127.0.0.1",
                    "port": self.server.port,
                    "secret": self.secret,
                    "th": self.th,
                    "count": share,
                    "concurrency": self.opts.open_concurrency,
                    "timeout": 30.0,
                }
                for share in shares
            ],
        )
        joined = sum(r["joined"] for r in replies)
        self.citizens = sum(r["open_joined"] for r in replies)
        failed: Counter[str] = Counter()
        for r in replies:
            failed.update(r["failed"])
        return {
            "requested": n,
            "joined": joined,
            "failed": dict(failed),
            "retries": sum(r["retries"] for r in replies),
            "wall_s": round(time.monotonic() - started, 3),
            "client_rss_kb": sum(r["client_rss_kb"] for r in replies),
        }

    async def wait_delivered(self, seq: int) -> bool:
        """Until every citizen has event `seq` (or the round timeout); True when all have it."""
        replies = await self.pool.call_all(
            "wait", self.opts.round_timeout_s, seq=seq, timeout=self.opts.round_timeout_s
        )
        return all(r["ok"] for r in replies)

    async def collect(self) -> Receipts:
        receipts = Receipts()
        for part in await self.pool.call_all("collect", 30.0, reset=True):
            receipts.add(part)
        return receipts

    async def settle(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def close(self) -> None:
        try:
            self.leaders.close()
            try:
                await self.pool.call_all("close", 30.0)
            finally:
                await self.pool.stop()
        finally:
            await self.server.stop()
