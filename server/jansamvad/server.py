"""Running a node: one port for HTTP (uvicorn + Starlette) and WebSockets (our protocol class, no ASGI).

The wiring: build_node picks the parts, start_server serves them in the running loop, run_node runs a node in this
process until a signal (the CLI and each worker call it).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from jansamvad.broker.memory import MemoryBroker
from jansamvad.broker.redis import RedisBroker
from jansamvad.edge import edge_protocol_class
from jansamvad.http_app import create_app, create_health_app
from jansamvad.http_guard import guarded_protocol_class
from jansamvad.journal.redis import RedisJournal
from jansamvad.limiter.redis import RedisRateLimiter
from jansamvad.node import Node
from jansamvad.presence.memory import MemoryPresence
from jansamvad.presence.redis import RedisPresence
from jansamvad.protocol.roles import Role
from jansamvad.redis_conn import RedisConn
from jansamvad.redis_keys import RedisKeys
from jansamvad.regions import RegionTree
from jansamvad.report_renewal import report_ttl_s
from jansamvad.rollup.redis import RedisRollup
from jansamvad.settings import Settings, SettingsError
from jansamvad.store.memory import MemoryStore
from jansamvad.store.redis import RedisStore
from jansamvad.uring_send import open_sender

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
            # A subscriber connection silent (no reply to its PING) for 3 command timeouts is given up: as slow as
            # the deployment lets any Redis call be (a CPU-starved host raises the timeout), never under 3 s.
            broker=RedisBroker(
                conn,
                keys,
                history_size=settings.history_size,
                dead_after_s=max(3.0, 3 * settings.redis_command_timeout_s),
            ),
            # A node that stops reporting drops out of the viewer totals after three missed reports.
            presence=RedisPresence(conn, keys, ttl_s=report_ttl_s(settings.presence_interval_s)),
            limiter=RedisRateLimiter(conn, keys),
            # Like presence: a dead node's viewers per unit leave the roll-up after three missed writes.
            rollup=RedisRollup(
                conn,
                keys,
                ttl_s=report_ttl_s(settings.presence_interval_s),
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
    # IPPROTO_TCP named, not 0: asyncio's loop sets TCP_NODELAY only on accepted sockets whose proto says TCP (uvloop
    # sets it on all); with Nagle on, a broadcast's small write may wait for the previous one's ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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
    slowloris guard on every request head and nothing in the logs about each request. With WebSockets, every socket
    starts in the edge (edge.py), which answers plain upgrades itself and hands the rest to uvicorn's protocol."""
    head_timeout_s = settings.http_head_timeout_s
    return uvicorn.Config(
        app,
        ws=ws,  # uvicorn takes a protocol class as well as a name
        http=guarded_protocol_class(head_timeout_s) if isinstance(ws, str) else edge_protocol_class(head_timeout_s),
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
    node.fanout.sender = node.fanout.sender or open_sender(settings.io_uring)  # decided once, logged (uring_send.py)
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


# --- Running a node in this process: the body of `jansamvad serve` and of each worker (workers.py) -------------

DEMO_TITLE = "जन संवाद — डेमो टाउन हॉल (JanSamvad demo town hall)"


def raise_open_file_limit(wanted: int) -> int:
    """Raise this process's soft open-file limit towards the hard one (every connection is a file)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < wanted:
        log.warning(
            "open-file limit %d is below --max-connections %d plus headroom: raise `ulimit -n` / LimitNOFILE",
            soft,
            wanted,
        )
    return soft


def run_node(
    settings: Settings, *, demo: bool, loop: str, reuse_port: bool = False, regions: RegionTree | None = None
) -> None:
    """Run one node in this process until SIGTERM / SIGINT (also the body of each worker)."""
    raise_open_file_limit(settings.max_connections + 1000)
    _run(lambda: _serve(settings, demo=demo, reuse_port=reuse_port, regions=regions), loop)


async def _serve(
    settings: Settings, *, demo: bool, reuse_port: bool = False, regions: RegionTree | None = None
) -> None:
    try:
        sock = bind_socket(settings.host, settings.port, reuse_port=reuse_port)
        health_sock = None
        if settings.health_port:
            health_sock = bind_socket(settings.host, settings.health_port, reuse_port=reuse_port)
        node = None
        if regions is not None:  # (embedded store only, cli.py) in the store before the port serves a request
            settings.validate()
            node = build_node(settings)
            await node.store.put_region_tree(regions)
        running = await start_server(settings, sock=sock, node=node, health_sock=health_sock)
    except (SettingsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    tune_gc()
    _print_listening(settings, running.port, running.health_port)
    if demo:
        await _print_demo_links(running.node, settings, running.port)
    await running.task
    await running.stop()  # the health port closes after the node drained
    if running.stop_signal is not None:
        log.info("stopped by %s after a graceful shutdown", signal.Signals(running.stop_signal).name)


def tune_gc() -> None:
    """Once per node process, after startup. A node holds tens of thousands of long-lived objects (connections,
    rooms, claims) and full collections that walk all of them are wasted work on the hot path: collect what startup
    left, freeze the rest out of every later collection, and run the young generation every 20,000 allocations
    instead of CPython's 700 (and the older ones at 20 and 100 of those, instead of 10 and 10)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)


def _browser_base(settings: Settings, port: int) -> str:
    """The URL a browser on this machine opens (a wildcard address is not one it can connect to)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def _print_listening(settings: Settings, port: int, health_port: int) -> None:
    """Where the node listens and how to open the pages of a town hall made over the REST API (README)."""
    base = _browser_base(settings, port)
    lines = [
        f"JanSamvad node listening on {settings.host}:{port}: pages {base}/, WebSocket ws{base[4:]}/ws",
        f"pages of a town hall <id>: citizen {base}/?th=<id>, leader {base}/leader.html?th=<id>#token=<leader-token>, "
        f"moderator {base}/moderator.html?th=<id>#token=<moderator-token>",
    ]
    if health_port:
        lines.append(f"health, readiness and metrics on {settings.host}:{health_port}")
    print("\n".join(lines), flush=True)


async def _print_demo_links(node: Node, settings: Settings, port: int) -> None:
    townhall = await node.store.create_townhall(DEMO_TITLE, "hi")
    ttl = settings.staff_token_ttl_s
    leader, _ = node.tokens.issue(sub="l-demo-leader", role=Role.LEADER, th=townhall.id, ttl_s=ttl, name="नेता (Leader)")
    moderator, _ = node.tokens.issue(
        sub="m-demo-moderator", role=Role.MODERATOR, th=townhall.id, ttl_s=ttl, name="मॉडरेटर (Moderator)"
    )
    base = _browser_base(settings, port)
    lines = [
        "",
        f"JanSamvad demo town hall {townhall.id} is ready. Open these in three browser tabs:",
        f"citizen: {base}/?th={townhall.id}",
        f"leader: {base}/leader.html?th={townhall.id}#token={leader}",
        f"moderator: {base}/moderator.html?th={townhall.id}#token={moderator}",
        f"admin key (for the REST API): {settings.admin_key}",
        "",
    ]
    print("\n".join(lines), flush=True)


def _run(coro_factory: Callable[[], Coroutine[Any, Any, None]], loop: str) -> None:
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro_factory())
    else:
        asyncio.run(coro_factory())
