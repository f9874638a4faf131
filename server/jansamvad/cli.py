"""The `jansamvad` command: serve a node, issue tokens.

Every `serve` flag has a JANSAMVAD_* environment variable (shown by --help); flags win over the environment.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from jansamvad import __version__
from jansamvad.auth import ANY_TOWNHALL, TokenService
from jansamvad.logs import configure as configure_logging
from jansamvad.protocol.messages import Limits
from jansamvad.protocol.roles import Role
from jansamvad.regions import CODE_RE, RegionError, RegionTree, read_csv, write_csv
from jansamvad.settings import DEFAULT_STATIC_DIR, Settings, SettingsError

DEMO_TITLE = "जन संवाद — डेमो टाउन हॉल (JanSamvad demo town hall)"


def _env(name: str) -> str:
    return "JANSAMVAD_" + name.upper().replace("-", "_")


def _opt(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--" + name, envvar=_env(name), show_envvar=True, **kwargs)


def _read_key(path: str | None) -> str | None:
    return Path(path).read_text() if path else None


def _run(coro_factory: Callable[[], Any], loop: str) -> None:
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro_factory())
    else:
        asyncio.run(coro_factory())


@click.group()
@click.version_option(__version__, prog_name="jansamvad")
def main() -> None:
    """JanSamvad: live two-way town halls for a million citizens."""


@main.command()
@_opt("host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@_opt("port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port for HTTP and WebSocket.")
@_opt(
    "health-port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="A second port with only /healthz, /readyz and /metrics, for probes and scrapes (0: none). Its listen "
    "queue is its own, so a reconnect storm on the main port cannot make probes time out.",
)
@_opt("secret", default="", help="HS256 token secret (at least 32 bytes). Random for --demo if unset.")
@_opt("admin-key", default="", help="Key for the admin API (at least 16 characters). Random for --demo if unset.")
@_opt("jwt-algorithm", type=click.Choice(["HS256", "RS256"]), default="HS256", show_default=True)
@_opt("jwt-public-key", type=click.Path(exists=True, dir_okay=False), help="RS256: PEM public key file.")
@_opt("jwt-private-key", type=click.Path(exists=True, dir_okay=False), help="RS256: PEM private key file.")
@_opt("node-id", default="", help="Name of this node in logs and presence (random if unset).")
@_opt(
    "static-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATIC_DIR,
    help="Directory of the web client.",
)
@_opt("allowed-origin", multiple=True, help="Origin allowed to open a WebSocket (repeat; none = any).")
@_opt(
    "public-url",
    default="",
    help="The origin citizens reach, e.g. https://jansamvad.example.org: region links, QR codes and print sheets are "
    "made of it (default: the request's own Host, which a client chooses).",
)
@_opt(
    "trusted-proxy",
    multiple=True,
    help="Load balancer address or network (CIDR) whose X-Forwarded-For is believed (repeat).",
)
@_opt(
    "joins-per-minute-per-ip",
    default=60,
    show_default=True,
    type=click.IntRange(1),
    help="Citizen identities one IP may create per minute (POST /api/townhalls/{id}/join).",
)
@_opt(
    "citizen-token-ttl",
    default=12 * 3600,
    show_default=True,
    type=click.IntRange(60),
    help="Seconds a citizen token from /join is valid (a stolen copy works no longer than this).",
)
@_opt(
    "staff-token-ttl",
    default=12 * 3600,
    show_default=True,
    type=click.IntRange(60),
    help="Seconds a leader or moderator token issued by the node is valid.",
)
@_opt(
    "ended-retention-days",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Days an ended town hall's data stays (for export) before it expires; 0 keeps it forever.",
)
@_opt(
    "max-open-townhalls",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    help="Town halls scheduled or live at once; creating another is refused with 409 limit_reached.",
)
@_opt(
    "townhall-creates-per-minute",
    default=60,
    show_default=True,
    type=click.IntRange(1),
    help="Town halls one IP may create per minute, even with the admin key.",
)
@_opt("ask-per-minute", default=3, show_default=True, type=click.IntRange(1), help="Questions per citizen.")
@_opt("ask-per-minute-per-ip", default=60, show_default=True, type=click.IntRange(1), help="Questions per IP.")
@_opt(
    "citizen-messages-per-second",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Messages one citizen connection may send a second (bursts of 4x allowed).",
)
@_opt("votes-per-minute", default=120, show_default=True, type=click.IntRange(1), help="Votes per citizen.")
@_opt(
    "moderation-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory with policy.toml and blocklist.*.txt (default: the built-in lists).",
)
@_opt("log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
@_opt(
    "log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line, for log shippers.",
)
@_opt("max-connections", default=18_000, show_default=True, type=click.IntRange(1), help="Per process.")
@_opt("max-connections-per-ip", default=1_000, show_default=True, type=click.IntRange(1))
@_opt("handshakes-per-second", default=2_000, show_default=True, type=click.IntRange(1))
@_opt(
    "staff-handshakes-per-second",
    default=20,
    show_default=True,
    type=click.IntRange(1),
    help="Handshakes a second on the staff lane (/ws?lane=staff), apart from the citizens' budget.",
)
@_opt(
    "max-staff-connections",
    default=200,
    show_default=True,
    type=click.IntRange(1),
    help="Joined staff sessions on the staff lane per process (outside --max-connections and the per-IP cap).",
)
@_opt("hello-timeout", default=10.0, show_default=True, type=click.FloatRange(0.1), help="Seconds.")
@_opt(
    "join-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds: a hello is answered with welcome, or closed with 1013, within this (also while Redis is hung).",
)
@_opt("ping-interval", default=20.0, show_default=True, type=click.FloatRange(0.1), help="Seconds.")
@_opt("ping-timeout", default=20.0, show_default=True, type=click.FloatRange(0.1), help="Seconds.")
@_opt(
    "drain-window",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.0, 600.0),
    help="Seconds over which a stopping node spreads its clients' reconnects.",
)
@_opt("max-message-bytes", default=64 * 1024, show_default=True, type=click.IntRange(1024))
@_opt("citizen-max-message-bytes", default=4 * 1024, show_default=True, type=click.IntRange(256))
@_opt("max-question-chars", default=300, show_default=True, type=click.IntRange(10, 5000))
@_opt(
    "max-buffered-bytes",
    default=512 * 1024,
    show_default=True,
    type=click.IntRange(16 * 1024),
    help="Per connection, before it is dropped as a slow consumer.",
)
@_opt("tick-ms", default=5.0, show_default=True, type=click.FloatRange(0, 100), help="Fan-out batching tick.")
@_opt("history-size", default=1000, show_default=True, type=click.IntRange(10), help="Events kept for resume.")
@_opt(
    "redis-url",
    default=None,
    help="Redis for multi-node deployments: redis://host:port/0, or redis+cluster://host:port (default: no Redis).",
)
@_opt("redis-prefix", default="jansamvad", show_default=True, help="Prefix of every Redis key and channel.")
@_opt("redis-max-in-flight", default=64, show_default=True, type=click.IntRange(1, 99), help="Concurrent commands.")
@_opt(
    "redis-command-timeout",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.05, 60),
    help="Seconds any Redis call may take; a server that misses it is failed fast until it answers again.",
)
@_opt(
    "ack-durability",
    type=click.Choice(["none", "replica", "aof"]),
    default="none",
    show_default=True,
    help="What an ack waits for: the primary only, a replica (WAIT 1), or the primary's AOF (WAITAOF 1 0).",
)
@_opt(
    "ack-wait-ms",
    default=500,
    show_default=True,
    type=click.IntRange(1, 60_000),
    help="How long an ack waits for --ack-durability before the action is answered `unavailable`.",
)
@_opt("loop", type=click.Choice(["uvloop", "asyncio"]), default="uvloop", show_default=True)
@_opt(
    "workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Node processes sharing the port (SO_REUSEPORT); above 1 needs --redis-url.",
)
@_opt(
    "regions",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A region tree CSV to load at start (embedded default only; with Redis: `jansamvad regions import`).",
)
@click.option("--demo", is_flag=True, help="Create a demo town hall and print citizen, leader and moderator links.")
def serve(**opts: Any) -> None:
    """Run one node: the web pages, the REST API and the WebSocket endpoint on one port."""
    demo = opts["demo"]
    secret, admin_key = opts["secret"], opts["admin_key"]
    if demo:
        secret = secret or secrets.token_urlsafe(32)
        admin_key = admin_key or secrets.token_urlsafe(18)
    settings = Settings(
        host=opts["host"],
        health_port=opts["health_port"],
        port=opts["port"],
        secret=secret,
        admin_key=admin_key,
        jwt_algorithm=opts["jwt_algorithm"],
        jwt_public_key=_read_key(opts["jwt_public_key"]),
        jwt_private_key=_read_key(opts["jwt_private_key"]),
        node_id=opts["node_id"],
        static_dir=opts["static_dir"],
        allowed_origins=tuple(opts["allowed_origin"]),
        public_url=opts["public_url"],
        trusted_proxies=tuple(opts["trusted_proxy"]),
        joins_per_minute_per_ip=opts["joins_per_minute_per_ip"],
        max_open_townhalls=opts["max_open_townhalls"],
        ended_retention_days=opts["ended_retention_days"],
        citizen_token_ttl_s=opts["citizen_token_ttl"],
        staff_token_ttl_s=opts["staff_token_ttl"],
        townhall_creates_per_minute=opts["townhall_creates_per_minute"],
        ask_per_minute=opts["ask_per_minute"],
        ask_per_minute_per_ip=opts["ask_per_minute_per_ip"],
        votes_per_minute=opts["votes_per_minute"],
        citizen_msgs_per_s=opts["citizen_messages_per_second"],
        citizen_msg_burst=max(1, int(4 * opts["citizen_messages_per_second"])),
        moderation_dir=opts["moderation_dir"],
        log_level=opts["log_level"],
        max_connections=opts["max_connections"],
        max_connections_per_ip=opts["max_connections_per_ip"],
        handshakes_per_second=opts["handshakes_per_second"],
        staff_handshakes_per_second=opts["staff_handshakes_per_second"],
        max_staff_connections=opts["max_staff_connections"],
        hello_timeout_s=opts["hello_timeout"],
        join_timeout_s=opts["join_timeout"],
        ping_interval_s=opts["ping_interval"],
        ping_timeout_s=opts["ping_timeout"],
        drain_window_s=opts["drain_window"],
        max_message_bytes=opts["max_message_bytes"],
        citizen_max_message_bytes=opts["citizen_max_message_bytes"],
        limits=Limits(question_chars=opts["max_question_chars"]),
        max_buffered_bytes=opts["max_buffered_bytes"],
        tick_ms=opts["tick_ms"],
        history_size=opts["history_size"],
        redis_url=opts["redis_url"],
        redis_prefix=opts["redis_prefix"],
        redis_max_in_flight=opts["redis_max_in_flight"],
        redis_command_timeout_s=opts["redis_command_timeout"],
        ack_durability=opts["ack_durability"],
        ack_wait_ms=opts["ack_wait_ms"],
    )
    try:
        settings.validate()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    regions = None
    if opts["regions"] is not None:
        if settings.redis_url:
            raise click.UsageError("--regions loads the embedded store; with Redis use `jansamvad regions import`")
        regions = _read_regions(opts["regions"].read_text(encoding="utf-8"), opts["regions"])
    configure_logging(settings.log_level, opts["log_format"], settings.node_id or "node")
    if opts["workers"] > 1:
        from jansamvad.workers import Supervisor

        try:
            supervisor = Supervisor(
                settings, opts["workers"], demo=demo, loop=opts["loop"], log_format=opts["log_format"]
            )
        except SettingsError as exc:
            raise click.UsageError(str(exc)) from None
        status = supervisor.run()
        if status == 0:
            click.echo("jansamvad stopped cleanly")
        sys.exit(status)
    run_node(settings, demo=demo, loop=opts["loop"], regions=regions)
    click.echo("jansamvad stopped cleanly")


def raise_open_file_limit(wanted: int) -> int:
    """Raise this process's soft open-file limit towards the hard one (every connection is a file)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < wanted:
        logging.getLogger("jansamvad.cli").warning(
            "open-file limit %d is below --max-connections %d plus headroom: raise `ulimit -n` / LimitNOFILE",
            soft,
            wanted,
        )
    return soft


