"""Running a node: one port for HTTP (uvicorn + Starlette) and WebSockets (our protocol class, no ASGI)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from jansamvad.broker.memory import MemoryBroker
from jansamvad.broker.redis import RedisBroker
from jansamvad.http_app import create_app, create_health_app
from jansamvad.http_guard import guarded_protocol_class
from jansamvad.journal.redis import RedisJournal
from jansamvad.limiter.redis import RedisRateLimiter
from jansamvad.node import Node
from jansamvad.presence.memory import MemoryPresence
from jansamvad.presence.redis import RedisPresence
from jansamvad.redis_conn import RedisConn
from jansamvad.redis_keys import RedisKeys
from jansamvad.rollup.redis import RedisRollup
from jansamvad.settings import Settings
from jansamvad.store.memory import MemoryStore
from jansamvad.store.redis import RedisStore

log = logging.getLogger("jansamvad.server")


def build_node(settings: Settings) -> Node:
    """A node with the embedded default (memory) parts, or the Redis ones when a Redis URL is set.

    The Redis parts share one connection (each closes its share on shutdown) and connect when the node starts.
    """
    if settings.redis_url:
        conn = RedisConn(
            settings.redis_url,
            max_in_flight=settings.redis_max_in_flight,
            command_timeout_s=settings.redis_command_timeout_s,
            ack_durability=settings.ack_durability,
            ack_wait_ms=settings.ack_wait_ms,
        )
        keys = RedisKeys(settings.redis_prefix)
        return Node(
            settings,
            store=RedisStore(conn, keys, ended_retention_s=settings.ended_retention_days * 86400),
            broker=RedisBroker(conn, keys, history_size=settings.history_size),
            # A node that stops reporting drops out of the viewer totals after three missed reports.
            presence=RedisPresence(conn, keys, ttl_s=max(3 * settings.presence_interval_s, 1.0)),
            limiter=RedisRateLimiter(conn, keys),
            # Like presence: a dead node's viewers per unit leave the roll-up after three missed writes.
            rollup=RedisRollup(
                conn,
                keys,
                ttl_s=max(3 * settings.presence_interval_s, 1.0),
                keep_s=settings.ended_retention_days * 86400,
            ),
            journal=RedisJournal(conn, keys, keep_s=settings.ended_retention_days * 86400),
        )
    return Node(
        settings,
        store=MemoryStore(ended_retention_s=settings.ended_retention_days * 86400),
        broker=MemoryBroker(settings.history_size),
        presence=MemoryPresence(),
    )


async def check_redis(url: str) -> None:
    """Fail fast when Redis is unreachable at startup: RedisUnavailable (an OSError) says where and why.

    Checked before uvicorn starts, whose lifespan would only report "startup failed". Outages after the start are
    survived: the parts reconnect, and /readyz answers 503 meanwhile.
    """
    conn = RedisConn(url).retain()
    try:
        await conn.connect()
    finally:
        await conn.close()


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(4096)
        sock.setblocking(False)
    except BaseException:
        sock.close()  # e.g. the port is taken: no descriptor left behind
        raise
    return sock


@dataclass
class RunningServer:
    """A node serving on a socket in the current event loop (the CLI and the tests use it)."""

    node: Node
    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int
    health: uvicorn.Server | None = None  # the --health-port server, if any
    health_task: asyncio.Task[None] | None = None
    health_port: int = 0

    @property
    def stop_signal(self) -> int | None:
        """The signal (SIGINT / SIGTERM) that stopped the node, once it has stopped because of one."""
        captured: list[int] = getattr(self.server, "_captured_signals", [])
        return captured[0] if captured else None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    async def stop(self) -> None:
        """Graceful stop (the node closes its sessions with 1012); safe to call twice."""
        self.server.should_exit = True
        if not self.task.done():
            await self.task
        if self.health is not None and self.health_task is not None:  # probes answer until the node has drained
            self.health.should_exit = True
            if not self.health_task.done():
                await self.health_task


class _NodeServer(uvicorn.Server):
    """uvicorn's server, minus re-raising the signal it caught once it has shut down gracefully.

    uvicorn restores the old handlers and raises SIGINT / SIGTERM again after a graceful stop: SIGINT becomes a
    KeyboardInterrupt (click prints "Aborted!", exit status 1) and SIGTERM kills the process (-15), both reading as
    failures after a clean shutdown. The node records the signal instead (`RunningServer.stop_signal`) and the CLI
    exits 0 and says it stopped cleanly.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


class _SecondServer(uvicorn.Server):
    """The health port's server, in the same loop as the main one, which alone owns SIGTERM / SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(app: ASGIApp, settings: Settings, *, ws: type[asyncio.Protocol] | str, lifespan: str) -> uvicorn.Config:
    """uvicorn for a socket we bound ourselves (so `backlog` is only informative), on the running loop, with the
    slowloris guard on every request head and nothing in the logs about each request."""
    return uvicorn.Config(
        app,
        ws=ws,  # uvicorn takes a protocol class as well as a name
        http=guarded_protocol_class(settings.http_head_timeout_s),
        lifespan=lifespan,  # type: ignore[arg-type]
        loop="none",
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        backlog=4096,
        timeout_keep_alive=5,
    )


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    while not server.started:
        if task.done():
            await task  # raises what went wrong
            raise RuntimeError("server stopped during startup")
        await asyncio.sleep(0.01)


async def start_server(
    settings: Settings,
    *,
    sock: socket.socket | None = None,
    node: Node | None = None,
    health_sock: socket.socket | None = None,
) -> RunningServer:
    settings.validate()
    if node is None and settings.redis_url:
        await check_redis(settings.redis_url)
    node = node or build_node(settings)
    sock = sock or bind_socket(settings.host, settings.port)
    # Every WebSocket upgrade is handed to our protocol, never to ASGI.
    server = _NodeServer(_config(create_app(node), settings, ws=node.protocol_class(), lifespan="on"))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="jansamvad-uvicorn")
    await _started(server, task)
    host, port = sock.getsockname()[:2]
    running = RunningServer(node, server, task, host, port)
    if settings.health_port or health_sock is not None:
        try:
            await _start_health(running, settings, health_sock)
        except BaseException:
            await running.stop()  # e.g. the health port is taken: do not leave the main port serving alone
            raise
    return running


async def _start_health(running: RunningServer, settings: Settings, health_sock: socket.socket | None) -> None:
    health_sock = health_sock or bind_socket(settings.host, settings.health_port)
    health = _SecondServer(_config(create_health_app(running.node), settings, ws="none", lifespan="off"))
    health_task = asyncio.get_running_loop().create_task(health.serve(sockets=[health_sock]), name="jansamvad-health")
    await _started(health, health_task)
    running.health, running.health_task = health, health_task
    running.health_port = health_sock.getsockname()[1]
