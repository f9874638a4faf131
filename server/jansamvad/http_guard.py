"""uvicorn's HTTP protocol with a deadline on reading a request head (against slowloris).

uvicorn arms its keep-alive timer only after a response, and cancels it on the first byte of the next request, so a
client that opens a socket and then sends a request head one byte at a time would hold the socket for ever. Here a
request head (request line and headers, the WebSocket upgrade included) must arrive whole within `head_timeout_s`
of its first byte or of the connection opening; otherwise the socket is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    head_timeout_s = 10.0
    head_timeouts = 0  # how many sockets were closed for it (class-wide, for tests and metrics)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def keep_deadline(self, due: float) -> None:
        """Keep the deadline the edge (edge.py) started when the socket opened, instead of a fresh one."""
        self._disarm()
        self._head_deadline = self.loop.call_at(due, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        type(self).head_timeouts += 1
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def data_received(self, data: bytes) -> None:
        # Fast path for the common case: the first packet of a connection is a whole WebSocket upgrade request.
        # Hand it to the WebSocket protocol as it is, instead of parsing it with httptools and replaying it
        # (uvicorn's handle_websocket_upgrade); websockets parses and validates the request either way. A server
        # without WebSockets (the health port) has no ws_protocol_class: the request goes the normal way (404).
        ws_class = self.ws_protocol_class
        if (
            ws_class is not None
            and self._head_deadline is not None
            and self.cycle is None
            and data.startswith(b"GET /ws")
        ):
            head_end = data.find(b"\r\n\r\n")
            if head_end != -1 and head_end + 4 == len(data) and b"websocket" in data.lower():
                self._disarm()
                self.connections.discard(self)
                protocol = ws_class(config=self.config, server_state=self.server_state, app_state=self.app_state)
                protocol.connection_made(self.transport)
                protocol.data_received(data)
                self.transport.set_protocol(protocol)
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def guarded_protocol_class(head_timeout_s: float) -> type[GuardedHttpToolsProtocol]:
    return type("NodeHttpProtocol", (GuardedHttpToolsProtocol,), {"head_timeout_s": head_timeout_s})