def run_node(
    settings: Settings, *, demo: bool, loop: str, reuse_port: bool = False, regions: RegionTree | None = None
) -> None:
    """Run one node in this process until SIGTERM / SIGINT (also the body of each worker)."""
    raise_open_file_limit(settings.max_connections + 1000)
    _run(lambda: _serve(settings, demo=demo, reuse_port=reuse_port, regions=regions), loop)


async def _serve(
    settings: Settings, *, demo: bool, reuse_port: bool = False, regions: RegionTree | None = None
) -> None:
    from jansamvad.server import bind_socket, start_server

    try:
        sock = bind_socket(settings.host, settings.port, reuse_port=reuse_port)
        health_sock = None
        if settings.health_port:
            health_sock = bind_socket(settings.host, settings.health_port, reuse_port=reuse_port)
        running = await start_server(settings, sock=sock, health_sock=health_sock)
    except (SettingsError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if regions is not None:
        await running.node.store.put_region_tree(regions)
    tune_gc()
    _print_listening(settings, running.port, running.health_port)
    if demo:
        await _print_demo_links(running.node, settings, running.port)
    await running.task
    await running.stop()  # the health port closes after the node drained
    if running.stop_signal is not None:
        log = logging.getLogger("jansamvad.cli")
        log.info("stopped by %s after a graceful shutdown", signal.Signals(running.stop_signal).name)


def tune_gc() -> None:
    """Once per node process, after startup. A node holds tens of thousands of long-lived objects (connections,
    rooms, claims) and full collections that walk all of them are wasted work on the hot path: collect what startup
    left, freeze the rest out of every later collection, and run the young generation every 20,000 allocations
    instead of CPython's 700 (and the older ones at 20 and 100 of those, instead of 10 and 10)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)


def _browser_base(settings: Settings, port: int) -> str:
    """The URL a browser on this machine opens (a wildcard address is not one it can connect to)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def _print_listening(settings: Settings, port: int, health_port: int) -> None:
    """Where the node listens and how to open the pages of a town hall made over the REST API (README)."""
    base = _browser_base(settings, port)
    lines = [
        f"JanSamvad node listening on {settings.host}:{port}: pages {base}/, WebSocket ws{base[4:]}/ws",
        f"pages of a town hall <id>: citizen {base}/?th=<id>, leader {base}/leader.html?th=<id>#token=<leader-token>, "
        f"moderator {base}/moderator.html?th=<id>#token=<moderator-token>",
    ]
    if health_port:
        lines.append(f"health, readiness and metrics on {settings.host}:{health_port}")
    click.echo("\n".join(lines))
    sys.stdout.flush()


async def _print_demo_links(node: Any, settings: Settings, port: int) -> None:
    townhall = await node.store.create_townhall(DEMO_TITLE, "hi")
    ttl = settings.staff_token_ttl_s
    leader, _ = node.tokens.issue(sub="l-demo-leader", role=Role.LEADER, th=townhall.id, ttl_s=ttl, name="नेता (Leader)")
    moderator, _ = node.tokens.issue(
        sub="m-demo-moderator", role=Role.MODERATOR, th=townhall.id, ttl_s=ttl, name="मॉडरेटर (Moderator)"
    )
    base = _browser_base(settings, port)
    lines = [
        "",
        f"JanSamvad demo town hall {townhall.id} is ready. Open these in three browser tabs:",
        f"citizen: {base}/?th={townhall.id}",
        f"leader: {base}/leader.html?th={townhall.id}#token={leader}",
        f"moderator: {base}/moderator.html?th={townhall.id}#token={moderator}",
        f"admin key (for the REST API): {settings.admin_key}",
        "",
    ]
    click.echo("\n".join(lines))
    sys.stdout.flush()


@main.command()
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--th", default=ANY_TOWNHALL, show_default=True, help="Town hall id (admins: * for any).")
@click.option("--sub", default="", help="Subject (default: random).")
@click.option("--name", default="", help="Display name.")
@click.option("--ttl", default=3600, show_default=True, type=click.IntRange(60), help="Seconds until it expires.")
@click.option(
    "--scope",
    default="",
    help="Moderators: the region unit whose subtree it moderates (a local moderator); not checked against the tree "
    "here, the admin API checks it.",
)
@_opt("secret", required=True, help="The node's HS256 secret.")
def token(role: str, th: str, sub: str, name: str, ttl: int, scope: str, secret: str) -> None:
    """Print a token for a role (HS256)."""
    if len(secret.encode()) < 32:
        raise click.UsageError("secret must be at least 32 bytes")
    if th == ANY_TOWNHALL and role != Role.ADMIN:
        raise click.UsageError("only admin tokens may be for any town hall; give --th")
    if scope and (role != Role.MODERATOR or not CODE_RE.fullmatch(scope)):
        raise click.UsageError("--scope is a region unit's code, for moderator tokens only")
    service = TokenService(secret)
    value, _ = service.issue(
        sub=sub or f"{role[0]}-{secrets.token_hex(6)}", role=Role(role), th=th, ttl_s=ttl, name=name, scope=scope
    )
    click.echo(value)


@main.command()
@click.argument("townhall")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option(
    "--url",
    default="http://127.0.0.1:8000",
    show_default=True,
    envvar=_env("url"),
    show_envvar=True,
    help="A node of the deployment.",
)
@_opt("admin-key", required=True, help="The admin key.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File (default: stdout).")
def export(townhall: str, fmt: str, url: str, admin_key: str, output: str | None) -> None:
    """Export a town hall: questions with decisions, votes, groups; polls; the audit log."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{url.rstrip('/')}/api/townhalls/{townhall}/export?format={fmt}",
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise click.ClickException(f"{exc.code}: {exc.read().decode(errors='replace')}") from None
    except urllib.error.URLError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc.reason}") from None
    if output:
        Path(output).write_bytes(body)
    else:
        click.echo(body.decode())


def _read_regions(text: str, source: object) -> RegionTree:
    try:
        return read_csv(text)
    except RegionError as exc:
        raise click.ClickException(f"{source}: {exc}") from None


def _region_store(redis_url: str, redis_prefix: str) -> Any:
    from jansamvad.redis_conn import RedisConn
    from jansamvad.redis_keys import RedisKeys
    from jansamvad.store.redis import RedisStore

    try:
        return RedisStore(RedisConn(redis_url, max_in_flight=8), RedisKeys(redis_prefix))
    except ValueError as exc:
        raise click.UsageError(f"redis: {exc}") from None


def _redis_opts(command: Callable[..., Any]) -> Callable[..., Any]:
    command = _opt("redis-prefix", default="jansamvad", show_default=True, help="Prefix of every Redis key.")(command)
    return _opt("redis-url", required=True, help="The deployment's Redis: redis://host:port/0 or redis+cluster://…")(
        command
    )


@main.group()
def regions() -> None:
    """The region tree (state → district → constituency → panchayat → booth) in the deployment's Redis."""


@regions.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
@_redis_opts
def regions_import(file: Any, redis_url: str, redis_prefix: str) -> None:
    """Replace the region tree with FILE (CSV: code,parent,level,name_hi,name_en; - for stdin). Nodes pick it up
    within seconds; the previous tree stays whole until the new one is."""
    tree = _read_regions(file.read(), getattr(file, "name", "-"))

    async def put() -> int:
        store = _region_store(redis_url, redis_prefix)
        try:
            return int(await store.put_region_tree(tree))
        finally:
            await store.close()

    try:
        version = asyncio.run(put())
    except OSError as exc:
        raise click.ClickException(f"redis: {exc}") from None
    counts = ", ".join(f"{sum(1 for u in tree.units.values() if u.level == lv.id)} {lv.id}" for lv in tree.levels)
    click.echo(f"imported {len(tree)} units ({counts}) as version {version}")


@regions.command("export")
@_redis_opts
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File (default: stdout).")
def regions_export(redis_url: str, redis_prefix: str, output: str | None) -> None:
    """Write the current region tree as CSV (the form `regions import` reads)."""

    async def get() -> RegionTree | None:
        store = _region_store(redis_url, redis_prefix)
        try:
            tree: RegionTree | None = await store.region_tree()
            return tree
        finally:
            await store.close()

    try:
        tree = asyncio.run(get())
    except OSError as exc:
        raise click.ClickException(f"redis: {exc}") from None
    if tree is None:
        raise click.ClickException("no region tree in this Redis (and prefix): import one first")
    if output:
        Path(output).write_text(write_csv(tree), encoding="utf-8")
    else:
        click.echo(write_csv(tree), nl=False)


@main.group()
def cluster() -> None:
    """A local deployment on loopback: Redis, several nodes, and HAProxy when it is installed."""


@cluster.command("up")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 16))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Per node.")
@click.option(
    "--redis", "redis_kind", type=click.Choice(["cluster", "standalone"]), default="cluster", show_default=True
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Entry port (the load balancer's; without haproxy, node 0's URL is the entry).",
)
@click.option(
    "--replicas",
    default=0,
    show_default=True,
    type=click.IntRange(0, 2),
    help="Valkey replicas per primary (--redis cluster): 1 gives 3 primaries + 3 replicas, as in production.",
)
def cluster_up(nodes: int, workers: int, redis_kind: str, port: int, replicas: int) -> None:
    """Start everything, print the entry URL and demo links, and stop it all on Ctrl-C or SIGTERM.

    Like production: every Valkey writes an AOF (appendfsync everysec) to its own data directory, and the nodes get
    their token secret, admin key and Redis URL through the environment, never on their command line."""
    import signal as signals
    import time as clock

    from jansamvad.cluster import LocalCluster

    if replicas and redis_kind != "cluster":
        raise click.UsageError("--replicas needs --redis cluster")
    local = LocalCluster.like_production(
        nodes=nodes, workers=workers, redis=redis_kind, entry_port=port, replicas=replicas
    )
    stopping = False
    started = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if not started:  # abort the start; LocalCluster.start stops what it already started
            raise KeyboardInterrupt

    signals.signal(signals.SIGTERM, stop)
    signals.signal(signals.SIGINT, stop)
    local.start()
    started = True
    try:
        click.echo(f"Redis: {local.redis_url}")
        for server in local.redis_servers:
            click.echo(f"valkey on port {server.port}: AOF (appendfsync everysec) in {server.dir}")
        for node in local.node_procs:
            click.echo(f"node{node.index}: {node.url} ({workers} worker(s), log {node.log})")
        if local.haproxy is None:
            click.echo("haproxy is not installed (apt-get install haproxy): no load balancer, node0 is the entry")
        click.echo(f"entry: {local.entry_url}")
        click.echo(f"admin key: {local.admin_key}")
        th = local.create_townhall(DEMO_TITLE)
        tokens = TokenService(local.secret)
        ttl = 12 * 3600
        leader, _ = tokens.issue(sub="l-demo-leader", role=Role.LEADER, th=th, ttl_s=ttl, name="नेता (Leader)")
        moderator, _ = tokens.issue(sub="m-demo-moderator", role=Role.MODERATOR, th=th, ttl_s=ttl, name="मॉडरेटर")
        click.echo(f"citizen: {local.entry_url}/?th={th}")
        click.echo(f"leader: {local.entry_url}/leader.html?th={th}#token={leader}")
        click.echo(f"moderator: {local.entry_url}/moderator.html?th={th}#token={moderator}")
        sys.stdout.flush()
        while not stopping:
            clock.sleep(0.2)
    finally:
        click.echo("stopping the local cluster")
        local.stop()
