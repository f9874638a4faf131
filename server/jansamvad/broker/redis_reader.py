"""One sharded pub/sub reader: a dedicated connection to one Redis server (a primary, in a cluster) and its task.

The broker runs one reader per primary, never one per channel or per listener, and never polls several servers
from one task (redis-py's `get_sharded_message()` without `target_node` waits on each node in turn and adds up to
its timeout of latency per message).

The reader owns its connection and its lifecycle:
- it reconnects with exponential backoff and full jitter, and after every (re)connect subscribes again to what the
  broker says this server must carry (the hub's live channels, routed by slot);
- it PINGs when the connection has been quiet for `health_interval_s` and gives the connection up when nothing at
  all came back for `dead_after_s`, so a silently dead connection (a crashed host, a dropped NAT entry) is noticed;
- it hands every message to the broker synchronously, in the order the server sent it, which for one channel is
  seq order (seq assignment and SPUBLISH happen in one script on the server that owns the channel's slot).

Commands (SSUBSCRIBE, SUNSUBSCRIBE, PING) are written under one lock, so they reach the server in the order the
decisions to send them were made; replies arrive on the reader task, which resolves the matching waiters.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import MovedError, RedisError, ResponseError

from jansamvad.redis_conn import Address, RedisUnavailable, transport_race

log = logging.getLogger("jansamvad.broker.redis")


class Moved(RedisUnavailable):
    """The server does not own the channel's slot any more; the broker refreshes the topology and tries again."""


class ReaderOwner(Protocol):
    """The broker's side of a reader."""

    def on_message(self, channel: bytes, payload: bytes) -> None: ...

    def on_subscribed(self, reader: ShardReader, channel: bytes) -> None:
        """The server confirmed a subscription (first time or after a reconnect)."""
        ...

    def on_topology_changed(self, reader: ShardReader) -> None:
        """MOVED, a subscription the server dropped by itself (its slot moved), or the server keeps failing."""
        ...

    def channels_for(self, reader: ShardReader) -> list[bytes]:
        """What this reader must be subscribed to right after it (re)connects."""
        ...


def _consume(fut: asyncio.Future[None]) -> None:
    # A waiter may fail after every caller gave up on it; retrieving the exception keeps asyncio quiet about it.
    if not fut.cancelled():
        fut.exception()


