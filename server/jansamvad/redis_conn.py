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
- Sharing: the three parts each call `retain()` and `close()`; the last close closes the client.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    ConnectionError as RedisConnectionError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    TimeoutError as RedisTimeoutError,
    TryAgainError,
)

log = logging.getLogger("jansamvad.redis")

Address = tuple[str, int]
_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_SCHEMES = ("redis", "rediss", "unix", *_CLUSTER_SCHEMES)

# Errors that mean "Redis cannot serve this now" rather than "this request is wrong". A read-only replica answers
# writes during a failover; a cluster answers CLUSTERDOWN / TRYAGAIN while slots move.
_UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    RedisClusterException,
)


_TRANSPORT_RACE = (TypeError, AttributeError, RuntimeError)


class RedisUnavailable(ConnectionError):
    """Redis cannot be reached or cannot serve now; the caller answers `unavailable` and the client retries."""


def transport_race(exc: BaseException) -> bool:
    """A write to a connection the peer just closed, misreported by redis-py (redis/redis-py#4287, #3546).

    The transport then raises TypeError or AttributeError (asyncio: its internals are already torn down) or
    RuntimeError (uvloop: "the handler is closed") instead of ConnectionError, and redis-py lets it through. Seen
    here when a cluster primary restarts under load. They are recognised by where they were raised, so that our
    own errors of these types still surface as the bugs they are.
    """
    if not isinstance(exc, _TRANSPORT_RACE):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename if tb is not None else ""
    return any(part in filename for part in ("/redis/", "/asyncio/", "uvloop/"))  # uvloop: its .pyx sources


@dataclass(frozen=True, slots=True)
class Script:
    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def check_url(url: str) -> None:
    """Raise ValueError with a clear message when `url` is not a Redis URL this module can use."""
    scheme = urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise ValueError(f"Redis URL must start with one of {', '.join(s + '://' for s in _SCHEMES)}")
    if scheme in _CLUSTER_SCHEMES and urlsplit(url).path.strip("/") not in ("", "0"):
        raise ValueError("a Redis cluster has only database 0")


class RedisConn:
    def __init__(
        self,
        url: str,
        *,
        max_in_flight: int = 64,
        connect_timeout_s: float = 2.0,
        command_timeout_s: float = 5.0,
        client_name: str = "jansamvad",
    ) -> None:
        check_url(url)
        scheme = urlsplit(url).scheme
        self.url = url
        self._force_cluster = scheme in _CLUSTER_SCHEMES
        self._plain_url = urlunsplit(urlsplit(url)._replace(scheme=_CLUSTER_SCHEMES.get(scheme, scheme)))
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self.client_name = client_name
        self.max_in_flight = max_in_flight
        self._client: aioredis.Redis | RedisCluster | None = None
        self._cluster = False
        self._connect_lock: asyncio.Lock | None = None
        self._slots: asyncio.Semaphore | None = None
        self._refs = 0
        self._closed = False

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
            "socket_timeout": self.command_timeout_s,
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
        """One command, routed by its key in a cluster."""
        client = await self.connect()
        async with self._limit():
            try:
                return await client.execute_command(*args)
            except _UNAVAILABLE as exc:
                raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
            except _TRANSPORT_RACE as exc:
                if transport_race(exc):
                    raise RedisUnavailable(f"connection lost ({type(exc).__name__})") from exc
                raise

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
        """Run a Lua script on the node that owns its keys (which must share one hash tag)."""
        client = await self.connect()
        async with self._limit():
            try:
                try:
                    return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                except NoScriptError:
                    return await client.execute_command("EVAL", script.source, len(keys), *keys, *args)
            except _UNAVAILABLE as exc:
                raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
            except _TRANSPORT_RACE as exc:
                if transport_race(exc):
                    raise RedisUnavailable(f"connection lost ({type(exc).__name__})") from exc
                raise

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
        client = await self.connect()
        if isinstance(client, RedisCluster):
            try:
                await client.nodes_manager.initialize()
            except _UNAVAILABLE as exc:
                raise RedisUnavailable(str(exc) or type(exc).__name__) from exc

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
