"""A node's settings: one frozen record, and the one declaration of every setting.

Each field says its default, its help text and how it is bounded; `settings_cli.py` derives the `jansamvad serve`
flag (--<flag>) and the JANSAMVAD_<FLAG> environment variable of every field from it, so a new setting is one line
here. Settings built in code (tests, embedding) skip the CLI: `validate()` gives them the same answers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from jansamvad.protocol.messages import Limits
from jansamvad.settings_option import OPTION as OPTION, Option as Option, SettingsError as SettingsError, setting

# The repo's client_web/ beside server/ (an editable install or a source checkout); containers set static_dir.
DEFAULT_STATIC_DIR = Path(__file__).resolve().parents[2] / "client_web"

NODE = "Node"
SECURITY = "Security"
ADMISSION = "Connections and admission"
SESSIONS = "Sessions"
AUDIENCE = "Audience interaction"
SIZES = "Message sizes"
FANOUT = "Fan-out"
REDIS = "Redis"

# The Limits record (protocol/messages.py) is one field of Settings and one flag per size here: --max-<name>.
LIMIT_OPTIONS: dict[str, Option] = {
    "question_chars": Option("Characters in a question.", SIZES, min=10, max=5000),
    "speech_chars": Option("Characters in a leader's speech message.", SIZES, min=10, max=100_000),
    "announce_chars": Option("Characters in an announcement.", SIZES, min=10, max=100_000),
    "reason_chars": Option("Characters in a moderator's reason.", SIZES, min=1, max=5000),
    "token_chars": Option("Characters in a token sent in hello.", SIZES, min=256, max=65_536),
    "audio_bytes": Option("Bytes in one audio chunk from a leader.", SIZES, min=1024),
    "poll_question_chars": Option("Characters in a poll's question.", SIZES, min=10, max=5000),
    "poll_option_chars": Option("Characters in one option of a poll.", SIZES, min=1, max=1000),
}


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = setting("127.0.0.1", "Address to listen on.", NODE)
    port: int = setting(8000, "Port for HTTP and WebSocket.", NODE, min=0, max=65535)
    secret: str = setting("", "HS256 token secret (at least 32 bytes). Random for --demo if unset.", SECURITY)
    jwt_algorithm: str = setting("HS256", "How tokens are signed.", SECURITY, choices=("HS256", "RS256"))
    jwt_private_key: str | None = setting(None, "RS256: PEM private key file.", SECURITY, kind="file")
    jwt_public_key: str | None = setting(None, "RS256: PEM public key file.", SECURITY, kind="file")
    admin_key: str = setting(
        "", "Key for the admin API (at least 16 characters). Random for --demo if unset.", SECURITY
    )
    node_id: str = setting("", "Name of this node in logs and presence (random if unset).", NODE)
    # Containers set it; the default is this checkout's client_web/ (a machine path, so not shown in --help).
    static_dir: Path = setting(DEFAULT_STATIC_DIR, "Directory of the web client.", NODE, hide_default=True)
    allowed_origins: tuple[str, ...] = setting(
        (), "Origin allowed to open a WebSocket (repeat; none = any).", SECURITY, flag="allowed-origin"
    )
    trusted_proxies: tuple[str, ...] = setting(
        (),
        "Load balancer address or network (CIDR) whose X-Forwarded-For is believed (repeat).",
        SECURITY,
        flag="trusted-proxy",
    )
    public_url: str = setting(
        "",
        "The origin citizens reach, e.g. https://jansamvad.example.org: region links, QR codes and print sheets are "
        "made of it (default: the request's own Host, which a client chooses).",
        NODE,
    )
    log_level: str = setting(
        "info", "Least important log level written.", NODE, choices=("debug", "info", "warning", "error")
    )

    # Connections and admission (HTTP 503 + Retry-After during the handshake beyond these).
    max_connections: int = setting(18_000, "Connections per process; stay below the open-file limit.", ADMISSION, min=1)
    # Per network (IPv4 address, IPv6 prefix) only what needs no valid token is held tight (admission.py).
    max_connections_per_ip: int = setting(
        10_000, "Connections from one network (IPv4 address, IPv6 prefix) per process.", ADMISSION, min=1
    )
    max_unjoined_per_ip: int = setting(
        1_000, "Connections from one network per process that have not joined with a valid token yet.", ADMISSION, min=1
    )
    ip_handshakes_per_second: int = setting(200, "Handshakes a second from one network.", ADMISSION, min=1)
    ip_handshake_burst: int = setting(
        2_000, "Handshakes one network may make at once (a whole booth reconnecting).", ADMISSION, min=1
    )
    failed_joins_per_minute_per_ip: int = setting(
        120,
        "Connections from one network a minute that may close without joining (bad token or hello).",
        ADMISSION,
        min=1,
    )
    max_sessions_per_device: int = setting(
        4,
        "Joined sessions of one citizen identity (the token's subject) per process; more: close 1013.",
        ADMISSION,
        min=1,
    )
    ipv6_prefix: int = setting(64, "IPv6 clients are counted per prefix of this length.", ADMISSION, min=32, max=128)
    handshakes_per_second: int = setting(2_000, "WebSocket handshakes a second (citizens).", ADMISSION, min=1)
    max_joining: int = setting(2000, "Sessions per process between upgrade and welcome; more: 503.", ADMISSION, min=1)
    # The staff lane (/ws?lane=staff): leaders, moderators and admins connect through their own small handshake
    # budget and connection cap, so a storm of citizen reconnects never makes them wait (docs/operations.md).
    staff_handshakes_per_second: int = setting(
        20, "Handshakes a second on the staff lane (/ws?lane=staff), apart from the citizens' budget.", ADMISSION, min=1
    )
    max_staff_connections: int = setting(
        200,
        "Joined staff sessions on the staff lane per process (outside --max-connections and the per-IP cap).",
        ADMISSION,
        min=1,
    )

    # Sessions.
    hello_timeout_s: float = setting(
        10.0, "Seconds a new connection has to send hello.", SESSIONS, flag="hello-timeout", min=0.1
    )
    # A hello is answered with welcome, or closed with 1013, within this: also while Redis is down or hung. Not
    # shorter: on a node busy with a reconnect storm a healthy join can take seconds, and a 1013 brings it back.
    join_timeout_s: float = setting(
        10.0,
        "Seconds: a hello is answered with welcome, or closed with 1013, within this (also while Redis is hung).",
        SESSIONS,
        flag="join-timeout",
        min=0.1,
    )
    http_head_timeout_s: float = setting(
        10.0, "Seconds a request head has to arrive whole (slowloris).", SESSIONS, flag="http-head-timeout", min=0.1
    )
    max_pings_per_s: int = setting(
        10,
        "WebSocket pings a client may send a second before it is closed with 4010.",
        SESSIONS,
        flag="max-pings-per-second",
        min=1,
    )
    ping_interval_s: float = setting(
        20.0, "Seconds between the node's keepalive pings.", SESSIONS, flag="ping-interval", min=0.1
    )
    ping_timeout_s: float = setting(
        20.0, "Seconds a pong may take before the connection is dropped.", SESSIONS, flag="ping-timeout", min=0.1
    )
    close_timeout_s: float = setting(
        5.0, "Seconds a closing handshake may take.", SESSIONS, flag="close-timeout", min=0.1
    )
    drain_window_s: float = setting(
        5.0,
        "Seconds over which a stopping node spreads its clients' reconnects (SIGTERM).",
        SESSIONS,
        flag="drain-window",
        min=0.0,
        max=600.0,
    )
    max_message_bytes: int = setting(
        64 * 1024, "Bytes in any frame or message (leaders send audio chunks).", SIZES, min=1024
    )
    citizen_max_message_bytes: int = setting(4 * 1024, "Bytes in a citizen's frame or message.", SIZES, min=256)
    max_errors: int = setting(20, "Bad messages a session may send before it is closed.", SESSIONS, min=1)
    citizen_msgs_per_s: float = setting(
        5.0,
        "Messages one citizen connection may send a second.",
        AUDIENCE,
        flag="citizen-messages-per-second",
        min=0.1,
    )
    citizen_msg_burst: int = setting(
        20,
        "Messages a citizen may send at once.",
        AUDIENCE,
        flag="citizen-message-burst",
        min=1,
        burst_of="citizen_msgs_per_s",
    )
    staff_msgs_per_s: float = setting(
        50.0, "Messages one staff connection may send a second.", AUDIENCE, flag="staff-messages-per-second", min=0.1
    )
    staff_msg_burst: int = setting(
        200,
        "Messages a staff session may send at once.",
        AUDIENCE,
        flag="staff-message-burst",
        min=1,
        burst_of="staff_msgs_per_s",
    )
    # Citizens' reactions, a bucket of their own; over it they are dropped silently.
    reactions_per_s: float = setting(
        5.0,
        "Reactions one citizen may send a second (more are dropped).",
        AUDIENCE,
        flag="reactions-per-second",
        min=0.1,
    )
    reaction_burst: int = setting(
        20, "Reactions a citizen may send at once.", AUDIENCE, min=1, burst_of="reactions_per_s"
    )
    citizen_token_ttl_s: int = setting(
        12 * 3600,
        "Seconds a citizen token from /join is valid (a stolen copy works no longer than this).",
        SECURITY,
        flag="citizen-token-ttl",
        min=60,
    )
    staff_token_ttl_s: int = setting(
        12 * 3600,
        "Seconds a leader or moderator token issued by the node is valid.",
        SECURITY,
        flag="staff-token-ttl",
        min=60,
    )
    limits: Limits = field(default_factory=Limits)  # one flag per size: LIMIT_OPTIONS

    # Audience interaction (docs/protocol.md section 4.1). Questions and votes are limited per citizen and per IP
    # across every node (the RateLimiter); reactions per connection, in process (they are far too many for Redis).
    joins_per_minute_per_ip: int = setting(
        300, "Citizen identities one IP may create per minute (POST /api/townhalls/{id}/join).", AUDIENCE, min=1
    )
    # Town halls open (scheduled or live) at once; creating one more is refused (409 limit_reached). A bound on what
    # a leaked or buggy admin key can make every node track, the dashboard list and the store hold.
    max_open_townhalls: int = setting(
        1000, "Town halls scheduled or live at once; creating another is refused with 409 limit_reached.", NODE, min=1
    )
    # An ended town hall's data (questions, votes, audit, event history) is kept this long for export, then expires.
    ended_retention_days: float = setting(
        30.0, "Days an ended town hall's data stays (for export) before it expires; 0 keeps it forever.", NODE, min=0
    )
    # Where records of ended town halls and the leader's audio recordings are kept (record.py, recording_store/).
    record_dir: Path | None = setting(
        None,
        "Directory for the records of ended town halls and the audio recordings (default: jansamvad-records in the "
        "system's temp dir). Nodes that end town halls or serve records must share it, or use --record-s3-url.",
        NODE,
        hide_default=True,
    )
    record_s3_url: str = setting(
        "",
        "Keep records in an S3-compatible bucket instead: s3://bucket/prefix?endpoint=https://host&region=... "
        "(credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).",
        NODE,
    )
    # A second port with only /healthz, /readyz and /metrics (0: none). Probes there have a listen queue of their
    # own: in a reconnect storm the main port's queue overflows and the kernel drops SYNs (clients retry), which would
    # otherwise fail load balancer and Kubernetes probes of a node that is alive and working through the storm.
    health_port: int = setting(
        0,
        "A second port with only /healthz, /readyz and /metrics, for probes and scrapes (0: none). Its listen queue "
        "is its own, so a reconnect storm on the main port cannot make probes time out.",
        NODE,
        min=0,
        max=65535,
    )
    townhall_creates_per_minute: int = setting(
        60, "Town halls one IP may create per minute, even with the admin key.", NODE, min=1
    )
    ask_per_minute: int = setting(3, "Questions per citizen per minute.", AUDIENCE, min=1)
    ask_per_minute_per_ip: int = setting(
        600, "Questions per network (IPv4 address, IPv6 prefix) per minute.", AUDIENCE, min=1
    )
    votes_per_minute: int = setting(120, "Votes per citizen per minute.", AUDIENCE, min=1)
    claim_ttl_s: float = setting(
        30.0, "Seconds a moderator's claim on a question lasts.", AUDIENCE, flag="claim-ttl", min=1
    )
    moderation_dir: Path | None = setting(
        None, "Directory with policy.toml and blocklist.*.txt (default: the built-in lists).", AUDIENCE, kind="dir"
    )
    group_threshold: float = setting(
        85.0, "Similarity (0-100) at which questions are grouped together.", AUDIENCE, min=0, max=100
    )
    top_votes: int = setting(50, "Questions and groups in each `votes` message.", AUDIENCE, min=1)

    # Fan-out.
    tick_ms: float = setting(
        5.0, "Fan-out batching tick, ms: messages within one become one write per connection.", FANOUT, min=0, max=100
    )
    max_buffered_bytes: int = setting(
        512 * 1024, "Bytes buffered per connection before it is dropped as a slow consumer.", FANOUT, min=16 * 1024
    )
    # A stalled phone's data first fills the kernel's send buffer, which the node cannot see (send_buffer.py).
    send_buffer_bytes: int = setting(
        0,
        "Kernel send buffer per WebSocket (SO_SNDBUF), bytes; 0 = the kernel's autotuning. A small one lets "
        "--max-buffered-bytes act on a stalled phone sooner.",
        FANOUT,
        min=0,
        max=64 * 1024 * 1024,
    )
    writes_per_yield: int = setting(1000, "A big fan-out yields to the loop after this many writes.", FANOUT, min=1)
    io_uring: str = setting(
        "off",
        "Fan-out sends through io_uring, a batch per system call (uring_send.py): off = one send(2) per listener "
        "(no gain measured end to end, docs/benchmarks.md), auto = when the kernel allows it, on = refuse to start "
        "without it.",
        FANOUT,
        choices=("auto", "on", "off"),
    )
    history_size: int = setting(1000, "Events per town hall kept for resume.", FANOUT, min=10)
    snapshot_speech: int = setting(50, "Recent speech events in a snapshot.", FANOUT, min=0)
    presence_interval_s: float = setting(
        1.0,
        "Seconds between viewer / vote / reaction updates (at most this often).",
        FANOUT,
        flag="presence-interval",
        min=0.1,
        max=60,
    )

    # The embedded default: everything in this process, no Redis. With a Redis URL (redis://host:port/db, or
    # redis+cluster://host:port), broker, store and presence live in Redis and nodes scale out (redis_keys.py).
    redis_url: str | None = setting(
        None,
        "Redis for multi-node deployments: redis://host:port/0, or redis+cluster://host:port (default: no Redis).",
        REDIS,
    )
    redis_prefix: str = setting("jansamvad", "Prefix of every Redis key and channel.", REDIS)
    # The cluster client fails beyond 100 per server.
    redis_max_in_flight: int = setting(64, "Concurrent Redis commands per node.", REDIS, min=1, max=99)
    # Every Redis call ends within this (docs/reliability.md): a server that misses it is failed fast until it
    # answers again, so an action on a stopped or hung Redis is answered `unavailable` within about this long.
    redis_command_timeout_s: float = setting(
        1.0,
        "Seconds any Redis call may take; a server that misses it is failed fast until it answers again. A "
        "subscriber connection silent for 3 times this (at least 3 s) is given up and opened again.",
        REDIS,
        flag="redis-command-timeout",
        min=0.05,
        max=60,
    )
    # What an `ack` waits for besides the primary: "none" (the primary ran it), "replica" (WAIT 1: a replica has
    # it, so it survives a failover), "aof" (WAITAOF 1 0: the primary's AOF has it on disk). Not within
    # ack_wait_ms: the action is answered `unavailable` and the client resends with its key (docs/deploy.md).
    ack_durability: str = setting(
        "none",
        "What an ack waits for: the primary only, a replica (WAIT 1), or the primary's AOF (WAITAOF 1 0).",
        REDIS,
        choices=("none", "replica", "aof"),
    )
    ack_wait_ms: int = setting(
        500,
        "How long an ack waits for --ack-durability, ms, before the action is answered `unavailable`.",
        REDIS,
        min=1,
        max=60_000,
    )

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
            "max_unjoined_per_ip",
            "ip_handshakes_per_second",
            "ip_handshake_burst",
            "failed_joins_per_minute_per_ip",
            "max_sessions_per_device",
            "max_joining",
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
