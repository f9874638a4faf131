"""The first protocol of every socket on the main port: the WebSocket upgrade without uvicorn or websockets' parser.

A citizen's join starts with `GET /ws` and an `Upgrade: websocket` head that arrives whole in the first packet. That
path is done here, with a fixed response template: the request head is checked per RFC 6455 section 4.2.1 (GET,
HTTP/1.1, `Connection: upgrade`, `Upgrade: websocket`, a 16-byte base64 key, version 13), the Origin policy and the
subprotocol choice (msgpack / json) are applied as websockets applies them, the gateway admits it or not, and the
socket is handed to a `WsConnection` whose websockets protocol starts OPEN (it parses frames from the first byte).

Anything else is handed on with the bytes read so far, so it is answered exactly as before: a request for another
path goes to uvicorn's HTTP protocol (with the slowloris guard, http_guard.py), and a `/ws` request this module does
not take (a malformed head, an odd header, a bad lane) goes to websockets' own handshake, which gives today's errors
(400, 403, 404, 405, 426, ...). The fast path is a strict subset of what websockets would accept, never a superset.
Per socket this saves uvicorn's `HttpToolsProtocol` (an httptools parser, loggers, two address syscalls), websockets'
request parsing, `Headers` objects and response building.

The head deadline (against slowloris) runs from the connection's opening until the head is complete, whichever
protocol ends up reading it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import time
from collections import deque
from email.utils import formatdate
from typing import Any, ClassVar
from urllib.parse import parse_qs

from websockets.protocol import State

from jansamvad.connection import STAFF_LANE, WsConnection
from jansamvad.http_guard import GuardedHttpToolsProtocol
from jansamvad.protocol.codec import Encoding
from jansamvad.protocol.subprotocols import ENCODING_OF, HELLO_ENTRY_PREFIX, choose

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_PREFIX = b"GET /ws"
MAX_HEAD_BYTES = 8192  # a longer first head goes the slow way (websockets' own limits then answer it)
_MAX_HEADERS = 64
# The request line we take: exactly /ws with an optional query of visible ASCII, HTTP/1.1.
_REQUEST_LINE = re.compile(rb"GET /ws(\?[\x21-\x7e]*)? HTTP/1\.1")
# A header line of tokens and visible ASCII (RFC 9110 field-name / field-value); anything else goes the slow way.
# Matched over the whole head at once: a line that does not match is skipped, so the count of matches tells.
_HEADER_LINES = re.compile(
    rb"\r\n([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?[ \t]*(?=\r\n|\Z)"
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# The one value that differs between the heads of one kind of client: a key websockets takes (16 bytes in base64) as
# the whole value of a Sec-WebSocket-Key line (HeadShapes).
_KEY_LINE = re.compile(rb"\r\nsec-websocket-key:[ \t]*+([A-Za-z0-9+/]{22}==)(?=[ \t]*+(?:\r\n|\Z))", re.IGNORECASE)
# The other one when the client sends its hello in the offer (protocol/subprotocols.py): the first whole hello entry of
# base64url text in a Sec-WebSocket-Protocol line.
_HELLO_PREFIX = HELLO_ENTRY_PREFIX.encode()
_HELLO_VALUE_RE = re.escape(_HELLO_PREFIX) + rb"([A-Za-z0-9_-]*)(?=[ \t]*(?:,|\r\n|\Z))"
_HELLO_ENTRY = re.compile(rb"\r\n(?i:sec-websocket-protocol):[^\r\n]*?(?<=[:, \t])" + _HELLO_VALUE_RE)
_HELLO_VALUE = re.compile(_HELLO_VALUE_RE)
_PROTOCOL_LINE = b"\r\nsec-websocket-protocol:"


def _hello_entry(head: bytes) -> re.Match[bytes] | None:
    """_HELLO_ENTRY's match, found quicker (~1 instead of ~3 µs for a browser's head) when the first hello prefix of
    the head is that entry: then no earlier line holds one, so the search would stop at it too. (On a head with a
    bare LF in that line the two differ, but parse_upgrade refuses such a head, so no shape is kept for it.)"""
    at = head.find(_HELLO_PREFIX)
    if at == -1:
        return None
    line = head.rfind(b"\r\n", 0, at)
    if line != -1 and head[at - 1] in b":, \t" and head[line : line + len(_PROTOCOL_LINE)].lower() == _PROTOCOL_LINE:
        found = _HELLO_VALUE.match(head, at)
        if found is not None:
            return found
    return _HELLO_ENTRY.search(head)


SHAPES_KEPT = 256

_date_at = -1
_date = b""


def _http_date() -> bytes:
    """The Date header's value, formatted once a second rather than for every handshake."""
    global _date_at, _date
    now = int(time.time())
    if now != _date_at:
        _date_at, _date = now, formatdate(now, usegmt=True).encode()
    return _date


