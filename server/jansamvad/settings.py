"""A node's settings: one frozen record, built from CLI flags or JANSAMVAD_* environment variables (see cli.py)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from jansamvad.protocol.messages import Limits

# The repo's client_web/ beside server/ (an editable install or a source checkout); containers set static_dir.
DEFAULT_STATIC_DIR = Path(__file__).resolve().parents[2] / "client_web"


class SettingsError(ValueError):
    """A setting has a value the node cannot run with; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    secret: str = ""  # HS256 signing secret, >= 32 bytes
    jwt_algorithm: str = "HS256"
    jwt_private_key: str | None = None
    jwt_public_key: str | None = None
    admin_key: str = ""  # guards the admin REST API, >= 16 characters
    node_id: str = ""
    static_dir: Path = DEFAULT_STATIC_DIR
    allowed_origins: tuple[str, ...] = ()  # empty: any Origin may open a WebSocket
    trusted_proxies: tuple[str, ...] = ()  # peers whose X-Forwarded-For names the client (per-IP limits)
    public_url: str = ""  # the origin citizens reach (https://jansamvad.example.org): region links and QR codes
    log_level: str = "info"

    # Connections and admission (HTTP 503 + Retry-After during the handshake beyond these).
    max_connections: int = 18_000  # per process; stay below the open-file limit
    max_connections_per_ip: int = 1_000
    handshakes_per_second: int = 2_000
    # The staff lane (/ws?lane=staff): leaders, moderators and admins connect through their own small handshake
    # budget and connection cap, so a storm of citizen reconnects never makes them wait (docs/operations.md).
    staff_handshakes_per_second: int = 20
    max_staff_connections: int = 200

    # Sessions.
    hello_timeout_s: float = 10.0
    # A hello is answered with welcome, or closed with 1013, within this: also while Redis is down or hung. Not
    # shorter: on a node busy with a reconnect storm a healthy join can take seconds, and a 1013 brings it back.
    join_timeout_s: float = 10.0
    http_head_timeout_s: float = 10.0  # a request head must arrive whole within this (slowloris)
    max_pings_per_s: int = 10  # WebSocket pings a client may send per second before it is closed with 4010
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    close_timeout_s: float = 5.0
    drain_window_s: float = 5.0  # on SIGTERM, clients are told to come back at a random moment within this window
    max_message_bytes: int = 64 * 1024  # any frame or message (leaders send audio chunks)
    citizen_max_message_bytes: int = 4 * 1024
    max_errors: int = 20
    citizen_msgs_per_s: float = 5.0
    citizen_msg_burst: int = 20
    staff_msgs_per_s: float = 50.0
    staff_msg_burst: int = 200
    reactions_per_s: float = 5.0  # citizens' reactions, a bucket of their own; over it they are dropped silently
    reaction_burst: int = 20
    citizen_token_ttl_s: int = 12 * 3600
    staff_token_ttl_s: int = 12 * 3600
    limits: Limits = field(default_factory=Limits)

    # Audience interaction (docs/protocol.md section 4.1). Questions and votes are limited per citizen and per IP
    # across every node (the RateLimiter); reactions per connection, in process (they are far too many for Redis).
    joins_per_minute_per_ip: int = 60  # citizen identities one network may mint a minute (POST .../join)
    # Town halls open (scheduled or live) at once; creating one more is refused (409 limit_reached). A bound on what
    # a leaked or buggy admin key can make every node track, the dashboard list and the store hold.
    max_open_townhalls: int = 1000
    # An ended town hall's data (questions, votes, audit, event history) is kept this long for export, then expires.
    ended_retention_days: float = 30.0  # 0: keep forever
    # Where records of ended town halls and the leader's audio recordings are kept (record.py): a directory (None: one
    # under the system's temporary directory), or an S3-compatible bucket, s3://bucket/prefix?endpoint=...&region=...
    record_dir: Path | None = None
    record_s3_url: str = ""
    # A second port with only /healthz, /readyz and /metrics (0: none). Probes there have a listen queue of their
    # own: in a reconnect storm the main port's queue overflows and the kernel drops SYNs (clients retry), which would
    # otherwise fail load balancer and Kubernetes probes of a node that is alive and working through the storm.
    health_port: int = 0
    townhall_creates_per_minute: int = 60  # per IP, even with the admin key: a runaway script cannot fill the store
    ask_per_minute: int = 3
    ask_per_minute_per_ip: int = 60
    votes_per_minute: int = 120
    claim_ttl_s: float = 30.0
    moderation_dir: Path | None = None  # None: the defaults in jansamvad/moderation/data
    group_threshold: float = 85.0
    top_votes: int = 50  # questions and groups in each `votes` message

    # Fan-out.
    tick_ms: float = 5.0  # messages within one tick become one write per connection
    max_buffered_bytes: int = 512 * 1024  # per connection, before it counts as a slow consumer
    writes_per_yield: int = 1000  # a big fan-out yields to the loop after this many writes
    history_size: int = 1000  # events per town hall kept for resume
    snapshot_speech: int = 50  # recent speech events in a snapshot
    presence_interval_s: float = 1.0  # viewers / votes / reactions are sent at most this often

    # The embedded default: everything in this process, no Redis. With a Redis URL (redis://host:port/db, or
    # redis+cluster://host:port), broker, store and presence live in Redis and nodes scale out (redis_keys.py).
    redis_url: str | None = None
    redis_prefix: str = "jansamvad"  # every key and channel name starts with this
    redis_max_in_flight: int = 64  # concurrent commands per node; the cluster client fails beyond 100 per server
    # Every Redis call ends within this (docs/reliability.md): a server that misses it is failed fast until it
    # answers again, so an action on a stopped or hung Redis is answered `unavailable` within about this long.
    redis_command_timeout_s: float = 1.0
    # What an `ack` waits for besides the primary: "none" (the primary ran it), "replica" (WAIT 1: a replica has
    # it, so it survives a failover), "aof" (WAITAOF 1 0: the primary's AOF has it on disk). Not within
    # ack_wait_ms: the action is answered `unavailable` and the client resends with its key (docs/deploy.md).
    ack_durability: str = "none"
    ack_wait_ms: int = 500

    def validate(self) -> Settings:
        """Raise SettingsError with a clear message for the first invalid value."""
        if self.jwt_algorithm not in ("HS256", "RS256"):
            raise SettingsError("jwt-algorithm must be HS256 or RS256")
        if self.jwt_algorithm == "HS256" and len(self.secret.encode()) < 32:
            raise SettingsError("secret must be at least 32 bytes (set JANSAMVAD_SECRET or --secret)")
        if self.jwt_algorithm == "RS256" and not self.jwt_public_key:
            raise SettingsError("RS256 needs --jwt-public-key (a PEM file)")
        if len(self.admin_key) < 16:
            raise SettingsError("admin key must be at least 16 characters (set JANSAMVAD_ADMIN_KEY or --admin-key)")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise SettingsError(f"trusted-proxy {proxy!r} is not an IP address or network") from None
        if self.public_url and (
            not self.public_url.startswith(("http://", "https://")) or self.public_url.rstrip("/") != self.public_url
        ):
            raise SettingsError("public-url must be an http:// or https:// origin without a trailing slash")
        if not 0 <= self.port <= 65535:
            raise SettingsError("port must be between 0 and 65535")
        if not 0 <= self.health_port <= 65535 or (self.health_port and self.health_port == self.port):
            raise SettingsError("health-port must be between 1 and 65535 and differ from port (0: no health port)")
        for name in (
            "max_connections",
            "max_connections_per_ip",
            "handshakes_per_second",
            "staff_handshakes_per_second",
            "max_staff_connections",
            "max_errors",
            "max_open_townhalls",
            "townhall_creates_per_minute",
            "joins_per_minute_per_ip",
            "ask_per_minute",
            "ask_per_minute_per_ip",
            "votes_per_minute",
        ):  # the rate limits divide by these (a bucket that refills at 0 a minute never says when)
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.replace('_', '-')} must be at least 1")
        if self.citizen_max_message_bytes > self.max_message_bytes:
            raise SettingsError("citizen-max-message-bytes must not exceed max-message-bytes")
        if not 0 <= self.tick_ms <= 100:
            raise SettingsError("tick-ms must be between 0 and 100")
        if self.max_buffered_bytes < 16 * 1024:
            raise SettingsError("max-buffered-bytes must be at least 16384")
        if (
            self.hello_timeout_s <= 0
            or self.ping_interval_s <= 0
            or self.ping_timeout_s <= 0
            or self.join_timeout_s <= 0
        ):
            raise SettingsError("timeouts must be positive")
        if self.history_size < 10:
            raise SettingsError("history-size must be at least 10")
        if self.redis_url:
            from jansamvad.redis_conn import check_url
            from jansamvad.redis_keys import RedisKeys

            try:
                check_url(self.redis_url)
                RedisKeys(self.redis_prefix)
            except ValueError as exc:
                raise SettingsError(f"redis: {exc}") from None
            if not 1 <= self.redis_max_in_flight <= 99:
                raise SettingsError("redis-max-in-flight must be between 1 and 99")
        if not 0.05 <= self.redis_command_timeout_s <= 60:
            raise SettingsError("redis-command-timeout must be between 0.05 and 60 seconds")
        if self.ack_durability not in ("none", "replica", "aof"):
            raise SettingsError("ack-durability must be none, replica or aof")
        if self.ack_durability != "none" and not self.redis_url:
            raise SettingsError("ack-durability replica or aof needs --redis-url (the embedded store has no replica)")
        if not 1 <= self.ack_wait_ms <= 60_000:
            raise SettingsError("ack-wait-ms must be between 1 and 60000")
        return self
