"""One plain WebSocket connection for a locust user, on websocket-client.

locust 2.47 has no plain-WebSocket user (its SocketIOUser speaks Socket.IO). websocket-client is pure Python over the
standard `socket` module, which locust's gevent monkey-patching makes cooperative: a blocking `recv` here parks only
the calling greenlet.
"""

from __future__ import annotations

import random
import socket
from typing import Any
from urllib.parse import urlsplit

import websocket

from jansamvad_locust.protocol import NO_CLOSE_FRAME, SUBPROTOCOL, close_code, decode, encode


class Busy(Exception):
    """The node refused the handshake with HTTP 503 (admission control); try again after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"HTTP 503, Retry-After {retry_after:g}")
        self.retry_after = retry_after


class Closed(Exception):
    """The connection ended; `code` is the close code, or 1006 when there was no close frame."""

    def __init__(self, code: int) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


class Connection:
    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws

    @classmethod
    def open(cls, url: str, timeout: float, source_ip: str | None = None) -> Connection:
        """Connect and agree on the msgpack subprotocol. Raises Busy on a 503, OSError/WebSocketException else.

        `source_ip` (plain ws:// only): connect from this local address, e.g. one of 127.0.0.0/8 on loopback.
        """
        options: dict[str, Any] = {}
        if source_ip:
            parts = urlsplit(url)
            address = (parts.hostname, parts.port or 80)
            options["socket"] = socket.create_connection(address, timeout, source_address=(source_ip, 0))
        try:
            ws = websocket.create_connection(
                url,
                timeout=timeout,
                subprotocols=[SUBPROTOCOL],
                enable_multithread=True,  # the reader greenlet and the task greenlet share the socket: take its locks
                skip_utf8_validation=True,  # binary frames only
                **options,
            )
        except websocket.WebSocketBadStatusException as exc:
            _close(options)
            if exc.status_code == 503:
                raise Busy(_retry_after(exc.resp_headers or {})) from None
            raise
        except BaseException:
            _close(options)
            raise
        if ws.subprotocol != SUBPROTOCOL:
            ws.close()
            raise websocket.WebSocketException(f"node chose subprotocol {ws.subprotocol!r}, not {SUBPROTOCOL}")
        return cls(ws)

    def send(self, message: dict[str, Any]) -> None:
        """Raises Closed when the connection is gone."""
        try:
            self.ws.send_bytes(encode(message))
        except (websocket.WebSocketException, OSError):
            raise Closed(NO_CLOSE_FRAME) from None

    def recv(self, timeout: float) -> tuple[dict[str, Any], int] | None:
        """The next message and its size in bytes; None if nothing came within `timeout`. Raises Closed."""
        self.ws.settimeout(timeout)
        try:
            opcode, data = self.ws.recv_data()
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketException, OSError):
            self.ws.shutdown()
            raise Closed(NO_CLOSE_FRAME) from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:  # websocket-client has already answered with its close frame
            self.ws.shutdown()
            raise Closed(close_code(data))
        if opcode != websocket.ABNF.OPCODE_BINARY:
            # The node sends binary frames only on msgpack (docs/protocol.md, section 1): a text frame is a node bug.
            raise ValueError(f"unexpected frame opcode {opcode} on {SUBPROTOCOL}")
        return decode(data), len(data)

    def leave(self) -> None:
        """Say goodbye the polite way: `leave`; the node answers with a close frame (1000), which the reader sees."""
        try:
            self.ws.send_bytes(encode({"t": "leave"}))
        except (websocket.WebSocketException, OSError):
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, as a phone losing its network does (the node sees EOF).

        Only shuts the socket down: the greenlet blocked in `recv` wakes up with EOF and releases the socket itself.
        """
        self.ws.abort()

    def release(self) -> None:
        """Close the file descriptor (once nobody reads any more)."""
        self.ws.shutdown()


def _close(options: dict[str, Any]) -> None:
    sock = options.get("socket")
    if sock is not None:
        sock.close()


def _retry_after(headers: dict[str, Any]) -> float:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), "1")
    try:
        seconds = float(value)
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), 30.0) + random.uniform(0, 1)  # plus jitter, so refused clients do not return at once
