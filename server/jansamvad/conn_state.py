"""The life of one WebSocket connection, in named states (a leaf module: sessions read it without importing the
connection)."""

from __future__ import annotations

import enum


class ConnState(enum.Enum):
    HANDSHAKE = "handshake"  # the upgrade request is being answered
    OPEN = "open"  # frames flow both ways
    CLOSING = "closing"  # a close frame went out; waiting for the peer's or for close_timeout
    CLOSED = "closed"


# A session still handles what it has queued in these states; from CLOSING on it drops its inbox.
ALIVE = frozenset({ConnState.HANDSHAKE, ConnState.OPEN})