def accept_key(key: bytes) -> bytes:
    return binascii.b2a_base64(hashlib.sha1(key + _GUID).digest(), newline=False)


class Upgrade:
    """A WebSocket upgrade request this module may answer itself (parse_upgrade), reduced to what the node uses."""

    __slots__ = ("accept", "forwarded_for", "hello", "lane", "origin", "query", "subprotocol")

    def __init__(self) -> None:
        self.accept = b""
        self.subprotocol: str | None = None
        self.hello: str | None = None  # the hello entry's text, when the subprotocol chosen is a `+hello` one
        self.origin: str | None = None
        self.forwarded_for: list[str] = []
        self.query: dict[str, list[str]] = {}
        self.lane = False

    def with_accept(self, accept: bytes, hello: str | None) -> Upgrade:
        """The same upgrade for another key and hello entry (HeadShapes): the parsed parts are shared, never changed."""
        copy = Upgrade.__new__(Upgrade)
        copy.accept, copy.subprotocol, copy.origin, copy.hello = accept, self.subprotocol, self.origin, hello
        copy.forwarded_for, copy.query, copy.lane = self.forwarded_for, self.query, self.lane
        return copy


def _tokens(values: list[bytes]) -> list[str] | None:
    """Comma-separated tokens of every line of a header; None when one is not a token (the slow path judges it)."""
    out = []
    for value in values:
        for item in value.decode().split(","):
            item = item.strip(" \t")
            if item:
                if _TOKEN.fullmatch(item) is None:
                    return None
                out.append(item)
    return out


def parse_upgrade(head: bytes, origins: list[Any] | None) -> Upgrade | None:
    """The upgrade in a whole request head (without the final blank line), or None to leave it to websockets.

    None for everything websockets might answer with something other than a 101: the fast path never accepts what
    the slow one would refuse (the tests walk both over the same requests).
    """
    first_end = head.find(b"\r\n")
    request = _REQUEST_LINE.fullmatch(head, 0, first_end if first_end != -1 else len(head))
    if request is None:
        return None
    found_lines = _HEADER_LINES.findall(head, max(first_end, 0))
    if len(found_lines) != head.count(b"\r\n") or len(found_lines) > _MAX_HEADERS:
        return None  # a line that is not a plain header (or too many of them)
    headers: dict[bytes, list[bytes]] = {}
    for name, value in found_lines:
        headers.setdefault(name.lower(), []).append(value)
    connection = _tokens(headers.get(b"connection", []))
    upgrade = _tokens(headers.get(b"upgrade", []))
    if connection is None or not any(item.lower() == "upgrade" for item in connection):
        return None
    if upgrade is None or len(upgrade) != 1 or upgrade[0].lower() != "websocket":
        return None
    key, version, origin = (
        headers.get(b"sec-websocket-key"),
        headers.get(b"sec-websocket-version"),
        headers.get(b"origin"),
    )
    if key is None or len(key) != 1 or version != [b"13"] or (origin is not None and len(origin) != 1):
        return None
    try:
        if len(base64.b64decode(key[0], validate=True)) != 16:
            return None
    except binascii.Error:
        return None
    found = Upgrade()
    found.origin = origin[0].decode() if origin else None
    if origins is not None and found.origin not in origins:
        return None  # websockets answers 403 (and matches patterns, which the node does not configure)
    offered = _tokens(headers.get(b"sec-websocket-protocol", []))
    if offered is None:
        return None
    found.subprotocol, found.hello = choose(offered)  # as frames_in._select_subprotocol chooses
    raw_query = request.group(1)
    found.query = parse_qs(raw_query[1:].decode()) if raw_query else {}
    lane = found.query.get("lane")
    if lane is not None and lane != [STAFF_LANE]:
        return None  # 400 from the slow path
    found.lane = lane is not None
    found.forwarded_for = [value.decode() for value in headers.get(b"x-forwarded-for", ())]
    found.accept = accept_key(key[0])
    return found


