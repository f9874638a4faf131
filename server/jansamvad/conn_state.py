"""The life of one WebSocket connection, in named states, and what it needs of the session on top of it (a leaf module:
sessions read it without importing the connection)."""

from __future__ import annotations

import enum
from typing import Protocol


class ConnState(enum.Enum):
    HANDSHAKE = "handshake"  # the upgrade request is being answered
    OPEN = "open"  # frames flow both ways
    CLOSING = "closing"  # a close frame went out; waiting for the peer's or for close_timeout
    CLOSED = "closed"

    # A plain Enum's members compare by identity: hashed by identity too, in C, instead of Enum's Python-level hash of
    # the name (~0.2 µs for each dict or set lookup; a join makes several).
    __hash__ = object.__hash__


# A session still handles what it has queued in these states; from CLOSING on it drops its inbox.
ALIVE = frozenset({ConnState.HANDSHAKE, ConnState.OPEN})


class ConnectionSession(Protocol):
    """What a connection and the keepalive wheel need of the session on top of it (client.py's `Client`)."""

    @property
    def claims(self) -> object | None:
        """None until the hello was accepted (the session joined)."""
        ...

    @property
    def inbox(self) -> object | None:
        """None until a first message (the hello) was queued."""
        ...

    limited_answers: int  # rate_limited answers since the keepalive wheel last turned (it resets this)

    def on_message(self, data: bytes) -> None: ...

    def on_closed(self) -> None:
        """The connection is gone: stop working for it and leave whatever the session joined."""
        ...
