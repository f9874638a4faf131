"""The edge of a node: which connections exist, which handshakes are let in, and from which address they come.

The gateway is the owner every `WsConnection` talks to (connection.py's `ConnectionOwner`): it keeps the registry of
connections, the per-IP counts, the two handshake budgets (citizens, and the staff lane's own), the coarse clock the
keepalive wheel advances, and the client-IP rule for our own load balancers. What runs on top of a connection once
it is open (the session: hello, join, messages) is the node's, reached through `SessionHost`; the gateway knows
nothing of town halls, rooms or the broker.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Protocol

from jansamvad.admission import NetworkBuckets, network_key
from jansamvad.conn_state import ConnectionSession
from jansamvad.connection import WsConnection
from jansamvad.join_backlog import JoinBacklog
from jansamvad.protocol.codes import CloseCode
from jansamvad.settings import Settings
from jansamvad.token_bucket import TokenBucket

if TYPE_CHECKING:
    from websockets.typing import Origin


class SessionHost(Protocol):
    """The node's side of the gateway."""

    def open_session(self, conn: WsConnection) -> ConnectionSession:
        """The session for a connection whose handshake was accepted."""
        ...


# Closes that end a connection which never joined because of the client: a bad or missing token, a bad hello. They
# count against the client's network (failed_joins_per_minute_per_ip); 1013 and the like (the node's fault) do not,
# nor does 4008 (no hello in time): an overloaded node reads hellos late, and sockets that never say hello are bounded
# by max_unjoined_per_ip already.
FAILED_JOIN_CLOSES = frozenset((CloseCode.UNAUTHORIZED, CloseCode.BAD_HELLO))