class HeadShapes:
    """parse_upgrade once per shape of head, not once per connection (about 11 µs for picows' 6-line head, 18 µs for
    a browser's; a hit costs about 2 µs).

    The heads of one kind of client to one node differ only in the key: the same request line, the same header lines
    in the same order (Host, User-Agent, Origin, subprotocols), and a fresh Sec-WebSocket-Key. The head with its key
    cut out is the shape; a head whose shape (and the key's offset) equals one that parse_upgrade took differs from
    that one only in 24 bytes that are, in both, the whole value of the same Sec-WebSocket-Key line and a valid key.
    parse_upgrade reads that value for nothing but the key's validity and the accept, so its answer for the new head
    is the cached one with the new key's accept. Only heads parse_upgrade took are kept (a refused one is parsed, and
    refused, every time), at most SHAPES_KEPT (then they are all dropped: a proxy's X-Forwarded-For makes every head
    its own shape, and those simply miss), for one `origins` setting.

    A client that sends its hello in the offer (protocol/subprotocols.py) has a second such value: the hello entry's
    base64url text, of any length, in the Sec-WebSocket-Protocol line. It is cut out as well, and the two cuts'
    offsets in the shape must match. parse_upgrade reads the entry for nothing but its text (every base64url text is
    a token), so the cached answer holds with the new text, provided the entry it took is the one cut out.
    """

    __slots__ = ("_origins", "_shapes")

    def __init__(self) -> None:
        self._shapes: dict[bytes, tuple[tuple[int, int], Upgrade]] = {}
        self._origins: list[Any] | None = None

    def parse(self, head: bytes, origins: list[Any] | None) -> Upgrade | None:
        key = _KEY_LINE.search(head)
        if key is None:
            return parse_upgrade(head, origins)  # no plain key: the parse decides (and refuses)
        start, end = key.span(1)
        entry = _hello_entry(head)
        text = None
        if entry is None:
            shape, cuts = head[:start] + head[end:], (start, -1)
        else:  # the hello entry is cut out too; the cuts' offsets are the shape's
            h_start, h_end = entry.span(1)
            text = entry.group(1).decode()
            if h_start < start:
                shape = head[:h_start] + head[h_end:start] + head[end:]
                cuts = (start - (h_end - h_start), h_start)
            else:
                shape = head[:start] + head[end:h_start] + head[h_end:]
                cuts = (start, h_start - (end - start))
        if origins is self._origins:
            known = self._shapes.get(shape)
            if known is not None and known[0] == cuts:  # (a guard: one key line only, so at the same offset)
                return known[1].with_accept(accept_key(key.group(1)), None if known[1].hello is None else text)
        else:
            self._shapes.clear()
            self._origins = origins
        found = parse_upgrade(head, origins)
        # Kept only when the hello it took (if any) is the cut one: then another head of this shape offers the same
        # names in the same order, and the hello at the same place.
        if found is not None and (found.hello is None or found.hello == text):
            if len(self._shapes) >= SHAPES_KEPT:
                self._shapes.clear()
            self._shapes[shape] = (cuts, found)
        return found


