"""One connection to Redis, standalone or cluster, shared by a node's broker, store and presence.

URLs: `redis://host:port/db` (or `rediss://`, `unix://`) is probed with INFO: a server with cluster mode on gets the
cluster client anyway. `redis+cluster://host:port` (or `rediss+cluster://`) says so up front; any reachable node
will do, the client discovers the rest and follows MOVED / ASK redirections itself.

Why a wrapper rather than the bare redis-py client:
- Errors: redis-py's ConnectionError and TimeoutError are not the builtin ones the session layer catches to answer
  `unavailable`, so every call translates them into RedisUnavailable (a builtin ConnectionError).
- Bounded concurrency: the async cluster client fails at once with MaxConnectionsError beyond 100 connections per
  node instead of waiting, so every call first takes one of `max_in_flight` (< 100) slots.
- Scripts: EVALSHA, falling back to EVAL (which also caches the script) after a restart or failover emptied the
  script cache.
- Bounded waits: a server that accepts TCP but never answers (SIGSTOP, a hung host) would otherwise hold every
  action for redis-py's socket timeout and its retries (5 s, 10 s, more in a cluster). Every call has one deadline
  (`command_timeout_s`, covering the in-flight slot, the redirections and the retries); a server that missed it is
  marked sick, and calls routed to it fail at once with RedisUnavailable until a background probe sees it answer
  again (or, in a cluster, sees its slots served by another primary after a failover). Health is per server, so
  per slot: town halls on the other shards are not slowed.
- Durability: with `ack_durability` "replica" or "aof", `settle(key)` returns only once the writes made so far to
  the key's slot are on a replica (WAIT) or in the primary's AOF (WAITAOF), so an `ack` survives a failover.
- Sharing: the three parts each call `retain()` and `close()`; the last close closes the client.

Its parts of their own: redis_urls.py (the URL schemes, check and redaction), redis_errors.py (which errors mean
`unavailable`) and redis_health.py (the per-server sick marks and their probes, a mixin of RedisConn).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from jansamvad.redis_errors import (
    TRANSPORT_RACE as _TRANSPORT_RACE,
    UNAVAILABLE as _UNAVAILABLE,
    RedisUnavailable,
    transport_race,
)
from jansamvad.redis_health import SOCKET_SLACK_S as _SOCKET_SLACK_S, Address, ServerHealth
from jansamvad.redis_keys import sync_key
from jansamvad.redis_urls import CLUSTER_SCHEMES as _CLUSTER_SCHEMES, check_url, redact

# What callers have always imported from here (they stay importable from this module).
__all__ = [
    "ACK_DURABILITY",
    "Address",
    "RedisConn",
    "RedisUnavailable",
    "Script",
    "check_url",
    "redact",
    "transport_race",
]

log = logging.getLogger("jansamvad.redis")

ACK_DURABILITY = ("none", "replica", "aof")  # what an `ack` waits for besides the primary (settings.ack_durability)
SYNC_TTL_MS = 60_000  # the durability barrier key expires: it only has to exist for the WAIT that follows it


@dataclass(frozen=True, slots=True)
class Script:
    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


class RedisConn(ServerHealth):
    def __init__(
        self,
        url: str,
        *,
        max_in_flight: int = 64,
        connect_timeout_s: float = 2.0,
        command_timeout_s: float = 1.0,
        probe_interval_s: float = 0.25,
        ack_durability: str = "none",
        ack_wait_ms: int = 500,
        client_name: str = "jansamvad",
    ) -> None:
        check_url(url)
        if ack_durability not in ACK_DURABILITY:
            raise ValueError(f"ack durability must be one of {', '.join(ACK_DURABILITY)}")
        scheme = urlsplit(url).scheme
        self.url = url
        self._force_cluster = scheme in _CLUSTER_SCHEMES
        self._plain_url = urlunsplit(urlsplit(url)._replace(scheme=_CLUSTER_SCHEMES.get(scheme, scheme)))
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s  # one call's whole deadline (settings.redis_command_timeout_s)
        self.probe_interval_s = probe_interval_s
        self.ack_durability = ack_durability
        self.ack_wait_ms = ack_wait_ms
        self.client_name = client_name
        self.max_in_flight = max_in_flight
        self._client: aioredis.Redis | RedisCluster | None = None
        self._cluster = False
        self._connect_lock: asyncio.Lock | None = None
        self._slots: asyncio.Semaphore | None = None
        self._refs = 0
        self._closed = False
        self._sick: dict[Address, float] = {}  # server -> loop time it missed a deadline; cleared by its probe
        self._probes: dict[Address, asyncio.Task[None]] = {}
        self.deadline_misses = 0  # calls that ran out of time (a metric for operators)
        # Called when a probe finds the cluster's primaries changed (a stopped primary failed over): the broker
        # moves its subscriptions then, instead of waiting for its own subscriber to give the old primary up.
        self.on_topology_changed: list[Callable[[], None]] = []

    # Sharing

    def retain(self) -> RedisConn:
        self._refs += 1
        return self

    async def close(self) -> None:
        """Release one reference; the last one closes the client."""
        self._refs -= 1
        if self._refs > 0 or self._closed:
            return
        self._closed = True
        probes = list(self._probes.values())
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # Connecting

    @property
    def cluster(self) -> bool:
        return self._cluster

    async def connect(self) -> aioredis.Redis | RedisCluster:
        """The client, connecting on first use. Raises RedisUnavailable with the (redacted) URL and the reason."""
        if self._client is not None:
            return self._client
        if self._closed:
            raise RedisUnavailable("the Redis connection is closed")
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._client is None:
                try:
                    self._client = await self._open()
                except _UNAVAILABLE as exc:
                    raise RedisUnavailable(f"cannot reach Redis at {redact(self.url)}: {exc}") from exc
        return self._client

    def _options(self) -> dict[str, Any]:
        return {
            "socket_connect_timeout": self.connect_timeout_s,
            "socket_timeout": self.command_timeout_s + _SOCKET_SLACK_S,
            "client_name": self.client_name,
            "protocol": 2,  # the same replies on every redis-py version we support
            # One retry, no backoff: replaces a pooled connection that died with a restarted server, yet fails fast
            # (and so answers `unavailable` fast) while Redis is really down. A fresh object per client: the
            # cluster client adds its own errors to the retry's list.
            "retry": Retry(NoBackoff(), 1),
        }

    async def _open(self) -> aioredis.Redis | RedisCluster:
        if not self._force_cluster:
            standalone = aioredis.Redis.from_url(self._plain_url, **self._options())
            try:
                info = await standalone.info("cluster")
            except BaseException:
                await standalone.aclose()
                raise
            if not info.get("cluster_enabled"):
                return standalone
            await standalone.aclose()
            if parse_url(self._plain_url).get("db"):
                raise RedisClusterException("the server runs in cluster mode, which has only database 0")
        cluster = RedisCluster.from_url(
            self._plain_url, max_connections=max(100, self.max_in_flight), **self._options()
        )
        try:
            await cluster.initialize()
        except BaseException:
            await cluster.aclose()
            raise
        self._cluster = True
        return cluster

    # Commands

    def _limit(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_in_flight)
        return self._slots

    async def execute(self, *args: Any) -> Any:
        """One command, routed by its key (the first argument, as in every command this project sends)."""
        return await self._call(args[1] if len(args) > 1 else None, lambda client: client.execute_command(*args))

    async def execute_together(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Several commands, their replies in order. On a standalone server they leave in one write on one connection
        and come back in one read (a join batch's two restriction MGETs cost the node ~40 % less CPU than as two
        calls: one deadline, one pooled connection, one wake-up); in a cluster, where their keys may live on
        different nodes, each is a call of its own, all at once."""
        client = await self.connect()
        if isinstance(client, RedisCluster):
            return list(await asyncio.gather(*(self.execute(*command) for command in commands)))
        read_timeout_s = self.command_timeout_s + _SOCKET_SLACK_S  # the pool's socket timeout: the deadline comes first

        async def call(client: aioredis.Redis) -> list[Any]:
            pool: ConnectionPool = client.connection_pool
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                # Tried again once on a dead pooled connection (a restarted server), as execute_command is.
                replies: list[Any] = await connection.retry.call_with_retry(
                    lambda: _pipelined(connection, list(commands), read_timeout_s),
                    lambda _: connection.disconnect(nowait=True),
                )
                return replies
            finally:
                await pool.release(connection)

        return list(await self._call(commands[0][1], call))

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
        """Run a Lua script on the node that owns its keys (which must share one hash tag)."""

        async def call(client: aioredis.Redis | RedisCluster) -> Any:
            try:
                return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                return await client.execute_command("EVAL", script.source, len(keys), *keys, *args)

        return await self._call(keys[0] if keys else None, call)

    async def _call(self, key: str | None, call: Any, extra_s: float = 0.0) -> Any:
        """`call(client)` within the deadline, unless the server that owns `key` is known to be sick."""
        address: Address | None = None
        sent = False  # past the in-flight slot: a deadline missed from here on is the server's doing
        # Connecting is not a call: the first one discovers the cluster (CLUSTER SLOTS, COMMAND), which takes longer
        # than a command on a loaded machine; it is bounded by the connect and socket timeouts, and happens once, when
        # the node starts (the broker connects first).
        client = await self.connect()
        try:
            async with asyncio.timeout(self.command_timeout_s + extra_s):
                address = self._server_for(key)
                async with self._limit():
                    sent = True
                    return await call(client)
        except TimeoutError:  # the builtin one: our deadline (redis-py's own is a RedisTimeoutError)
            self.deadline_misses += 1
            if sent and address is not None:
                self._mark_sick(address)
            where = f" at {address[0]}:{address[1]}" if address else ""
            raise RedisUnavailable(
                f"Redis{where} did not answer within {self.command_timeout_s + extra_s:g} s"
            ) from None
        except _UNAVAILABLE as exc:
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
        except _TRANSPORT_RACE as exc:
            if transport_race(exc):
                raise RedisUnavailable(f"connection lost ({type(exc).__name__})") from exc
            raise

    # Durability of acknowledged writes

    async def settle(self, key: str) -> None:
        """Return once every write made so far to `key`'s slot is on a replica ("replica") or in the primary's
        AOF ("aof"); at once for "none". Raises RedisUnavailable when that does not happen within `ack_wait_ms`:
        the caller answers `unavailable` and the client resends with the same key (every acked action is
        idempotent, and the resend settles again before its `dup` ack).

        WAIT and WAITAOF count the writes of their own connection only, and the writes to settle may have gone out
        on another pooled connection, or not at all (a resend that found its question stored). So one connection
        sends a barrier first, a SET of the slot's sync key: the replication stream is in order, so once the barrier
        is on the replica (or in the AOF), so is everything written to that primary before it.
        """
        if self.ack_durability == "none":
            return
        barrier = sync_key(key)
        if self.ack_durability == "replica":
            wait: tuple[Any, ...] = ("WAIT", 1, self.ack_wait_ms)
        else:
            wait = ("WAITAOF", 1, 0, self.ack_wait_ms)

        read_timeout_s = self.command_timeout_s + self.ack_wait_ms / 1000 + _SOCKET_SLACK_S  # the deadline comes first

        async def call(client: aioredis.Redis | RedisCluster) -> Any:
            commands = [("SET", barrier, "1", "PX", SYNC_TTL_MS), wait]
            if isinstance(client, RedisCluster):
                node = client.nodes_manager.get_node_from_slot(client.keyslot(barrier))
                connection = node.acquire_connection()
                try:
                    return (await _pipelined(connection, commands, read_timeout_s))[-1]
                finally:
                    node.release(connection)
            pool: ConnectionPool = client.connection_pool
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                return (await _pipelined(connection, commands, read_timeout_s))[-1]
            finally:
                await pool.release(connection)

        try:
            reply = await self._call(barrier, call, extra_s=self.ack_wait_ms / 1000)
        except RedisError as exc:  # an error reply: MOVED during a failover, WAITAOF without appendonly
            if "appendonly" in str(exc):
                log.error("--ack-durability aof needs `appendonly yes` on every primary: %s", exc)
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
        done = int(reply) if self.ack_durability == "replica" else int(reply[0])
        if done < 1:
            what = "a replica" if self.ack_durability == "replica" else "the AOF"
            raise RedisUnavailable(f"the write did not reach {what} within {self.ack_wait_ms} ms")

    async def keys_with_prefix(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, which must contain a hash tag (all such keys share one slot).

        In a cluster this asks the slot's owner for the slot's keys (CLUSTER GETKEYSINSLOT: work proportional to the
        slot, not to the whole keyspace); standalone it SCANs with a MATCH pattern. For rare maintenance work (the
        retention of an ended town hall), never for a request's hot path.
        """
        client = await self.connect()
        try:
            if isinstance(client, RedisCluster):
                slot = client.keyslot(prefix)
                node = client.nodes_manager.get_node_from_slot(slot)
                count = int(await client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot, target_nodes=node))
                found = (
                    await client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, count, target_nodes=node)
                    if count
                    else []
                )
            else:
                pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
                found = [key async for key in client.scan_iter(match=pattern, count=1000)]
        except _UNAVAILABLE as exc:
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
        names = (key.decode() if isinstance(key, bytes) else str(key) for key in found)
        return sorted(name for name in names if name.startswith(prefix))

    # Topology, for the broker's subscriber connections (one per primary)

    def primaries(self) -> list[Address]:
        client = self._client
        assert client is not None, "connect() first"
        if isinstance(client, RedisCluster):
            return sorted((node.host, int(node.port)) for node in client.get_primaries())
        kwargs = client.connection_pool.connection_kwargs
        return [(str(kwargs.get("host") or kwargs.get("path") or "localhost"), int(kwargs.get("port") or 0))]

    def owner(self, name: str) -> Address:
        """The primary that owns a key or shard channel (raises SlotNotCoveredError while the cluster reshapes)."""
        client = self._client
        assert client is not None, "connect() first"
        if isinstance(client, RedisCluster):
            node = client.nodes_manager.get_node_from_slot(client.keyslot(name))
            return (node.host, int(node.port))
        return self.primaries()[0]

    async def refresh_topology(self) -> None:
        """Ask the cluster again who owns which slots (after MOVED, a failover or a lost subscription)."""
        await self.connect()
        try:
            await self._refresh(defer=next(iter(self._sick), None))
        except _UNAVAILABLE as exc:
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc

    async def _refresh(self, *, defer: Address | None) -> None:
        client = self._client
        if isinstance(client, RedisCluster):
            # A sick server is asked last: it would hold the refresh for a whole socket timeout.
            await client.nodes_manager.initialize(last_failed_node_name=f"{defer[0]}:{defer[1]}" if defer else None)

    def new_connection(self, address: Address) -> AbstractConnection:
        """A dedicated, unpooled RESP2 connection to one server (for a pub/sub reader, which owns it)."""
        kwargs: dict[str, Any] = dict(parse_url(self._plain_url))
        connection_class: type[AbstractConnection] = kwargs.pop("connection_class", Connection)
        if "path" not in kwargs:
            kwargs["host"], kwargs["port"] = address
        kwargs.pop("db", None)  # pub/sub ignores the database; a cluster has only 0
        kwargs.update(
            socket_connect_timeout=self.connect_timeout_s,
            socket_timeout=None,  # reads pass their own timeout; idleness is fine on a subscriber
            client_name=self.client_name + ":sub",
            protocol=2,
            retry=Retry(NoBackoff(), 0),  # the reader reconnects itself, with backoff and resubscription
        )
        return connection_class(**kwargs)


async def _pipelined(
    connection: AbstractConnection, commands: list[tuple[Any, ...]], read_timeout_s: float
) -> list[Any]:
    """Send `commands` in one write on one connection and return their replies (an error reply raises).

    Each reply may take `read_timeout_s` (a WAIT longer than the socket timeout must not be cut short). A failure,
    time-out or cancellation between the replies would leave a reply unread for the connection's next user: the
    connection is dropped then (redis-py reconnects it on its next use).
    """
    try:
        await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
        replies = []
        for _ in commands:
            reply = await connection.read_response(timeout=read_timeout_s, disconnect_on_error=False)
            if reply is None:  # redis-py's answer to a read that timed out
                raise RedisUnavailable(f"no reply within {read_timeout_s:g} s")
            replies.append(reply)
    except BaseException:
        await connection.disconnect(nowait=True)
        raise
    return replies