class Gateway:
    def __init__(self, settings: Settings, host: SessionHost, closes: Counter[int], rejected: Counter[str]) -> None:
        self.settings = settings
        self._host = host
        self.closes = closes  # the metrics' closes by code, bumped by the connections
        self._rejected = rejected  # the metrics' rejected handshakes by reason
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]
        self.origins: list[Origin | None] | None = list(settings.allowed_origins) or None  # type: ignore[arg-type]
        self.connections: set[WsConnection] = set()
        # The keepalive wheel's (keepalive.py): connections it looks at every turn, and the slices of the joined rest.
        self.watched: set[WsConnection] = set()
        self.wheel_round: list[list[WsConnection]] = []  # keepalive.py: this round's slices, by connection hash
        self.wheel_slot = 0
        self.open_count = 0
        self.per_ip: dict[str, int] = defaultdict(int)  # by network key (admission.py), like every per-IP limit
        self.unjoined: dict[str, int] = defaultdict(int)  # citizen-lane connections without a valid token yet
        self.devices: dict[str, int] = defaultdict(int)  # joined citizen sessions by token subject
        # Upgraded, not yet welcomed: a storm waits at the door (503) instead of inside past join_timeout (1013).
        self.joining: set[WsConnection] = set()
        self.join_backlog = JoinBacklog()  # the Retry-After of those turned away: the queue outside / joins a second
        self._ip_handshakes = NetworkBuckets(settings.ip_handshakes_per_second, settings.ip_handshake_burst)
        per_minute = settings.failed_joins_per_minute_per_ip
        self._ip_failures = NetworkBuckets(per_minute / 60.0, per_minute)
        self.clock = 0.0  # coarse monotonic time, advanced by the keepalive wheel: cheap to read on every packet
        self.accepting = False  # False before the node started and while it drains
        self._loop: asyncio.AbstractEventLoop | None = None
        self.slow_consumer_drops = 0
        self.broadcasts_skipped = 0  # droppable writes (audio, aggregates) not made to a slow reader
        self.rejected_handshakes = 0
        self._handshakes = TokenBucket(settings.handshakes_per_second, settings.handshakes_per_second)
        # The staff lane's own budget: citizens reconnecting in a storm spend only the citizen one.
        self.staff_joined = 0  # sessions joined through the staff lane (its cap counts these, not bare upgrades)
        self._staff_handshakes = TokenBucket(settings.staff_handshakes_per_second, settings.staff_handshakes_per_second)

    def protocol_class(self) -> type[WsConnection]:
        """The WebSocket protocol class uvicorn instantiates on upgrade, bound to this gateway."""
        return type("NodeWsConnection", (WsConnection,), {"owner": self, "__slots__": ()})

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.clock = self._handshakes.at = self._staff_handshakes.at = self.join_backlog.started = loop.time()

    def _now(self) -> float:
        assert self._loop is not None  # start() ran: no handshake is admitted before (accepting is False)
        return self._loop.time()

    # Client addresses

    def trusts(self, ip: str) -> bool:
        """Whether a peer is one of our load balancers (an address or a network in --trusted-proxy)."""
        if not self._trusted or not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    def client_ip(self, peer: str, forwarded_for: list[str]) -> str:
        """The client's network key (admission.py: an IPv4 address, an IPv6 prefix): of the peer's address, or
        behind our own load balancer (every connection comes from it) of the last address it added to
        X-Forwarded-For. A client may send its own header lines too: only the last value of the last line counts."""
        if forwarded_for and self.trusts(peer):
            peer = forwarded_for[-1].rpartition(",")[2].strip() or peer
        return network_key(peer, self.settings.ipv6_prefix)

    # ConnectionOwner: called by the connections

    def connection_made(self, conn: WsConnection) -> None:
        self.connections.add(conn)
        self.watched.add(conn)  # upgrading, then waiting for hello: timeouts looked at every turn

    def admit(self, conn: WsConnection) -> int | None:
        """None to accept the handshake, or the seconds for Retry-After with an HTTP 503."""
        settings = self.settings
        retry: int | None = None
        reason = ""
        if not self.accepting:
            retry, reason = 5, "not_ready"
        elif conn.staff_lane:
            # Not counted against max_connections or the per-IP cap (a leader may share a NAT with thousands of
            # citizens); bounded by its own cap instead, and a citizen's hello on it is refused (Client._hello). The cap
            # counts joined staff sessions only: upgrades that never say hello would otherwise hold every slot. Those
            # are bounded by the lane's handshake rate times hello_timeout (20/s x 10 s = 200 by default).
            if self.staff_joined >= settings.max_staff_connections:
                retry, reason = 2, "staff_max_connections"
            elif self._staff_handshakes.take(self._now()):
                retry, reason = 1, "staff_rate"
        elif self.open_count >= settings.max_connections:
            retry, reason = 2, "max_connections"
        elif len(self.joining) >= settings.max_joining:
            retry, reason = self.join_backlog.refuse(self._now()), "joining"
        elif self.per_ip[conn.ip] >= settings.max_connections_per_ip:
            retry, reason = 10, "per_ip"
        elif self.unjoined[conn.ip] >= settings.max_unjoined_per_ip:
            retry, reason = 2, "per_ip_unjoined"
        elif wait := self._ip_failures.wait(conn.ip, self._now()):
            retry, reason = math.ceil(wait), "failed_joins"
        elif wait := self._ip_handshakes.take(conn.ip, self._now()):
            retry, reason = math.ceil(wait), "per_ip_rate"
        elif self._handshakes.take(self._now()):
            # A storm is beyond the handshake budget too: tell each refused client the queue outside, as for
            # `joining`, or every one of them knocks again each second (join_backlog.py).
            retry, reason = self.join_backlog.refuse(self._now()), "rate"
        if retry is not None:
            self.rejected_handshakes += 1
            self._rejected[reason] += 1
        return retry

    def connection_opened(self, conn: WsConnection) -> None:
        self.open_count += 1
        self.per_ip[conn.ip] += 1
        if not conn.staff_lane:
            self.unjoined[conn.ip] += 1
            self.joining.add(conn)
        conn.client = self._host.open_session(conn)

    def session_joined(self, conn: WsConnection) -> None:
        """The session's join is done (welcome sent): it no longer counts against max_joining."""
        self.joining.discard(conn)
        self.join_backlog.joined(self._now())

    def session_joining(self, conn: WsConnection, device: str | None) -> bool:
        """A session showed a valid token (`device`: a citizen's subject, else None): False when that device already
        has max_sessions_per_device sessions here (the hello is then refused with 1013). The session sets its claims
        right after a True, which moves the connection from the network's unjoined count to the device's."""
        if device is not None:
            if self.devices[device] >= self.settings.max_sessions_per_device:
                self._rejected["per_device"] += 1
                return False
            self.devices[device] += 1
        if not conn.staff_lane:
            _decrement(self.unjoined, conn.ip)
        return True

    def connection_closing(self, conn: WsConnection, code: CloseCode) -> None:
        """The node closes a connection with `code`: a connection that never joined, closed for its client's fault,
        counts against its network."""
        self.closes[code] += 1
        session = conn.client
        if code in FAILED_JOIN_CLOSES and session is not None and session.claims is None:
            self._ip_failures.take(conn.ip, self._now())

    def connection_lost(self, conn: WsConnection) -> None:
        self.connections.discard(conn)
        self.watched.discard(conn)
        self.joining.discard(conn)
        session = conn.client
        if session is None:
            return
        self.open_count -= 1
        claims = session.claims
        if claims is None:
            if not conn.staff_lane:
                _decrement(self.unjoined, conn.ip)
        elif conn.staff_lane:
            self.staff_joined -= 1
        else:
            device: str = getattr(claims, "sub", "")
            if device in self.devices:  # citizens only: other roles on this lane are not counted per device
                _decrement(self.devices, device)
        _decrement(self.per_ip, conn.ip)
        session.on_closed()  # the session leaves whatever it joined


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