def switching_protocols(upgrade: Upgrade) -> bytes:
    """The 101, byte for byte what websockets' `accept` + `send_response` write (a test compares them)."""
    protocol = b"Sec-WebSocket-Protocol: %s\r\n" % upgrade.subprotocol.encode() if upgrade.subprotocol else b""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nDate: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: %s\r\n%s\r\n" % (_http_date(), upgrade.accept, protocol)
    )


_UNAVAILABLE_BODY = b"Service Unavailable: try again later\n"  # the same as connection.py's slow path


def service_unavailable(retry_after: int) -> bytes:
    """The 503 + Retry-After of a refused admission, as websockets' `reject` writes it in the slow path."""
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nDate: %s\r\nConnection: close\r\nContent-Length: %d\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nRetry-After: %d\r\n\r\n%s"
        % (_http_date(), len(_UNAVAILABLE_BODY), retry_after, _UNAVAILABLE_BODY)
    )


HEAD_DEADLINE_GRAIN_S = 0.05  # how late HeadDeadlines may cut a head off


class HeadDeadlines:
    """The head deadline of every socket of a node on one timer, not on a timer per socket.

    Nearly every head arrives in the socket's first packet, so a timer per socket (uvloop: a TimerHandle, a libuv
    timer, its cancel and its close, ~2 µs) is made to be cancelled. Here a socket joins the back of a queue, in due
    order since all have the same timeout, and one timer, armed at most every HEAD_DEADLINE_GRAIN_S, cuts off the
    sockets at the front that are due and still waiting for their head (at most that grain late). A socket leaves the
    queue when its turn comes, handed on or not: the EdgeProtocol has dropped its transport by then, so for the rest of
    the timeout the queue holds a small object (~0.1 KB) per socket opened.
    """

    __slots__ = ("_pending", "_timer")

    def __init__(self) -> None:
        self._pending: deque[EdgeProtocol] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def start(self, protocol: EdgeProtocol, loop: asyncio.AbstractEventLoop) -> None:
        self._pending.append(protocol)
        if self._timer is None:
            self._timer = loop.call_at(protocol.due + HEAD_DEADLINE_GRAIN_S, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now, pending = loop.time(), self._pending
        while pending and pending[0].due <= now:
            pending.popleft().head_late()
        if pending:
            self._timer = loop.call_at(max(pending[0].due, now) + HEAD_DEADLINE_GRAIN_S, self._sweep, loop)


class EdgeProtocol(asyncio.Protocol):
    """What uvicorn creates for every accepted socket of the main port (its `http` protocol slot)."""

    http_class: ClassVar[type[GuardedHttpToolsProtocol]] = GuardedHttpToolsProtocol
    head_timeout_s = 10.0
    head_timeouts = 0  # sockets closed before their head was read in time (class-wide, for tests)
    fast_upgrades = 0  # upgrades answered here (class-wide, for tests and the bench)
    # edge_protocol_class gives every node its own of these three
    shapes = HeadShapes()
    deadlines = HeadDeadlines()
    event_loop: asyncio.AbstractEventLoop | None = None  # uvicorn does not pass it: a lookup is a getpid on 3.11

    __slots__ = ("_app_state", "_buffer", "_config", "_loop", "_server_state", "due", "transport")

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: asyncio.AbstractEventLoop | None = None):
        self._config = config
        self._server_state = server_state
        self._app_state = app_state
        self._loop = _loop or self.event_loop or asyncio.get_event_loop()
        self._buffer = b""
        self.due = 0.0  # the loop time the head must be complete by
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._server_state.connections.add(self)  # uvicorn's shutdown closes sockets that never sent a head
        self.due = self._loop.time() + self.head_timeout_s
        self.deadlines.start(self, self._loop)

    def head_late(self) -> None:
        """The head deadline passed (HeadDeadlines): cut the socket off unless it was handed on or closed."""
        if self.transport is None:
            return
        EdgeProtocol.head_timeouts += 1
        GuardedHttpToolsProtocol.head_timeouts += 1  # one count of cut-off heads, whichever protocol held them
        self.transport.close()

    def _release(self) -> float:
        """Leave the socket: the absolute time the head deadline is due (the next protocol keeps it)."""
        self._server_state.connections.discard(self)
        self.transport = None  # the deadline finds it handed on (and the queue keeps no transport alive)
        return self.due

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        if not data.startswith(_PREFIX):
            if _PREFIX.startswith(data):
                self._buffer = data  # "GE", "GET /w": too early to tell
                return
            self._to_http(data)
            return
        head_end = data.find(b"\r\n\r\n")
        if head_end == -1:
            if len(data) <= MAX_HEAD_BYTES:
                self._buffer = data
            else:
                self._to_http(data)
            return
        ws_class: type[WsConnection] = self._config.ws_protocol_class
        upgrade = None
        if head_end + 4 == len(data) and head_end <= MAX_HEAD_BYTES:  # RFC 6455 clients wait for the 101
            upgrade = self.shapes.parse(data[:head_end], ws_class.owner.origins)
        if upgrade is None:
            self._to_http(data)  # websockets' own handshake answers it, as it always did (http_guard.py)
            return
        self._upgrade(ws_class, upgrade)

    def _upgrade(self, ws_class: type[WsConnection], upgrade: Upgrade) -> None:
        transport = self.transport
        assert transport is not None
        self._release()
        conn = ws_class()
        transport.set_protocol(conn)
        conn.connection_made(transport, State.OPEN)
        owner = conn.owner
        conn.ip = owner.client_ip(conn.ip, upgrade.forwarded_for)
        conn.staff_lane = upgrade.lane
        retry_after = owner.admit(conn)
        if retry_after is not None:
            transport.write(service_unavailable(retry_after))
            transport.close()
            return
        EdgeProtocol.fast_upgrades += 1
        if upgrade.hello is None:
            transport.write(switching_protocols(upgrade))
        else:  # the 101 waits for the welcome (or a close) and leaves in one write with it (WsConnection.cork)
            conn.corked = [switching_protocols(upgrade)]
        if upgrade.subprotocol is not None:
            conn.encoding = ENCODING_OF[upgrade.subprotocol]  # websockets' protocol, made later if ever, needs no copy
        elif upgrade.query.get("enc") == ["json"]:
            conn.encoding = Encoding.JSON
        conn.opened()
        if upgrade.hello is not None:
            conn.hello_in_offer(upgrade.hello)

    def _to_http(self, data: bytes) -> None:
        """uvicorn's HTTP protocol (slowloris-guarded) takes the socket and the bytes read so far."""
        transport = self.transport
        assert transport is not None
        due = self._release()
        http = self.http_class(
            config=self._config, server_state=self._server_state, app_state=self._app_state, _loop=self._loop
        )
        http.connection_made(transport)
        http.keep_deadline(due)
        transport.set_protocol(http)
        http.data_received(data)

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: a socket that has not sent its head yet is simply closed."""
        if self.transport is not None:
            self.transport.close()


def edge_protocol_class(head_timeout_s: float) -> type[EdgeProtocol]:
    """The main port's protocol class for uvicorn, with the node's head deadline (made in the node's loop)."""
    http = type("NodeHttpProtocol", (GuardedHttpToolsProtocol,), {"head_timeout_s": head_timeout_s})
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None  # made outside a loop: each protocol looks it up
    return type(
        "NodeEdgeProtocol",
        (EdgeProtocol,),
        {
            "head_timeout_s": head_timeout_s,
            "http_class": http,
            "shapes": HeadShapes(),
            "deadlines": HeadDeadlines(),
            "event_loop": loop,
        },
    )
