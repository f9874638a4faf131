"""Shared fixtures: every async test runs on asyncio and on uvloop, with a hard timeout (pytest-timeout)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvloop

from jansamvad.node import Node
from jansamvad.server import RunningServer, build_node, start_server
from jansamvad.store.base import Store
from tests.helpers import RawClient, Session, node_settings

# Every in-process async test runs on asyncio and on uvloop. (JANSAMVAD_TEST_UVLOOP=0 runs asyncio only, for a quick
# local loop.) Earlier CI hangs that looked like a uvloop lost wakeup were caused by locust being imported into the
# pytest process, which gevent-patches threads, sockets and sleep: never import locust or gevent in tests.
_LOOPS = [pytest.param(("asyncio", {}), id="asyncio")]
if os.environ.get("JANSAMVAD_TEST_UVLOOP", "1") != "0":
    _LOOPS.append(pytest.param(("asyncio", {"loop_factory": uvloop.new_event_loop}), id="uvloop"))


@pytest.fixture(params=_LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param  # type: ignore[no-any-return]


def pytest_runtest_teardown(item: pytest.Item) -> None:
    # locust gevent-patches the process on import; every later test would then run on patched sockets and threads
    # (uvloop loops stop waking, the process cannot exit). Name the test that let it in, instead of hanging later.
    if "gevent" in sys.modules:
        raise pytest.UsageError(f"{item.nodeid} imported gevent (through locust?) into the pytest process")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every coroutine test must run through anyio (so on both loops, under the global timeout): a module with async
    # tests sets `pytestmark = pytest.mark.anyio`; one that forgets fails here instead of being silently skipped.
    for item in items:
        func = getattr(item, "function", None)
        if func is not None and asyncio.iscoroutinefunction(func) and item.get_closest_marker("anyio") is None:
            raise pytest.UsageError(f"{item.nodeid}: async test without pytest.mark.anyio")


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[RunningServer]]]:
    """Start real nodes on free loopback ports in the test's loop; stop them afterwards."""
    running: list[RunningServer] = []

    async def factory(*, store: Store | None = None, **overrides: Any) -> RunningServer:
        settings = node_settings(**overrides)
        node = None
        if store is not None:  # fault injection: a store that fails on purpose
            memory = build_node(settings)
            node = Node(settings, store=store, broker=memory.broker, presence=memory.presence)
        server = await start_server(settings, node=node)
        running.append(server)
        return server

    yield factory
    # Clients first, while their servers still answer the closing handshake.
    await Session.close_all()
    await RawClient.close_all()
    for server in running:
        await server.stop()


@pytest.fixture
async def server(make_server: Callable[..., Awaitable[RunningServer]]) -> RunningServer:
    return await make_server()
