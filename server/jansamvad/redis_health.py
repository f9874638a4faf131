"""Health of each Redis server, so of each slot: a server that missed a call's deadline is marked sick, calls routed
to it fail at once with RedisUnavailable, and a background probe clears it when it answers a PING again (or, in a
cluster, when its slots are served by another primary after a failover). Town halls on the other shards are not
slowed meanwhile.

A mixin of RedisConn (redis_conn.py), which marks a server when `_call` misses its deadline and cancels the probes
when it closes; apart so that the connection's commands and the health rules each read on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError, SlotNotCoveredError

from jansamvad.redis_errors import TRANSPORT_RACE, RedisUnavailable, transport_race

log = logging.getLogger("jansamvad.redis")

Address = tuple[str, int]
# redis-py's own read timeout stays above the call's deadline by this much, so the deadline (ours) always fires
# first: redis-py's timeout would make the cluster client re-discover the topology inline, through a server that
# may be the stopped one, and close every connection when that fails.
SOCKET_SLACK_S = 1.0


class ServerHealth:
    _sick: dict[Address, float]  # server -> loop time it missed a deadline; cleared by its probe
    _probes: dict[Address, asyncio.Task[None]]
    _client: aioredis.Redis | RedisCluster | None
    _closed: bool
    _cluster: bool
    command_timeout_s: float
    probe_interval_s: float
    on_topology_changed: list[Callable[[], None]]
    # RedisConn's topology: who owns a key, the primaries, a refresh of the slot map, a dedicated connection.
    owner: Callable[[str], Address]
    primaries: Callable[[], list[Address]]
    _refresh: Callable[..., Awaitable[None]]
    new_connection: Callable[[Address], AbstractConnection]

    def _server_for(self, key: str | None) -> Address | None:
        """The server a call for `key` goes to; raises RedisUnavailable at once if it is sick or unknown."""
        if key is None or self._client is None:
            return None
        try:
            address = self.owner(key)
        except SlotNotCoveredError as exc:
            raise RedisUnavailable(f"no Redis server holds the slot of {key!r} now") from exc
        since = self._sick.get(address)
        if since is not None:
            raise RedisUnavailable(f"Redis at {address[0]}:{address[1]} is not answering; retry")
        return address

    def sick(self) -> list[Address]:
        """Servers that missed a deadline and have not answered a probe since."""
        return sorted(self._sick)

    def _mark_sick(self, address: Address) -> None:
        if address in self._sick or self._closed:
            return
        log.warning("redis %s:%s missed a deadline; failing its calls fast until it answers", *address)
        self._sick[address] = asyncio.get_running_loop().time()
        self._probes[address] = asyncio.get_running_loop().create_task(
            self._probe(address), name=f"jansamvad-redis-probe-{address[0]}:{address[1]}"
        )

    async def _probe(self, address: Address) -> None:
        """Until `address` answers a PING (or, in a cluster, no longer owns any slot): then its calls go through."""
        try:
            while address in self._sick and not self._closed:
                await asyncio.sleep(self.probe_interval_s)
                if self._cluster:
                    before = self.primaries()
                    with contextlib.suppress(Exception):  # the probe lives on whatever the refresh hits
                        # Bounded: the refresh asks every known server in turn and waits out a stopped one.
                        async with asyncio.timeout(4 * (self.command_timeout_s + SOCKET_SLACK_S)):
                            await self._refresh(defer=address)
                    if self.primaries() != before:
                        for listener in self.on_topology_changed:
                            listener()
                    if address not in self.primaries():
                        break  # failed over: its slots are served elsewhere now
                if await self._answers(address):
                    break
            else:
                return
            log.info("redis %s:%s is back (it answers, or its slots moved to another primary)", *address)
            self._sick.pop(address, None)
        finally:
            self._probes.pop(address, None)

    async def _answers(self, address: Address) -> bool:
        connection = self.new_connection(address)
        try:
            async with asyncio.timeout(self.command_timeout_s):
                await connection.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                await connection.send_command("PING", check_health=False)
                await connection.read_response()
            return True
        except (TimeoutError, RedisError, OSError):
            return False
        except TRANSPORT_RACE as exc:
            if transport_race(exc):
                return False
            raise
        finally:
            await connection.disconnect(nowait=True)
