"""One WebSocket connection: an asyncio protocol that drives websockets' sans-I/O ServerProtocol.

The edge (edge.py) answers a plain upgrade itself and hands over the socket with the protocol already OPEN; any
other upgrade request reaches this class with its head replayed, and websockets does the handshake (and its errors).
An edge connection makes its ServerProtocol only when it first needs one (`_protocol`): a frame that is not one whole
message or pong in one read (frames_in.py), a close. Most joined citizens never do, which saves ~5 µs per join and
~1.4 KB and 9 GC-tracked objects per held connection (docs/benchmarks.md, "Joins (issue 19)"). No ASGI call is on a
connection's path. Outgoing broadcasts are pre-framed bytes written straight to the transport by the fan-out
(fanout.py): safe, because the parser never leaves half a frame of its own in the transport and we never fragment.

There is no task or timer per connection: the keepalive wheel (keepalive.py) pings, times out and reaps all of them.
What a connection needs of its owner (gateway.py) and of the session on top of it (client.py) is stated below as
`ConnectionOwner` and `ConnectionSession`, so this module imports neither.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from urllib.parse import parse_qs, urlsplit

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from jansamvad.conn_state import ConnectionSession, ConnState as ConnState  # ConnState re-exported: node, wheel read it
from jansamvad.direct_send import Socket, release, socket_of
from jansamvad.feeds import DEFAULT_FEED
from jansamvad.frames_in import new_protocol, offered_hello, release_handshake, whole_message
from jansamvad.protocol.codec import Encoding
from jansamvad.protocol.codes import CloseCode, close_reason
from jansamvad.protocol.subprotocols import ENCODING_OF, hello_bytes
from jansamvad.protocol_ids import install as install_protocol_ids
from jansamvad.send_buffer import cap_send_buffer

if TYPE_CHECKING:
    from websockets.typing import Origin

    from jansamvad.settings import Settings

log = logging.getLogger("jansamvad.connection")
install_protocol_ids()  # and the ids websockets gives every protocol for its logs cost no syscall (protocol_ids.py)

WS_PATH = "/ws"
STAFF_LANE = "staff"  # /ws?lane=staff: leaders, moderators and admins, with their own handshake budget


class ConnectionOwner(Protocol):
    """What a connection needs of its owner (gateway.py's `Gateway`)."""

    settings: Settings
    origins: list[Origin | None] | None
    clock: float  # coarse loop time, advanced by the keepalive wheel
    closes: Counter[int]  # closes this node made, by code (the metrics')
    slow_consumer_drops: int
    broadcasts_skipped: int
    watched: set[WsConnection]  # what the keepalive wheel looks at every turn (keepalive.py); the rest in slices

    def client_ip(self, peer: str, forwarded_for: list[str]) -> str: ...

    def admit(self, conn: WsConnection) -> int | None: ...  # None: accept; else Retry-After seconds for an HTTP 503

    def connection_made(self, conn: WsConnection) -> None: ...

    def connection_opened(self, conn: WsConnection) -> None: ...  # the handshake was accepted: sets `conn.client`

    def session_joining(self, conn: WsConnection, device: str | None) -> bool: ...

    def session_joined(self, conn: WsConnection) -> None: ...

    def connection_closing(self, conn: WsConnection, code: CloseCode) -> None: ...  # the node closes it (counted)

    def connection_lost(self, conn: WsConnection) -> None: ...


class WsConnection(asyncio.Protocol):
    """One WebSocket connection; uvicorn instantiates it by keyword when it sees an upgrade."""

    owner: ClassVar[ConnectionOwner]

    __slots__ = (
        "client",
        "closing_since",
        "corked",
        "encoding",
        "fast_write",
        "feed",
        "frag",
        "frag_op",
        "held",
        "ip",
        "last_seen",
        "max_size",
        "opened_at",
        "over_cap",
        "_paused",
        "pinged",
        "pings",
        "sock",
        "staff_lane",
        "state",
        "transport",
        "ws",
    )

    def __init__(self, config: object = None, server_state: object = None, app_state: object = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.ws: ServerProtocol | None = None
        self.state = ConnState.HANDSHAKE
        self.encoding = Encoding.MSGPACK
        self.feed = DEFAULT_FEED  # set at the join from the wire format and listening mode (feeds.py)
        self.client: ConnectionSession | None = None
        self.frag: list[bytes] | None = None
        self.frag_op = Opcode.BINARY
        self._paused: list[tuple[str, int, bytes]] | None = None
        # The fan-out's fast path (hub.Listener, direct_send.py): the socket's send while the transport holds nothing.
        self.fast_write: Callable[[bytes], int] | None = None
        self.sock: Socket | None = None  # the transport's fd for direct sends, detached in connection_lost
        self.held = False  # the transport holds unsent bytes (between pause_writing and resume_writing)
        self.corked: list[bytes] | None = None  # send_frame()s held back to leave in one write (see cork)
        self.ip = ""
        self.max_size = self.owner.settings.max_message_bytes  # the message limit, also before `ws` exists
        now = self.owner.clock
        self.opened_at = now
        self.last_seen = now
        self.closing_since = 0.0
        self.pinged = False
        self.over_cap = False  # the buffer passed max_buffered_bytes and had not drained to half of it when last seen
        self.pings = 0  # pings received since the last keepalive wheel turn
        self.staff_lane = False  # came in on /ws?lane=staff: only a staff hello may follow

    # asyncio.Protocol

    def connection_made(self, transport: Any, state: State = State.CONNECTING) -> None:
        """`state` OPEN when the edge (edge.py) already answered the upgrade: websockets then only parses frames, and
        its protocol is made when first needed (`_protocol`)."""
        self.transport = transport
        # pause_writing() as soon as the transport holds a byte, resume_writing() once it drained: the fan-out sends
        # directly only in between (direct_send.py); the cap is looked at on the writes that go through the transport.
        transport.set_write_buffer_limits(high=0, low=0)
        if self.owner.settings.send_buffer_bytes:
            cap_send_buffer(transport, self.owner.settings.send_buffer_bytes)
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if isinstance(peer, tuple) else ""
        if state is not State.OPEN:
            self.ws = new_protocol(self.owner.origins, state, self.max_size)
        self.owner.connection_made(self)

    def _protocol(self) -> ServerProtocol:
        """websockets' protocol, made OPEN on first use for a connection whose upgrade the edge answered (nothing has
        reached it yet, so a fresh one is where the old one would be: waiting for a frame header)."""
        ws = self.ws
        if ws is None:
            ws = self.ws = new_protocol(self.owner.origins, State.OPEN, self.max_size)
        return ws

    def data_received(self, data: bytes) -> None:
        clock = self.owner.clock
        if self.last_seen != clock:  # the first packet since the wheel's last turn
            self.last_seen = clock
            self.watch()  # its per-second counters (pings, rate_limited answers) are reset at the next turn
        self.pinged = False
        if self.state is ConnState.OPEN and self.frag is None:
            message = whole_message(self.ws, data, self.max_size)
            if message is not None:  # one whole frame, taken without websockets' parser (frames_in.py)
                if message[0] is not Opcode.PONG:  # a pong: the packet itself was the sign of life (above)
                    self._on_message(*message)
                return
        ws = self._protocol()
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Frame):
                self._on_frame(event)
            elif isinstance(event, Request):
                self._on_request(event)
        self._flush_protocol()

    def eof_received(self) -> bool | None:
        # Without a protocol yet there is nothing to tell websockets: the transport closes itself (returning None),
        # as it does after websockets' own answer to an EOF (fail 1006: no close frame, then the TCP close).
        if self.ws is not None:
            self.ws.receive_eof()
            self._flush_protocol()
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        previous = self.state
        self.state = ConnState.CLOSED
        self.fast_write = None
        self._paused = None
        release(self.sock)  # before the transport closes the fd (direct_send.py)
        self.sock = None
        if previous is not ConnState.CLOSED:
            self.owner.connection_lost(self)

    def pause_writing(self) -> None:
        self.held = True  # from now on every write goes through the transport, behind what it holds
        self.fast_write = None
        self._note_buffer()

    def resume_writing(self) -> None:
        self.held = self.over_cap = False
        self._refresh_fast_write()

    def _note_buffer(self) -> None:
        """After a write the transport kept some of: the connection is slow once its buffer passed the cap."""
        if self.held and self.transport.get_write_buffer_size() > self.owner.settings.max_buffered_bytes:  # type: ignore[union-attr]
            self.over_cap = True

    def _slow(self) -> bool:
        """The slow-consumer test (4009, docs/protocol.md): the buffer passed the cap and has not drained to half of it
        since. A reader that hovers at the cap is not flipped between slow and not on every write."""
        if self.over_cap:
            if self.transport.get_write_buffer_size() > self.owner.settings.max_buffered_bytes // 2:  # type: ignore[union-attr]
                return True
            self.over_cap = False
        return False

    @property
    def paused(self) -> list[tuple[str, int, bytes]] | None:
        """Not None while the session replays history (hub.Listener): live frames wait here."""
        return self._paused

    @paused.setter
    def paused(self, value: list[tuple[str, int, bytes]] | None) -> None:
        self._paused = value
        self._refresh_fast_write()

    def _refresh_fast_write(self) -> None:
        """Give the fan-out the socket's send exactly when the transport holds nothing and write_broadcast would
        write without a question."""
        sock = self.sock
        writable = self.state is ConnState.OPEN and not self.held and self._paused is None
        self.fast_write = sock.send if writable and sock is not None else None

    # Handshake

    def _on_request(self, request: Request) -> None:
        ws = self.ws
        assert ws is not None
        owner = self.owner
        url = urlsplit(request.path)
        self.ip = owner.client_ip(self.ip, request.headers.get_all("X-Forwarded-For"))
        lane = parse_qs(url.query).get("lane")
        self.staff_lane = lane == [STAFF_LANE]
        if url.path != WS_PATH:
            response = ws.reject(404, "Not Found: the WebSocket endpoint is /ws\n")
        elif lane is not None and not self.staff_lane:
            response = ws.reject(400, "Bad Request: the only lane is lane=staff\n")
        else:
            retry_after = owner.admit(self)
            if retry_after is not None:
                response = ws.reject(503, "Service Unavailable: try again later\n")
                response.headers["Retry-After"] = str(retry_after)
            else:
                response = ws.accept(request)
        ws.send_response(response)
        if response.status_code == 101:
            if ws.subprotocol is not None:
                self.encoding = ENCODING_OF[ws.subprotocol]
            elif parse_qs(url.query).get("enc") == ["json"]:
                self.encoding = Encoding.JSON
            hello = offered_hello(ws, request)
            release_handshake(ws)
            self.opened()
            if hello is not None:
                self.hello_in_offer(hello)

    def opened(self) -> None:
        """The 101 is written (here or by the edge): the session may start."""
        self.state = ConnState.OPEN
        if self.sock is None and self.transport is not None:
            self.sock = socket_of(self.transport)
        self._refresh_fast_write()
        self.opened_at = self.owner.clock
        self.owner.connection_opened(self)

    def hello_in_offer(self, entry: str) -> None:
        """The hello sent in the subprotocol offer (protocol/subprotocols.py): the session's first message."""
        data = hello_bytes(entry)
        if data is None:
            self.close(CloseCode.BAD_HELLO, "the hello in Sec-WebSocket-Protocol is not base64url")
        elif self.client is not None:
            self.client.on_message(data)

    # Frames in

    def _on_frame(self, frame: Frame) -> None:
        op = frame.opcode
        payload = bytes(frame.data)  # the same object when it already is bytes (server side: always)
        if op is Opcode.TEXT or op is Opcode.BINARY:
            if not frame.fin:
                self.frag, self.frag_op = [payload], op
                return
            self._on_message(op, payload)
        elif op is Opcode.CONT:
            if self.frag is None:
                return  # the parser already failed the connection on an unexpected continuation
            self.frag.append(payload)
            if frame.fin:
                data, self.frag = b"".join(self.frag), None
                self._on_message(self.frag_op, data)
        elif op is Opcode.PING:
            # websockets answers every ping; a flood of them costs a pong each, so it is cut off.
            self.pings += 1
            if self.pings > self.owner.settings.max_pings_per_s:
                self.fail(CloseCode.TOO_MANY_ERRORS, "ping flood")
        elif op is Opcode.CLOSE:
            # The protocol answered the close frame; the transport closes once its EOF is written.
            if self.state is ConnState.OPEN:
                self.state = ConnState.CLOSING
                self.fast_write = None
                self.closing_since = self.owner.clock
                self.watch()  # close_timeout is looked at every turn

    def _on_message(self, op: Opcode, data: bytes) -> None:
        if self.state is not ConnState.OPEN or self.client is None:
            return
        if op.value != self.encoding.opcode:
            kind = "binary (msgpack)" if self.encoding is Encoding.MSGPACK else "text (JSON)"
            self.fail(CloseCode.UNSUPPORTED_DATA, f"this subprotocol takes {kind} frames")
            return
        if op is Opcode.TEXT:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                self.fail(CloseCode.INVALID_DATA, "text frame is not valid UTF-8")
                return
        self.client.on_message(data)

    def joining(self, device: str | None) -> bool:
        """The session showed a valid token (`device`: a citizen's subject): whether admission lets it join."""
        return self.owner.session_joining(self, device)

    def joined(self) -> None:
        """The session's join is done (welcome sent): admission stops counting it as a join in flight."""
        self.owner.session_joined(self)

    def watch(self) -> None:
        """Have the keepalive wheel look at this connection every turn until it is joined and quiet again."""
        self.owner.watched.add(self)

    def set_max_message_bytes(self, limit: int) -> None:
        self.max_size = limit
        if self.ws is not None:
            self.ws.max_message_size = limit

    # Frames out

    def _flush_protocol(self) -> None:
        """Write what websockets' protocol queued (handshake response, pongs, close frames) in order."""
        ws, transport = self.ws, self.transport
        if ws is None or transport is None:
            return
        for data in ws.data_to_send():
            if data:
                transport.write(data)
            else:  # SEND_EOF: the protocol is done with the TCP connection
                transport.close()
        if ws.state is State.CLOSED and self.state is not ConnState.CLOSED:
            transport.close()

    def write_broadcast(self, blob: bytes, must_deliver: bool) -> None:
        """The fan-out's write: the same pre-framed bytes for every listener."""
        if self.state is not ConnState.OPEN:
            return
        if self._slow():
            if must_deliver:
                self.drop_slow()
            else:
                self.owner.broadcasts_skipped += 1
            return  # droppable frames (aggregates, audio) are skipped for a slow reader
        self.transport.write(blob)  # type: ignore[union-attr]  # OPEN implies a transport
        self._note_buffer()

    def write_rest(self, blob: bytes, sent: int) -> None:
        """The fan-out's direct send took only `sent` bytes of `blob` (0: EAGAIN or an error): the transport takes the
        rest (half a frame cannot be dropped) and, holding it, turns the direct sends off until it drained."""
        if self.transport is not None and self.state is not ConnState.CLOSED:
            self.transport.write(blob[sent:] if sent > 0 else blob)
            self._note_buffer()

    def send_frame(self, frame: bytes) -> None:
        """A frame for this connection alone (ack, error, welcome, replay)."""
        if self.state is not ConnState.OPEN:
            return
        if self.corked is not None:
            self.corked.append(frame)
            return
        if self._slow():
            self.drop_slow()
            return
        self.transport.write(frame)  # type: ignore[union-attr]  # OPEN implies a transport
        self._note_buffer()

    def cork(self) -> None:
        """Hold send_frame()s until uncork(): a join's frames leave in one write (a write costs µs, wakes a reader)."""
        if self.corked is None:
            self.corked = []

    def uncork(self) -> None:
        """Write what was held; also before a close frame (a join's frames, or a 101 held for its welcome, go first)."""
        frames, self.corked = self.corked, None
        if frames and self.state is ConnState.OPEN:
            self.transport.write(b"".join(frames))  # type: ignore[union-attr]  # OPEN implies a transport
            self._note_buffer()

    def resume(self, after: Mapping[str, int]) -> None:
        """End the replay: write the live frames that waited, except events the replay already covered."""
        paused, self.paused = self._paused, None
        if paused and self.state is ConnState.OPEN and self.transport is not None:
            self.transport.write(
                b"".join(frame for stream, seq, frame in paused if seq == 0 or seq > after.get(stream, 0))
            )

    # Closing

    def close(self, code: CloseCode, detail: str = "") -> None:
        """Start the closing handshake (RFC 6455 section 7); the keepalive wheel aborts it after close_timeout."""
        if self.state is not ConnState.OPEN:
            return
        ws = self._protocol()
        if ws.state is not State.OPEN:
            return
        self.uncork()
        ws.send_close(code, close_reason(code, detail))
        self.owner.connection_closing(self, code)
        self.state = ConnState.CLOSING
        self.fast_write = None
        self.closing_since = self.owner.clock
        self.watch()
        self._flush_protocol()

    def fail(self, code: CloseCode, detail: str = "") -> None:
        """Close at once after a protocol violation: close frame, then TCP close."""
        if self.state is ConnState.CLOSED or (self.ws is None and self.state is not ConnState.OPEN):
            return
        ws = self._protocol()
        if ws.state is State.OPEN:
            self.uncork()
            ws.fail(code, close_reason(code, detail))
            self.owner.connection_closing(self, code)
        self.state = ConnState.CLOSING
        self.fast_write = None
        self.closing_since = self.owner.clock
        self.watch()
        self._flush_protocol()

    def drop_slow(self) -> None:
        """A slow consumer: queue the 4009 close frame behind what it has not read; reap it if it never does."""
        self.owner.slow_consumer_drops += 1
        self.close(CloseCode.SLOW_CONSUMER, "buffer over the cap")

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