class ShardReader:
    def __init__(
        self,
        address: Address,
        connect: Callable[[], AbstractConnection],  # a fresh, unconnected connection to `address`
        owner: ReaderOwner,
        *,
        health_interval_s: float = 1.0,
        dead_after_s: float = 3.0,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 2.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.address = address
        self._connect = connect
        self._owner = owner
        self._health_interval_s = health_interval_s
        self._dead_after_s = dead_after_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._connect_timeout_s = connect_timeout_s
        self.up = False
        self.active: set[bytes] = set()  # SSUBSCRIBE sent on the current connection and not taken back
        self.confirmed: set[bytes] = set()  # ... and confirmed by the server
        self._unsub_pending: Counter[bytes] = Counter()  # SUNSUBSCRIBE sent, reply not yet seen
        self._waiters: dict[bytes, asyncio.Future[None]] = {}
        self._conn: AbstractConnection | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0  # consecutive failed connection attempts
        self._was_up = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"jansamvad-redis-reader-{self.address}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._lost(RedisUnavailable("the broker is closing"))

    # Subscriptions (called by the broker)

    async def subscribe(self, channel: bytes, *, wait: float | None) -> None:
        """Subscribe unless already subscribed; with `wait`, return once the server confirmed (or raise)."""
        async with self._lock:
            conn = self._conn
            if not self.up or conn is None:
                raise RedisUnavailable(f"no subscriber connection to {self.address[0]}:{self.address[1]}")
            if channel in self.confirmed:
                return
            fut = self._waiters.get(channel)
            if fut is None:
                fut = self._waiters[channel] = asyncio.get_running_loop().create_future()
                fut.add_done_callback(_consume)
            if channel not in self.active:
                self.active.add(channel)
                await self._send(conn, "SSUBSCRIBE", channel)
        if wait is not None:
            # Shielded: one caller timing out must not cancel the confirmation others wait for.
            await asyncio.wait_for(asyncio.shield(fut), wait)

    async def unsubscribe(self, channel: bytes) -> None:
        async with self._lock:
            if channel not in self.active:
                return
            self.active.discard(channel)
            self.confirmed.discard(channel)
            conn = self._conn
            if self.up and conn is not None:
                self._unsub_pending[channel] += 1
                await self._send(conn, "SUNSUBSCRIBE", channel)

    def forget(self, channel: bytes) -> None:
        """The channel's slot lives elsewhere now; the server already dropped (or refused) the subscription."""
        self.active.discard(channel)
        self.confirmed.discard(channel)
        fut = self._waiters.pop(channel, None)
        if fut is not None and not fut.done():
            fut.set_exception(Moved(f"{channel!r} moved away from {self.address[0]}:{self.address[1]}"))

    async def _send(self, conn: AbstractConnection, *args: Any) -> None:
        # Only ever on the current, connected connection: redis-py would otherwise silently open a new socket.
        if conn is not self._conn or not conn.is_connected:
            raise RedisUnavailable("the subscriber connection is gone")
        try:
            # A peer that stopped reading fills the socket buffer; then the write would wait forever.
            async with asyncio.timeout(self._dead_after_s):
                await conn.send_command(*args, check_health=False)
        except (RedisError, OSError, TypeError, AttributeError, RuntimeError) as exc:  # TimeoutError is an OSError
            if not isinstance(exc, (RedisError, OSError)) and not transport_race(exc):
                raise
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc

    # The connection's life

    def _backoff(self) -> float:
        # Full jitter: readers of many nodes that lost the same server do not come back in lockstep.
        ceiling = min(self._backoff_max_s, self._backoff_base_s * 2 ** min(self.failures, 16))
        return random.uniform(self._backoff_base_s / 2, ceiling)

    async def _run(self) -> None:
        while True:
            conn: AbstractConnection = self._connect()
            try:
                # Bounded as a whole: a server that accepts TCP but never answers (stopped, overloaded) must not
                # hold the reader in the handshake forever.
                async with asyncio.timeout(self._connect_timeout_s):
                    await conn.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                    await self._resubscribe(conn)
                self.failures = 0
                await self._read(conn)
            except Exception as exc:
                # Whatever went wrong, the reader lives on and reconnects: a dead reader would be a node that
                # silently stops hearing its town halls. Only surprises get a traceback.
                if not isinstance(exc, (RedisError, OSError)) and not transport_race(exc):
                    log.exception("redis subscriber %s:%s failed", *self.address)
                elif self.up or self.failures == 0:
                    log.warning("redis subscriber %s:%s down: %s", *self.address, exc or type(exc).__name__)
                self.failures += 1
                if self.failures >= 2:
                    self._owner.on_topology_changed(self)
            finally:
                await self._drop(conn)
            await asyncio.sleep(self._backoff())

    async def _resubscribe(self, conn: AbstractConnection) -> None:
        # Under the lock, so a subscribe() call either saw `up` False and raised (and its channel is in the list
        # computed here, because the hub had it first) or comes after and finds it subscribed.
        async with self._lock:
            self._conn = conn
            channels = self._owner.channels_for(self)
            self.active.update(channels)
            if channels:
                # One SSUBSCRIBE per channel: in a cluster the channels of one command must share a slot.
                await conn.send_packed_command(
                    conn.pack_commands([("SSUBSCRIBE", channel) for channel in channels]), check_health=False
                )
            self.up = True
        if self._was_up:
            log.info("redis subscriber %s:%s back, %d channels subscribed again", *self.address, len(channels))
        self._was_up = True

    async def _read(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        last_rx = last_ping = loop.time()
        while True:
            try:
                msg = await conn.read_response(timeout=self._health_interval_s)
            except MovedError as exc:
                log.info("redis subscriber %s:%s: %s", *self.address, exc)
                self._moved()
                continue
            except ResponseError as exc:
                log.warning("redis subscriber %s:%s: error reply %s", *self.address, exc)
                continue
            now = loop.time()
            if msg is not None:
                last_rx = now
                self._dispatch(msg)
            if now - last_rx > self._dead_after_s:
                raise RedisUnavailable(f"no reply to PING for {now - last_rx:.1f} s")
            if now - last_rx >= self._health_interval_s and now - last_ping >= self._health_interval_s:
                last_ping = now
                async with self._lock:
                    await self._send(conn, "PING")

    def _dispatch(self, msg: Any) -> None:
        if not isinstance(msg, list) or len(msg) < 2:
            return  # PONG outside subscribed mode: liveness only
        kind = msg[0]
        if kind == b"smessage":
            self._owner.on_message(msg[1], msg[2])
        elif kind == b"ssubscribe":
            channel = msg[1]
            # Resolve the waiter even when the channel was unsubscribed meanwhile: that call superseded this one.
            fut = self._waiters.pop(channel, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
            if channel in self.active:
                self.confirmed.add(channel)
                self._owner.on_subscribed(self, channel)
        elif kind == b"sunsubscribe":
            channel = msg[1]
            if self._unsub_pending[channel] > 0:
                self._unsub_pending[channel] -= 1
                if not self._unsub_pending[channel]:
                    del self._unsub_pending[channel]
            elif channel in self.active:
                # Not ours: the server dropped it because the slot moved to another node (resharding, failover).
                self.forget(channel)
                self._owner.on_topology_changed(self)

    def _moved(self) -> None:
        # A MOVED reply does not say which channel; every unconfirmed one may be affected. Their callers retry after
        # the broker refreshed the topology; confirmed ones stay.
        for channel in list(self.active - self.confirmed):
            self.forget(channel)
        self._owner.on_topology_changed(self)

    def _lost(self, exc: Exception) -> None:
        self.up = False
        self._conn = None
        self.active.clear()
        self.confirmed.clear()
        self._unsub_pending.clear()
        waiters, self._waiters = self._waiters, {}
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(exc)

    async def _drop(self, conn: AbstractConnection) -> None:
        self._lost(RedisUnavailable(f"the subscriber connection to {self.address[0]}:{self.address[1]} was lost"))
        await conn.disconnect(nowait=True)
