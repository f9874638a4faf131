"""The `jansamvad` command: serve a node, issue tokens, export, regions, a local cluster. It parses and calls.

Every `serve` flag has a JANSAMVAD_* environment variable (shown by --help); flags win over the environment. The node
settings among them are derived from the Settings declaration (settings.py, settings_cli.py); running the node is
server.run_node.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from jansamvad import __version__
from jansamvad.auth import ANY_TOWNHALL, TokenService
from jansamvad.logs import configure as configure_logging
from jansamvad.privacy import erase_command
from jansamvad.protocol.roles import Role
from jansamvad.regions import CODE_RE, RegionError, RegionTree, read_csv, write_csv
from jansamvad.settings import SettingsError
from jansamvad.settings_cli import GroupedCommand, SettingOption, envvar, setting_options, settings_from_params

PROCESS = "Process"  # the section of `serve --help` for what is not a node setting


def _env(name: str) -> str:
    return envvar(name)


def _opt(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--" + name, envvar=_env(name), show_envvar=True, **kwargs)


@click.group()
@click.version_option(__version__, prog_name="jansamvad")
def main() -> None:
    """JanSamvad: live two-way town halls for a million citizens."""


@main.command(cls=GroupedCommand, params=list(setting_options()))
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar=_env("log-format"),
    show_envvar=True,
    help="json: one JSON object per line, for log shippers.",
    cls=SettingOption,
    group=PROCESS,
)
@click.option(
    "--loop",
    type=click.Choice(["uvloop", "asyncio"]),
    default="uvloop",
    show_default=True,
    envvar=_env("loop"),
    show_envvar=True,
    help="The event loop.",
    cls=SettingOption,
    group=PROCESS,
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    envvar=_env("workers"),
    show_envvar=True,
    help="Node processes sharing the port (SO_REUSEPORT); above 1 needs --redis-url.",
    cls=SettingOption,
    group=PROCESS,
)
@click.option(
    "--regions",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar=_env("regions"),
    show_envvar=True,
    help="A region tree CSV to load at start (embedded default only; with Redis: `jansamvad regions import`).",
    cls=SettingOption,
    group=PROCESS,
)
@click.option(
    "--demo",
    is_flag=True,
    help="Create a demo town hall and print citizen, leader and moderator links.",
    cls=SettingOption,
    group=PROCESS,
)
def serve(**params: Any) -> None:
    """Run one node: the web pages, the REST API and the WebSocket endpoint on one port.

    Every setting is a flag and a JANSAMVAD_* environment variable (flags win); sizes and durations say their unit.
    """
    demo = params["demo"]
    if demo:  # a demo needs no configuration: what is not given is made up (and printed with the links)
        params["secret"] = params["secret"] or secrets.token_urlsafe(32)
        params["admin_key"] = params["admin_key"] or secrets.token_urlsafe(18)
    settings = settings_from_params(params)
    try:
        settings.validate()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    regions = None
    if params["regions"] is not None:
        if settings.redis_url:
            raise click.UsageError("--regions loads the embedded store; with Redis use `jansamvad regions import`")
        regions = _read_regions(params["regions"].read_text(encoding="utf-8"), params["regions"])
    configure_logging(settings.log_level, params["log_format"], settings.node_id or "node")
    if params["workers"] > 1:
        from jansamvad.workers import Supervisor

        try:
            supervisor = Supervisor(
                settings, params["workers"], demo=demo, loop=params["loop"], log_format=params["log_format"]
            )
        except SettingsError as exc:
            raise click.UsageError(str(exc)) from None
        status = supervisor.run()
        if status == 0:
            click.echo("jansamvad stopped cleanly")
        sys.exit(status)
    from jansamvad import server  # here, not at the top: the other commands start without uvicorn and the node

    server.run_node(settings, demo=demo, loop=params["loop"], regions=regions)
    click.echo("jansamvad stopped cleanly")


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
    from jansamvad.server import DEMO_TITLE

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


main.add_command(erase_command)  # privacy.py: a citizen's questions deleted on request
