"""Opening many connections: bind before connect from many loopback source addresses, bounded concurrency and retries.

Linux keeps 28,232 ephemeral ports per (source IP, destination) pair, so a few hundred connections per source address
from all of 127.0.0.0/8 leave the port range and the node's per-IP admission limit far behind.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from .conn import BenchConn, Closed, HelloFailed, Rejected

CONNS_PER_SOURCE_IP = 200
MAX_ATTEMPTS = 5  # per connection: the first try and at most four retries after an HTTP 503
MAX_RETRY_WAIT_S = 5.0

C = TypeVar("C", bound=BenchConn)


def source_ip(group: int, index: int, per_ip: int = CONNS_PER_SOURCE_IP) -> str:
    """127.<group+1>.x.y: a distinct address block per client process, `per_ip` connections per address."""
    slot = index // per_ip
    if not 0 <= group < 250 or slot >= 250 * 250:
        raise ValueError("source address space exhausted")
    return f"127.{group + 1}.{slot // 250}.{slot % 250 + 1}"


@dataclass
class OpenResult:
    conns: list[BenchConn] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    started_ns: int = 0
    finished_ns: int = 0
    connect_ms: list[float] = field(default_factory=list)  # connect + upgrade + hello + welcome, per connection


async def open_one(
    factory: Callable[[asyncio.Future[dict[str, object]]], C],
    host: str,
    port: int,
    local_ip: str,
    timeout: float,
    result: OpenResult,
) -> C | None:
    loop = asyncio.get_running_loop()
    for attempt in range(MAX_ATTEMPTS):
        joined: asyncio.Future[dict[str, object]] = loop.create_future()
        started = time.monotonic_ns()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    functools.partial(factory, joined), host, port, local_addr=(local_ip, 0)
                )
                await joined
            result.connect_ms.append((time.monotonic_ns() - started) / 1e6)
            return conn
        except Rejected as rejected:
            if rejected.status != 503 or attempt == MAX_ATTEMPTS - 1:
                result.failed[f"http_{rejected.status}"] += 1
                return None
            result.retries += 1
            await asyncio.sleep(min(MAX_RETRY_WAIT_S, rejected.retry_after) * random.uniform(0.5, 1.0))
        except Closed as closed:
            result.failed[f"close_{closed.code}"] += 1
            return None
        except HelloFailed as failed:
            result.failed[f"error_{failed.code}"] += 1
            return None
        except TimeoutError:
            result.failed["timeout"] += 1
            return None
        except OSError as exc:
            result.failed[f"os_{exc.errno}"] += 1
            return None
    return None


async def open_many(
    count: int,
    factory: Callable[[int, asyncio.Future[dict[str, object]]], BenchConn],
    host: str,
    port: int,
    ips: Sequence[str],
    *,
    concurrency: int,
    timeout: float,
) -> OpenResult:
    """Open `count` connections with at most `concurrency` handshakes in flight; `ips[i]` is connection i's source."""
    result = OpenResult(started_ns=time.monotonic_ns())
    next_index = 0

    give_up = max(50, count // 20)  # a broken node must not cost count × timeout: stop after this many failures

    async def runner() -> None:
        nonlocal next_index
        while next_index < count and result.failed.total() < give_up:
            i = next_index
            next_index += 1
            conn = await open_one(functools.partial(factory, i), host, port, ips[i], timeout, result)
            if conn is not None:
                result.conns.append(conn)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, count)):
            group.create_task(runner())
    result.finished_ns = time.monotonic_ns()
    return result
