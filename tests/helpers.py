"""Test helpers as a module (like websockets' tests): settings, a town hall with tokens, and a protocol session."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import msgpack
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
    """One protocol session over a real WebSocket client connection."""

    def __init__(self, ws: ClientConnection, encoding: str) -> None:
        self.ws = ws
        self.encoding = encoding
        self.next_id = 1
        self.skipped: list[dict[str, Any]] = []  # what recv_until passed over, newest last

    @classmethod
    async def open(cls, server: RunningServer, encoding: str = "msgpack", **kwargs: Any) -> Session:
        ws = await connect(
            server.ws_url, subprotocols=[f"jansamvad.v1.{encoding}"], open_timeout=5, max_size=2**24, **kwargs
        )
        return cls(ws, encoding)

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


async def joined(server: RunningServer, token: str, encoding: str = "msgpack", **hello: Any) -> Session:
    session = await Session.open(server, encoding)
    await session.hello(token, **hello)
    return session
